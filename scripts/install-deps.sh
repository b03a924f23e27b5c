#!/usr/bin/env bash
# Installs the Debian packages slotctl builds and tests with, only those missing.
# Used by `make deps` (and so by `make test` and `make demo`) and by .ci/run.
# `install-deps.sh qemu` adds what the QEMU boot test needs (Debian's kernel, its
# mkinitramfs, busybox-static for the slot root file systems, qemu), and Debian's dracut
# unpacked into .build/dracut/root when the host has no dracut: dracut and
# initramfs-tools cannot be installed side by side, and the test runs both.
# `install-deps.sh rauc` adds what the RAUC backend test needs: Debian's rauc (1.8), dbus
# for its service's session bus, squashfs-tools for `rauc bundle`, busybox for the
# handler's ash run, python3 for reading JSON.
set -euo pipefail
packages=(pkg-config libssl-dev openssl uuid-dev libblkid-dev gdisk cgpt util-linux fdisk e2fsprogs swtpm swtpm-tools groff-base
  tpm2-tools cryptsetup-bin spin gcc python3 lintian man-db)
norecommends=""
if [ "${1:-}" = qemu ]; then
  # systemd, systemd-sysv, udev, dmsetup and kmod are what dracut builds its initramfs from.
  packages=(linux-image-amd64 initramfs-tools busybox-static qemu-system-x86 e2fsprogs cpio binutils
    systemd systemd-sysv udev dmsetup kmod)
  # qemu's recommends are a desktop's worth of GUI and audio libraries.
  norecommends="--no-install-recommends"
elif [ "${1:-}" = rauc ]; then
  packages=(rauc dbus squashfs-tools busybox-static python3)
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
if [ "${1:-}" = qemu ] && ! command -v dracut >/dev/null; then
  dest="$(cd "$(dirname "$0")/.." && pwd)/.build/dracut"
  if [ ! -x "$dest/root/usr/bin/dracut" ]; then
    echo "unpacking Debian's dracut into $dest/root"
    rm -rf "$dest" && mkdir -p "$dest/debs"
    # As root apt warns that it downloads unsandboxed; that is fine for scratch files.
    # No package lists yet (a fresh machine with everything else installed): update once.
    fetch() { (cd "$dest/debs" && apt-get download dracut-core dracut 2>&1 | grep -v '^W: Download is performed unsandboxed'); }
    fetch || { ${SUDO:-} apt-get update -qq && fetch; } || true
    for deb in "$dest"/debs/*.deb; do dpkg-deb -x "$deb" "$dest/root"; done
    [ -x "$dest/root/usr/bin/dracut" ] || { echo "install-deps: could not unpack dracut" >&2; exit 1; }
  fi
fi
