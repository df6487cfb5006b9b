#!/usr/bin/env bash
# The whole test suite: type check, lint, unit, integration and end-to-end
# tests in one node test run, so its closing summary counts every test.
set -euo pipefail

cd "$(dirname "$0")/.."

npx tsc --noEmit -p .
echo "typecheck: ok"

mapfile -t test_files < <(find components test -name '*.test.ts' -not -path '*/node_modules/*' | sort)
exec node --import tsx --test --test-concurrency=1 --test-reporter=spec "${test_files[@]}"
