#!/usr/bin/env bash
# Builds a Nix flake attribute (or expression) into an out-link, the GC root
# the NixBuild component owns, and removes that out-link again.
#
#   nix-build.sh build --out-link PATH (--installable REF#ATTR | --expr NIX_EXPR)
#                      [--impure] [--timeout SECONDS] [--expected STORE_PATH]
#       stdout: {"storePath":"/nix/store/...","outLink":"PATH"}
#       --expected: the store path the build gives, as evaluated beforehand
#       (components/nixEval.ts). When it is in the store already, the out-link
#       is made to it directly (nix build of the store path: a GC root like any
#       out-link), without evaluating the flake again: tens of milliseconds
#       instead of an evaluation. Otherwise nix builds as without it.
#   nix-build.sh remove --out-link PATH
#       stdout: {"outLink":"PATH","removed":true|false,"legacyRemoved":true|false}:
#       PATH named <base>-<12 hex> (a generation) also removes the out-link
#       <base> that pcp-eval kept before generations, when there is one.
#   nix-build.sh status --out-link PATH
#       stdout: {"storePath":"/nix/store/..."|null,"outLink":"PATH"}: where the
#       out-link points now (null when it is gone or its store path is), the
#       same shape as build's line, so refresh compares them key by key.
#
# Every verb is idempotent: building an unchanged attribute again is a no-op
# that prints the same store path; removing a missing out-link prints
# "removed":false; status only reads. A failed build leaves any previous out-link untouched and
# creates none. Nix's own progress and errors go to stderr.
#
# Works with Nix 2.8 (Debian's nix-bin): it enables the nix-command and flakes
# features itself and reads the store path from `nix build --json` (2.8 has no
# --print-out-paths). Site settings (sandbox, substituters, build users) are
# nix.conf's business; NIX_CONFIG passes them through, e.g. for an offline
# single-user store: NIX_CONFIG=$'sandbox = false\nsubstituters =\nbuild-users-group ='.
# NIX overrides the nix binary.
set -euo pipefail

prog=nix-build.sh
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
constants="$here/../nix/constants.json"
nix_bin="${NIX:-nix}"

PROG=$prog
# shellcheck source=lib.sh
source "$here/lib.sh"

usage() {
    cat >&2 <<'EOF'
usage: nix-build.sh build --out-link PATH (--installable REF#ATTR | --expr NIX_EXPR) [--impure] [--timeout SECONDS] [--expected STORE_PATH]
       nix-build.sh remove --out-link PATH
       nix-build.sh status --out-link PATH
EOF
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 is not installed: $2"
}

# The build timeout defaults to timeoutsSeconds.build in nix/constants.json.
default_timeout() {
    [[ -r "$constants" ]] || die "cannot read $constants (for timeoutsSeconds.build); pass --timeout SECONDS"
    jq -er '.timeoutsSeconds.build | select(type == "number" and . > 0)' "$constants" \
        || die "$constants has no positive timeoutsSeconds.build; pass --timeout SECONDS"
}

store_dir() {
    echo "${NIX_STORE_DIR:-/nix/store}"
}

cmd_build() {
    local out_link="" installable="" expr="" impure=0 timeout="" expected=""
    while (($# > 0)); do
        case "$1" in
            --out-link | --installable | --expr | --timeout | --expected)
                (($# >= 2)) || die "$1 needs a value"
                case "$1" in
                    --out-link) out_link="$2" ;;
                    --installable) installable="$2" ;;
                    --expr) expr="$2" ;;
                    --timeout) timeout="$2" ;;
                    --expected) expected="$2" ;;
                esac
                shift 2
                ;;
            --impure)
                impure=1
                shift
                ;;
            *)
                usage
                die "build: unknown argument '$1'"
                ;;
        esac
    done

    [[ -n "$out_link" ]] || die "build: --out-link PATH is required (where the GC root goes)"
    if [[ -n "$installable" && -n "$expr" ]]; then
        die "build: give either --installable or --expr, not both"
    fi
    [[ -n "$installable" || -n "$expr" ]] || die "build: --installable REF#ATTR or --expr NIX_EXPR is required"
    if [[ -n "$installable" && "$installable" != *"#"* ]]; then
        die "build: --installable '$installable' has no '#ATTR'; name the attribute, e.g. ./nix#pcp"
    fi
    if [[ -z "$timeout" ]]; then
        timeout="$(default_timeout)"
    fi
    [[ "$timeout" =~ ^[1-9][0-9]*$ ]] || die "build: --timeout must be a whole number of seconds > 0, got '$timeout'"
    if [[ -e "$out_link" && ! -L "$out_link" ]]; then
        die "build: --out-link '$out_link' exists and is not a symlink; refusing to replace it"
    fi
    if [[ -n "$expected" && ! "$expected" =~ ^$(store_dir)/[a-z0-9]{32}-[^/]+$ ]]; then
        die "build: --expected '$expected' is not a store path under $(store_dir)"
    fi

    need "$nix_bin" "install Nix (Debian: apt-get install nix-bin) or set NIX"
    need jq "install jq (Debian: apt-get install jq)"
    need timeout "install coreutils"

    mkdir -p "$(dirname "$out_link")"

    local features=(--extra-experimental-features 'nix-command flakes')
    if [[ -n "$expected" ]] && "$nix_bin" "${features[@]}" path-info "$expected" >/dev/null 2>&1; then
        # Built before (an unchanged VM after a destroy, a second stack): only the GC
        # root is new. nix build of a valid store path makes the out-link, no evaluation.
        "$nix_bin" "${features[@]}" build --out-link "$out_link" "$expected" </dev/null >/dev/null \
            || die "build: could not make the out-link '$out_link' to $expected (in the store); see nix's error above"
        echo "$prog: $expected is in the store already; out-link made without evaluating again" >&2
        jq -cn --arg storePath "$expected" --arg outLink "$out_link" '{storePath: $storePath, outLink: $outLink}'
        return 0
    fi

    # -L: each build's log lines, prefixed with the derivation's name, come on
    # stderr as they happen; the Pulumi UI shows them (local.Command streams
    # stderr, and the dynamic backend passes the provider's stderr on), so a
    # long PCP source build is not a silent "creating...".
    local args=(--extra-experimental-features 'nix-command flakes' build -L --json --out-link "$out_link")
    ((impure)) && args+=(--impure)
    local what
    if [[ -n "$expr" ]]; then
        args+=(--expr "$expr")
        what="expression"
    else
        args+=("$installable")
        what="$installable"
    fi

    # Evaluation prints nothing until it has a derivation; say what is under way.
    echo "$prog: evaluating and building $what" >&2
    local json status=0
    json="$(timeout --kill-after=10 "$timeout" "$nix_bin" "${args[@]}" </dev/null)" || status=$?
    if ((status == 124 || status == 137)); then
        DIE_STATUS=124 die "build of $what timed out after ${timeout}s (raise --timeout or timeoutsSeconds.build)"
    elif ((status != 0)); then
        local hint=""
        if [[ -n "$expr" && "$expr" == *getFlake* ]] && ((!impure)); then
            hint=" (builtins.getFlake on an unlocked path: flake needs --impure)"
        fi
        DIE_STATUS=$status die "build of $what failed (nix exit $status)$hint; see nix's error above"
    fi

    local store_path
    store_path="$(jq -er '
        if type == "array" and length > 0 and (.[0].outputs | type == "object")
        then (.[0].outputs.out // (.[0].outputs | to_entries[0].value))
        else error("unexpected nix build --json output") end' <<<"$json")" \
        || die "build of $what: could not read a store path from nix's output: $json"

    [[ -L "$out_link" ]] || die "build of $what succeeded but nix created no out-link at '$out_link'"
    local target
    target="$(readlink "$out_link")"
    [[ "$target" == "$store_path" ]] \
        || die "build of $what: out-link '$out_link' points to '$target', expected '$store_path'"

    jq -cn --arg storePath "$store_path" --arg outLink "$out_link" '{storePath: $storePath, outLink: $outLink}'
}

