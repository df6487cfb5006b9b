# shellcheck shell=bash
# The globals set here (DIED, PROBE_*, CIDR_*) are read by the sourcing scripts.
# shellcheck disable=SC2034
# host/lib.sh: what the host scripts share, so that each concern has one
# implementation: the error line, the clock, the validation rules (read from
# nix/constants.json's "rules", which components/config.ts reads too), IPv4 and
# CIDR arithmetic, the TCP probe and "who holds this port". Sourced, never run:
#
#   PROG=oci.sh
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Functions that judge return a status and never exit, so a caller decides
# what its error says; die and die_fix are the only ones that exit.

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LIB_CONSTANTS=${PCP_EVAL_CONSTANTS:-$LIB_DIR/../nix/constants.json}
DIED=0

# --- errors ---------------------------------------------------------------
# die MESSAGE: "PROG: MESSAGE" on stderr, then exit DIE_STATUS (default 1).
# die_fix STATUS FIELD PROBLEM FIX: an error that names the field and the fix.
# DIED=1 tells an EXIT trap that the error has been said already.
lib_exit() { # STATUS MESSAGE
    DIED=1
    printf '%s: %s\n' "${PROG:-${0##*/}}" "$2" >&2
    exit "$1"
}
die() { lib_exit "${DIE_STATUS:-1}" "$*"; }
die_fix() { lib_exit "$1" "error: $2: $3; fix: $4"; }

