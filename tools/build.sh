#!/usr/bin/env bash
# Builds the Pulumi engine the end-to-end tests run, from Go modules only (the
# Go module proxy as this machine's GOPROXY says), pinned by tools/go.mod and
# tools/langhost-nodejs/go.mod:
#   pulumi                         the CLI and engine   (github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
#   pulumi-language-nodejs         the Node.js language host
#   pulumi-resource-pulumi-nodejs  the script the engine runs for Node dynamic providers
#                                  (shipped in the sdk/v3 module next to the CLI's sources)
# Built once per version into $PCP_EVAL_CACHE_DIR/tools/<hash>/bin (PCP_EVAL_CACHE_DIR:
# the project's cache root, default ${XDG_CACHE_HOME:-~/.cache}/pcp-eval);
# a second run only checks that directory. stdout: one JSON line.
#
#   bash tools/build.sh            build (or reuse) and print {"binDir":...}
#   bash tools/build.sh --print    print the JSON for the cached build; exit 1 if absent
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mode=build
case "${1:-}" in
    "") ;;
    --print) mode=print ;;
    *) echo "tools/build.sh: unknown argument '$1' (use no argument, or --print)" >&2; exit 2 ;;
esac

command -v go >/dev/null || { echo "tools/build.sh: go is not installed (need Go >= 1.26)" >&2; exit 1; }
command -v jq >/dev/null || { echo "tools/build.sh: jq is not installed" >&2; exit 1; }

# The versions the module files pin; the build stamps them into the binaries.
cli_version=$(cd "$here" && GOFLAGS=-mod=mod go list -m -f '{{.Version}}' github.com/pulumi/pulumi/pkg/v3)
sdk_version=$(cd "$here" && GOFLAGS=-mod=mod go list -m -f '{{.Version}}' github.com/pulumi/pulumi/sdk/v3)
langhost_version=$(cd "$here/langhost-nodejs" && GOFLAGS=-mod=mod go list -m -f '{{.Version}}' github.com/pulumi/pulumi/sdk/v3)

# One cache entry per version: everything that decides what gets built.
key=$(
    {
        go env GOVERSION GOOS GOARCH
        cat "$here/build.sh" "$here/go.mod" "$here/go.sum" \
            "$here/langhost-nodejs/go.mod" "$here/langhost-nodejs/go.sum"
    } | sha256sum | cut -c1-16
)
cache_root="${PCP_EVAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pcp-eval}/tools"
entry="$cache_root/$key"
bin="$entry/bin"

emit() {
    jq -cn --arg binDir "$bin" --arg key "$key" --arg cli "$cli_version" \
        --arg langhost "$langhost_version" --argjson built "$1" --argjson seconds "$2" \
        '{binDir: $binDir, key: $key, pulumi: $cli, languageHostNodejs: $langhost,
          plugins: ["pulumi-language-nodejs", "pulumi-resource-pulumi-nodejs"],
          built: $built, seconds: $seconds}'
}

complete() { [[ -f "$entry/complete" && -x "$bin/pulumi" && -x "$bin/pulumi-language-nodejs" && -x "$bin/pulumi-resource-pulumi-nodejs" ]]; }

if complete; then emit false 0; exit 0; fi
if [[ $mode == print ]]; then
    echo "tools/build.sh: no cached build at $entry; run 'bash tools/build.sh'" >&2
    exit 1
fi

mkdir -p "$cache_root"
# One builder at a time per entry; a second caller waits, then finds it complete.
exec 9>"$entry.lock"
flock 9
if complete; then emit false 0; exit 0; fi

start=$(date +%s)
work=$(mktemp -d "$cache_root/.build-$key.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"

export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"
ldflags() { echo "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$1"; }

echo "tools/build.sh: building pulumi $cli_version (a cold build takes a while)" >&2
(cd "$here" && go build -trimpath -buildvcs=false -ldflags "$(ldflags "$cli_version")" \
    -o "$work/bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)

echo "tools/build.sh: building pulumi-language-nodejs $langhost_version" >&2
(cd "$here/langhost-nodejs" && go build -trimpath -buildvcs=false -ldflags "$(ldflags "$langhost_version")" \
    -o "$work/bin/pulumi-language-nodejs" github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs)

# The dynamic-provider launcher ships in the sdk/v3 module the CLI is built from.
sdk_dir=$(cd "$here" && go mod download -json "github.com/pulumi/pulumi/sdk/v3@$sdk_version" | jq -r .Dir)
install -m 0755 "$sdk_dir/nodejs/dist/pulumi-resource-pulumi-nodejs" "$work/bin/pulumi-resource-pulumi-nodejs"

"$work/bin/pulumi" version >/dev/null

rm -rf "$entry"
mv "$work" "$entry"
trap - EXIT
touch "$entry/complete"
emit true $(($(date +%s) - start))
