#!/usr/bin/env bash
# Installs every system package and npm dependency the test suite needs, on a
# fresh Debian machine of the kind this project is developed on. Idempotent:
# a second run installs nothing new.
set -euo pipefail

cd "$(dirname "$0")/.."

apt_packages=(
    nix-bin qemu-system-x86 docker.io iproute2 nftables busybox-static
    shellcheck prometheus-node-exporter jq curl procps
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

if [[ ! -d node_modules ]] || ! cmp -s package-lock.json node_modules/.package-lock.json 2>/dev/null; then
    npm ci --no-audit --no-fund >&2
fi
# PCP's clients on the host (pminfo, pmval) read the test container's pmcd through
# its published port (test/integration/oci.test.ts). Debian's pcp postinst fails
# without systemd as PID 1 after the files are unpacked; tolerate that, then
# check the binaries themselves.
if ! command -v pminfo >/dev/null || ! command -v pmval >/dev/null; then
    echo "install-test-deps: installing pcp (for pminfo and pmval)" >&2
    apt-get update -qq
    SYSTEMD_OFFLINE=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pcp >/dev/null || SYSTEMD_OFFLINE=1 dpkg --configure -a || true
fi
for tool in pminfo pmval; do
    command -v "$tool" >/dev/null || { echo "install-test-deps: $tool is missing after installing pcp" >&2; exit 1; }
done

echo "install-test-deps: ok"
