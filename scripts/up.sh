#!/usr/bin/env bash
# Sets up a checkout and runs `pulumi up` for a stack (default: dev).
#   bash scripts/up.sh [STACK] [extra pulumi up flags...]
# State goes to the local file backend named in Pulumi.yaml (./.pulumi-state).
# The stack's passphrase: PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE
# when set; otherwise a random one is generated once per checkout into
# .pulumi-state/passphrase (mode 600) and reused.
set -euo pipefail

cd "$(dirname "$0")/.."
stack=${1:-dev}
shift || true

for tool in pulumi node npm nix go; do
    command -v "$tool" >/dev/null || { echo "up.sh: $tool not found; run inside \`nix develop ./nix\`" >&2; exit 1; }
done

if [[ ! -d node_modules ]] || ! cmp -s package-lock.json node_modules/.package-lock.json; then
    npm ci --no-audit --no-fund
fi

mkdir -p .pulumi-state
if [[ -z "${PULUMI_CONFIG_PASSPHRASE:-}" && -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]]; then
    passphrase_file=.pulumi-state/passphrase
    if [[ ! -s "$passphrase_file" ]]; then
        (umask 077 && head -c 32 /dev/urandom | base64 >"$passphrase_file")
        echo "up.sh: generated the stack passphrase in $passphrase_file (keep it: it decrypts the stack's secrets)" >&2
    fi
    export PULUMI_CONFIG_PASSPHRASE_FILE=$PWD/$passphrase_file
fi

# Node's compile cache for every Node.js process of the run: the program, twice
# per up (preview, then update) (bench/README.md: ~0.5 s saved per process).
export NODE_COMPILE_CACHE=${NODE_COMPILE_CACHE:-${PCP_EVAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pcp-eval}/node-compile-cache}

pulumi stack select --create "$stack" >/dev/null
exec pulumi up --stack "$stack" "$@"
