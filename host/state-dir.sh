#!/usr/bin/env bash
# The stack's state directory, first made and last removed.
#   state-dir.sh ensure --dir D   make D (and parents)
#   state-dir.sh clean --dir D    remove the empty directories under and including D;
#                                 never a file: what is left is listed, not deleted
# stdout: one JSON line.
set -euo pipefail

die() { echo "state-dir.sh: $*" >&2; exit 1; }

verb=${1:-}
shift || true
dir=""
while (($# > 0)); do
    case "$1" in
        --dir) dir=${2:?--dir needs a value}; shift 2 ;;
        *) die "unknown argument '$1'; use --dir DIR" ;;
    esac
done
[[ -n $dir ]] || die "--dir is required (the stack's state directory)"
[[ $dir == /* ]] || die "--dir must be absolute, got '$dir'"

case "$verb" in
    ensure)
        mkdir -p -- "$dir"
        jq -nc --arg dir "$dir" '{dir:$dir, exists:true}'
        ;;
    clean)
        if [[ -d $dir ]]; then
            find "$dir" -depth -type d -empty -delete
        fi
        left=$(if [[ -d $dir ]]; then find "$dir" -mindepth 1 -not -type d | head -n 50; fi)
        if [[ -n $left ]]; then
            echo "state-dir.sh: kept $dir: it holds files pcp-eval did not remove:" >&2
            while IFS= read -r line; do echo "  $line" >&2; done <<<"$left"
        fi
        jq -nc --arg dir "$dir" --arg left "$left" \
            '{dir:$dir, removed:($left == ""), left:($left | split("\n") | map(select(. != "")))}'
        ;;
    *) die "unknown verb '${verb}'; use ensure or clean" ;;
esac
