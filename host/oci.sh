#!/usr/bin/env bash
# The PCP OCI image on this host's Docker daemon (and in a cluster's runtime).
#
#   oci.sh load --tarball PATH [--repo NAME]
#       docker load the image tarball (a docker-archive, e.g. the Nix
#       pcp-container output) and tag it NAME:<hash> (NAME defaults to the
#       container.imageName of nix/constants.json). <hash> is the store hash of
#       the tarball's path (/nix/store/<hash>-name, or any "<32 chars>-name"
#       file), else the first 32 hex digits of the file's sha256. An existing
#       tag is not loaded again. Tags the archive itself carries (Nix's
#       pcp-eval:nix) are removed again, or pointed back at the image they
#       named before the load, so that only NAME:<hash> is new.
#       -> {"image":"NAME:<hash>","loaded":true|false,"id":"sha256:..."}
#   oci.sh ref --tarball PATH [--repo NAME]
#       the reference load would give the tarball, without Docker (for a
#       containerd cluster that imports the tarball itself).
#       -> {"image":"NAME:<hash>"}
#   oci.sh status --tarball PATH [--repo NAME]
#       the tag load makes, as it is now (read-only).
#       -> {"image":"NAME:<hash>","id":"sha256:..."|null}
#   oci.sh remove (--image REF | --tarball PATH [--repo NAME])
#       removes that one tag (the image goes with its last tag). A tag that a
#       container still uses is left, and said so.
#       -> {"image":REF,"removed":true|false[,"inUseBy":[names]]}
#   oci.sh cluster-load --image REF --context C [--containerd SOCKET [--tarball PATH]]
#       makes REF (from the local Docker daemon) available to the cluster of
#       kube context C: a minikube profile (minikube image load), a kind
#       cluster (kind-NAME: kind load docker-image), or docker-desktop (shares
#       this daemon's images). With --containerd, a cluster whose nodes run
#       containerd at SOCKET (kubeadm, k3s: /run/k3s/containerd/containerd.sock,
#       a test cluster): REF is imported into containerd's k8s.io namespace,
#       the one its CRI plugin serves to kubelet, from `docker save REF`, or
#       from --tarball PATH (a docker-archive, e.g. the pcp-container build;
#       no Docker needed), tagged REF.
#       -> {"image":REF,"context":C,"loaded":true,"via":"minikube|kind|docker-desktop|containerd"}
#   oci.sh cluster-remove --image REF --context C [--containerd SOCKET]
#       -> {"image":REF,"context":C,"removed":true|false,"via":...}
#   oci.sh wait-pmcd --address A --port P [--timeout S]
#       waits until pmcd answers on A:P: it connects and reads the PDU pmcd
#       sends every new client (a PDU_ERROR carrying its protocol version).
#       S defaults to timeoutsSeconds.services of nix/constants.json.
#       -> {"address":A,"port":P,"readyMs":N,"attempts":N}
#   oci.sh check-ports --address A --port P [--port P]...
#       fails, naming the port and its listener, when a port is already
#       bound on A (or on a wildcard address), so a container is not created
#       that could not start.
#       -> {"address":A,"ports":[P...],"free":true}
#
# Docker is reached as the docker CLI reaches it (DOCKER_HOST, docker
# context). Errors go to stderr with a non-zero exit; stdout carries one JSON line.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
constants="$script_dir/../nix/constants.json"
PROG=oci.sh
# shellcheck source=lib.sh
source "$script_dir/lib.sh"

usage() {
    cat >&2 <<'EOF'
usage: oci.sh load --tarball PATH [--repo NAME]
       oci.sh ref --tarball PATH [--repo NAME]
       oci.sh remove (--image REF | --tarball PATH [--repo NAME])
       oci.sh cluster-load --image REF --context C [--containerd SOCKET [--tarball PATH]]
       oci.sh cluster-remove --image REF --context C [--containerd SOCKET]
       oci.sh wait-pmcd --address A --port P [--timeout S]
       oci.sh check-ports --address A --port P [--port P]...
EOF
    exit 2
}

