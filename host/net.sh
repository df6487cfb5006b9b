#!/usr/bin/env bash
# jq filters are single-quoted on purpose: their $names are jq variables.
# shellcheck disable=SC2016
# net.sh: the host networking that pcp-eval's TAP-networked MicroVMs need.
#
# A bridge with the gateway address, one TAP device per TAP VM (owned by the
# user who runs QEMU, with the vnet_hdr and multi_queue flags microvm.nix's QEMU
# runner opens it with), IPv4 forwarding, and NAT masquerade for the subnet in an
# nftables table of its own. Everything it makes is recorded in a state file
# (<state-dir>/net.json) and marked (an ifalias on links, a comment on the
# table), so `bridge-down` removes exactly what the up verbs made and nothing else; a device or
# table of the same name that is not ours is refused, never touched.
#
# Verbs (each prints one JSON line on stdout; progress and errors go to stderr):
#   bridge-up   --state-dir D [--bridge B] [--gateway-cidr A.B.C.D/N] [--nft-table T] [--sudo]
#   bridge-down --state-dir D [--sudo]            (also removes our TAPs: all of it)
#   tap-up      --state-dir D --tap NAME [--bridge B] [--owner USER] [--multi-queue on|off] [--sudo]
#   tap-down    --state-dir D --tap NAME [--sudo]
#   status      --state-dir D [--bridge B] [--nft-table T] [--taps a,b | --tap NAME] [--sudo]
#   check       [--owner USER] [--sudo]           (what this host needs, what is missing)
#
# Defaults come from nix/constants.json (network.bridge, network.gateway and the
# prefix of network.subnet, network.nftTable; multi-queue when vm.vcpus > 1).
#
# Exit status: 0 ok; 1 a command failed (what this run made is undone);
# 2 bad input; 3 missing privilege or tool; 4 a device or table of that name is
# not ours.
set -euo pipefail

PROG=net.sh
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONSTANTS=$SCRIPT_DIR/../nix/constants.json
STATE_BASENAME=net.json
STATE_VERSION=1
MARKER_PREFIX=pcp-eval:

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
# die EXIT_CODE FIELD PROBLEM FIX: every error of net.sh names the field and the fix.
die() { die_fix "$@"; }

usage() {
    sed -n '/^# Verbs/,/^# not ours/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
}

# ---------------------------------------------------------------- arguments

ORIG_ARGS=("$@")
VERB=${1:-}
if [[ -z $VERB || $VERB == -h || $VERB == --help || $VERB == help ]]; then
    usage
    [[ -n $VERB ]] && exit 0
    die 2 verb "no verb given" "use one of bridge-up, bridge-down, tap-up, tap-down, status, check"
fi
shift
case $VERB in
    bridge-up | bridge-down | tap-up | tap-down | status | check) ;;
    *) die 2 verb "unknown verb '$VERB'" "use one of bridge-up, bridge-down, tap-up, tap-down, status, check" ;;
esac

STATE_DIR=""
BRIDGE=""
GATEWAY_CIDR=""
NFT_TABLE=""
TAP=""
TAPS_GIVEN=0
TAPS_RAW=""
OWNER=""
MULTI_QUEUE=""
USE_SUDO=0

while (($# > 0)); do
    opt=$1
    val=""
    has_inline=0
    if [[ $opt == --*=* ]]; then
        val=${opt#*=}
        opt=${opt%%=*}
        has_inline=1
    fi
    case $opt in
        --sudo)
            ((has_inline == 0)) || die 2 --sudo "takes no value" "write --sudo alone"
            USE_SUDO=1
            shift
            continue
            ;;
        --state-dir | --bridge | --gateway-cidr | --nft-table | --tap | --taps | --owner | --multi-queue)
            if ((has_inline == 0)); then
                (($# >= 2)) || die 2 "$opt" "needs a value" "write $opt VALUE"
                val=$2
                shift 2
            else
                shift
            fi
            ;;
        *) die 2 "$opt" "unknown option for '$VERB'" "run '$PROG --help' for the options" ;;
    esac
    case $opt in
        --state-dir) STATE_DIR=$val ;;
        --bridge) BRIDGE=$val ;;
        --gateway-cidr) GATEWAY_CIDR=$val ;;
        --nft-table) NFT_TABLE=$val ;;
        --tap) TAP=$val ;;
        --taps)
            TAPS_GIVEN=1
            TAPS_RAW=$val
            ;;
        --owner) OWNER=$val ;;
        --multi-queue) MULTI_QUEUE=$val ;;
    esac
done

# ---------------------------------------------------------------- tools

have() { command -v "$1" >/dev/null 2>&1; }

require_tools() {
    local t
    for t in "$@"; do
        if ! have "$t"; then
            case $t in
                ip) die 3 tools "ip (iproute2) is not installed" "apt-get install iproute2" ;;
                nft) die 3 tools "nft is not installed" "apt-get install nftables" ;;
                jq) die 3 tools "jq is not installed" "apt-get install jq" ;;
                sysctl) die 3 tools "sysctl is not installed" "apt-get install procps" ;;
                flock) die 3 tools "flock is not installed" "apt-get install util-linux" ;;
                *) die 3 tools "$t is not installed" "install $t" ;;
            esac
        fi
    done
}

# ---------------------------------------------------------------- constants and validation

# Every value of nix/constants.json, keyed by its path (".network.bridge"), read
# with one jq call (jq 1.6 takes ~40 ms to start). load_constants runs in the
# main shell so the values stay; const PATH prints one (false and null count as
# absent, as jq -e has it).
declare -A CONST=()
CONST_LOADED=0
load_constants() {
    ((CONST_LOADED == 0)) || return 0
    [[ -r $CONSTANTS ]] || die 3 constants "cannot read $CONSTANTS" "run net.sh from a pcp-eval checkout (host/net.sh beside nix/constants.json)"
    local out
    out=$(jq -r '[paths(scalars) as $p | "[\("." + ($p | map(tostring) | join(".")) | @sh)]=\(getpath($p) | tostring | @sh)"]
        | "CONST=(" + join(" ") + ")"' "$CONSTANTS") ||
        die 3 constants "$CONSTANTS is not valid JSON" "restore nix/constants.json from the repository"
    eval "$out"
    CONST_LOADED=1
}
const() {
    load_constants
    [[ -n ${CONST[$1]+set} ]] || die 3 constants "$CONSTANTS has no $1" "restore nix/constants.json from the repository"
    printf '%s\n' "${CONST[$1]}"
}

check_ifname() { # FIELD VALUE
    valid_ifname "$2" || die 2 "$1" "'$2' is not a usable interface name (1 to 15 characters: letters, digits, '_', '.', '-'; first a letter or digit)" "pass a name such as $(const .network.tapPrefix)0"
}

# Sets SUBNET from GATEWAY_CIDR after checking it.
SUBNET=""
check_gateway_cidr() {
    if ! host_cidr "$GATEWAY_CIDR"; then
        load_constants
        local subnet
        subnet=$(const .network.subnet)
        die 2 --gateway-cidr "$CIDR_ERR" "pass the gateway address with its prefix length, e.g. $(const .network.gateway)/${subnet##*/}"
    fi
    GATEWAY_CIDR="$CIDR_ADDR/$CIDR_LEN"
    SUBNET=$CIDR_NET
}

check_table() {
    valid_nft_table "$NFT_TABLE" ||
        die 2 --nft-table "'$NFT_TABLE' is not a usable nftables table name (a letter, then up to 31 letters, digits or '_')" "pass a name such as $(const .network.nftTable)"
}

check_owner() {
    id -u -- "$OWNER" >/dev/null 2>&1 ||
        die 2 --owner "user '$OWNER' does not exist on this host" "pass the user that runs the MicroVMs (QEMU), e.g. --owner $(id -un)"
}

check_multi_queue() {
    case $MULTI_QUEUE in
        on | off) ;;
        *) die 2 --multi-queue "'$MULTI_QUEUE' is neither on nor off" "pass --multi-queue on when the VM has more than one vCPU (microvm.nix opens the TAP with queues=<vcpus>), off otherwise" ;;
    esac
}

