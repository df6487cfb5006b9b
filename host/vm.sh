#!/usr/bin/env bash
# vm.sh: lifecycle of MicroVM runner processes (start, readiness, stop, status).
#
#   vm.sh start  --name N --state-dir D --runner STOREPATH [--port P]...
#                [--probe PHASE=SPEC]... [--timeout PHASE=S]...
#                [--accel auto|kvm|tcg [--kvm-verdict FILE]]
#       Runs STOREPATH/bin/microvm-run detached (own session, stdio to files,
#       </dev/null) with cwd D/N, the VM's state dir (vm.pid, vm.json, vm.log),
#       then waits phase by phase until the VM answers. Phase "process" comes first (the runner lives and every --port
#       listens); the --probe phases follow in the order given. SPEC is
#         tcp:HOST:PORT      connect and receive a first byte (pmcd speaks first;
#                            QEMU's hostfwd accepts before the guest listens)
#         console:HOST:PORT  connect, send a newline, receive a byte (a console)
#         http://HOST:PORT/PATH (or https://) a 2xx answer
#       Timeouts default to nix/constants.json timeoutsSeconds (process =
#       processStart; other phases by name); --timeout PHASE=S overrides, also
#       shutdown=S and exit=S for the stop after a failed start.
#       --accel picks QEMU's accelerator at this start (the runner reads
#       PCP_EVAL_ACCEL): kvm, tcg, or auto, the verdict host/kvm-probe.sh
#       remembered for this boot in FILE ("<boot_id> yes|no <why>"; no verdict:
#       tcg). No probe runs here: a hanging KVM probe would eat the start's
#       timeouts. Without --accel the runner's built-in default applies.
#       Progress lines on stderr; stdout one JSON line
#       {"name","pid","startedAt","readyMs","phases":{...},"ports":[...],"stateDir","log","accel"}.
#       Refuses a VM that already runs and any --port that something else holds.
#       On a failure the error names the phase and the last probe error, shows
#       the last 40 lines of the VM log and serial console, and stops the VM.
#   vm.sh stop   --name N --state-dir D [--shutdown-timeout S] [--exit-timeout S] [--purge]
#       Graceful (STOREPATH/bin/microvm-shutdown, else ACPI powerdown through
#       the QMP socket), SIGTERM after the shutdown timeout, SIGKILL after the
#       exit timeout. -> {"name","stopped":true,"how":"graceful|term|kill|not-running","stopMs"}
#   vm.sh status --name N --state-dir D
#       -> {"name","running":bool,"pid"?,"uptimeSeconds"?,"startedAt"?,"ports"?,"stale"?}
#   vm.sh list   --state-dir D  -> [status...]
#
# Readiness polling: each phase probes at once, then backs off from 100 ms to
# 1 s between rounds; new output on a console (serial.log / virtio.log) starts
# the backoff over. VM_SH_TRACE=1 prints every probe attempt.
#
# A VM runs when its pid file names a live process whose start time (and,
# once recorded, command line) match what start recorded; never by name.
# Runner contract: run in the VM's state dir; optional QMP socket there (qmp.sock,
# else the only *.sock, as microvm.nix names it after the host),
# serial.log and virtio.log (console logs) there.
set -euo pipefail
# What the VM prints (vm.log, and the console logs QEMU writes with the umask it
# inherits) can hold a login or a secret: the user's alone, like its directory.
umask 077

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
constants=${PCP_EVAL_CONSTANTS:-$script_dir/../nix/constants.json}

# Polling: the first retry after 100 ms, doubling up to 1 s between rounds.
readonly poll_first_ms=100 poll_max_ms=1000
# One probe attempt (connect + first byte, or an HTTP answer): 250 ms to 1 s.
readonly attempt_min_ms=250 attempt_max_ms=1000
# Granularity of the wait between probe rounds (console output is checked each tick).
readonly tick_ms=25
readonly progress_every_ms=5000 log_tail_lines=40 kill_wait_ms=5000

prog=vm.sh PROG=vm.sh
# shellcheck source=lib.sh
source "$script_dir/lib.sh"
usage_error() { DIE_STATUS=2 die "$*"$'\n'"usage: see the header of $0"; }

