#!/bin/bash
# Build a stand-in for the official nginx Alpine image from Debian's nginx and njs
# module (Docker Hub is out of reach here): forky's, the only archive with the
# pinned image's stable line (nginx 1.30; njs 1.0, against the image's 0.9).
# Same layout where the
# appliance relies on it: /etc/nginx/nginx.conf, modules/ngx_http_js_module.so
# relative to /etc/nginx, an "nginx" user, busybox-style wget for health checks.
# Usage: nginx.sh IMAGE:TAG
set -euo pipefail
image=${1:?usage: nginx.sh IMAGE:TAG}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

root=$(mktemp -d /var/tmp/pypi-appliance-nginx.XXXXXX)
trap 'rm -rf "$root"' EXIT

debootstrap --variant=minbase \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    --include=nginx-light,libnginx-mod-http-js,wget \
    forky "$root" "$mirror" /usr/share/debootstrap/scripts/sid >/dev/null

chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    useradd --system --uid 101 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nginx
ln -sfn /usr/lib/nginx/modules "$root/etc/nginx/modules"
rm -f "$root"/etc/nginx/modules-enabled/* "$root"/etc/nginx/sites-enabled/*
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

tar -C "$root" -c . | docker import \
    -c 'EXPOSE 80' \
    -c 'CMD ["nginx", "-g", "daemon off;"]' \
    - "$image" >/dev/null
echo "built $image"
