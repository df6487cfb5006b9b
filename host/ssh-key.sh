#!/usr/bin/env bash
# Per-stack SSH key pair for the VMs.
#   ssh-key.sh ensure --dir DIR [--comment C]   create DIR/id_ed25519 unless present
#   ssh-key.sh remove --dir DIR                  remove the pair (only files we name)
#   ssh-key.sh status --dir DIR                  {"publicKey":...|null,"privateKeyPath":...}: the
#                                                pair as it is now (null when either file is gone)
# stdout: one JSON line.
set -euo pipefail

die() { echo "ssh-key.sh: $*" >&2; exit 1; }

verb=${1:-}
shift || true
dir="" comment="pcp-eval"
while (($# > 0)); do
    case "$1" in
        --dir) dir=${2:?--dir needs a value}; shift 2 ;;
        --comment) comment=${2:?--comment needs a value}; shift 2 ;;
        *) die "unknown argument '$1'; use --dir DIR [--comment C]" ;;
    esac
done
[[ -n "$dir" ]] || die "--dir is required (the stack's ssh key directory)"
key="$dir/id_ed25519"

case "$verb" in
    ensure)
        command -v ssh-keygen >/dev/null || die "ssh-keygen not found; install openssh-client"
        command -v jq >/dev/null || die "jq not found; install jq"
        created=false
        if [[ ! -f "$key" ]]; then
            mkdir -p "$dir"
            chmod 700 "$dir"
            ssh-keygen -q -t ed25519 -N '' -C "$comment" -f "$key" </dev/null
            created=true
        fi
        # A key we did not just make is trusted by the VMs only if it is this
        # user's own and no one else can read it (ssh itself refuses it otherwise).
        read -r key_uid key_mode < <(stat -c '%u %a' -- "$key")
        [[ $key_uid == "$(id -u)" ]] ||
            die "$key is owned by uid $key_uid, not by $(id -un) (uid $(id -u)); fix: remove $dir to have a new key made, or chown it to $(id -un)"
        (((8#$key_mode & 8#077) == 0)) ||
            die "$key has mode $key_mode, readable by others; fix: chmod 600 $key (or remove $dir to have a new key made)"
        [[ -f "$key.pub" ]] || ssh-keygen -y -f "$key" >"$key.pub"
        pub=$(cat "$key.pub")
        jq -nc --arg pub "$pub" --arg key "$key" --argjson created "$created" \
            '{publicKey: $pub, privateKeyPath: $key, created: $created}'
        ;;
    remove)
        removed=false
        for f in "$key" "$key.pub"; do
            if [[ -e "$f" ]]; then rm -f -- "$f"; removed=true; fi
        done
        rmdir -- "$dir" 2>/dev/null || true
        jq -nc --arg key "$key" --argjson removed "$removed" '{privateKeyPath: $key, removed: $removed}'
        ;;
    status)
        command -v jq >/dev/null || die "jq not found; install jq"
        # Built by jq, as ensure's: a quote or backslash in the key comment or the directory is escaped.
        if [[ -f "$key" && -f "$key.pub" ]]; then
            pub=$(cat "$key.pub")
            jq -nc --arg pub "$pub" --arg key "$key" '{publicKey: $pub, privateKeyPath: $key}'
        else
            jq -nc --arg key "$key" '{publicKey: null, privateKeyPath: $key}'
        fi
        ;;
    *) die "unknown verb '${verb}'; use ensure, remove or status" ;;
esac
