#!/usr/bin/env bash
# What `make install` needs from the system: python3 with venv, and Node.js/npm (the local Solana
# validator ships on npm). As root on Debian the missing ones are apt-installed; otherwise the
# script says exactly what to install.
set -euo pipefail
missing=()
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v npm >/dev/null || missing+=(nodejs npm)
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "error: please install these system packages first: ${missing[*]}" >&2
  exit 1
fi
