# Used by scripts/check.sh: make sure Debian's nats-server binary is installed.
# The bridge tests start their own servers (nats-server -js) on free 127.0.0.1 ports;
# they never use a system service, and this keeps apt from leaving one running on port 4222.
ensure_nats_server() {
    if command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing Debian's nats-server (the bridge tests start their own servers)"
        local made_policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            # invoke-rc.d asks this file whether to start services: 101 means "no".
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            made_policy=1
        fi
        local status=0
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null; } || status=$?
        [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
        # Should a service have started all the same, stop it and keep it from starting at boot.
        if command -v systemctl >/dev/null 2>&1; then
            systemctl disable --now nats-server >/dev/null 2>&1 || true
        fi
        if command -v service >/dev/null 2>&1; then
            service nats-server stop >/dev/null 2>&1 || true
        fi
        if [ "$status" != 0 ] || ! { command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; }; then
            echo "error: installing nats-server with apt-get failed (status $status)." >&2
            echo "The bridge tests need Debian's nats-server: sudo apt-get install nats-server" >&2
            return 1
        fi
    else
        echo "error: nats-server is not installed, and this script can install it only as root with apt-get." >&2
        echo "The bridge tests need it: sudo apt-get install nats-server (Debian/Ubuntu)" >&2
        return 1
    fi
}
