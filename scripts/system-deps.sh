#!/usr/bin/env bash
# Installs the Debian packages the test suite and demo use, when missing.
# As root: apt-get. Otherwise: print the exact command and stop (exit 1).
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The Debian package starts a system broker on port 1883 where an init system runs;
    # the tests and demo start their own on free ports, so it is not needed.
    exit 0
fi
echo "missing Debian packages: ${need[*]}" >&2
echo "install them with:  sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
exit 1
