#!/usr/bin/env bash
# Build the local base image encore-base:bookworm (Debian bookworm, python3 3.11, python3-venv,
# ca-certificates) with debootstrap and import it into podman; skip when the image exists.
# For machines that cannot pull python:3.11-slim: `make image` passes it as --build-arg BASE=…
# Needs root, debootstrap and podman (`make image` installs Debian's podman, debootstrap, runc).
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${BASE_IMAGE:-encore-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/image/containers.conf}

if podman image exists "$IMAGE"; then
  echo "base image $IMAGE exists (podman rmi $IMAGE to rebuild)"
  exit 0
fi

work=$(mktemp -d /var/tmp/encore-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
echo "debootstrap bookworm (minbase + python3, python3-venv, ca-certificates) from $MIRROR"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log"; exit 1; }

# What a container never needs: package caches and indexes, docs, man pages, locales.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old
find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
echo "deb $MIRROR bookworm main" >"$rootfs"/etc/apt/sources.list

tar -C "$rootfs" -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  - "$IMAGE" >/dev/null
podman image ls "$IMAGE"