# --- time ---------------------------------------------------------------
sleep_ms() { sleep "$(secs "$1")"; }
to_ms() { # to_ms FIELD VALUE: seconds (decimals allowed) -> ms
    [[ $2 =~ ^([0-9]+)(\.([0-9]{1,3}))?$ ]] ||
        usage_error "$1: '$2' is not a number of seconds (e.g. 30 or 0.5)"
    local frac=${BASH_REMATCH[3]:-0}
    while ((${#frac} < 3)); do frac+=0; done
    echo $((10#${BASH_REMATCH[1]} * 1000 + 10#$frac))
}

# --- processes ----------------------------------------------------------
proc_fields() { # proc_fields PID -> "STATE STARTTICKS" (empty when gone)
    local stat rest
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    rest=${stat##*) }
    local -a f
    read -r -a f <<<"$rest"
    echo "${f[0]} ${f[19]}"
}
proc_cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null; }
# proc_is PID TICKS: the process PID that started at TICKS lives (zombies count as gone)
proc_is() {
    local fields state ticks
    fields=$(proc_fields "$1") || return 1
    read -r state ticks <<<"$fields"
    [[ $state != Z && $ticks == "$2" ]]
}
session_members() { ps -o pid=,stat= --sid "$1" 2>/dev/null | awk '$2 !~ /^Z/ {print $1}' || true; }

# --- state --------------------------------------------------------------
vm_dir() { echo "$state_dir/$name"; }
# Loads vm.json into VM_* variables; returns 1 when there is no pid file.
load_vm() {
    local dir=$1
    VM_PID="" VM_TICKS="" VM_CMDLINE="" VM_RUNNER="" VM_STARTED="" VM_PORTS="[]"
    [[ -f $dir/vm.pid && -f $dir/vm.json ]] || return 1
    VM_PID=$(<"$dir/vm.pid")
    [[ $VM_PID =~ ^[0-9]+$ ]] || return 1
    # One jq start for all fields (each start costs ~40 ms with jq 1.6, and
    # status runs on every diff of a VM); NUL-separated, since a command line
    # may hold any other character.
    {
        IFS= read -r -d '' VM_TICKS
        IFS= read -r -d '' VM_CMDLINE
        IFS= read -r -d '' VM_RUNNER
        IFS= read -r -d '' VM_STARTED
        IFS= read -r -d '' VM_PORTS
    } < <(jq -j '(.startTicks // "" | tostring), "\u0000", (.cmdline // ""), "\u0000", (.runner // ""), "\u0000",
        (.startedAt // ""), "\u0000", (.ports // [] | tojson), "\u0000"' "$dir/vm.json") || true
    # An unreadable vm.json leaves the fields empty, as before: the pid check then fails with its reason.
    [[ -n $VM_PORTS ]] || VM_PORTS="[]"
}
# vm_alive DIR: the VM recorded in DIR runs (sets NOT_RUNNING_REASON otherwise)
vm_alive() {
    NOT_RUNNING_REASON=""
    if ! load_vm "$1"; then NOT_RUNNING_REASON="no pid file"; return 1; fi
    if ! proc_is "$VM_PID" "$VM_TICKS"; then
        NOT_RUNNING_REASON="pid $VM_PID is gone (or is another process now)"
        return 1
    fi
    if [[ -n $VM_CMDLINE && "$(proc_cmdline "$VM_PID")" != "$VM_CMDLINE" ]]; then
        NOT_RUNNING_REASON="pid $VM_PID runs another command line now"
        return 1
    fi
}
uptime_seconds() { # uptime_seconds TICKS
    local up clk
    read -r up _ </proc/uptime
    clk=$(getconf CLK_TCK)
    echo $(((10#${up//./} - $1 * 100 / clk) / 100))
}
status_json() { # status_json DIR NAME
    local dir=$1 n=$2
    if vm_alive "$dir"; then
        jq -nc --arg name "$n" --argjson pid "$VM_PID" --argjson up "$(uptime_seconds "$VM_TICKS")" \
            --arg started "$VM_STARTED" --argjson ports "$VM_PORTS" \
            '{name:$name, running:true, pid:$pid, uptimeSeconds:$up, startedAt:$started, ports:$ports}'
    elif [[ -f $dir/vm.pid ]]; then
        jq -nc --arg name "$n" --arg reason "$NOT_RUNNING_REASON" '{name:$name, running:false, stale:true, reason:$reason}'
    else
        jq -nc --arg name "$n" '{name:$name, running:false}'
    fi
}
clear_pid_files() { rm -f "$1/vm.pid" "$1/vm.pid.new" "$1/vm.json"; }
# orphan_runners DIR: session leaders whose working directory is DIR
orphan_runners() {
    local want p cwd
    want=$(realpath -- "$1")
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        cwd=$(readlink "/proc/$p/cwd" 2>/dev/null) || continue
        [[ $cwd == "$want" ]] || continue
        [[ $(ps -o sid= -p "$p" 2>/dev/null | tr -d ' ') == "$p" ]] && echo "$p"
    done
    return 0
}

# --- probes (tcp_probe, port_holders and listening_ports are host/lib.sh's) ---
PROBE_ERR=""
probe_http() { # probe_http URL ATTEMPT_MS
    local out
    out=$(curl -gsS -o /dev/null -w 'HTTP %{http_code}' --max-time "$(secs "$2")" "$1" 2>&1) || true
    [[ $out =~ HTTP\ 2[0-9][0-9]$ ]] && return 0
    out=${out%HTTP 000}
    PROBE_ERR=${out//$'\n'/ }
    return 1
}
run_probe() { # run_probe SPEC ATTEMPT_MS
    local spec=$1 rest host port
    case "$spec" in
        http://* | https://*) probe_http "$spec" "$2" ;;
        tcp:* | console:*)
            rest=${spec#*:}
            host=${rest%:*} port=${rest##*:}
            host=${host#[} host=${host%]}
            # A console answers a newline; pmcd and sshd speak first.
            local send=""
            [[ $spec == tcp:* ]] || send='\r\n'
            tcp_probe "$host" "$port" "$2" "$send" 1
            ;;
    esac
}
validate_spec() { # validate_spec PHASE SPEC
    local spec=$2
    case "$spec" in
        http://?* | https://?*) return 0 ;;
        tcp:* | console:*)
            local rest=${spec#*:}
            [[ $rest =~ ^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):([0-9]+)$ ]] && valid_port "${BASH_REMATCH[2]}" && return 0
            ;;
    esac
    usage_error "--probe $1=$spec: SPEC must be tcp:HOST:PORT, console:HOST:PORT or http://HOST:PORT/PATH"
}

# --- waiting between probe rounds -----------------------------------------
# Fork-free: a tick is `read -t` on a FIFO nobody writes to, and new console
# output is found by reading the console logs (serial.log, virtio.log in the
# VM dir, as QEMU's chardev logfile= writes them) from where we left off.
tick_fd=""
declare -A log_fds=()
open_ticker() { # open_ticker DIR
    rm -f "$1/.tick"
    mkfifo "$1/.tick"
    exec {tick_fd}<>"$1/.tick"
    rm -f "$1/.tick"
    ticker_dir=$1
}
console_output_grew() { # true when a console log has bytes not seen before
    local f fd chunk grew=1
    for f in serial.log virtio.log; do
        fd=${log_fds[$f]:-}
        if [[ -z $fd ]]; then
            [[ -f $ticker_dir/$f ]] || continue
            exec {fd}<"$ticker_dir/$f"
            log_fds[$f]=$fd
        fi
        while :; do
            chunk=""
            if read -r -N 65536 -u "$fd" chunk; then grew=0; continue; fi
            [[ -n $chunk ]] && grew=0
            break
        done
    done
    return "$grew"
}
wait_round() { # wait_round MS: true when console output cut the wait short
    local until left step
    clock
    until=$((NOW + $1))
    while :; do
        console_output_grew && return 0
        clock
        left=$((until - NOW))
        ((left > 0)) || return 1
        step=$((left < tick_ms ? left : tick_ms))
        printf -v step '%d.%03d' $((step / 1000)) $((step % 1000))
        read -r -t "$step" -u "$tick_fd" _ || true
    done
}
# probe_round ATTEMPT_MS ELAPSED_MS: probes every spec in `pending` at once; keeps
# the failed ones in `pending` and their errors in PROBE_ERR
pending=()
probe_round() {
    local -a pids=() still=()
    local i err rc
    if ((${#pending[@]} == 1)); then
        if run_probe "${pending[0]}" "$1"; then
            trace "$2" "${pending[0]}" ok
            pending=()
            return
        fi
        trace "$2" "${pending[0]}" "$PROBE_ERR"
        PROBE_ERR="${pending[0]}: $PROBE_ERR"
        return
    fi
    for i in "${!pending[@]}"; do
        (
            rc=0
            run_probe "${pending[$i]}" "$1" || rc=$?
            printf '%s' "$PROBE_ERR" >"$ticker_dir/.probe.$i"
            exit "$rc"
        ) &
        pids[i]=$!
    done
    PROBE_ERR=""
    for i in "${!pending[@]}"; do
        if wait "${pids[$i]}"; then
            trace "$2" "${pending[$i]}" ok
        else
            err=""
            read -r -d '' err <"$ticker_dir/.probe.$i" || true
            trace "$2" "${pending[$i]}" "$err"
            still+=("${pending[$i]}")
            PROBE_ERR+="${PROBE_ERR:+; }${pending[$i]}: $err"
        fi
        rm -f "$ticker_dir/.probe.$i"
    done
    pending=("${still[@]}")
}
trace() { [[ -z ${VM_SH_TRACE:-} ]] || echo "vm $name: trace +$1 ms $2: $3" >&2; }
json_str() { # a JSON string literal
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\t'/\\t}
    s=${s//$'\r'/\\r}
    s=${s//[$'\x01'-$'\x1f']/}
    printf '"%s"' "$s"
}

# --- arguments ----------------------------------------------------------
verb=${1:-}
[[ -n $verb ]] || usage_error "missing verb: start, stop, status or list"
shift
name="" state_dir="" runner="" purge=false accel="" kvm_verdict=""
ports=() probe_phases=() probe_specs=()
declare -A timeout_ms=()
while (($# > 0)); do
    opt=$1
    case "$opt" in
        --name | --state-dir | --runner | --port | --probe | --timeout | --shutdown-timeout | --exit-timeout | --accel | --kvm-verdict)
            [[ $# -ge 2 && -n $2 ]] || usage_error "$opt needs a value"
            val=$2
            shift 2
            ;;
        --purge) purge=true; shift; continue ;;
        -h | --help) sed -n '2,41p' "$0"; exit 0 ;;
        *) usage_error "unknown argument '$opt'" ;;
    esac
    case "$opt" in
        --name) name=$val ;;
        --state-dir) state_dir=$val ;;
        --runner) runner=$val ;;
        --accel)
            [[ $val == auto || $val == kvm || $val == tcg ]] || usage_error "--accel: '$val' must be auto, kvm or tcg"
            accel=$val
            ;;
        --kvm-verdict) kvm_verdict=$val ;;
        --port)
            valid_port "$val" || usage_error "--port: '$val' is not a TCP port (1-65535)"
            ports+=("$((10#$val))")
            ;;
        --probe)
            [[ $val == *=* ]] || usage_error "--probe: '$val' must be PHASE=SPEC"
            phase=${val%%=*}
            [[ $phase =~ ^[a-zA-Z][a-zA-Z0-9_-]*$ ]] || usage_error "--probe: phase '$phase' must be a word"
            [[ $phase != process ]] || usage_error "--probe: phase 'process' is built in; name the phase differently"
            validate_spec "$phase" "${val#*=}"
            probe_phases+=("$phase") probe_specs+=("${val#*=}")
            ;;
        --timeout)
            [[ $val == *=* ]] || usage_error "--timeout: '$val' must be PHASE=SECONDS"
            timeout_ms[${val%%=*}]=$(to_ms "--timeout ${val%%=*}" "${val#*=}")
            ;;
        --shutdown-timeout) timeout_ms[shutdown]=$(to_ms "$opt" "$val") ;;
        --exit-timeout) timeout_ms[exit]=$(to_ms "$opt" "$val") ;;
    esac
done

[[ -n $state_dir ]] || usage_error "--state-dir is required (the stack's state directory)"
state_dir=$(realpath -m -- "$state_dir")
if [[ $verb != list ]]; then
    [[ -n $name ]] || usage_error "--name is required"
    [[ $name =~ ^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$ ]] ||
        usage_error "--name '$name': use letters, digits, '.', '_' and '-' (at most 63, not starting with a symbol)"
fi
prog="vm.sh $verb${name:+ $name}" PROG="vm.sh $verb${name:+ $name}"

# Default timeouts from nix/constants.json; the process phase is processStart.
phase_timeout_ms() {
    local p=$1 key=$1 s
    [[ -n ${timeout_ms[$p]:-} ]] && { echo "${timeout_ms[$p]}"; return; }
    [[ $p == process ]] && key=processStart
    s=$(jq -er --arg k "$key" '.timeoutsSeconds[$k] // empty' "$constants" 2>/dev/null) ||
        usage_error "no timeout for phase '$p' in $constants: pass --timeout $p=SECONDS"
    to_ms "timeoutsSeconds.$key" "$s"
}

# --- stop ---------------------------------------------------------------
# wait_gone PID TICKS MS: true when the process ends within MS
wait_gone() {
    local deadline=$(($(now_ms) + $3))
    while proc_is "$1" "$2"; do
        (($(now_ms) >= deadline)) && return 1
        sleep 0.05
    done
}
# qmp_socket DIR: the runner's QMP socket in its working dir: qmp.sock, else the
# only *.sock there (microvm.nix names it after the host)
qmp_socket() {
    local -a socks=()
    if [[ -S $1/qmp.sock ]]; then echo qmp.sock; return; fi
    for f in "$1"/*.sock; do [[ -S $f ]] && socks+=("${f##*/}"); done
    ((${#socks[@]} == 1)) && echo "${socks[0]}"
}
# stop_vm DIR GRACEFUL(true|false): sets STOP_HOW (graceful|term|kill)
stop_vm() {
    local dir=$1 graceful=$2 pid=$VM_PID ticks=$VM_TICKS how="" helper="" qmp
    local shutdown_ms exit_ms
    shutdown_ms=$(phase_timeout_ms shutdown)
    exit_ms=$(phase_timeout_ms exit)
    if [[ $graceful == true ]]; then
        if [[ -n $VM_RUNNER && -x $VM_RUNNER/bin/microvm-shutdown ]]; then
            echo "vm $name: stop: running $VM_RUNNER/bin/microvm-shutdown (waiting up to $(fmt_s "$shutdown_ms") s)" >&2
            (cd "$dir" && exec timeout -k 1 "$(secs "$shutdown_ms")" "$VM_RUNNER/bin/microvm-shutdown") \
                </dev/null >>"$dir/vm.log" 2>&1 &
            helper=$!
        elif qmp=$(qmp_socket "$dir") && command -v socat >/dev/null; then
            echo "vm $name: stop: ACPI powerdown through QMP ($qmp; waiting up to $(fmt_s "$shutdown_ms") s)" >&2
            (cd "$dir" && { printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"system_powerdown"}'; sleep 1; } |
                timeout -k 1 5 socat - "UNIX-CONNECT:$qmp") </dev/null >>"$dir/vm.log" 2>&1 &
            helper=$!
        else
            echo "vm $name: stop: no bin/microvm-shutdown, no QMP socket (or no socat): no graceful shutdown" >&2
        fi
        if [[ -n $helper ]] && wait_gone "$pid" "$ticks" "$shutdown_ms"; then how=graceful; fi
    fi
    if [[ -z $how ]]; then
        echo "vm $name: stop: SIGTERM to pid $pid (waiting up to $(fmt_s "$exit_ms") s)" >&2
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        if wait_gone "$pid" "$ticks" "$exit_ms"; then how=term; fi
    fi
    if [[ -z $how ]]; then
        echo "vm $name: stop: SIGKILL to pid $pid" >&2
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" "$ticks" "$kill_wait_ms" || die "pid $pid survived SIGKILL"
        how="kill"
    fi
    # Whatever else the runner started in its session goes with it.
    local leftovers
    leftovers=$(session_members "$pid")
    if [[ -n $leftovers ]]; then
        echo "vm $name: stop: ending leftover processes of its session: ${leftovers//$'\n'/ }" >&2
        # shellcheck disable=SC2086
        kill -KILL $leftovers 2>/dev/null || true
    fi
    if [[ -n $helper ]]; then kill "$helper" 2>/dev/null || true; wait "$helper" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true # reaps it when it is our child (failed start)
    clear_pid_files "$dir"
    STOP_HOW=$how
}

lock_vm() { # lock_vm DIR MODE(nowait|wait)
    mkdir -p "$1"
    chmod 700 -- "$1" # nix-build.sh may have made it first, with the caller's umask
    exec {lock_fd}>"$1/.lock"
    if [[ $2 == nowait ]]; then
        flock -n "$lock_fd" || die "another vm.sh start or stop of '$name' is in progress"
    else
        flock -w 900 "$lock_fd" || die "another vm.sh start or stop of '$name' holds its lock"
    fi
}

# purge_vm_dir DIR: what vm.sh and the runner wrote there (logs, sockets, lock),
# then the directory and the state dir above it when nothing else is left in
# them (a runner out-link, say, stays with its owner).
purge_vm_dir() {
    local dir=$1 f
    rm -f -- "$dir"/vm.pid "$dir"/vm.pid.new "$dir"/vm.json "$dir"/vm.log "$dir"/vm.log.1 \
        "$dir"/serial.log "$dir"/virtio.log "$dir"/.lock
    for f in "$dir"/*.sock; do
        if [[ -S $f ]]; then rm -f -- "$f"; fi
    done
    if rmdir -- "$dir" 2>/dev/null; then rmdir -- "$state_dir" 2>/dev/null || true; fi
}

cmd_stop() {
    local dir how=not-running
    dir=$(vm_dir)
    if [[ ! -d $dir ]]; then
        jq -nc --arg name "$name" '{name:$name, stopped:true, how:"not-running", stopMs:0}'
        return
    fi
    lock_vm "$dir" wait
    local t0 stop_ms=0
    t0=$(now_ms)
    if vm_alive "$dir"; then
        stop_vm "$dir" true
        how=$STOP_HOW
        stop_ms=$(($(now_ms) - t0))
        echo "vm $name: stopped ($how) in $(fmt_s "$stop_ms") s" >&2
    else
        clear_pid_files "$dir"
        rm -f "$dir/qmp.sock"
    fi
    [[ $purge == false ]] || purge_vm_dir "$dir"
    # bench/engine.ts reads the shutdown time from here: a destroy keeps no outputs.
    if [[ -n ${PCP_EVAL_VM_STOP_LOG:-} ]]; then
        jq -nc --arg name "$name" --arg how "$how" --argjson ms "$stop_ms" '{name:$name, how:$how, stopMs:$ms}' >>"$PCP_EVAL_VM_STOP_LOG"
    fi
    jq -nc --arg name "$name" --arg how "$how" --argjson ms "$stop_ms" '{name:$name, stopped:true, how:$how, stopMs:$ms}'
}

# --- start --------------------------------------------------------------
tail_file() { # tail_file TITLE FILE
    echo "--- $1: last $log_tail_lines lines of $2 ---"
    if [[ -s $2 ]]; then
        tail -n "$log_tail_lines" "$2" | tr -d '\r' | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g'
    else
        echo "(empty or missing)"
    fi
}
# kvm_silence_hint DIR: on a host where KVM hangs guests (nested
# virtualisation can), a KVM guest prints at most the kernel's real-mode boot
# stub lines and then nothing; say so and name the fix. Quiet otherwise.
kvm_silence_hint() {
    local dir=$1 cmdline
    load_vm "$dir" && proc_is "$VM_PID" "$VM_TICKS" || return 0
    cmdline=$(proc_cmdline "$VM_PID") || return 0
    [[ $cmdline =~ (accel=kvm|-enable-kvm|-accel\ kvm) ]] || return 0
    [[ -s $dir/virtio.log ]] && return 0
    if [[ -f $dir/serial.log ]] &&
        grep -Evq '^[[:space:]]*$|^(Probing EDD|Decompressing Linux|Parsing ELF|Booting the kernel|early console)' "$dir/serial.log"; then
        return 0
    fi
    echo "$prog: hint: the guest printed nothing past the boot stub under KVM; on some hosts (nested virtualisation among them) KVM hangs guests. Run the VMs under TCG: pulumi config set pcp-eval:vmAccel tcg"
}
# start_accel: the accelerator this start uses ("" for the runner's default).
# auto reads the verdict host/kvm-probe.sh remembered for this boot; it never
# probes (a hanging KVM probe boot takes its whole timeout).
start_accel() {
    local boot line
    case $accel in
        "" | kvm | tcg) echo "$accel"; return ;;
    esac
    boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || true)
    line=$( { head -n 1 "${kvm_verdict:-/nonexistent}" 2>/dev/null || true; } )
    if [[ -n $boot && $line == "$boot yes"* ]]; then
        echo kvm
    elif [[ -n $boot && $line == "$boot no"* ]]; then
        echo tcg
    else
        # None is written when preflight was skipped, found no /dev/kvm or QEMU to test
        # with, or could only run an empty machine (host/kvm-probe.sh keeps no weak yes).
        echo "vm $name: start: TCG: no KVM verdict for this boot${kvm_verdict:+ in $kvm_verdict} (only a KVM test boot by pulumi up's preflight writes one)" >&2
        echo tcg
    fi
}
# fail_start PHASE MESSAGE: report, stop the VM, exit 1
fail_start() {
    local dir
    dir=$(vm_dir)
    trap - INT TERM HUP
    {
        echo "$prog: failed in phase '$1': $2"
        tail_file "VM log" "$dir/vm.log"
        tail_file "serial console" "$dir/serial.log"
        [[ -f $dir/virtio.log ]] && tail_file "virtio console" "$dir/virtio.log"
        [[ $1 == process || $2 != "timed out"* ]] || kvm_silence_hint "$dir"
    } >&2
    if load_vm "$dir" && proc_is "$VM_PID" "$VM_TICKS"; then
        # A VM that never became ready gets no graceful shutdown: TERM, then KILL.
        stop_vm "$dir" false
        echo "$prog: the VM was stopped ($STOP_HOW) so nothing is left half up" >&2
    else
        wait "${launched_pid:-}" 2>/dev/null || true
        clear_pid_files "$dir"
    fi
    exit 1
}

cmd_start() {
    local dir run
    dir=$(vm_dir)
    [[ -n $runner ]] || usage_error "--runner is required (the runner's store path)"
    runner=$(realpath -m -- "$runner")
    run="$runner/bin/microvm-run"
    [[ -x $run ]] || usage_error "--runner: $run is not an executable; pass the runner's store path (the directory with bin/microvm-run)"
    command -v jq >/dev/null || die "jq is not installed"
    [[ -z $kvm_verdict || $accel == auto ]] || usage_error "--kvm-verdict is read for --accel auto only"

    # Phases in order, each with its timeout (checked before anything starts).
    local -a phases=(process)
    local p i
    for p in "${probe_phases[@]}"; do
        [[ " ${phases[*]} " == *" $p "* ]] || phases+=("$p")
    done
    declare -A phase_ms=()
    for p in "${phases[@]}" shutdown exit; do phase_ms[$p]=$(phase_timeout_ms "$p"); done
    for p in "${!timeout_ms[@]}"; do
        [[ -n ${phase_ms[$p]:-} ]] || echo "$prog: warning: --timeout $p=... names no phase of this start; ignored" >&2
    done

    lock_vm "$dir" nowait
    if vm_alive "$dir"; then
        die "VM '$name' already runs (pid $VM_PID since $VM_STARTED); stop it first: vm.sh stop --name $name --state-dir $state_dir"
    fi
    # A start of this VM whose vm.sh was killed before its record was complete
    # leaves a runner behind with no valid pid file. It is ours: every runner
    # is started by setsid with this VM's dir as its working directory. End it
    # by PID, as stop would, before the ports are checked.
    local orphan fields
    for orphan in $(orphan_runners "$dir"); do
        fields=$(proc_fields "$orphan") || continue
        VM_PID=$orphan VM_TICKS=${fields#* } VM_RUNNER=""
        echo "vm $name: start: stopping pid $orphan, left running by an interrupted start of this VM" >&2
        stop_vm "$dir" true
    done
    clear_pid_files "$dir"
    rm -f "$dir/qmp.sock"

    local -a held=()
    local holder port
    for port in "${ports[@]}"; do
        # The first listener, without its address: "pid N (COMMAND)".
        if holder=$(port_holders "$port"); then holder=${holder%%$'\n'*} && held+=("port $port is held by ${holder#* }"); fi
    done
    if ((${#held[@]} > 0)); then
        local joined
        joined=$(printf '%s; ' "${held[@]}")
        die "VM '$name' cannot start: ${joined%; }; free the port(s) or configure others"
    fi

    # Fresh logs for this boot (the previous boot's log is kept as vm.log.1).
    [[ -f $dir/vm.log ]] && mv -f "$dir/vm.log" "$dir/vm.log.1"
    rm -f "$dir/serial.log" "$dir/virtio.log"
    echo "vm.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ) starting $run" >"$dir/vm.log"
    # Chosen at start, not built into the runner: a changed KVM verdict changes
    # how the next start runs, never the runner (so never a running VM).
    local use_accel
    use_accel=$(start_accel)
    [[ -z $use_accel ]] || echo "vm $name: start: accelerator $use_accel (--accel $accel)" >&2

    local t0 started_at
    t0=$(now_ms)
    started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    # Detached: its own session, cwd the VM dir, stdio to the log, no other fds
    # (a daemon holding a caller's pipe hangs `pulumi up`).
    (
        cd "$dir"
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            ((fd > 2)) && eval "exec $fd>&-"
        done
        if [[ -n $use_accel ]]; then export PCP_EVAL_ACCEL=$use_accel; fi
        exec setsid bash -c 'echo "$$" >vm.pid.new; exec "$@"' microvm-launch "$run"
    ) </dev/null >>"$dir/vm.log" 2>&1 &
    launched_pid=$!
    trap 'fail_start "${current_phase:-process}" "interrupted by a signal"' INT TERM HUP

    local pid="" deadline=$((t0 + 1000))
    while [[ ! -s $dir/vm.pid.new ]] && (($(now_ms) < deadline)); do sleep 0.01; done
    pid=$(cat "$dir/vm.pid.new" 2>/dev/null || true)
    [[ $pid == "$launched_pid" ]] ||
        fail_start process "the runner did not start in its own session (pid file '$pid', launched $launched_pid)"
    local fields state ticks
    fields=$(proc_fields "$pid") || fail_start process "the runner exited at once"
    read -r state ticks <<<"$fields"
    local ports_json
    ports_json=$(printf '%s\n' "${ports[@]}" | jq -R 'select(length > 0) | tonumber' | jq -sc .)
    jq -nc --arg name "$name" --argjson pid "$pid" --arg ticks "$ticks" --arg started "$started_at" \
        --arg runner "$runner" --argjson ports "$ports_json" --arg accel "$use_accel" \
        '{name:$name, pid:$pid, startTicks:$ticks, startedAt:$started, runner:$runner, ports:$ports, cmdline:null, accel:(if $accel == "" then null else $accel end)}' \
        >"$dir/vm.json"
    mv -f "$dir/vm.pid.new" "$dir/vm.pid"
    echo "vm $name: started pid $pid ($run)" >&2

    # Readiness, phase by phase. Probes of a phase run in parallel each round;
    # between rounds the wait backs off from 100 ms to 1 s, and starts over as
    # soon as the guest prints on a console (progress: probe again at once).
    open_ticker "$dir"
    local phases_json="" phase_start interval next_progress attempt remaining all_ok
    for current_phase in "${phases[@]}"; do
        clock
        phase_start=$NOW
        interval=$poll_first_ms
        next_progress=$((phase_start + progress_every_ms))
        PROBE_ERR="not probed yet"
        pending=()
        for i in "${!probe_phases[@]}"; do
            [[ ${probe_phases[$i]} == "$current_phase" ]] && pending+=("${probe_specs[$i]}")
        done
        if [[ $current_phase == process ]]; then
            echo "vm $name: phase process: waiting up to $(fmt_s "${phase_ms[process]}") s for the runner${ports[*]:+ to listen on ${ports[*]}}" >&2
        else
            echo "vm $name: phase $current_phase: waiting up to $(fmt_s "${phase_ms[$current_phase]}") s for ${pending[*]}" >&2
        fi
        while :; do
            if ! proc_is "$pid" "$ticks"; then
                local status=0
                wait "$pid" 2>/dev/null || status=$?
                fail_start "$current_phase" "the VM process (pid $pid) exited with status $status; last probe error: $PROBE_ERR"
            fi
            clock
            remaining=$((phase_start + phase_ms[$current_phase] - NOW))
            all_ok=true
            if [[ $current_phase == process ]]; then
                local listening missing=()
                listening=" $(listening_ports | tr '\n' ' ') "
                for port in "${ports[@]}"; do
                    [[ $listening == *" $port "* ]] || missing+=("$port")
                done
                if ((${#missing[@]} > 0)); then
                    all_ok=false
                    PROBE_ERR="not listening yet: port ${missing[*]}"
                fi
            else
                # One attempt may take twice the current interval: at least 250 ms, at most 1 s.
                attempt=$((interval * 2 < attempt_min_ms ? attempt_min_ms : interval * 2))
                attempt=$((attempt > attempt_max_ms ? attempt_max_ms : attempt))
                attempt=$((attempt > remaining ? remaining : attempt))
                attempt=$((attempt < poll_first_ms ? poll_first_ms : attempt))
                probe_round "$attempt" "$((NOW - t0))"
                ((${#pending[@]} == 0)) || all_ok=false
            fi
            clock
            if $all_ok; then
                phases_json+="${phases_json:+,}\"$current_phase\":$((NOW - phase_start))"
                echo "vm $name: phase $current_phase: ready after $(fmt_s $((NOW - phase_start))) s (total $(fmt_s $((NOW - t0))) s)" >&2
                break
            fi
            remaining=$((phase_start + phase_ms[$current_phase] - NOW))
            if ((remaining <= 0)); then
                fail_start "$current_phase" "timed out after $(fmt_s "${phase_ms[$current_phase]}") s; last probe error: $PROBE_ERR"
            fi
            if ((NOW >= next_progress)); then
                echo "vm $name: phase $current_phase: waiting, $(fmt_s $((NOW - phase_start))) s elapsed (total $(fmt_s $((NOW - t0))) s); last: $PROBE_ERR" >&2
                next_progress=$((NOW + progress_every_ms))
            fi
            if wait_round $((interval < remaining ? interval : remaining)); then
                interval=$poll_first_ms
            else
                interval=$((interval * 2 > poll_max_ms ? poll_max_ms : interval * 2))
            fi
        done
        if [[ $current_phase == process ]]; then
            # The runner has become the VM (QEMU holds the ports): pin its command line.
            jq -c --arg c "$(proc_cmdline "$pid")" '.cmdline = $c' "$dir/vm.json" >"$dir/vm.json.new" &&
                mv -f "$dir/vm.json.new" "$dir/vm.json"
        fi
    done
    trap - INT TERM HUP
    clock
    local ready_ms=$((NOW - t0))
    echo "vm $name: ready in $(fmt_s "$ready_ms") s" >&2
    printf '{"name":%s,"pid":%d,"startedAt":"%s","readyMs":%d,"phases":{%s},"ports":%s,"stateDir":%s,"log":%s,"accel":%s}\n' \
        "$(json_str "$name")" "$pid" "$started_at" "$ready_ms" "$phases_json" "$ports_json" \
        "$(json_str "$dir")" "$(json_str "$dir/vm.log")" "$([[ -n $use_accel ]] && json_str "$use_accel" || echo null)"
}

# --- status / list ------------------------------------------------------
cmd_status() { status_json "$(vm_dir)" "$name"; }
cmd_list() {
    local d
    {
        if [[ -d $state_dir ]]; then
            for d in "$state_dir"/*/; do
                [[ -d $d ]] || continue
                d=${d%/}
                [[ -f $d/vm.pid || -f $d/vm.json || -f $d/vm.log ]] || continue
                status_json "$d" "${d##*/}"
            done
        fi
    } | jq -sc .
}

case "$verb" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    list) cmd_list ;;
    *) usage_error "unknown verb '$verb': start, stop, status or list" ;;
esac
