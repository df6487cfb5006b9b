#!/usr/bin/env bash
# Sets up a fresh machine (system packages, npm dependencies) and runs every
# test. This is the README's test command and what CI runs.
set -euo pipefail

cd "$(dirname "$0")/.."
# Go (for the Pulumi CLI of the engine tests) comes with the machine under
# /usr/local/go, not from apt; a minimal PATH (cron, env -i) misses it.
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
    export PATH="/usr/local/go/bin:$PATH"
fi
bash scripts/install-test-deps.sh
bash scripts/test.sh
