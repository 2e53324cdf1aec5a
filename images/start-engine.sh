#!/usr/bin/env bash
# `make engine`: install Docker's engine where it is missing (apt-get, as root: Debian, Ubuntu)
# and start it, so that `make bench-cpu` runs every cell in its own container. Elsewhere it says
# what to do instead. Prints the engine's version when it answers.
set -euo pipefail

running() { docker info --format 'docker engine {{.ServerVersion}}: running' 2>/dev/null; }
running && exit 0

if ! command -v dockerd >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "make engine: installs Docker with apt-get as root (Debian/Ubuntu); here, install" \
         "Docker Engine as your system documents it (https://docs.docker.com/engine/install/)" >&2
    exit 2
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi

if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
  systemctl start docker
elif [ "$(id -u)" = 0 ]; then
  log=/var/log/deploybench-dockerd.log
  nohup dockerd >"$log" 2>&1 &
  for _ in $(seq 60); do running >/dev/null && break; sleep 1; done
else
  echo "make engine: starting dockerd needs root (or systemd)" >&2
  exit 2
fi
running || { echo "make engine: dockerd did not answer within 60 s (${log:-journalctl -u docker})" >&2; exit 1; }
