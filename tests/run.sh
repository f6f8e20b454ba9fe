#!/bin/bash
# Run a test command with what the suite needs: Debian tools on the host and a
# Docker engine. An engine started here is stopped here, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

tests/host-packages.sh docker.io debootstrap lintian shellcheck systemd dpkg-dev \
    python3-stdeb python3-all dh-python python3-setuptools python3-jinja2 python3-click python3-shtab \
    python3-passlib python3-bcrypt python3-jwt python3-cryptography piuparts po-debconf gettext man-db

dockerd_pid=
stop_dockerd() {
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null || true
        for _ in $(seq 1 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
    fi
}
if ! docker info >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl start docker
    else
        mkdir -p .cache
        dockerd >.cache/dockerd.log 2>&1 &
        dockerd_pid=$!
        trap stop_dockerd EXIT
    fi
    for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { echo "no Docker engine answers; see .cache/dockerd.log" >&2; exit 1; }
fi

"$@"
