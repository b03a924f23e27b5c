#!/usr/bin/env bash
# Installs the Debian packages slotctl builds and tests with, only those missing.
# Used by `make deps` (and so by `make test` and `make demo`) and by .ci/run.
set -euo pipefail
packages=(pkg-config libssl-dev openssl uuid-dev gdisk cgpt util-linux swtpm swtpm-tools tpm2-tools cryptsetup-bin)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