# out_link_arg VERB ARGS...: the one argument of remove and status, --out-link PATH; prints PATH.
out_link_arg() {
    local verb="$1" out_link=""
    shift
    while (($# > 0)); do
        case "$1" in
            --out-link)
                (($# >= 2)) || die "$1 needs a value"
                out_link="$2"
                shift 2
                ;;
            *)
                usage
                die "$verb: unknown argument '$1'"
                ;;
        esac
    done
    [[ -n "$out_link" ]] || die "$verb: --out-link PATH is required"
    need jq "install jq (Debian: apt-get install jq)"
    printf '%s' "$out_link"
}

# remove_link PATH: removes an out-link (a symlink into the store); prints true, or false when there is none.
remove_link() {
    local out_link="$1"
    if [[ -L "$out_link" ]]; then
        local target store
        target="$(readlink "$out_link")"
        store="$(store_dir)"
        [[ "$target" == "$store"/* ]] \
            || die "remove: '$out_link' points to '$target', not into $store; refusing to remove what is not an out-link"
        rm -f -- "$out_link"
        echo true
    elif [[ -e "$out_link" ]]; then
        die "remove: '$out_link' is not a symlink; refusing to remove what is not an out-link"
    else
        echo false
    fi
}

cmd_remove() {
    local out_link
    out_link="$(out_link_arg remove "$@")"
    local removed legacy_removed=false
    removed="$(remove_link "$out_link")"
    # A generation's link is <base>-<12 hex>; stacks made before generations had
    # one link at <base>. Removing a generation removes that one too (when it is
    # an out-link), so a stack upgraded in place leaves no GC root behind.
    local legacy="${out_link%-*}"
    if [[ "$out_link" =~ -[0-9a-f]{12}$ && -L "$legacy" && "$(readlink "$legacy")" == "$(store_dir)"/* ]]; then
        legacy_removed="$(remove_link "$legacy")"
        echo "$prog: removed $legacy, the out-link an earlier pcp-eval kept for this build" >&2
    fi
    jq -cn --arg outLink "$out_link" --argjson removed "$removed" --argjson legacy "$legacy_removed" \
        '{outLink: $outLink, removed: $removed, legacyRemoved: $legacy}'
}

cmd_status() {
    local out_link
    out_link="$(out_link_arg status "$@")"
    local target=""
    # A link whose store path was collected is as good as gone.
    if [[ -L "$out_link" && -e "$out_link" ]]; then
        target="$(readlink "$out_link")"
    fi
    jq -cn --arg storePath "$target" --arg outLink "$out_link" \
        '{storePath: (if $storePath == "" then null else $storePath end), outLink: $outLink}'
}

main() {
    (($# > 0)) || {
        usage
        die "missing verb (build, remove or status)"
    }
    local verb="$1"
    shift
    case "$verb" in
        build) cmd_build "$@" ;;
        remove) cmd_remove "$@" ;;
        status) cmd_status "$@" ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage
            die "unknown verb '$verb' (expected build, remove or status)"
            ;;
    esac
}

main "$@"