check_state_dir() {
    [[ -n $STATE_DIR ]] || die 2 --state-dir "is required for '$VERB'" "pass --state-dir DIR (the stack's state directory, e.g. .pcp-eval-state/dev)"
}

# ---------------------------------------------------------------- privileges

# The narrow privilege: an administrator installs a root-owned copy of this
# script (with nix/constants.json beside it, as in the repository) and allows
# the user to sudo that one file. It validates every argument and every value
# it reads back from state, so the rule grants exactly what net.sh does, where
# a rule for ip, nft, sysctl or unshare is root-equivalent (`ip netns exec …
# sh`, `sysctl kernel.core_pattern=|…`).
HELPER_DEFAULT=/usr/local/libexec/pcp-eval/host/net.sh
HELPER=${PCP_EVAL_NET_HELPER:-$HELPER_DEFAULT}
narrow_rule() { printf '%s ALL=(root) NOPASSWD: %s' "$1" "$HELPER"; }
sudo_fix() {
    printf 'install the helper (sudo install -D -o root -m 0755 host/net.sh %s; sudo install -D -o root -m 0644 host/lib.sh %s; sudo install -D -o root -m 0644 nix/constants.json %s) and allow only it: echo '"'"'%s'"'"' | sudo tee /etc/sudoers.d/pcp-eval-net; or run as root' \
        "$HELPER" "$(dirname "$HELPER")/lib.sh" "$(dirname "$(dirname "$HELPER")")/nix/constants.json" "$(narrow_rule "$1")"
}

