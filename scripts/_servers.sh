# Used by scripts/check.sh: make sure the Debian servers that the bridge tests run are installed.
# The tests start their own servers on free 127.0.0.1 ports; they never use a system
# service, and this keeps apt from leaving one running on the default port.

_apt_updated=""

# ensure_debian_server PACKAGE BINARY: install PACKAGE with apt-get (as root) unless BINARY,
# or a command of the package's name, is there already.
ensure_debian_server() {
    local package=$1 binary=$2
    if command -v "$package" >/dev/null 2>&1 || [ -x "$binary" ]; then
        return 0
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "error: $package is not installed, and this script can install it only as root with apt-get." >&2
        echo "The bridge tests need it: sudo apt-get install $package (Debian/Ubuntu)" >&2
        return 1
    fi
    echo "== installing Debian's $package (the bridge tests start their own servers)"
    local made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        # invoke-rc.d asks this file whether to start services: 101 means "no".
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local status=0
    if [ -z "$_apt_updated" ]; then
        apt-get update -qq || status=$?
        _apt_updated=1
    fi
    if [ "$status" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null || status=$?
    fi
    [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
    # Should a service have started all the same, stop it and keep it from starting at boot.
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now "$package" >/dev/null 2>&1 || true
    fi
    if command -v service >/dev/null 2>&1; then
        service "$package" stop >/dev/null 2>&1 || true
    fi
    if [ "$status" != 0 ] || ! { command -v "$package" >/dev/null 2>&1 || [ -x "$binary" ]; }; then
        echo "error: installing $package with apt-get failed (status $status)." >&2
        echo "The bridge tests need Debian's $package: sudo apt-get install $package" >&2
        return 1
    fi
}

ensure_redis_server() { ensure_debian_server redis-server /usr/bin/redis-server; }
ensure_nats_server() { ensure_debian_server nats-server /usr/sbin/nats-server; }
