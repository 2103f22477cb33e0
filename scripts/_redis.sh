# Used by scripts/check.sh: make sure Debian's redis-server binary is installed.
# The bridge tests start their own servers on free 127.0.0.1 ports; they never use
# a system service, and this keeps apt from leaving one running on port 6379.
ensure_redis_server() {
    if command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; then
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing Debian's redis-server (the bridge tests start their own servers)"
        local made_policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            # invoke-rc.d asks this file whether to start services: 101 means "no".
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            made_policy=1
        fi
        local status=0
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } || status=$?
        [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
        # Should a service have started all the same, stop it and keep it from starting at boot.
        if command -v systemctl >/dev/null 2>&1; then
            systemctl disable --now redis-server >/dev/null 2>&1 || true
        fi
        if command -v service >/dev/null 2>&1; then
            service redis-server stop >/dev/null 2>&1 || true
        fi
        if [ "$status" != 0 ] || ! command -v redis-server >/dev/null 2>&1; then
            echo "error: installing redis-server with apt-get failed (status $status)." >&2
            echo "The bridge tests need Debian's redis-server: sudo apt-get install redis-server" >&2
            return 1
        fi
    else
        echo "error: redis-server is not installed, and this script can install it only as root with apt-get." >&2
        echo "The bridge tests need it: sudo apt-get install redis-server (Debian/Ubuntu)" >&2
        return 1
    fi
}
