#!/usr/bin/env bash
# Decides once per host boot whether QEMU may use KVM here, and prints one JSON line:
#   {"usable":BOOL,"why":TEXT,"cached":BOOL,"seconds":N,"cacheFile":PATH}
#
# /dev/kvm can open and an empty KVM machine can run while a real guest hangs
# after its boot stub (e.g. on a host that is itself a microVM). Only booting a
# kernel under KVM tells, and a hang costs the whole timeout, so the answer is
# written down per boot (/proc/sys/kernel/random/boot_id) and concurrent callers
# wait on one lock instead of probing twice. A probe that is killed or times out
# is a written "no". Callers run this before any VM starts, never inside a
# timed readiness phase.
#
# Usage: kvm-probe.sh [--kernel PATH [--initrd PATH] [--append ARGS]] [--timeout S] [--cache FILE] [--device PATH]
#   --kernel   a kernel to boot under KVM; it must power off (or panic, with
#              -no-reboot) by itself. Without it: an empty KVM machine must
#              run (a weaker check, said so in "why").
#   --timeout  seconds the probe may take (default 10)
#   --cache    verdict file (default $PCP_EVAL_CACHE_DIR/kvm-probe, where
#              PCP_EVAL_CACHE_DIR defaults to ${XDG_CACHE_HOME:-~/.cache}/pcp-eval)
#   --device   the KVM device (default /dev/kvm; tests point it at a file of their own)
# The verdict file holds one line: "<boot_id> yes|no <why>"; only a kernel
# boot's "yes" is written, an empty machine's "yes" is not (it is too weak to share).
set -euo pipefail

die() { echo "kvm-probe: $*" >&2; exit 2; }

kernel="" initrd="" device=/dev/kvm append="console=ttyS0 panic=-1 loglevel=0" timeout_s=10
cache="${PCP_EVAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pcp-eval}/kvm-probe"
while (($# > 0)); do
    case "$1" in
        --kernel) [[ $# -ge 2 && -n $2 ]] || die "--kernel needs a path"; kernel=$2; shift 2 ;;
        --initrd) [[ $# -ge 2 && -n $2 ]] || die "--initrd needs a path"; initrd=$2; shift 2 ;;
        --append) [[ $# -ge 2 ]] || die "--append needs kernel arguments"; append=$2; shift 2 ;;
        --timeout) [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || die "--timeout needs whole seconds (>= 1)"; timeout_s=$2; shift 2 ;;
        --device) [[ $# -ge 2 && -n $2 ]] || die "--device needs a path"; device=$2; shift 2 ;;
        --cache) [[ $# -ge 2 && -n $2 ]] || die "--cache needs a file path"; cache=$2; shift 2 ;;
        -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[[ -z $kernel || -r $kernel ]] || die "--kernel $kernel is not readable"
[[ -z $initrd || -n $kernel ]] || die "--initrd needs --kernel"
[[ -z $initrd || -r $initrd ]] || die "--initrd $initrd is not readable"

report() { # usable why cached seconds
    jq -nc --argjson usable "$1" --arg why "$2" --argjson cached "$3" --argjson seconds "$4" --arg cacheFile "$cache" \
        '{usable:$usable, why:$why, cached:$cached, seconds:$seconds, cacheFile:$cacheFile}'
}

# Facts that need no probe, and no cache: they are seen at once.
if [[ ! -e $device ]]; then report false "$device does not exist" false 0; exit 0; fi
if [[ ! -r $device || ! -w $device ]]; then report false "$device is not readable and writable by this user" false 0; exit 0; fi
qemu=$(command -v qemu-system-x86_64) || { report false "qemu-system-x86_64 is not on PATH" false 0; exit 0; }

boot=$(cat /proc/sys/kernel/random/boot_id)
mkdir -p "$(dirname "$cache")"
exec {lock_fd}>"$cache.lock"
flock "$lock_fd"
if [[ -f $cache ]] && read -r cached_boot verdict why <"$cache" && [[ $cached_boot == "$boot" ]]; then
    report "$([[ $verdict == yes ]] && echo true || echo false)" "$why; remembered for this boot" true 0
    exit 0
fi

start=$(date +%s.%N)
if [[ -n $kernel ]]; then
    boot_args=(-kernel "$kernel" -append "$append")
    [[ -n $initrd ]] && boot_args+=(-initrd "$initrd")
    # TERM first (QEMU exits on it), KILL 2 s later if it does not.
    if (timeout --kill-after=2 "$timeout_s" "$qemu" -accel kvm -M pc -m 256 -nodefaults -no-user-config -display none \
        -serial none -no-reboot "${boot_args[@]}") </dev/null >/dev/null 2>&1; then
        verdict=yes why="a test boot of $kernel under KVM ran to its end"
    else
        verdict=no why="a test boot of $kernel under KVM did not finish in $timeout_s s (hangs or aborts)"
    fi
else
    # No kernel to boot: an empty machine that reports itself running is the best we can see.
    status=$( (printf '{"execute":"qmp_capabilities"}\n'; sleep 1.5; printf '{"execute":"query-status"}\n{"execute":"quit"}\n') |
        timeout -s KILL "$timeout_s" "$qemu" -accel kvm -M pc -m 64 -nodefaults -display none -qmp stdio 2>/dev/null || true)
    if [[ $status =~ \"running\":\ ?true ]]; then
        verdict=yes why="an empty KVM machine ran (no kernel was given for a full test boot; set pcp-eval:vmAccel tcg if VMs hang)"
    else
        verdict=no why="QEMU with KVM failed or hung (empty machine, $timeout_s s)"
    fi
fi
seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
# A weak "yes" (empty machine) is not written: a later caller with a kernel
# must still be able to find that real guests hang.
if [[ -n $kernel || $verdict == no ]]; then
    echo "$boot $verdict $why" >"$cache.$$" && mv "$cache.$$" "$cache"
fi
echo "kvm-probe: $why (${seconds} s): $([[ $verdict == yes ]] && echo "KVM" || echo "TCG")" >&2
report "$([[ $verdict == yes ]] && echo true || echo false)" "$why" false "$seconds"
