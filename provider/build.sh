#!/usr/bin/env bash
# Builds pulumi-resource-pcp-eval, the provider plugin of pcp-eval's host
# resources, from this directory's Go sources (modules from the Go module
# proxy as GOPROXY says, pinned by go.mod/go.sum) into provider/bin, the
# folder Pulumi.yaml's plugins.providers names. A build is kept until a
# source, go.mod, go.sum or this script changes: the stamp
# provider/bin/source.sha256 holds the key it was built for (Go's own
# build cache makes a rebuild after a Go upgrade cheap, so Go's version is no part of it).
#
#   bash provider/build.sh           build when stale; print {"binDir", "key", "built", "seconds"}
#   bash provider/build.sh --print   print the same for a current build; exit 1 when stale or absent
#   bash provider/build.sh --key     print the key of the sources as they are now
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin="$here/bin"
plugin="$bin/pulumi-resource-pcp-eval"
mode=build
case "${1:-}" in
    "") ;;
    --print) mode=print ;;
    --key) mode=key ;;
    *) echo "provider/build.sh: unknown argument '$1' (use no argument, --print or --key)" >&2; exit 2 ;;
esac

command -v go >/dev/null || { echo "provider/build.sh: go is not installed: building pcp-eval's provider plugin needs Go >= 1.26 (nix develop ./nix has it)" >&2; exit 1; }

# The key: a digest of every file the build reads, as `sha256sum` lists them in
# name order (C locale). components/providerPlugin.ts computes the same in the
# program, to call this script only when a source changed.
sources() {
    local f
    for f in "$here"/build.sh "$here"/go.mod "$here"/go.sum "$here"/*.go; do
        [[ $f == *_test.go ]] || basename "$f"
    done | LC_ALL=C sort
}
key() {
    local names
    mapfile -t names < <(sources)
    (cd "$here" && sha256sum -- "${names[@]}") | sha256sum | cut -c1-16
}

current() { [[ -x "$plugin" && -f "$bin/source.sha256" && "$(cat "$bin/source.sha256")" == "$1" ]]; }

emit() { printf '{"binDir":"%s","key":"%s","built":%s,"seconds":%s}\n' "$bin" "$1" "$2" "$3"; }

k=$(key)
case $mode in
    key) echo "$k"; exit 0 ;;
    print)
        current "$k" || { echo "provider/build.sh: no current build in $bin; run 'bash provider/build.sh'" >&2; exit 1; }
        emit "$k" false 0; exit 0 ;;
esac

mkdir -p "$bin"
# One builder at a time; a second caller waits, then finds the build current.
exec 9>"$bin/.lock"
flock 9
if current "$k"; then emit "$k" false 0; exit 0; fi

start=$(date +%s)
echo "provider/build.sh: building pulumi-resource-pcp-eval (the first build compiles the Pulumi SDK's gRPC code: a minute or more)" >&2
tmp=$(mktemp "$bin/.build.XXXXXX")
trap 'rm -f "$tmp"' EXIT
(cd "$here" && GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod" go build -trimpath -buildvcs=false \
    -ldflags "-s -w -X main.version=0.1.0+$k" -o "$tmp" .)
chmod 755 "$tmp"
# Atomic: an engine starting the plugin meanwhile runs the old one or the new one, never half of one.
mv -f "$tmp" "$plugin"
echo "$k" >"$bin/source.sha256"
emit "$k" true "$(($(date +%s) - start))"
