#!/usr/bin/env bash
# The stack's state directory, first made and last removed.
#   state-dir.sh ensure --dir D   make D (and parents), recording in D/.pcp-eval-made
#                                 which of them did not exist before
#   state-dir.sh clean --dir D    remove what pcp-eval made: the empty directories of
#                                 the stack's parts (vms, ssh, net, image) below D, then
#                                 D and the parents ensure recorded, each only if empty;
#                                 never a file, and never another empty directory (D may
#                                 have been pointed at a tree that holds others' things)
# stdout: one JSON line.
set -euo pipefail

die() { echo "state-dir.sh: $*" >&2; exit 1; }

# The sub-directories the stack's components make below D (components/*.ts).
PARTS=(vms ssh net image)
RECORD=.pcp-eval-made

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
[[ $dir != / ]] || die "--dir must not be the root directory; set pcp-eval:stateDir to a directory of its own"
dir=${dir%/}

case "$verb" in
    ensure)
        # The directories mkdir -p is about to make, top-most first.
        made=()
        d=$dir
        while [[ -n $d && ! -e $d ]]; do
            made=("$d" "${made[@]}")
            d=${d%/*}
        done
        # What we make is the user's alone (logs, keys, sockets live below it).
        (umask 077 && mkdir -p -- "$dir")
        # The first ensure's record is the true one: a later ensure finds D existing.
        if [[ ! -e $dir/$RECORD ]]; then
            jq -nc '{made: $ARGS.positional}' --args "${made[@]}" >"$dir/$RECORD"
        fi
        jq -nc --arg dir "$dir" '{dir:$dir, exists:true}'
        ;;
    clean)
        if [[ -d $dir ]]; then
            for part in "${PARTS[@]}"; do
                [[ -d $dir/$part && ! -L $dir/$part ]] && find "$dir/$part" -depth -type d -empty -delete
            done
            made=()
            if [[ -f $dir/$RECORD ]]; then
                # Only D and its ancestors count: an edited record cannot point elsewhere.
                # The record names the places ensure saw (the last one is D then); a
                # checkout moved since keeps the directories it made under new names:
                # a recorded place that is gone counts as D's ancestor at the same
                # depth when that one has the recorded name.
                recorded=() kept=()
                mapfile -t recorded < <(jq -r '.made[]? | strings' "$dir/$RECORD" 2>/dev/null)
                old=""
                ((${#recorded[@]} == 0)) || old=${recorded[${#recorded[@]} - 1]}
                for m in "${recorded[@]}"; do
                    if [[ $m == "$dir" || $dir == "$m/"* ]]; then kept+=("$m"); continue; fi
                    [[ -n $old && ($m == "$old" || $old == "$m/"*) && ! -e $m ]] || continue
                    rest=${old#"$m"} depth=0
                    for ((i = 0; i < ${#rest}; i++)); do [[ ${rest:i:1} == / ]] && depth=$((depth + 1)); done
                    cand=$dir
                    for ((i = 0; i < depth; i++)); do cand=${cand%/*}; done
                    [[ -n $cand && ${cand##*/} == "${m##*/}" ]] && kept+=("$cand")
                done
                if ((${#kept[@]} > 0)); then mapfile -t made < <(printf '%s\n' "${kept[@]}" | sort -ru); fi
                rm -f -- "${dir:?}/$RECORD"
            fi
            for d in "${made[@]}"; do
                rmdir -- "$d" 2>/dev/null || true
            done
        fi
        left=$(if [[ -d $dir ]]; then find "$dir" -mindepth 1 -not -type d | head -n 50; fi)
        if [[ -n $left ]]; then
            echo "state-dir.sh: kept $dir: it holds files pcp-eval did not remove:" >&2
            while IFS= read -r line; do echo "  $line" >&2; done <<<"$left"
        fi
        jq -nc --arg dir "$dir" --arg left "$left" --argjson gone "$([[ -d $dir ]] && echo false || echo true)" \
            '{dir:$dir, removed:$gone, left:($left | split("\n") | map(select(. != "")))}'
        ;;
    *) die "unknown verb '${verb}'; use ensure or clean" ;;
esac
