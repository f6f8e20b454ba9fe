#!/bin/bash
# Build the "system container" image: Debian trixie with systemd as PID 1 and
# its own Docker engine, the host an admin would install pypi-appliance on.
# Usage: system.sh IMAGE:TAG
set -euo pipefail
image=${1:?usage: system.sh IMAGE:TAG}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

root=$(mktemp -d /var/tmp/pypi-appliance-system.XXXXXX)
trap 'rm -rf "$root"' EXIT

# What the appliance's Depends (and the images package's zstd) pull in is preinstalled so installs need no network
# (python3-cffi-backend by name: debootstrap does not resolve the virtual package python3-cryptography needs);
# wrk and pip are for the benchmark; logrotate and fail2ban (its service
# masked: there is no sshd for its default jail) for the audit log's rotation
# and filter; perl (Term::ReadLine, for debconf's readline frontend); debconf-i18n (installed by default on
# Debian) and a zh_TW.UTF-8 locale for the translated questions.
debootstrap --variant=minbase \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    --include=systemd,systemd-sysv,dbus,docker.io,docker-cli,docker-compose,iptables,iproute2,procps,ca-certificates,debconf-utils,debconf-i18n,locales,python3,python3-passlib,python3-bcrypt,python3-jwt,python3-cryptography,python3-cffi-backend,curl,wrk,python3-pip,logrotate,fail2ban,zstd,perl \
    trixie "$root" "$mirror" >/dev/null

echo "zh_TW.UTF-8 UTF-8" >"$root/etc/locale.gen"
chroot "$root" locale-gen >/dev/null
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# Units that make no sense inside a container.
for unit in getty@.service getty.target console-getty.service systemd-udevd.service \
    systemd-udev-trigger.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
    systemd-firstboot.service systemd-remount-fs.service sys-kernel-debug.mount \
    sys-kernel-tracing.mount sys-kernel-config.mount dev-hugepages.mount \
    systemd-modules-load.service fail2ban.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s trixie main\n' "$mirror" \
    >"$root/etc/apt/sources.list"

tar -C "$root" -c . | docker import \
    -c 'ENTRYPOINT ["/sbin/init"]' -c 'ENV container=docker' - "$image" >/dev/null
echo "built $image"
