#!/usr/bin/env bash
# Builds what the Kubernetes tests need, from Go modules only (the Go module
# proxy as this machine's GOPROXY says), each part cached by version under
# ${PCP_EVAL_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/pcp-eval}/tools/:
#
#   provider  pulumi-resource-kubernetes, the provider plugin @pulumi/kubernetes
#             drives, from github.com/pulumi/pulumi-kubernetes/provider/v4. That
#             module replaces its sdk/v4 with a directory of its own repository
#             and embeds a schema file its generate.go writes, so it is built
#             from a copy: sdk/v4 at the version its go.mod requires, generate,
#             build.
#   cluster   kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
#             kubectl (k8s.io/kubernetes, pinned by tools/kubernetes/go.mod with
#             its staging modules at the matching release), and pause, the pod
#             sandbox of tools/kubernetes/pause, with pause.tar: an image of it
#             that `ctr images import` takes (no registry is reachable here).
#
#   bash tools/build-kubernetes.sh [provider|cluster|all] [--print]
#
# stdout: one JSON line, {"provider": {...}, "cluster": {...}} with the parts
# asked for, each {binDir, key, version, built, seconds}. --print only reports
# cached builds and fails when one is absent.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
what=all
mode=build
for arg in "$@"; do
    case "$arg" in
        provider | cluster | all) what=$arg ;;
        --print) mode=print ;;
        *) echo "tools/build-kubernetes.sh: unknown argument '$arg' (use provider, cluster or all, and optionally --print)" >&2; exit 2 ;;
    esac
done

command -v go >/dev/null || { echo "tools/build-kubernetes.sh: go is not installed (need Go >= 1.26)" >&2; exit 1; }
command -v jq >/dev/null || { echo "tools/build-kubernetes.sh: jq is not installed" >&2; exit 1; }

# The provider's pinned module and what its go.mod requires of sdk/v4 (its own
# replace points at ../sdk, which a module download does not have).
provider_module=github.com/pulumi/pulumi-kubernetes/provider/v4
provider_module_version=v4.0.0-20260115033456-f47bc2d6f199
provider_sdk_version=v4.24.0
# The version the plugin reports: the @pulumi/kubernetes SDK of package.json, so
# the engine's plugin and the SDK's request agree.
provider_version=4.34.2

cache_root="${PCP_EVAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pcp-eval}/tools"
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"

# key PART FILES...: the cache key, everything that decides what PART is built.
key() {
    local part=$1
    shift
    {
        echo "$part"
        go env GOVERSION GOOS GOARCH
        cat "$here/build-kubernetes.sh" "$@"
    } | sha256sum | cut -c1-16
}

# build PART KEY VERSION CHECK BUILDER: reuse $cache_root/PART/KEY when CHECK
# passes in it, else run BUILDER WORKDIR VERSION and move the result in place.
# Prints the part's JSON object.
build() {
    local part=$1 key=$2 version=$3 check=$4 builder=$5
    local entry="$cache_root/$part/$key" start work
    if [[ -f $entry/complete ]] && "$check" "$entry"; then
        jq -cn --arg binDir "$entry/bin" --arg key "$key" --arg version "$version" \
            '{binDir: $binDir, key: $key, version: $version, built: false, seconds: 0}'
        return
    fi
    if [[ $mode == print ]]; then
        echo "tools/build-kubernetes.sh: no cached $part build at $entry; run 'bash tools/build-kubernetes.sh $part'" >&2
        exit 1
    fi
    mkdir -p "$cache_root/$part"
    # One builder per entry at a time; a second caller waits, then reuses it.
    exec {lock}>"$entry.lock"
    flock "$lock"
    if ! { [[ -f $entry/complete ]] && "$check" "$entry"; }; then
        start=$(date +%s)
        work=$(mktemp -d "$cache_root/$part/.build-$key.XXXXXX")
        # shellcheck disable=SC2064 # expand now: the trap outlives this function's locals
        trap "chmod -R u+w '$work' 2>/dev/null; rm -rf '$work'" EXIT
        mkdir -p "$work/bin"
        "$builder" "$work" "$version"
        rm -rf "$entry"
        mv "$work" "$entry"
        trap - EXIT
        touch "$entry/complete"
        jq -cn --arg binDir "$entry/bin" --arg key "$key" --arg version "$version" --argjson seconds $(($(date +%s) - start)) \
            '{binDir: $binDir, key: $key, version: $version, built: true, seconds: $seconds}'
    else
        jq -cn --arg binDir "$entry/bin" --arg key "$key" --arg version "$version" \
            '{binDir: $binDir, key: $key, version: $version, built: false, seconds: 0}'
    fi
    exec {lock}>&-
}