constant() {
    jq -er "$1" "$constants" 2>/dev/null || die "cannot read $1 from $constants"
}

verb="${1:-}"
[[ -n $verb ]] || usage
shift
PROG="oci.sh $verb"

tarball="" repo="" image="" context="" address="" timeout="" containerd=""
ports=()
while (($# > 0)); do
    flag="$1"
    case "$flag" in
    --tarball | --repo | --image | --context | --address | --port | --timeout | --containerd)
        if (($# < 2)) || [[ -z $2 ]]; then die "$flag needs a value"; fi
        case "$flag" in
        --tarball) tarball="$2" ;;
        --repo) repo="$2" ;;
        --image) image="$2" ;;
        --context) context="$2" ;;
        --address) address="$2" ;;
        --port) ports+=("$2") ;;
        --timeout) timeout="$2" ;;
        --containerd) containerd="$2" ;;
        esac
        shift 2
        ;;
    -h | --help) usage ;;
    *) die "unknown argument '$flag' (see oci.sh --help)" ;;
    esac
done

require_docker() {
    command -v docker >/dev/null || die "the docker CLI is not installed (apt-get install docker.io)"
    local out
    if ! out="$(timeout 30 docker version --format '{{.Server.Version}}' 2>&1)"; then
        local where="${DOCKER_HOST:-the default of the docker CLI (unix:///var/run/docker.sock or the current docker context)}"
        die "no Docker daemon answers at $where: $(printf '%s' "$out" | grep -v '^\s*$' | tail -n 1); start dockerd (systemctl start docker) or point DOCKER_HOST at a running daemon."
    fi
}

image_exists() {
    docker image inspect --format '{{.Id}}' "$1" >/dev/null 2>&1
}

valid_repo() {
    [[ $1 =~ ^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$ ]]
}

