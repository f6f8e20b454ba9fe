#!/bin/bash
# Build a stand-in for the official pypiserver image from pypiserver's wheels
# (Docker Hub is out of reach here), on Python 3.14 as the official image
# (python:3.14-alpine): Debian forky's python3. Same contract as the real image: uid/gid
# 9898, home and workdir /data, an entrypoint that starts as root, checks
# /data/packages and drops to 9898, and gunicorn+gevent by default.
# Usage: pypiserver.sh IMAGE:TAG WHEEL_DIR
set -euo pipefail
image=${1:?usage: pypiserver.sh IMAGE:TAG WHEEL_DIR}
wheels=${2:?usage: pypiserver.sh IMAGE:TAG WHEEL_DIR}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

root=$(mktemp -d /var/tmp/pypi-appliance-pypiserver.XXXXXX)
trap 'rm -rf "$root"' EXIT

debootstrap --variant=minbase \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    --include=python3,python3-venv,wget \
    forky "$root" "$mirror" /usr/share/debootstrap/scripts/sid >/dev/null  # Debian 12's debootstrap has no forky script

mkdir -p "$root/wheels" && cp "$wheels"/*.whl "$root/wheels/"
cp "$(dirname "$0")/pypiserver-requirements.txt" "$root/wheels/requirements.txt"
chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin python3 -m venv /opt/pypiserver
chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /opt/pypiserver/bin/pip install -q --no-index --find-links /wheels \
    -r /wheels/requirements.txt
rm -rf "$root/wheels"
for tool in pypi-server gunicorn; do
    ln -sf "/opt/pypiserver/bin/$tool" "$root/usr/local/bin/$tool"
done
# The real image's /usr/local/bin/python has pypiserver's dependencies (passlib,
# bcrypt); a symlink to the venv's would not (Python finds a venv by the path
# it was started as).
printf '#!/bin/sh\nexec /opt/pypiserver/bin/python "$@"\n' >"$root/usr/local/bin/python"
chmod 0755 "$root/usr/local/bin/python"

chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin groupadd --system --gid 9898 pypiserver
chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin useradd --system --uid 9898 --gid 9898 --home-dir /data --no-create-home pypiserver
mkdir -p "$root/data/packages"
chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chown -R pypiserver:pypiserver /data

cat >"$root/data/gunicorn.conf.py" <<'CONF'
errorlog = "-"
preload_app = True
workers = 1
worker_class = "gevent"
CONF

cat >"$root/entrypoint.sh" <<'ENTRY'
#!/bin/bash
# Start as root, make sure uid 9898 can use /data/packages, then drop to it.
set -euo pipefail
as_pypiserver() { setpriv --reuid=9898 --regid=9898 --init-groups "$@"; }
if ! as_pypiserver test -r /data/packages -a -w /data/packages -a -x /data/packages; then
    chown -R 9898:9898 /data/packages || true
    if ! as_pypiserver test -r /data/packages -a -w /data/packages -a -x /data/packages; then
        echo "Cannot start pypiserver: uid 9898 needs read/write access to /data/packages" >&2
        exit 1
    fi
fi
[ "$#" -gt 0 ] || set -- run -p "${PYPISERVER_PORT:-8080}" --server gunicorn
exec setpriv --reuid=9898 --regid=9898 --init-groups pypi-server "$@"
ENTRY
chmod 0755 "$root/entrypoint.sh"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

tar -C "$root" -c . | docker import \
    -c 'ENV PYPISERVER_PORT=8080' -c 'ENV PYTHONUNBUFFERED=t' -c 'WORKDIR /data' \
    -c 'EXPOSE 8080' -c 'VOLUME /data/packages' \
    -c 'ENTRYPOINT ["/entrypoint.sh"]' -c 'CMD ["run", "-p", "8080", "--server", "gunicorn"]' \
    - "$image" >/dev/null
echo "built $image"
