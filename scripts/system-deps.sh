#!/usr/bin/env bash
# Installs the Debian packages the test suite and demo use, when missing, at the versions in
# scripts/debian-packages.lock where the mirror has them (apt has no lock file of its own).
# As root: apt-get. Otherwise: print the exact command and stop (exit 1).
# `--print PKG...`: only print what would be installed for those packages (no root needed).
set -euo pipefail
LOCK="${SYSTEM_DEPS_LOCK:-$(dirname "$0")/debian-packages.lock}"

# pkg=version from the lock when apt can install that version, else pkg (with a warning).
pick() {
    local pkg=$1 want
    want=$(sed -n "s/^${pkg}=//p" "$LOCK")
    if [ -n "$want" ] && apt-cache madison "$pkg" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); print $2}' | grep -qxF "$want"; then
        echo "${pkg}=${want}"
        return
    fi
    echo "system-deps: $pkg ${want:-(not in the lock)} is not on the mirror; installing its candidate" >&2
    echo "$pkg"
}

if [ "${1:-}" = "--print" ]; then
    shift
    for pkg in "$@"; do pick "$pkg"; done
    exit 0
fi

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    pinned=()
    for pkg in "${need[@]}"; do pinned+=("$(pick "$pkg")"); done
    apt-get install -y -qq --no-install-recommends "${pinned[@]}" >/dev/null
    # The Debian package starts a system broker on port 1883 where an init system runs;
    # the tests and demo start their own on free ports, so it is not needed.
    exit 0
fi
echo "missing Debian packages: ${need[*]}" >&2
echo "install them with:  sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
exit 1