# A tag reference "repo:tag", never an image ID or a digest, so that remove can
# only ever take away a tag by name.
valid_tag_ref() {
    [[ $1 =~ ^[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] && [[ $1 != sha256:* ]]
}

# The tag of a tarball: its store hash, or a hash of its content.
tarball_tag() {
    local path="$1" real base
    real="$(readlink -f -- "$path" 2>/dev/null || true)"
    [[ -n $real ]] || real="$path"
    base="$(basename -- "$real")"
    if [[ $base =~ ^([0-9a-z]{32})- ]]; then
        printf '%s' "${BASH_REMATCH[1]}"
        return 0
    fi
    [[ -f $real && -r $real ]] || return 1
    sha256sum -- "$real" | cut -c1-32
}

ref_from_args() {
    [[ -n $repo ]] || repo="$(constant '.container.imageName')"
    valid_repo "$repo" || die "--repo '$repo' is not a Docker repository name (lower-case letters, digits, '.', '_', '-', '/'); e.g. --repo pcp-eval"
    local tag
    tag="$(tarball_tag "$tarball")" ||
        die "--tarball $tarball: no such readable file, and its name carries no store hash to derive the tag from; pass the image tarball (the pcp-container build output) or --image REF"
    printf '%s:%s' "$repo" "$tag"
}

cmd_load() {
    [[ -n $tarball ]] || die "--tarball PATH is required (the image tarball, e.g. the out-link of the pcp-container build)"
    [[ -z $image && -z $context ]] || die "load takes --tarball and --repo only"
    local real
    real="$(readlink -f -- "$tarball" 2>/dev/null || true)"
    [[ -n $real && -f $real ]] || die "--tarball $tarball: no such file; pass the image tarball (the pcp-container build output)"
    [[ -r $real ]] || die "--tarball $tarball: not readable by $(id -un)"
    local ref
    ref="$(ref_from_args)"
    require_docker

    if image_exists "$ref"; then
        jq -cn --arg image "$ref" --arg id "$(docker image inspect --format '{{.Id}}' "$ref")" \
            '{image: $image, loaded: false, id: $id}'
        return 0
    fi

    # What the archive says it holds; also tells an image from any other file
    # before Docker is asked to load it.
    local manifest
    if ! { manifest="$(tar -xOf "$real" manifest.json 2>/dev/null)" || manifest="$(tar -xOf "$real" ./manifest.json 2>/dev/null)"; } ||
        ! jq -e 'type == "array" and length >= 1 and all(.[]; has("Config") and has("Layers"))' <<<"$manifest" >/dev/null 2>&1; then
        die "--tarball $tarball is not a Docker image archive (no valid manifest.json in it); pass the docker-archive tarball that dockerTools.buildLayeredImage (the pcp-container package) builds"
    fi
    [[ $(jq 'length' <<<"$manifest") -eq 1 ]] || die "--tarball $tarball holds $(jq 'length' <<<"$manifest") images; expected exactly one"
    local archive_tags=() fresh_tags=() t
    local -A held=() # archive tags that already name an image: tag -> that image's ID
    mapfile -t archive_tags < <(jq -r '.[0].RepoTags // [] | .[]' <<<"$manifest")
    for t in "${archive_tags[@]}"; do
        if image_exists "$t"; then
            held["$t"]="$(docker image inspect --format '{{.Id}}' "$t")"
        else
            fresh_tags+=("$t")
        fi
    done

    local out
    if ! out="$(docker load -i "$real" 2>&1)"; then
        die "docker load rejected $tarball: $(printf '%s' "$out" | grep -v '^\s*$' | tail -n 1)"
    fi

    local id=""
    if ((${#archive_tags[@]} > 0)); then
        id="$(docker image inspect --format '{{.Id}}' "${archive_tags[0]}" 2>/dev/null || true)"
    else
        id="$(sed -n 's/^Loaded image ID: //p' <<<"$out" | tail -n 1)"
    fi
    if [[ -z $id ]]; then
        for t in "${fresh_tags[@]}"; do docker image rm "$t" >/dev/null 2>&1 || true; done
        die "docker load of $tarball reported no image ($out)"
    fi

    if ! docker tag "$id" "$ref" 2>/dev/null; then
        for t in "${fresh_tags[@]}"; do docker image rm "$t" >/dev/null 2>&1 || true; done
        die "could not tag the loaded image $id as $ref"
    fi
    # Keep only our tag: the archive's own tags go again, and a tag that named
    # another image before the load (e.g. pcp-eval:nix of an older build) names it again.
    for t in "${fresh_tags[@]}"; do
        [[ $t == "$ref" ]] || docker image rm "$t" >/dev/null
    done
    for t in "${!held[@]}"; do
        [[ ${held[$t]} == "$id" ]] || docker tag "${held[$t]}" "$t"
    done
    jq -cn --arg image "$ref" --arg id "$id" '{image: $image, loaded: true, id: $id}'
}

cmd_ref() {
    [[ -n $tarball ]] || die "--tarball PATH is required (the image tarball, e.g. the out-link of the pcp-container build)"
    [[ -z $image && -z $context ]] || die "ref takes --tarball and --repo only"
    jq -cn --arg image "$(ref_from_args)" '{image: $image}'
}

cmd_status() {
    [[ -n $tarball ]] || die "--tarball PATH is required (the image tarball whose tag to look up)"
    local ref id=""
    ref="$(ref_from_args)"
    require_docker
    if image_exists "$ref"; then id="$(docker image inspect --format '{{.Id}}' "$ref")"; fi
    jq -cn --arg image "$ref" --arg id "$id" '{image: $image, id: (if $id == "" then null else $id end)}'
}

cmd_remove() {
    local ref
    if [[ -n $image ]]; then
        [[ -z $tarball ]] || die "give either --image or --tarball, not both"
        ref="$image"
    elif [[ -n $tarball ]]; then
        ref="$(ref_from_args)"
    else
        die "--image REF (e.g. pcp-eval:<hash>) or --tarball PATH is required"
    fi
    valid_tag_ref "$ref" || die "--image '$ref' is not a repo:tag reference; remove takes away a tag by name only (never an image ID)"
    require_docker

    if ! image_exists "$ref"; then
        jq -cn --arg image "$ref" '{image: $image, removed: false}'
        return 0
    fi
    local out
    if out="$(docker image rm "$ref" 2>&1)"; then
        jq -cn --arg image "$ref" '{image: $image, removed: true}'
        return 0
    fi
    if grep -qiE 'conflict|being used|in use' <<<"$out"; then
        local users
        users="$(docker ps -a --filter "ancestor=$ref" --format '{{.Names}}' | jq -Rsc 'split("\n") | map(select(length > 0))')"
        echo "oci.sh remove: $ref is still used by container(s) $users; left in place (it goes when they do and remove runs again)" >&2
        jq -cn --arg image "$ref" --argjson users "$users" '{image: $image, removed: false, inUseBy: $users}'
        return 0
    fi
    die "docker could not remove $ref: $(printf '%s' "$out" | tail -n 1)"
}

# How images reach the cluster of a kube context.
cluster_kind() {
    if [[ -n $containerd ]]; then
        echo containerd
        return 0
    fi
    case "$context" in
    docker-desktop | desktop-linux)
        echo docker-desktop
        return 0
        ;;
    kind-*)
        if command -v kind >/dev/null; then
            echo kind
            return 0
        fi
        die "--context $context looks like a kind cluster but the kind CLI is not installed"
        ;;
    esac
    if command -v minikube >/dev/null &&
        minikube profile list -o json 2>/dev/null | jq -e --arg p "$context" '[.valid[]?.Name] | index($p) != null' >/dev/null 2>&1; then
        echo minikube
        return 0
    fi
    die "no known way to load images into the cluster of context '$context': it is not a minikube profile (minikube profile list), a kind cluster (kind-NAME) or docker-desktop. For a containerd cluster (kubeadm, k3s) pass --containerd SOCKET (pcp-eval:kubeContainerd), or load $image into that cluster's runtime yourself."
}

# containerd names images fully: "pcp-eval:x" is docker.io/library/pcp-eval:x,
# the name kubelet asks the CRI plugin for.
normalized_ref() {
    local ref="$1" first="${1%%/*}"
    if [[ $ref != */* ]]; then
        printf 'docker.io/library/%s' "$ref"
    elif [[ $first == *.* || $first == *:* || $first == localhost ]]; then
        printf '%s' "$ref"
    else
        printf 'docker.io/%s' "$ref"
    fi
}

ctr_k8s() {
    ctr --address "$containerd" --namespace k8s.io "$@"
}

require_containerd() {
    command -v ctr >/dev/null || die "ctr (Debian package containerd) is not installed; it imports images into the cluster's containerd"
    [[ -S $containerd ]] || die "--containerd $containerd is not a unix socket; pass the socket of the nodes' containerd (kubeadm: /run/containerd/containerd.sock, k3s: /run/k3s/containerd/containerd.sock)"
    local out
    out="$(ctr --address "$containerd" version 2>&1)" || die "containerd does not answer on $containerd: $(tail -n 1 <<<"$out")"
}

containerd_has() {
    ctr_k8s images list --quiet "name==$1" 2>/dev/null | grep -qxF "$1"
}

# Imports REF (normalized NAME) from --tarball or from the local Docker daemon.
containerd_import() {
    local name="$1" out archive_tag
    if [[ -n $tarball ]]; then
        local real
        real="$(readlink -f -- "$tarball" 2>/dev/null || true)"
        [[ -n $real && -f $real && -r $real ]] || die "--tarball $tarball: no such readable file; pass the image's docker-archive"
        # ctr tags by the archive's own RepoTags; take the first and retag it REF.
        archive_tag="$( (tar -xOzf "$real" manifest.json 2>/dev/null || tar -xOf "$real" manifest.json 2>/dev/null) | jq -r '.[0].RepoTags[0] // empty' 2>/dev/null || true)"
        [[ -n $archive_tag ]] || die "--tarball $tarball is not a tagged Docker image archive (no RepoTags in its manifest.json)"
        archive_tag="$(normalized_ref "$archive_tag")"
        local had=false
        if containerd_has "$archive_tag"; then had=true; fi
        # ctr does not read gzip: stream it through zcat when compressed.
        if gzip -t "$real" 2>/dev/null; then
            out="$(zcat -- "$real" | ctr_k8s images import --all-platforms - 2>&1)" || die "ctr images import of $tarball failed: $(tail -n 1 <<<"$out")"
        else
            out="$(ctr_k8s images import --all-platforms "$real" 2>&1)" || die "ctr images import of $tarball failed: $(tail -n 1 <<<"$out")"
        fi
        if [[ $archive_tag != "$name" ]]; then
            out="$(ctr_k8s images tag --force "$archive_tag" "$name" 2>&1)" || die "could not tag $archive_tag as $name in containerd: $(tail -n 1 <<<"$out")"
            # Only REF is new: the archive's own tag goes again unless it was there before.
            [[ $had == true ]] || ctr_k8s images rm "$archive_tag" >/dev/null 2>&1 || true
        fi
    else
        require_docker
        image_exists "$image" || die "--image $image is not in the local Docker daemon; run oci.sh load first, or pass --tarball"
        out="$(docker save "$image" | ctr_k8s images import --all-platforms - 2>&1)" || die "docker save $image | ctr images import failed: $(tail -n 1 <<<"$out")"
    fi
    containerd_has "$name" || die "containerd on $containerd has no $name after the import"
}

cmd_cluster_load() {
    [[ -n $image ]] || die "--image REF is required (the reference oci.sh load printed)"
    [[ -n $context ]] || die "--context C is required (a kube context, e.g. minikube)"
    valid_tag_ref "$image" || die "--image '$image' is not a repo:tag reference"
    local via
    via="$(cluster_kind)"
    if [[ $via == containerd ]]; then
        require_containerd
        local name
        name="$(normalized_ref "$image")"
        containerd_has "$name" || containerd_import "$name"
        jq -cn --arg image "$image" --arg context "$context" --arg name "$name" \
            '{image: $image, context: $context, loaded: true, via: "containerd", name: $name}'
        return 0
    fi
    [[ -z $tarball ]] || die "--tarball is for containerd clusters (--containerd SOCKET); for $via, load the image into Docker first (oci.sh load)"
    require_docker
    image_exists "$image" || die "--image $image is not in the local Docker daemon; run oci.sh load first"
    local out
    case "$via" in
    minikube) out="$(minikube -p "$context" image load "$image" 2>&1)" || die "minikube image load $image failed: $(tail -n 1 <<<"$out")" ;;
    kind) out="$(kind load docker-image "$image" --name "${context#kind-}" 2>&1)" || die "kind load docker-image $image failed: $(tail -n 1 <<<"$out")" ;;
    docker-desktop) ;;
    esac
    jq -cn --arg image "$image" --arg context "$context" --arg via "$via" \
        '{image: $image, context: $context, loaded: true, via: $via}'
}

cmd_cluster_remove() {
    [[ -n $image ]] || die "--image REF is required"
    [[ -n $context ]] || die "--context C is required"
    valid_tag_ref "$image" || die "--image '$image' is not a repo:tag reference"
    local via removed=false out node
    via="$(cluster_kind)"
    case "$via" in
    minikube)
        if minikube -p "$context" image ls 2>/dev/null | grep -qxF -e "$image" -e "docker.io/library/$image"; then
            out="$(minikube -p "$context" image rm "$image" 2>&1)" || die "minikube image rm $image failed: $(tail -n 1 <<<"$out")"
            removed=true
        fi
        ;;
    kind)
        require_docker
        while read -r node; do
            [[ -n $node ]] || continue
            if docker exec "$node" crictl rmi "docker.io/library/$image" >/dev/null 2>&1; then removed=true; fi
        done < <(kind get nodes --name "${context#kind-}" 2>/dev/null)
        ;;
    docker-desktop) ;; # the image is the local daemon's; oci.sh remove takes it away
    containerd)
        require_containerd
        local name
        name="$(normalized_ref "$image")"
        if containerd_has "$name"; then
            out="$(ctr_k8s images rm --sync "$name" 2>&1)" || die "ctr images rm $name failed: $(tail -n 1 <<<"$out")"
            removed=true
        fi
        ;;
    esac
    jq -cn --arg image "$image" --arg context "$context" --arg via "$via" --argjson removed "$removed" \
        '{image: $image, context: $context, removed: $removed, via: $via}'
}

# One probe: connect and read the 12-byte header of pmcd's greeting PDU.
# Prints "ok" when its type is PDU_ERROR (0x7000), else why not.
probe_pmcd() {
    local type
    if ! tcp_probe "$1" "$2" 5000 "" 12; then
        echo "$PROBE_ERR"
        return 1
    fi
    read -r -a bytes <<<"$PROBE_DATA"
    type=${bytes[4]}${bytes[5]}${bytes[6]}${bytes[7]}
    if [[ $type != 00007000 ]]; then
        echo "connected, but the first PDU is not pmcd's (type $type)"
        return 1
    fi
    echo ok
}

cmd_wait_pmcd() {
    [[ -n $address ]] || die "--address A is required (where pmcd's port is published, e.g. 127.0.0.1)"
    valid_ipv4 "$address" || [[ $address == localhost ]] || die "--address '$address' is not an IPv4 address"
    ((${#ports[@]} == 1)) || die "--port P is required, once"
    valid_port "${ports[0]}" || die "--port '${ports[0]}' is not a port number (1-65535)"
    [[ -n $timeout ]] || timeout="$(constant '.timeoutsSeconds.services')"
    if ! [[ $timeout =~ ^[0-9]+$ ]] || ((timeout == 0)); then
        die "--timeout '$timeout' is not a positive number of seconds"
    fi
    local start deadline attempts=0 last=""
    start="$(now_ms)"
    deadline=$((start + timeout * 1000))
    while :; do
        attempts=$((attempts + 1))
        if last="$(probe_pmcd "$address" "${ports[0]}")"; then
            jq -cn --arg address "$address" --argjson port "${ports[0]}" \
                --argjson readyMs "$(($(now_ms) - start))" --argjson attempts "$attempts" \
                '{address: $address, port: $port, readyMs: $readyMs, attempts: $attempts}'
            return 0
        fi
        (($(now_ms) < deadline)) || die "pmcd did not answer on $address:${ports[0]} within ${timeout}s ($attempts attempts; last: $last)"
        sleep 0.5
    done
}

cmd_check_ports() {
    [[ -n $address ]] || die "--address A is required"
    valid_ipv4 "$address" || die "--address '$address' is not an IPv4 address"
    ((${#ports[@]} > 0)) || die "at least one --port P is required"
    local p listeners busy=()
    for p in "${ports[@]}"; do
        valid_port "$p" || die "--port '$p' is not a port number (1-65535)"
        if listeners="$(port_holders "$p" "$address")"; then busy+=("$p (taken by: ${listeners//$'\n'/; })"); fi
    done
    if ((${#busy[@]} > 0)); then
        die "host port(s) already bound on $address: ${busy[*]}. Stop what holds them or choose other ports (pcp-eval:containerPortOffset, or containerHostAddress)."
    fi
    jq -cn --arg address "$address" --argjson ports "$(printf '%s\n' "${ports[@]}" | jq -sc '.')" \
        '{address: $address, ports: $ports, free: true}'
}

command -v jq >/dev/null || die "jq is not installed (apt-get install jq)"
case "$verb" in
load) cmd_load ;;
ref) cmd_ref ;;
status) cmd_status ;;
remove) cmd_remove ;;
cluster-load) cmd_cluster_load ;;
cluster-remove) cmd_cluster_remove ;;
wait-pmcd) cmd_wait_pmcd ;;
check-ports) cmd_check_ports ;;
-h | --help | help) usage ;;
*) die "unknown verb (use load, status, ref, remove, cluster-load, cluster-remove, wait-pmcd or check-ports)" ;;
esac
