#!/usr/bin/env bash
# Installs the Debian packages slotctl builds and tests with, only those missing.
# Used by `make deps` (and so by `make test` and `make demo`) and by .ci/run.
# `install-deps.sh qemu` adds what the QEMU boot test needs (Debian's kernel, its
# mkinitramfs, busybox-static for the slot root file systems, qemu).
set -euo pipefail
packages=(pkg-config libssl-dev openssl uuid-dev gdisk cgpt util-linux swtpm swtpm-tools tpm2-tools cryptsetup-bin)
norecommends=""
if [ "${1:-}" = qemu ]; then
  packages=(linux-image-amd64 initramfs-tools busybox-static qemu-system-x86 e2fsprogs cpio binutils)
  # qemu's recommends are a desktop's worth of GUI and audio libraries.
  norecommends="--no-install-recommends"
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $norecommends "${missing[@]}" >/dev/null
fi
