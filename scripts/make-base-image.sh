#!/usr/bin/env bash
# Make a local stand-in for python:3.11-slim from Debian packages (no registry needed).
# Usage: scripts/make-base-image.sh [TAG]   (default kiln-test/python:3.11-slim)
set -euo pipefail
tag=${1:-kiln-test/python:3.11-slim}
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag already present"; exit 0
fi
mirror=${KILN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=$(mktemp -d /tmp/kiln-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "debootstrap bookworm (minbase + python3) into $root ..."
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >/tmp/kiln-debootstrap.log 2>&1 \
  || { tail -20 /tmp/kiln-debootstrap.log; exit 1; }
# Like python:X.Y-slim: python on /usr/local/bin, no apt lists, no caches.
ln -sf /usr/bin/python3 "$root/usr/local/bin/python3"
ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
tar -C "$root" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' - "$tag" >/dev/null
echo "made base image $tag"