# Whether FILE is root's and no one else may change it.
root_owned() {
    local owner mode
    read -r owner mode < <(stat -L -c '%u %a' -- "$1" 2>/dev/null) || return 1
    [[ $owner == 0 ]] && (((8#$mode & 8#022) == 0))
}

# The user the TAPs belong to by default: the caller (through sudo, the user who ran sudo).
default_owner() { if ((HELPER_MODE)); then printf '%s\n' "${SUDO_USER:-$SUDO_UID}"; else id -un; fi; }

# Run as the helper under sudo: the caller is SUDO_UID, and every path it
# names must be the caller's own, never a place only root may write.
HELPER_MODE=0
if ((EUID == 0)) && [[ -n ${SUDO_UID:-} && ${SUDO_UID} != 0 ]]; then
    HELPER_MODE=1
fi

# Re-runs this verb as the installed helper through sudo, the caller's own
# state directory made first (as the caller).
exec_helper() {
    local args=() a
    for a in "${ORIG_ARGS[@]}"; do [[ $a == --sudo ]] || args+=("$a"); done
    case $VERB in
        up | tap-up | check) args+=(--owner "${OWNER:-$(id -un)}") ;;
    esac
    case $VERB in
        up | bridge-up | tap-up)
            mkdir -p -- "$STATE_DIR" || die 3 --state-dir "cannot create $STATE_DIR" "pass a directory this user can write"
            ;;
    esac
    exec sudo -n -- "$HELPER" "${args[@]}"
}

PRIV=()
PRIV_MODE=none
# Decides how privileged commands run. With MUST=1, no privilege is an error
# raised before anything is made.
setup_priv() {
    local must=$1
    if ((EUID == 0)); then
        PRIV_MODE=root
        return 0
    fi
    local me
    me=$(id -un 2>/dev/null || echo "uid $EUID")
    if ((USE_SUDO)); then
        if ! have sudo; then
            ((must)) || return 0
            die 3 --sudo "sudo is not installed" "install sudo, then $(sudo_fix "$me")"
        fi
        # The helper runs as root and sources lib.sh beside it: both must be root's alone.
        if [[ -f $HELPER ]] && root_owned "$HELPER" && root_owned "$(dirname "$HELPER")/lib.sh" && sudo -n -l -- "$HELPER" >/dev/null 2>&1; then
            exec_helper
        fi
        # An older, broad rule (ip, nft, sysctl) still works; it is not what we suggest.
        if ! sudo -n ip -V >/dev/null 2>&1; then
            ((must)) || return 0
            die 3 --sudo "'sudo -n $HELPER' is not allowed for $me (or the helper is missing or not root's), and neither is 'sudo -n ip'" "$(sudo_fix "$me")"
        fi
        PRIV=(sudo -n --)
        PRIV_MODE=sudo
        return 0
    fi
    ((must)) || return 0
    die 3 privileges "'$VERB' changes host networking and needs root, but runs as $me without --sudo" "run as root, or pass --sudo (the stack's sudo setting): $(sudo_fix "$me")"
}

# As the helper: the state directory must exist, be a real directory and be
# the caller's (root never creates or writes a place the caller could not).
check_helper_state_dir() {
    ((HELPER_MODE)) || return 0
    local who=${SUDO_USER:-uid $SUDO_UID}
    [[ $STATE_DIR == /* ]] || die 2 --state-dir "'$STATE_DIR' is not absolute" "pass the state directory's absolute path"
    [[ -d $STATE_DIR && ! -L $STATE_DIR ]] || die 2 --state-dir "$STATE_DIR does not exist or is a symbolic link" "create it as $who first (net.sh --sudo does), then run again"
    [[ $(stat -c %u -- "$STATE_DIR") == "$SUDO_UID" ]] ||
        die 2 --state-dir "$STATE_DIR is not owned by $who" "pass a state directory of $who's own"
    local f=$STATE_DIR/$STATE_BASENAME
    [[ ! -L $f ]] || die 2 state "$f is a symbolic link" "remove it; net.sh writes a plain file"
}

# p: a privileged command that changes something (its stdout goes to stderr).
p() { "${PRIV[@]}" "$@" >&2; }
# pq: a privileged query (stdout kept).
pq() { "${PRIV[@]}" "$@"; }

# ---------------------------------------------------------------- state file

STATE=""
STATE_ORIG=""
STATE_FILE=""
# What the state records, copied into bash when it is read (one jq call), so
# that reading a value later costs no jq start. The verbs read each section
# before they change it, so these stay the values as loaded.
S_BRIDGE="" S_GW="" S_NFT_TABLE="" S_NFT_SUBNET="" S_NFT_DIGEST=""
S_FWD=0 S_FWD_PREV="" S_FWD_AR=""
S_FWD_DEVS=()
S_TAPS=()
declare -A S_TAP=()

# The state that records nothing (a constant, not parsed).
empty_state() { printf '{"version":%s,"marker":null,"bridge":null,"nft":null,"ipForward":null,"taps":{}}' "$STATE_VERSION"; }

# The state file sits in a directory the user writes, and what is read back
# from it reaches privileged ip, nft and sysctl calls: every value is checked
# as strictly as the flag it came from. A marker is required whenever anything
# is recorded, so a missing or empty one can never match unmarked devices.
STATE_SHAPE='
    def str(re): type == "string" and test(re);
    def recorded: .bridge != null or .nft != null or ((.taps // {}) | length) > 0;
    def shape_problem:
        [ (if type != "object" then "it is not a JSON object" else empty end),
          (if .marker == null then (if recorded then "marker is missing while devices are recorded" else empty end)
           elif (.marker | str($mre)) | not then "marker is not pcp-eval:<uuid>" else empty end),
          (if .bridge == null then empty
           elif (.bridge | type) != "object" then "bridge is not an object"
           elif (.bridge.name | str($ifre)) | not then "bridge.name is not an interface name"
           elif (.bridge.gatewayCidr | str($cidre)) | not then "bridge.gatewayCidr is not an address/prefix"
           else empty end),
          (if .nft == null then empty
           elif (.nft | type) != "object" then "nft is not an object"
           elif (.nft.table | str($tre)) | not then "nft.table is not an nftables table name"
           else empty end),
          (if (.taps | type) != "object" then "taps is not an object"
           elif ([.taps | keys[] | str($ifre) | not] | any) then "taps holds a name that is not an interface name"
           else empty end),
          (if .ipForward == null then empty
           elif (.ipForward | type) != "object" then "ipForward is not an object"
           elif (.ipForward.previous | str("^[01]$")) | not then "ipForward.previous is not 0 or 1"
           elif (.ipForward.acceptRedirects | str("^[012]$")) | not then "ipForward.acceptRedirects is not 0, 1 or 2"
           elif (.ipForward.devicesForwarding | type) != "array" or ([.ipForward.devicesForwarding[] | str($ifre) | not] | any) then "ipForward.devicesForwarding holds a name that is not an interface name"
           else empty end)
        ] | first // "";'

# read_state MODE [LINK...]: reads the state file (or the empty state when
# there is none), checks its version (MODE "change"; status reads any version)
# and its shape, and copies its values into STATE, MARKER and S_*; the links
# named are read too (as read_links does), all with one jq call.
read_state() {
    local mode=$1 out n links=()
    shift
    STATE_FILE=$STATE_DIR/$STATE_BASENAME
    if [[ ! -e $STATE_FILE ]]; then
        STATE=$(empty_state)
        STATE_ORIG=$STATE
        (($# == 0)) || read_links "$@"
        return 0
    fi
    for n in "$@"; do
        out=$(ip_link "$n")
        if [[ -n $out ]]; then links+=("$n" "$out"); else LINK_REC[$n]=""; fi
    done
    out=$(jq -rs --arg mode "$mode" --arg v "$STATE_VERSION" \
        --arg ifre '^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$' --arg tre '^[A-Za-z][A-Za-z0-9_]{0,31}$' \
        --arg mre "^${MARKER_PREFIX}[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\$" \
        --arg cidre '^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$' "$STATE_SHAPE$JQ_LINK"'
        def version: if type != "object" then "" elif (.version | type) == "string" then .version else .version | tojson end;
        def sh_array: map(@sh) | join(" ");
        if length > 1 then "S_ERR=json"
        elif length == 0 then (if $mode == "change" then "S_ERR=version S_VER=\u0027\u0027" else "S_ERR=json" end)
        elif $mode == "change" and (.[0] | version) != $v then "S_ERR=version S_VER=\(.[0] | version | @sh)"
        else .[0] | (try shape_problem catch "it does not have the shape net.sh writes") as $why
          | if $why != "" then "S_ERR=shape S_WHY=\($why | @sh)"
            else "STATE=\(tojson | @sh)",
                 "MARKER=\(.marker // "" | @sh)",
                 "S_BRIDGE=\(.bridge.name // "" | @sh) S_GW=\(.bridge.gatewayCidr // "" | @sh)",
                 "S_NFT_TABLE=\(.nft.table // "" | @sh) S_NFT_SUBNET=\(.nft.subnet // "" | @sh) S_NFT_DIGEST=\(.nft.digest // "" | @sh)",
                 "S_FWD=\(if .ipForward == null then 0 else 1 end) S_FWD_PREV=\(.ipForward.previous // "" | @sh) S_FWD_AR=\(.ipForward.acceptRedirects // "" | @sh)",
                 "S_FWD_DEVS=(\(.ipForward.devicesForwarding // [] | sh_array))",
                 "S_TAPS=(\(.taps | keys | sh_array))",
                 link_recs
            end
        end' "$STATE_FILE" --args "${links[@]}" 2>/dev/null) || out="S_ERR=json"
    local S_ERR="" S_VER="" S_WHY="" t
    eval "$out"
    case $S_ERR in
        json)
            if [[ $mode == status ]]; then die 2 state "$STATE_FILE is not valid JSON" "inspect it by hand"; fi
            die 2 state "$STATE_FILE is not valid JSON" "restore it, or inspect the host with 'net.sh status' and remove what is listed by hand before deleting the file"
            ;;
        version) die 2 state "$STATE_FILE has version $S_VER, this net.sh writes version $STATE_VERSION" "run the net.sh that wrote it to take the network down" ;;
        shape) die 2 state "$STATE_FILE was changed by hand: $S_WHY; nothing was touched" "restore the file net.sh wrote, or inspect the host with 'net.sh status' (without this file) and remove what is ours by hand" ;;
    esac
    for t in "${S_TAPS[@]}"; do S_TAP[$t]=1; done
    STATE_ORIG=$STATE
}

# st_save FILTER [jq --arg options]: changes the state with FILTER and writes
# the file, in one jq call. Its output: whether anything is still recorded (a
# state that records nothing is no file at all), the verb's line as it would
# be printed now (see emit_change), then the state.
st_save() {
    local filter=$1 out rest args=()
    shift
    mapfile -d '' args < <(result_args)
    out=$(jq -r "$JQ_RESULT$filter"' | (if .bridge == null and .nft == null and .ipForward == null and (.taps | length) == 0
        then "remove" else "write" end), (result | tojson), .' "$@" "${args[@]}" <<<"$STATE")
    rest=${out#*$'\n'}
    RESULT_LINE=${rest%%$'\n'*}
    RESULT_ITEMS=$(item_count)
    RESULT_MESSAGE=$UNCHANGED_MESSAGE
    STATE=${rest#*$'\n'}
    if [[ ${out%%$'\n'*} == remove ]]; then
        rm -f -- "$STATE_FILE"
        return 0
    fi
    local tmp
    tmp=$(mktemp "$STATE_DIR/.net.json.XXXXXX")
    printf '%s\n' "$STATE" >"$tmp"
    if ((HELPER_MODE)); then chown -- "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$tmp"; fi
    mv -f -- "$tmp" "$STATE_FILE"
}

# The marker that tags our links (ifalias) and table (comment): made once per
# state file. Call ensure_marker in the main shell before reading it; the
# bridge's record (the first thing a fresh state records) saves it.
MARKER=""
ensure_marker() {
    [[ -n $MARKER ]] && return 0
    local uuid
    read -r uuid </proc/sys/kernel/random/uuid
    MARKER="$MARKER_PREFIX$uuid"
}

tap_recorded() { [[ -n ${S_TAP[$1]+set} ]]; }

LOCK_FD=""
lock_state_dir() {
    exec {LOCK_FD}<"$STATE_DIR"
    flock -x "$LOCK_FD"
}

# ---------------------------------------------------------------- live queries

# A jq function: one `ip -d -j addr show dev NAME` output (a string) as the
# fields net.sh reads, or null when there is none (the link does not exist).
JQ_LINK='
    def link: if . == "" then null else fromjson | .[0] | {
        ifname,
        ifalias: (.ifalias // ""),
        kind: (.linkinfo.info_kind // ""),
        tapType: (.linkinfo.info_data.type // ""),
        multiQueue: (.linkinfo.info_data.multi_queue // false),
        vnetHdr: (.linkinfo.info_data.vnet_hdr // false),
        user: ((.linkinfo.info_data.user // "") | tostring),
        master: (.master // ""),
        up: (any((.flags // [])[]; . == "UP")),
        address: (.address // ""),
        addresses: [.addr_info[]? | select(.family == "inet") | "\(.local)/\(.prefixlen)"]
    } end;'

# A jq function: LINK_REC assignments (see read_links) for the positional
# arguments NAME, IP_OUTPUT, NAME, IP_OUTPUT...
JQ_LINK+='
    def link_recs: $ARGS.positional | range(0; length; 2) as $i | .[$i] as $n | .[$i + 1] | link
        | "LINK_REC[\($n | @sh)]=\([.ifname, .ifalias, .kind, .tapType, .multiQueue, .vnetHdr, .user, .master, .up, .address,
            (.addresses | join(" "))] | map(tostring) | join("\u001f") | @sh)";'

# ip_link NAME: the link and its addresses as ip's JSON, or nothing when the
# link does not exist (`ip addr show` lists what `ip link show` does, and more).
ip_link() { ip -d -j addr show dev "$1" 2>/dev/null || true; }

# read_links NAME...: reads each link (one ip call each) and parses them all
# with at most one jq call into LINK_REC[NAME]: the fields of read_link joined
# by the ASCII unit separator (so empty ones survive `read`), "" when absent.
declare -A LINK_REC=()
read_links() {
    local n out args=()
    for n in "$@"; do
        out=$(ip_link "$n")
        if [[ -n $out ]]; then args+=("$n" "$out"); else LINK_REC[$n]=""; fi
    done
    ((${#args[@]} > 0)) || return 0
    out=$(jq -rn "$JQ_LINK"'link_recs' --args "${args[@]}")
    eval "$out"
}

# use_link NAME: link NAME as the last read_links (or read_state) saw it, in
# L_* variables; read now if it was not read yet.
# L_EXISTS is 1 when the link exists (its other fields are then set);
# L_ADDRS holds its IPv4 addresses ("a.b.c.d/n").
L_EXISTS=0 L_IFNAME="" L_ALIAS="" L_KIND="" L_TAPTYPE="" L_MQ="" L_VNET="" L_USER="" L_MASTER="" L_UP="" L_ADDRESS=""
L_ADDRS=()
use_link() {
    local addrs=""
    L_EXISTS=0 L_IFNAME="" L_ALIAS="" L_KIND="" L_TAPTYPE="" L_MQ="" L_VNET="" L_USER="" L_MASTER="" L_UP="" L_ADDRESS=""
    L_ADDRS=()
    [[ -n ${LINK_REC[$1]+set} ]] || read_links "$1"
    [[ -n ${LINK_REC[$1]} ]] || return 0
    IFS=$'\x1f' read -r L_IFNAME L_ALIAS L_KIND L_TAPTYPE L_MQ L_VNET L_USER L_MASTER L_UP L_ADDRESS addrs <<<"${LINK_REC[$1]}"
    read -r -a L_ADDRS <<<"$addrs"
    L_EXISTS=1
}

# read_link NAME: reads link NAME now, into L_* variables.
read_link() {
    read_links "$1"
    use_link "$1"
}

uid_of() { # USER-or-UID -> uid (or the input when unknown)
    id -u -- "$1" 2>/dev/null || printf '%s\n' "$1"
}

# Whether the nftables table exists (needs privilege): prints its text listing.
nft_table_text() {
    pq nft list table ip "$1" 2>/dev/null
}

nft_comment() { # text listing on stdin -> table comment
    sed -n 's/^\tcomment "\(.*\)"$/\1/p' | head -n 1
}

ip_forward() { cat /proc/sys/net/ipv4/ip_forward; }

# ---------------------------------------------------------------- results

CREATED=()
UPDATED=()
REMOVED=()
LEFT=()

# The verb's JSON line, built by jq from the state ($state) and the item lists,
# passed as positional arguments "LIST|kind|name|detail" (the detail may hold
# more '|'): result_args prints them. $message is said only when nothing changed.
JQ_RESULT='
    def items($list): [$ARGS.positional[] | select(startswith($list + "|")) | .[($list | length) + 1:] | split("|")
        | {kind: .[0], name: (.[1] // "")} + ((.[2:] | join("|")) as $d | if $d == "" then {} else {detail: $d} end)];
    def result: . as $state | (items("created") + items("updated") + items("removed") | length > 0) as $changed
        | {verb: $verb, changed: $changed, created: items("created"), updated: items("updated"), removed: items("removed"),
           left: items("left"), bridge: ($state.bridge.name // null), nftTable: ($state.nft.table // null),
           taps: ($state.taps | keys), stateFile: $stateFile}
          + (if $changed or $message == "" then {} else {message: $message} end);'
result_args() {
    printf '%s\0' --arg verb "$VERB" --arg stateFile "$STATE_FILE" --arg message "$UNCHANGED_MESSAGE" \
        --args "${CREATED[@]/#/created|}" "${UPDATED[@]/#/updated|}" "${REMOVED[@]/#/removed|}" "${LEFT[@]/#/left|}"
}

# What the verb's line says when nothing changed; set by the verb before its
# steps, so the line st_save builds along with the last save is the one to print.
UNCHANGED_MESSAGE=""
# The line as the last st_save built it, and the item count and message it was built from.
RESULT_LINE=""
RESULT_ITEMS=-1
RESULT_MESSAGE=""
item_count() { echo $((${#CREATED[@]} + ${#UPDATED[@]} + ${#REMOVED[@]} + ${#LEFT[@]})); }

# emit_change: prints the verb's JSON line: the one the last save built when
# nothing was added since (saving a jq start), else one jq call.
emit_change() {
    if [[ $RESULT_ITEMS == "$(item_count)" && $RESULT_MESSAGE == "$UNCHANGED_MESSAGE" ]]; then
        printf '%s\n' "$RESULT_LINE"
        return 0
    fi
    local args=()
    mapfile -d '' args < <(result_args)
    jq -c "$JQ_RESULT"'result' "${args[@]}" <<<"$STATE"
}

# ---------------------------------------------------------------- transaction and rollback

TXN=0
STEP=""
UNDO=()

undo_push() { UNDO+=("$1"); }

rollback() {
    TXN=0
    set +e
    if ((${#UNDO[@]} > 0)); then
        log "rolling back what this run made"
    fi
    local i kind name extra
    for ((i = ${#UNDO[@]} - 1; i >= 0; i--)); do
        IFS='|' read -r kind name extra <<<"${UNDO[i]}"
        case $kind in
            link) p ip link del dev "$name" && log "rollback: removed $name" ;;
            addr) p ip addr del "$extra" dev "$name" && log "rollback: removed $extra from $name" ;;
            nft) p nft delete table ip "$name" && log "rollback: removed nftables table ip $name" ;;
            forward) restore_forwarding "$F_PREV" "$F_AR" "${F_DEVS[@]}" && log "rollback: restored net.ipv4.ip_forward" ;;
        esac || log "rollback: could not undo $kind $name; see 'net.sh status'"
    done
    STATE=$STATE_ORIG
    st_save . || log "rollback: could not restore $STATE_FILE"
}

on_exit() {
    local rc=$?
    if ((rc != 0 && TXN)); then
        if ((DIED == 0)); then
            printf '%s: error: %s: a command failed (exit %d), see above; fix: correct the cause and run %s again (what this run made is being undone)\n' \
                "$PROG" "${STEP:-$VERB}" "$rc" "$VERB" >&2
        fi
        rollback
    fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- ip_forward

# Recorded when we turn forwarding on: the previous value, and the settings the
# kernel rewrites on every ip_forward change (all.accept_redirects, and the
# per-device forwarding of devices that had it on while ip_forward was 0).
# forward_snapshot reads them into F_* (plain files: no jq needed).
F_PREV="" F_AR=""
F_DEVS=()
forward_snapshot() {
    local f dev v
    F_DEVS=()
    for f in /proc/sys/net/ipv4/conf/*/forwarding; do
        dev=${f#/proc/sys/net/ipv4/conf/}
        dev=${dev%/forwarding}
        [[ $dev == all ]] && continue
        read -r v <"$f" || v=""
        [[ $v == 1 ]] && F_DEVS+=("$dev")
    done
    F_PREV=$(ip_forward)
    read -r F_AR </proc/sys/net/ipv4/conf/all/accept_redirects
}

restore_forwarding() { # PREVIOUS ACCEPT_REDIRECTS DEVICE...
    local previous=$1 ar=$2 dev
    shift 2
    p sysctl -q -w "net.ipv4.ip_forward=$previous"
    p sysctl -q -w "net.ipv4.conf.all.accept_redirects=$ar"
    for dev in "$@"; do
        [[ -n $dev && -e /proc/sys/net/ipv4/conf/$dev/forwarding ]] || continue
        p sysctl -q -w "net.ipv4.conf.${dev//./\/}.forwarding=1"
    done
}

# ---------------------------------------------------------------- pre-checks (nothing made yet)

# Refuses a bridge name that exists and is not ours.
precheck_bridge() {
    local rec=$S_BRIDGE
    if [[ -n $rec && $rec != "$BRIDGE" ]]; then
        die 2 --bridge "$STATE_FILE records bridge $rec, not $BRIDGE" "pass --bridge $rec, or take the old network down first with 'net.sh bridge-down --state-dir $STATE_DIR'"
    fi
    use_link "$BRIDGE" # read with the state (begin)
    ((L_EXISTS)) || return 0
    local why=""
    if [[ -z $rec ]]; then
        why="it is not recorded in $STATE_FILE"
    elif [[ $L_IFNAME != "$BRIDGE" ]]; then
        why="the name is an alternative name of $L_IFNAME"
    elif [[ $L_ALIAS != "$MARKER" ]]; then
        why="its ifalias '$L_ALIAS' is not this state's marker (it was replaced since we made it)"
    elif [[ $L_KIND != bridge ]]; then
        why="it is a $L_KIND device, not a bridge"
    fi
    [[ -z $why ]] && return 0
    die 4 --bridge "a device named $BRIDGE exists and is not ours: $why" "choose another bridge name (--bridge, the stack's bridge setting), or remove $BRIDGE yourself if nothing uses it"
}

precheck_table() {
    local rec=$S_NFT_TABLE text
    if [[ -n $rec && $rec != "$NFT_TABLE" ]]; then
        die 2 --nft-table "$STATE_FILE records nftables table $rec, not $NFT_TABLE" "pass --nft-table $rec, or take the old network down first with 'net.sh bridge-down --state-dir $STATE_DIR'"
    fi
    text=$(nft_table_text "$NFT_TABLE") || return 0
    local why="" comment
    comment=$(nft_comment <<<"$text")
    if [[ -z $rec ]]; then
        why="it is not recorded in $STATE_FILE"
    elif [[ $comment != "$MARKER" ]]; then
        why="its comment '$comment' is not this state's marker"
    fi
    [[ -z $why ]] && return 0
    die 4 --nft-table "an nftables table 'ip $NFT_TABLE' exists and is not ours: $why" "choose another table name (--nft-table), or delete that table yourself if nothing uses it"
}

precheck_tap() { # NAME (read by read_links just before)
    local name=$1 why=""
    use_link "$name"
    ((L_EXISTS)) || return 0
    if ! tap_recorded "$name"; then
        # A tap-up of this state killed between making the device and saving the
        # state leaves it unrecorded but tagged with this state's marker (only we,
        # as root, set it): ours to finish, so a rerun converges.
        if [[ -n $MARKER && $L_ALIAS == "$MARKER" && $L_IFNAME == "$name" && $L_KIND == tun && $L_TAPTYPE == tap ]]; then
            return 0
        fi
        why="it is not recorded in $STATE_FILE"
    elif [[ $L_IFNAME != "$name" ]]; then
        why="the name is an alternative name of $L_IFNAME"
    elif [[ $L_ALIAS != "$MARKER" ]]; then
        why="its ifalias '$L_ALIAS' is not this state's marker"
    elif [[ $L_KIND != tun || $L_TAPTYPE != tap ]]; then
        why="it is not a TAP device"
    fi
    [[ -z $why ]] && return 0
    die 4 --tap "a device named $name exists and is not ours: $why" "give the VM another TAP name, or delete $name yourself if nothing uses it"
}

# ---------------------------------------------------------------- apply steps (inside the transaction)

ensure_bridge() { # (precheck_bridge read the bridge just before)
    local m=$MARKER created=0
    use_link "$BRIDGE"
    STEP="--bridge $BRIDGE"
    if ((L_EXISTS == 0)); then
        p ip link add name "$BRIDGE" type bridge
        undo_push "link|$BRIDGE"
        # Pin the bridge's MAC address: otherwise the kernel gives the bridge the
        # lowest MAC among its ports, so adding a TAP would change the gateway's
        # MAC under the VMs that are already running. (This read also gives the
        # new bridge's state: down, no addresses; the alias and address set
        # below change neither.)
        read_link "$BRIDGE"
        local mac=$L_ADDRESS
        p ip link set dev "$BRIDGE" address "$mac"
        p ip link set dev "$BRIDGE" alias "$m"
        # The first record of a fresh state: the marker is saved with it.
        st_save '.marker = $m | .bridge = {name: $b, gatewayCidr: $g, subnet: $s, address: $mac}' \
            --arg m "$m" --arg b "$BRIDGE" --arg g "$GATEWAY_CIDR" --arg s "$SUBNET" --arg mac "$mac"
        CREATED+=("bridge|$BRIDGE|$mac")
        log "created bridge $BRIDGE"
        created=1
    elif [[ $S_GW != "$GATEWAY_CIDR" ]]; then
        st_save '.bridge.gatewayCidr = $g | .bridge.subnet = $s' --arg g "$GATEWAY_CIDR" --arg s "$SUBNET"
    fi

    STEP="--gateway-cidr $GATEWAY_CIDR"
    local a have_gw=0 old_gw=$S_GW
    for a in "${L_ADDRS[@]}"; do
        [[ -z $a ]] && continue
        if [[ $a == "$GATEWAY_CIDR" ]]; then
            have_gw=1
        elif [[ $a == "$old_gw" ]]; then
            # The gateway we set earlier, replaced by a new --gateway-cidr.
            p ip addr del "$a" dev "$BRIDGE"
            UPDATED+=("address|$BRIDGE|removed $a")
        fi
    done
    if ((have_gw == 0)); then
        p ip addr add "$GATEWAY_CIDR" dev "$BRIDGE"
        undo_push "addr|$BRIDGE|$GATEWAY_CIDR"
        ((created)) || UPDATED+=("address|$BRIDGE|added $GATEWAY_CIDR")
    fi

    STEP="--bridge $BRIDGE (link up)"
    if [[ $L_UP != true ]]; then
        p ip link set dev "$BRIDGE" up
        ((created)) || UPDATED+=("bridge|$BRIDGE|set up")
    fi
}

ensure_forwarding() {
    STEP="net.ipv4.ip_forward"
    [[ $(ip_forward) == 1 ]] && return 0
    forward_snapshot
    p sysctl -q -w net.ipv4.ip_forward=1
    undo_push "forward|ip_forward"
    # Keep the first record: after a reboot the value is back to what it was
    # before our first up, which is what down must restore.
    if ((S_FWD == 0)); then
        # Device names hold no whitespace (the kernel refuses it), so one per line.
        st_save '.ipForward = {previous: $previous, acceptRedirects: $ar, devicesForwarding: ($devs | split("\n") | map(select(. != "")))}' \
            --arg previous "$F_PREV" --arg ar "$F_AR" --arg devs "$(printf '%s\n' "${F_DEVS[@]}")"
    fi
    CREATED+=("sysctl|net.ipv4.ip_forward|$F_PREV -> 1")
    log "set net.ipv4.ip_forward=1 (was $F_PREV)"
}

# Forwarding is on host-wide while the network is up; the forward chain keeps
# it from exposing the VMs: towards the subnet only replies pass (and what the
# bridge itself carries between VMs), so a host routing the subnet through
# this one reaches none of their ports. This host's own traffic to the VMs is
# output, not forward, and is not affected; the VMs reach out through NAT.
nft_ruleset() { # MARKER: the whole table, as nft -f input
    cat <<EOF
table ip $NFT_TABLE {
	comment "$1"
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr $SUBNET ip daddr != $SUBNET masquerade
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		ip daddr $SUBNET iifname != "$BRIDGE" ct state != { established, related } drop
	}
}
EOF
}

ensure_nat() {
    STEP="--nft-table $NFT_TABLE"
    local m text digest
    m=$MARKER
    if text=$(nft_table_text "$NFT_TABLE"); then
        # Ours (checked before). Unchanged when it still lists what we loaded.
        digest=$(sha256sum <<<"$text" | cut -d' ' -f1)
        if [[ $digest == "$S_NFT_DIGEST" && $S_NFT_SUBNET == "$SUBNET" ]]; then
            return 0
        fi
        { printf 'delete table ip %s\n' "$NFT_TABLE"; nft_ruleset "$m"; } | p nft -f -
        UPDATED+=("nftables|ip $NFT_TABLE|reloaded masquerade for $SUBNET")
        log "reloaded nftables table ip $NFT_TABLE"
    else
        nft_ruleset "$m" | p nft -f -
        undo_push "nft|$NFT_TABLE"
        CREATED+=("nftables|ip $NFT_TABLE|masquerade $SUBNET")
        log "created nftables table ip $NFT_TABLE (masquerade $SUBNET)"
    fi
    text=$(nft_table_text "$NFT_TABLE")
    digest=$(sha256sum <<<"$text" | cut -d' ' -f1)
    st_save '.nft = {family: "ip", table: $t, subnet: $s, digest: $d}' --arg t "$NFT_TABLE" --arg s "$SUBNET" --arg d "$digest"
}

tap_flags() {
    local flags=(vnet_hdr)
    [[ $MULTI_QUEUE == on ]] && flags=(multi_queue vnet_hdr)
    printf '%s\n' "${flags[@]}"
}

record_tap() { # NAME UID MULTI_QUEUE(true|false) BRIDGE
    st_save '.taps[$n] = {owner: $o, uid: ($u | tonumber), multiQueue: $mq, vnetHdr: true, bridge: $b}' \
        --arg n "$1" --arg o "$OWNER" --arg u "$2" --argjson mq "$3" --arg b "$4"
}

ensure_tap() { # NAME (prechecked just before: absent or ours)
    local name=$1 m=$MARKER bridge=$S_BRIDGE
    STEP="--tap $name"
    use_link "$name"
    local want_uid want_mq
    want_uid=$(uid_of "$OWNER")
    want_mq=false
    [[ $MULTI_QUEUE == on ]] && want_mq=true
    if ((L_EXISTS)); then
        if [[ $(uid_of "$L_USER") != "$want_uid" || $L_MQ != "$want_mq" || $L_VNET != true ]]; then
            # Flags and owner of a TAP cannot change: make it again.
            p ip link del dev "$name"
            UPDATED+=("tap|$name|recreated for owner $OWNER, multi-queue $MULTI_QUEUE")
        else
            if [[ $L_MASTER != "$bridge" ]]; then
                p ip link set dev "$name" master "$bridge"
                UPDATED+=("tap|$name|attached to $bridge")
            fi
            if [[ $L_UP != true ]]; then
                p ip link set dev "$name" up
                UPDATED+=("tap|$name|set up")
            fi
            if ! tap_recorded "$name"; then
                UPDATED+=("tap|$name|recorded (made by an interrupted tap-up)")
                record_tap "$name" "$want_uid" "$want_mq" "$bridge"
            fi
            return 0
        fi
    fi
    local flags
    mapfile -t flags < <(tap_flags)
    p ip tuntap add dev "$name" mode tap user "$OWNER" "${flags[@]}"
    undo_push "link|$name"
    p ip link set dev "$name" alias "$m"
    p ip link set dev "$name" master "$bridge"
    p ip link set dev "$name" up
    [[ ${UPDATED[*]-} == *"tap|$name|recreated"* ]] || CREATED+=("tap|$name|owner $OWNER, ${flags[*]}")
    record_tap "$name" "$want_uid" "$want_mq" "$bridge"
    log "created TAP $name (owner $OWNER, ${flags[*]}) on $bridge"
}

# ---------------------------------------------------------------- removal steps

# remove_owned_link KIND NAME: deletes link NAME only if it carries our
# marker; a missing one or someone else's is recorded in LEFT, never touched.
# NAME was read by read_links just before (deleting a TAP changes neither the
# bridge's name nor its alias).
remove_owned_link() {
    local kind=$1 name=$2
    use_link "$name"
    if ((L_EXISTS == 0)); then
        LEFT+=("$kind|$name|already gone")
    elif [[ $L_IFNAME == "$name" && $L_ALIAS == "$MARKER" ]]; then
        p ip link del dev "$name"
        REMOVED+=("$kind|$name|")
        log "removed $kind $name"
    else
        LEFT+=("$kind|$name|exists but is not ours (marker differs): left alone")
        log "left $kind $name alone: it is not ours"
    fi
}

remove_tap() { # NAME: recorded TAP
    local name=$1
    STEP="--tap $name"
    remove_owned_link tap "$name"
    st_save 'del(.taps[$n])' --arg n "$name"
}

remove_nat() {
    local table=$S_NFT_TABLE text comment
    [[ -z $table ]] && return 0
    STEP="--nft-table $table"
    if text=$(nft_table_text "$table"); then
        comment=$(nft_comment <<<"$text")
        if [[ $comment == "$MARKER" ]]; then
            p nft delete table ip "$table"
            REMOVED+=("nftables|ip $table|")
            log "removed nftables table ip $table"
        else
            LEFT+=("nftables|ip $table|exists but is not ours (comment differs): left alone")
        fi
    else
        LEFT+=("nftables|ip $table|already gone")
    fi
    st_save '.nft = null'
}

remove_forwarding() {
    ((S_FWD)) || return 0
    STEP="net.ipv4.ip_forward"
    local previous=$S_FWD_PREV
    if [[ $(ip_forward) == 1 && $previous != 1 ]]; then
        restore_forwarding "$previous" "$S_FWD_AR" "${S_FWD_DEVS[@]}"
        REMOVED+=("sysctl|net.ipv4.ip_forward|restored $previous")
        log "restored net.ipv4.ip_forward=$previous"
    else
        LEFT+=("sysctl|net.ipv4.ip_forward|is $(ip_forward) now, changed by someone else since: left alone")
    fi
    st_save '.ipForward = null'
}

remove_bridge() {
    local name=$S_BRIDGE
    [[ -z $name ]] && return 0
    STEP="--bridge $name"
    remove_owned_link bridge "$name"
    st_save '.bridge = null'
}

# ---------------------------------------------------------------- verbs

defaults_for_up() {
    # The constants are read only when a default is needed (TapBridge passes all three).
    if [[ -z $BRIDGE || -z $GATEWAY_CIDR || -z $NFT_TABLE ]]; then
        load_constants
        local subnet
        [[ -n $BRIDGE ]] || BRIDGE=$(const .network.bridge)
        if [[ -z $GATEWAY_CIDR ]]; then
            subnet=$(const .network.subnet)
            GATEWAY_CIDR="$(const .network.gateway)/${subnet##*/}"
        fi
        [[ -n $NFT_TABLE ]] || NFT_TABLE=$(const .network.nftTable)
    fi
    [[ -n $OWNER ]] || OWNER=$(default_owner)
    check_ifname --bridge "$BRIDGE"
    check_gateway_cidr
    check_table
    # bridge-up makes no TAP: --multi-queue is checked when given, never defaulted.
    [[ -z $MULTI_QUEUE ]] || check_multi_queue
}

begin() { # [LINK...] prepare a changing verb: privileges, state dir, lock, state (and these links, read with it)
    setup_priv 1
    check_helper_state_dir
    ((HELPER_MODE)) || mkdir -p -- "$STATE_DIR" || die 3 --state-dir "cannot create $STATE_DIR" "pass a directory this user can write"
    lock_state_dir
    read_state change "$@"
}

verb_bridge_up() {
    precheck_bridge
    precheck_table
    TXN=1
    ensure_marker
    ensure_bridge
    ensure_forwarding
    ensure_nat
}

verb_tap_up() {
    require_tools ip sysctl jq flock
    check_state_dir
    [[ -n $TAP ]] || die 2 --tap "is required for tap-up" "pass --tap NAME (the VM's TAP id)"
    check_ifname --tap "$TAP"
    [[ -n $OWNER ]] || OWNER=$(default_owner)
    check_owner
    if [[ -z $MULTI_QUEUE ]]; then
        load_constants
        MULTI_QUEUE=off
        (($(const .vm.vcpus) > 1)) && MULTI_QUEUE=on
    fi
    check_multi_queue
    [[ -z $BRIDGE ]] || check_ifname --bridge "$BRIDGE"
    begin ${BRIDGE:+"$BRIDGE"} "$TAP"
    local rec=$S_BRIDGE
    [[ -n $rec ]] || die 2 --bridge "no bridge is recorded in $STATE_FILE" "run 'net.sh bridge-up --state-dir $STATE_DIR' first"
    [[ -z $BRIDGE || $BRIDGE == "$rec" ]] || die 2 --bridge "$STATE_FILE records bridge $rec, not $BRIDGE" "pass --bridge $rec"
    BRIDGE=$rec
    [[ $TAP != "$BRIDGE" ]] || die 2 --tap "'$TAP' is the bridge's name" "give the TAP another name"
    use_link "$BRIDGE"
    [[ $L_EXISTS == 1 && $L_ALIAS == "$MARKER" ]] ||
        die 2 --bridge "bridge $BRIDGE is recorded but missing or no longer ours" "run 'net.sh bridge-up --state-dir $STATE_DIR' again (after a reboot: pulumi refresh, then pulumi up)"
    precheck_tap "$TAP"
    UNCHANGED_MESSAGE="already up: TAP $TAP on $BRIDGE; nothing changed"
    TXN=1
    ensure_tap "$TAP"
    TXN=0
    emit_change
}

# The start of a removal verb: nothing recorded is nothing to do (reported, and
# NOTHING_RECORDED=1; not a return status, which would turn off set -e inside);
# else privilege, the lock and the validated state.
NOTHING_RECORDED=0
begin_removal() { # [LINK...] (read with the state)
    STATE_FILE=$STATE_DIR/$STATE_BASENAME
    if [[ ! -e $STATE_FILE ]]; then
        STATE=$(empty_state)
        UNCHANGED_MESSAGE="nothing recorded: $STATE_FILE does not exist; nothing to remove"
        emit_change
        NOTHING_RECORDED=1
        return 0
    fi
    setup_priv 1
    check_helper_state_dir
    lock_state_dir
    read_state change "$@"
}

verb_tap_down() {
    require_tools ip jq flock
    check_state_dir
    [[ -n $TAP ]] || die 2 --tap "is required for tap-down" "pass --tap NAME"
    check_ifname --tap "$TAP"
    begin_removal "$TAP"
    ((NOTHING_RECORDED == 0)) || return 0
    use_link "$TAP"
    if ! tap_recorded "$TAP"; then
        ((L_EXISTS == 0)) || LEFT+=("tap|$TAP|exists but is not recorded as ours: left alone")
        UNCHANGED_MESSAGE="TAP $TAP is not recorded in $STATE_FILE; nothing removed"
        emit_change
        return 0
    fi
    UNCHANGED_MESSAGE="TAP $TAP was already gone; record dropped"
    remove_tap "$TAP"
    emit_change
}

verb_down() {
    require_tools ip nft sysctl jq flock
    check_state_dir
    begin_removal
    ((NOTHING_RECORDED == 0)) || return 0
    UNCHANGED_MESSAGE="nothing left to remove"
    # Every recorded link read at once (one jq call), before any is removed.
    local t links=("${S_TAPS[@]}")
    [[ -z $S_BRIDGE ]] || links+=("$S_BRIDGE")
    ((${#links[@]} == 0)) || read_links "${links[@]}"
    for t in "${S_TAPS[@]}"; do remove_tap "$t"; done
    remove_nat
    remove_forwarding
    remove_bridge
    emit_change
}

verb_status() {
    require_tools ip jq
    check_state_dir
    setup_priv 0
    [[ ! -e $STATE_DIR ]] || check_helper_state_dir
    read_state status
    [[ -z $NFT_TABLE ]] || check_table
    [[ -z $BRIDGE ]] || check_ifname --bridge "$BRIDGE"
    local m=$MARKER bridge table
    bridge=${BRIDGE:-$S_BRIDGE}
    table=${NFT_TABLE:-$S_NFT_TABLE}
    if [[ -z $bridge || -z $table ]]; then
        load_constants
        [[ -n $bridge ]] || bridge=$(const .network.bridge)
        [[ -n $table ]] || table=$(const .network.nftTable)
    fi

    local names=("${S_TAPS[@]}") t
    if ((TAPS_GIVEN)); then
        local extra=()
        IFS=, read -r -a extra <<<"$TAPS_RAW"
        for t in "${extra[@]}"; do
            check_ifname --taps "$t"
            [[ " ${names[*]-} " == *" $t "* ]] || names+=("$t")
        done
    fi
    if [[ -n $TAP ]]; then
        check_ifname --tap "$TAP"
        [[ " ${names[*]-} " == *" $TAP "* ]] || names+=("$TAP")
    fi

    # What is live: plain ip, nft and /proc reads; then one jq call for the line.
    local nft_exists=null comment="" text
    if [[ $PRIV_MODE != none ]]; then
        nft_exists=false
        if text=$(nft_table_text "$table"); then
            nft_exists=true
            comment=$(nft_comment <<<"$text")
        fi
    fi
    local taps=()
    for t in "${names[@]}"; do taps+=("$t" "$(ip_link "$t")"); done

    jq -nc --arg sf "$STATE_FILE" --argjson rec "$([[ -e $STATE_FILE ]] && echo true || echo false)" \
        --arg priv "$PRIV_MODE" --argjson st "$STATE" --arg m "$m" --arg fwd "$(ip_forward)" \
        --arg bn "$bridge" --arg binfo "$(ip_link "$bridge")" \
        --arg t "$table" --argjson e "$nft_exists" --arg c "$comment" \
        "$JQ_LINK"'
        ($binfo | link) as $i
        | {name: $bn, recorded: ($st.bridge.name == $bn), exists: ($i != null),
           ours: ($i != null and $st.bridge.name == $bn and $m != "" and $i.ifalias == $m and $i.ifname == $bn)}
          + (if $i == null then {} else {kind: $i.kind, up: $i.up, address: $i.address, addresses: $i.addresses} end)
        | . as $bridge
        | (if $e == null then
             {family: "ip", table: $t, recorded: ($st.nft.table == $t), exists: null, ours: null,
              detail: "unknown: listing nftables needs root or --sudo"}
           else
             {family: "ip", table: $t, recorded: ($st.nft.table == $t), exists: $e,
              ours: ($e and $st.nft.table == $t and $m != "" and $c == $m)}
           end) as $nft
        | [$ARGS.positional | range(0; length; 2) as $k | .[$k] as $n | (.[$k + 1] | link) as $i
           | {name: $n, recorded: ($st.taps[$n] != null), exists: ($i != null),
              ours: ($i != null and $st.taps[$n] != null and $m != "" and $i.ifalias == $m and $i.ifname == $n)}
             + (if $i == null then {} else {kind: $i.kind, tapType: $i.tapType, owner: $i.user,
                  multiQueue: $i.multiQueue, vnetHdr: $i.vnetHdr, master: $i.master, up: $i.up} end)] as $taps
        | {verb: "status", stateFile: $sf, recorded: $rec, privilege: $priv, bridge: $bridge, nft: $nft,
           ipForward: {value: $fwd, changedByUs: ($st.ipForward != null), previous: ($st.ipForward.previous // null)},
           taps: $taps}' --args "${taps[@]}"
}

# ---------------------------------------------------------------- check

# module_status MODULE CONFIG_SYMBOL -> "loaded" | "builtin" | "module" | "missing" | "unknown"
module_status() {
    local mod=$1 sym=$2 rel dir cfg=""
    rel=$(uname -r)
    dir=/lib/modules/$rel
    if [[ -d /sys/module/$mod ]]; then echo loaded; return; fi
    if [[ -r $dir/modules.builtin ]] && grep -q "/$mod\.ko$" "$dir/modules.builtin"; then echo builtin; return; fi
    if [[ -r $dir/modules.dep ]] && grep -Eq "/$mod\.ko(\.[a-z]+)?:" "$dir/modules.dep"; then echo module; return; fi
    if [[ -r /proc/config.gz ]] && have zcat; then
        cfg=$(zcat /proc/config.gz | grep -E "^(# )?CONFIG_${sym}[= ]" || true)
    elif [[ -r /boot/config-$rel ]]; then
        cfg=$(grep -E "^(# )?CONFIG_${sym}[= ]" "/boot/config-$rel" || true)
    else
        echo unknown
        return
    fi
    case $cfg in
        "CONFIG_$sym=y") echo builtin ;;
        "CONFIG_$sym=m") if [[ -d $dir ]]; then echo missing; else echo unknown; fi ;;
        *) echo missing ;;
    esac
}

# Makes a bridge, a multi-queue vnet_hdr TAP and an nftables masquerade table
# in a scratch network namespace that vanishes when the probe exits.
probe_script() {
    cat <<'EOF'
set -eu
cleanup() { ip link del dev pcpprobe1 2>/dev/null || true; ip link del dev pcpprobe0 2>/dev/null || true; }
trap cleanup EXIT
ip link add name pcpprobe0 type bridge
ip tuntap add dev pcpprobe1 mode tap multi_queue vnet_hdr
ip link set dev pcpprobe1 master pcpprobe0
printf 'table ip pcp_probe {\n chain p { type nat hook postrouting priority srcnat; ip saddr 192.0.2.0/24 masquerade; }\n}\n' | nft -f -
sysctl -q -w net.ipv4.ip_forward=1
EOF
}

verb_check() {
    if ! have jq; then
        printf '{"verb":"check","ok":false,"missing":["jq"],"needs":[{"name":"jq","status":"missing","fix":"apt-get install jq"}]}\n'
        log "missing: jq (apt-get install jq)"
        exit 1
    fi
    setup_priv 0
    # Needs (4 fields each) and warnings (2 each) are collected here and made
    # into the JSON line by one jq call at the end.
    local needs=() warnings=()
    need() { needs+=("$1" "$2" "$3" "$4"); } # NAME STATUS DETAIL FIX
    warn() { warnings+=("$1" "$2"); }        # NAME DETAIL

    if have ip; then need ip ok "$(ip -V 2>&1 | head -n 1)" ""; else need ip missing "not on PATH" "apt-get install iproute2"; fi
    if have nft; then need nft ok "$(nft --version 2>&1 | head -n 1)" ""; else need nft missing "not on PATH" "apt-get install nftables"; fi
    if have sysctl; then need sysctl ok "$(command -v sysctl)" ""; else need sysctl missing "not on PATH" "apt-get install procps"; fi
    if have flock; then need flock ok "$(command -v flock)" ""; else need flock missing "not on PATH" "apt-get install util-linux"; fi
    need jq ok "$(jq --version 2>&1)" ""
    if [[ -c /dev/net/tun ]]; then
        need /dev/net/tun ok "character device present" ""
    else
        need /dev/net/tun missing "no /dev/net/tun" "load the tun module (modprobe tun) or create the node (mknod /dev/net/tun c 10 200)"
    fi
    case $PRIV_MODE in
        root) need privileges ok "running as root" "" ;;
        sudo) need privileges ok "passwordless sudo for $(id -un)" "" ;;
        *)
            local how="not root"
            ((USE_SUDO)) && how="not root, and sudo allows neither the installed helper $HELPER nor 'ip'"
            need privileges missing "$how (user $(id -un))" "run as root, or pass --sudo (pulumi config set pcp-eval:useSudo true) and $(sudo_fix "$(id -un)")"
            ;;
    esac

    local probe=unknown probe_detail="needs root or --sudo, and unshare"
    if [[ $PRIV_MODE == sudo ]] && ! sudo -n unshare --version >/dev/null 2>&1; then
        probe_detail="sudo does not allow unshare for $(id -un), so the probe cannot run (the up and down verbs do not need it)"
    elif [[ $PRIV_MODE != none ]] && have unshare && have ip && have nft && have sysctl; then
        local out
        if out=$(pq unshare --net -- sh -c "$(probe_script)" 2>&1); then
            probe=ok
            probe_detail="made a bridge, a multi_queue vnet_hdr TAP and an nftables masquerade table in a scratch network namespace"
        else
            probe=missing
            probe_detail="failed in a scratch network namespace: $(tr '\n' ' ' <<<"$out")"
        fi
    fi
    need probe "$probe" "$probe_detail" "see the kernel entries: bridge, tun and nftables NAT must be available"

    local spec mod sym s detail
    for spec in bridge:BRIDGE tun:TUN nf_tables:NF_TABLES nft_chain_nat:NFT_NAT nft_masq:NFT_MASQ nf_nat:NF_NAT; do
        mod=${spec%%:*}
        sym=${spec#*:}
        s=$(module_status "$mod" "$sym")
        detail=$s
        case $s in
            loaded | builtin | module) s=ok ;;
            unknown)
                if [[ $probe == ok ]]; then s=ok; detail="no module information, but the probe worked"; fi
                ;;
        esac
        need "kernel:$mod" "$s" "$detail" "use a kernel with CONFIG_$sym (y or m) and its modules installed"
    done

    local fwd
    fwd=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo unknown)
    need net.ipv4.ip_forward ok "currently $fwd; bridge-up sets 1 and bridge-down restores the earlier value" ""

    if [[ -n $OWNER ]]; then
        if id -u -- "$OWNER" >/dev/null 2>&1; then need "owner:$OWNER" ok "uid $(id -u -- "$OWNER")" ""; else need "owner:$OWNER" missing "no such user" "pass the user that runs the MicroVMs"; fi
    fi

    [[ -c /dev/vhost-net ]] || warn /dev/vhost-net "absent: QEMU cannot use vhost=on for TAP devices; plain TAP networking works, slower"
    if [[ $(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo 0) == 1 ]]; then
        warn net.bridge.bridge-nf-call-iptables "is 1: traffic between VMs on the bridge passes the host's iptables/nftables forward hooks, so a forward policy of drop in another table (Docker sets one) blocks VM-to-VM traffic; VM-to-host and NATed traffic are not affected"
    fi

    # Other tables' forward chains with policy drop: listed by nft, judged in the final jq call.
    local chains="" subnet=""
    if [[ $PRIV_MODE != none ]] && have nft; then
        load_constants
        subnet=$(const .network.subnet)
        chains=$(pq nft -j list chains 2>/dev/null || true)
    fi

    local out missing result
    # The chains come on stdin: a host with a large ruleset lists more than one argument may hold (128 KiB).
    out=$(jq -rn --arg priv "$PRIV_MODE" --argjson nneeds "$((${#needs[@]} / 4))" --rawfile chains /dev/stdin --arg subnet "$subnet" '
        $ARGS.positional as $a
        | [range(0; $nneeds) as $i | $a[$i * 4:$i * 4 + 4]
           | {name: .[0], status: .[1], detail: .[2]} + (if .[1] == "ok" then {} else {fix: .[3]} end)] as $needs
        | ([range($nneeds * 4; $a | length; 2) as $i | {name: $a[$i], detail: $a[$i + 1]}]
          + [$chains | (try fromjson catch null) | .nftables[]? | .chain? // empty
             | select(.hook == "forward" and .policy == "drop") | "\(.family) \(.table) \(.name)"
             | {name: "forward-drop:\(.)",
                detail: "chain \u0027\(.)\u0027 hooks forward with policy drop: what the VMs send beyond the host (and, with bridge-nf-call-iptables=1, to each other) is dropped unless that chain accepts it; net.sh never edits other tables, so allow \($subnet) there yourself (with Docker: iptables -I DOCKER-USER -s \($subnet) -j ACCEPT and iptables -I DOCKER-USER -d \($subnet) -j ACCEPT)"}]) as $warnings
        | [$needs[] | select(.status == "missing") | .name] as $missing
        | ($missing | join(", ")),
          ({verb: "check", ok: ($missing | length == 0), privilege: $priv, missing: $missing,
            unknown: [$needs[] | select(.status == "unknown") | .name], needs: $needs, warnings: $warnings} | tojson)' \
        --args "${needs[@]}" "${warnings[@]}" <<<"$chains")
    missing=${out%%$'\n'*}
    result=${out#*$'\n'}
    printf '%s\n' "$result"
    if [[ -n $missing ]]; then
        log "TAP networking is missing: $missing (fixes in the JSON)"
        exit 1
    fi
    log "TAP networking: everything needed is here"
}

case $VERB in
    bridge-up)
        require_tools ip nft sysctl jq flock
        check_state_dir
        defaults_for_up
        begin "$BRIDGE"
        UNCHANGED_MESSAGE="already up: bridge $BRIDGE, nftables table ip $NFT_TABLE and forwarding as asked; nothing changed"
        verb_bridge_up
        TXN=0
        emit_change
        ;;
    tap-up) verb_tap_up ;;
    tap-down) verb_tap_down ;;
    bridge-down) verb_down ;;
    status) verb_status ;;
    check) verb_check ;;
esac
