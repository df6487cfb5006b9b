#!/usr/bin/env bash
# The Grafana admin password of a grafana VM. The guest generates it at boot
# (nix/modules/grafana.nix) so it never enters the Nix store; this reads it
# over SSH with the stack's key.
#   grafana-password.sh read --host H --port P --user U [--identity FILE]
#                            [--file PATH] [--timeout SECONDS]
# stdout: one JSON line {"password":"..."}; the caller keeps it secret (the
# password is never an argument of any command). Errors on stderr.
set -euo pipefail

die() { echo "grafana-password.sh: $*" >&2; exit 1; }

verb=${1:-}
shift || true
host="" port="" user="" identity="" file="/var/lib/pcp-eval-grafana/admin-password" timeout=90
while (($# > 0)); do
    case "$1" in
        --host) host=${2:?--host needs a value}; shift 2 ;;
        --port) port=${2:?--port needs a value}; shift 2 ;;
        --user) user=${2:?--user needs a value}; shift 2 ;;
        --identity) identity=${2:?--identity needs a value}; shift 2 ;;
        --file) file=${2:?--file needs a value}; shift 2 ;;
        --timeout) timeout=${2:?--timeout needs a value}; shift 2 ;;
        *) die "unknown argument '$1'; use --host H --port P --user U [--identity FILE] [--file PATH] [--timeout S]" ;;
    esac
done
[[ "$verb" == read ]] || die "unknown verb '${verb}'; use read"
[[ -n "$host" ]] || die "--host is required (the grafana VM's SSH address)"
if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
    die "--port must be a TCP port (1-65535), got '${port}'"
fi
[[ "$user" =~ ^[a-z_][a-z0-9_-]*$ ]] || die "--user must be a login name, got '${user}'"
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout must be whole seconds, got '${timeout}'"
[[ "$file" =~ ^/[A-Za-z0-9._/-]+$ ]] || die "--file must be an absolute path of letters, digits, '.', '_', '-' and '/', got '${file}'"
[[ -z "$identity" || -r "$identity" ]] || die "--identity '${identity}' is not a readable file (the stack's SSH key)"
command -v ssh >/dev/null || die "ssh not found; install openssh-client"

# The guest's host keys are new at every boot: no known_hosts bookkeeping.
ssh_args=(-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
    -o ConnectTimeout=5 -p "$port")
[[ -n "$identity" ]] && ssh_args+=(-i "$identity" -o IdentitiesOnly=yes)

errfile=$(mktemp)
trap 'rm -f "$errfile"' EXIT
deadline=$((SECONDS + timeout))
while :; do
    # The file name is checked above, so it is safe in the remote command line.
    # shellcheck disable=SC2029 # expanded here on purpose
    if password=$(ssh "${ssh_args[@]}" "${user}@${host}" "cat ${file}" 2>"$errfile" </dev/null); then
        password=${password%$'\n'}
        # The guest writes hex (openssl rand -hex); anything else is not ours.
        [[ "$password" =~ ^[A-Za-z0-9._~+-]{8,}$ ]] || die "${user}@${host}:${file} does not hold a password as the grafana VM writes it"
        printf '{"password":"%s"}\n' "$password"
        exit 0
    fi
    ((SECONDS < deadline)) || die "cannot read ${file} on ${user}@${host}:${port} within ${timeout} s: $(tail -n 3 "$errfile")"
    sleep 2
done