# --- time -----------------------------------------------------------------
# clock: NOW = wall-clock milliseconds, fork-free (bash 5 EPOCHREALTIME), for
# polling loops; now_ms prints the same clock.
NOW=0
clock() { local t=${EPOCHREALTIME//[!0-9]/}; NOW=$((10#$t / 1000)); }
now_ms() { clock; echo "$NOW"; }
# secs MS: "S.mmm", the form timeout(1), sleep and curl take.
secs() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }
# fmt_s MS: "S.d", for messages.
fmt_s() { printf '%d.%01d' $(($1 / 1000)) $((($1 % 1000) / 100)); }

# --- rules (one source: nix/constants.json .rules) --------------------------
# rules_load: every value of constants.json's .rules in one jq call (jq 1.6
# takes ~40 ms to start). It runs in the caller's shell, so the values stay for
# the rest of the run; a $(rule X) before it would load them in a subshell and
# lose them. rule PATH: one of those values (PATH as "subnetPrefix.min").
declare -A LIB_RULES=()
LIB_RULES_LOADED=0
rules_load() {
    ((LIB_RULES_LOADED == 0)) || return 0
    local out
    # shellcheck disable=SC2016 # a jq program: \( ) is jq's interpolation
    out=$(jq -r '.rules | [paths(scalars) as $p | "[\($p | map(tostring) | join(".") | @sh)]=\(getpath($p) | tostring | @sh)"]
        | "LIB_RULES=(" + join(" ") + ")"' "$LIB_CONSTANTS" 2>/dev/null) ||
        die_fix 3 constants "cannot read .rules from $LIB_CONSTANTS" "run the script from a pcp-eval checkout (host/ beside nix/constants.json)"
    eval "$out"
    LIB_RULES_LOADED=1
}
rule() {
    rules_load
    [[ -n ${LIB_RULES[$1]+set} ]] ||
        die_fix 3 constants "cannot read .rules.$1 from $LIB_CONSTANTS" "run the script from a pcp-eval checkout (host/ beside nix/constants.json)"
    printf '%s' "${LIB_RULES[$1]}"
}
valid_port() { [[ $1 =~ ^[0-9]{1,5}$ ]] && ((10#$1 >= 1 && 10#$1 <= 65535)); }
valid_ifname() { rules_load; local re; re=$(rule ifname); [[ $1 =~ $re ]]; }
valid_nft_table() { rules_load; local re; re=$(rule nftTable); [[ $1 =~ $re ]]; }

# --- IPv4 and CIDR ----------------------------------------------------------
# valid_ipv4 A.B.C.D: four decimal octets 0-255, no leading zeros (as config.ts).
valid_ipv4() {
    [[ $1 =~ ^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$ ]] || return 1
    local i
    for i in 1 2 3 4; do ((BASH_REMATCH[i] <= 255)) || return 1; done
}
ip_to_int() {
    local a b c d
    IFS=. read -r a b c d <<<"$1"
    echo $(((10#$a << 24) | (10#$b << 16) | (10#$c << 8) | 10#$d))
}
int_to_ip() { echo "$((($1 >> 24) & 255)).$((($1 >> 16) & 255)).$((($1 >> 8) & 255)).$(($1 & 255))"; }
# host_cidr ADDRESS/LEN: judges a host address with its prefix length against
# the subnet rules. Sets CIDR_ADDR, CIDR_LEN, CIDR_NET ("N.N.N.N/LEN"); on a
# bad one returns 1 with CIDR_ERR saying what is wrong.
host_cidr() {
    CIDR_ERR="" CIDR_ADDR="" CIDR_LEN="" CIDR_NET=""
    local addr=${1%/*} len=${1##*/} min max
    if ! [[ $1 =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$ ]]; then
        CIDR_ERR="'$1' is not an IPv4 address with a prefix length"
        return 1
    fi
    if ! valid_ipv4 "$addr"; then
        CIDR_ERR="'$1' has an octet above 255 or with a leading zero"
        return 1
    fi
    rules_load
    len=$((10#$len)) min=$(rule subnetPrefix.min) max=$(rule subnetPrefix.max)
    if ((len < min || len > max)); then
        CIDR_ERR="prefix length /$len is outside $min..$max"
        return 1
    fi
    local a mask net
    a=$(ip_to_int "$addr")
    mask=$(((0xffffffff << (32 - len)) & 0xffffffff))
    net=$((a & mask))
    if ((a == net)); then CIDR_ERR="'$1' is the subnet's network address, not a host address"; return 1; fi
    if ((a == (net | (~mask & 0xffffffff)))); then CIDR_ERR="'$1' is the subnet's broadcast address"; return 1; fi
    CIDR_ADDR=$(int_to_ip "$a") CIDR_LEN=$len CIDR_NET="$(int_to_ip "$net")/$len"
}

# --- TCP ---------------------------------------------------------------------
# tcp_probe HOST PORT ATTEMPT_MS SEND BYTES: connects, writes SEND (a printf
# format; empty: nothing) and reads BYTES bytes. 0: PROBE_DATA holds them as
# hex pairs ("00 00 70 00 ..."). 1: PROBE_ERR says why not (refused, nothing
# received in time, closed early). Pure bash /dev/tcp: no nc or socat needed.
tcp_probe() {
    local out rc
    PROBE_DATA="" PROBE_ERR=""
    # shellcheck disable=SC2016 # the inner script expands its own arguments
    out=$(timeout -k 0.2 "$(secs "$3")" bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 10
        echo "connected" >&2
        if [[ -n $3 ]]; then printf "$3" >&3; fi
        data=$(head -c "$4" <&3 | od -An -tx1 -v | tr -s " \n" "  ")
        read -r -a got <<<"$data"
        if ((${#got[@]} >= $4)); then echo "data:${got[*]}" >&2; exit 0; fi
        if ((${#got[@]} == 0)); then echo "connected, but the peer closed the connection without sending anything" >&2
        else echo "connected, but the peer closed the connection after ${#got[@]} of $4 bytes" >&2; fi
        exit 11' tcp-probe "$1" "$2" "$4" "$5" 2>&1) && rc=0 || rc=$?
    if ((rc == 0)); then
        PROBE_DATA=$(sed -n 's/^data://p' <<<"$out")
        return 0
    fi
    if ((rc == 124 || rc == 137)); then
        if [[ $out == *connected* ]]; then
            PROBE_ERR="connected, but nothing received within $(fmt_s "$3") s"
        else
            PROBE_ERR="no connection within $(fmt_s "$3") s"
        fi
    elif ((rc == 10)) && [[ $out == *"Connection refused"* ]]; then
        PROBE_ERR="connection refused"
    else
        PROBE_ERR=$(tail -n 1 <<<"$out")
        PROBE_ERR=${PROBE_ERR#tcp-probe: line *: }
    fi
    return 1
}

# listening_ports: every TCP port something listens on, one a line.
listening_ports() { ss -Htln 2>/dev/null | awk '{n = split($4, a, ":"); print a[n]}' | sort -un; }

# port_holders PORT [ADDRESS]: one line "LOCAL:PORT pid N (COMMAND)" per TCP
# listener on PORT whose address clashes with ADDRESS (a listener on ADDRESS
# itself or on a wildcard; every listener when ADDRESS is empty or 0.0.0.0).
# "pid ?" when ss may not see the owner (another user's socket). 1: nobody.
port_holders() {
    command -v ss >/dev/null || die_fix 3 tools "ss is not installed" "apt-get install iproute2"
    local out
    out=$(ss -Hltnp "sport = :$1" 2>/dev/null | awk -v a="${2:-}" '
        { host = $4; sub(/:[0-9]+$/, "", host) }
        a == "" || a == "0.0.0.0" || host == a || host == "0.0.0.0" || host == "*" || host == "[::]" || host == "[::ffff:" a "]" {
            who = "another process"
            if (match($0, /users:\(\("[^"]*",pid=[0-9]+/)) {
                u = substr($0, RSTART + 9, RLENGTH - 9)
                split(u, f, "\",pid=")
                who = "pid " f[2] " (" f[1] ")"
            }
            print $4 " " who
        }')
    [[ -n $out ]] || return 1
    printf '%s\n' "$out"
}