provider_ok() { [[ -x $1/bin/pulumi-resource-kubernetes ]]; }

build_provider() {
    local work=$1 version=$2 src
    echo "tools/build-kubernetes.sh: building pulumi-resource-kubernetes $version from $provider_module@$provider_module_version (a cold build takes a while)" >&2
    src=$(go mod download -json "$provider_module@$provider_module_version" | jq -r .Dir)
    cp -r "$src" "$work/src"
    chmod -R u+w "$work/src"
    (
        cd "$work/src"
        go mod edit -replace "github.com/pulumi/pulumi-kubernetes/sdk/v4=github.com/pulumi/pulumi-kubernetes/sdk/v4@$provider_sdk_version"
        # Writes schema-embed.json and terraform-mapping-embed.json, which main.go embeds.
        (cd cmd/pulumi-resource-kubernetes && VERSION=$version go run generate.go)
        go build -trimpath -buildvcs=false \
            -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$version" \
            -o "$work/bin/pulumi-resource-kubernetes" ./cmd/pulumi-resource-kubernetes
    )
    chmod -R u+w "$work/src"
    rm -rf "$work/src"
}

cluster_tools=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

cluster_ok() {
    local t
    for t in "${cluster_tools[@]}" pause; do [[ -x $1/bin/$t ]] || return 1; done
    [[ -f $1/images/pause.tar ]]
}

# pause.tar: a docker-archive (what `docker save` writes, and `ctr images import`
# reads) of one layer holding /pause, tagged $pause_image.
pause_image=localhost/pcp-eval/pause:1
pause_archive() {
    local work=$1 dir layer_sha config config_sha
    dir=$(mktemp -d)
    mkdir -p "$dir/rootfs" "$work/images"
    install -m 0755 "$work/bin/pause" "$dir/rootfs/pause"
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$dir/rootfs" -cf "$dir/layer.tar" pause
    layer_sha=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)
    config=$(jq -cn --arg diff "sha256:$layer_sha" '{
        architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z",
        config: {Entrypoint: ["/pause"], User: "65535:65535"},
        rootfs: {type: "layers", diff_ids: [$diff]}}')
    config_sha=$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
    printf '%s' "$config" >"$dir/$config_sha.json"
    mkdir -p "$dir/$layer_sha"
    mv "$dir/layer.tar" "$dir/$layer_sha/layer.tar"
    jq -cn --arg c "$config_sha.json" --arg l "$layer_sha/layer.tar" --arg tag "$pause_image" \
        '[{Config: $c, RepoTags: [$tag], Layers: [$l]}]' >"$dir/manifest.json"
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$dir" \
        -cf "$work/images/pause.tar" manifest.json "$config_sha.json" "$layer_sha"
    rm -rf "$dir"
}

build_cluster() {
    local work=$1 version=$2 t ldflags pkgs=()
    echo "tools/build-kubernetes.sh: building ${cluster_tools[*]} $version (a cold build takes a while)" >&2
    for t in "${cluster_tools[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$t"); done
    # What the release builds stamp; kubelet and kubectl report it, and version
    # skew checks read it.
    local minor=${version#v1.}
    minor=${minor%%.*}
    ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1"
    ldflags+=" -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
    ldflags+=" -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
    (cd "$here/kubernetes" && go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$work/bin/" "${pkgs[@]}")
    (cd "$here/kubernetes" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$work/bin/pause" ./pause)
    pause_archive "$work"
    echo "$pause_image" >"$work/images/pause.ref"
}

parts=()
if [[ $what == provider || $what == all ]]; then
    parts+=("provider=$(build provider "$(key provider)" "$provider_version" provider_ok build_provider)")
fi
if [[ $what == cluster || $what == all ]]; then
    cluster_version=$(cd "$here/kubernetes" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
    cluster_key=$(key cluster "$here/kubernetes/go.mod" "$here/kubernetes/go.sum" "$here/kubernetes/pause/main.go")
    parts+=("cluster=$(build cluster "$cluster_key" "$cluster_version" cluster_ok build_cluster)")
fi
out='{}'
for p in "${parts[@]}"; do out=$(jq -c --arg k "${p%%=*}" --argjson v "${p#*=}" '.[$k] = $v' <<<"$out"); done
echo "$out"
