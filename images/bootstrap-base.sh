#!/usr/bin/env bash
# Bootstrap the offline base image (deploybench/base:bookworm) from Debian packages, for hosts
# that reach a Debian mirror but no container registry. Needs root and debootstrap.
#   images/bootstrap-base.sh [TAG] [MIRROR]
set -euo pipefail
tag=${1:-deploybench/base:bookworm}
mirror=${2:-http://deb.debian.org/debian}

if ! command -v debootstrap >/dev/null; then
  echo "debootstrap is missing: apt-get install -y debootstrap" >&2
  exit 1
fi
root=$(mktemp -d /tmp/deploybench-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$root" "$mirror"
# Package caches and lists are not part of an image.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import \
  -c 'ENV LANG=C.UTF-8' \
  -c 'LABEL org.opencontainers.image.title="deploybench offline base (Debian bookworm, python3)"' \
  - "$tag"
echo "built $tag"
