#!/usr/bin/env bash
# The unit tests alone (Pulumi mocks; the host resources' tests drive the real
# provider plugin, so Go or a current provider/bin build is needed): `npm run test:unit`.
# Lists the files itself: node --test does not expand globs on every Node.
set -euo pipefail

cd "$(dirname "$0")/.."
mapfile -t files < <(find components test/unit -name '*.test.ts' -not -path '*/node_modules/*' | sort)
exec node --import tsx --test "${files[@]}"
