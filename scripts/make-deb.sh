#!/usr/bin/env bash
# make deb: a Debian binary package of the static slotctl, built with dpkg-deb from
# `make install` (scripts/install.sh) and debian/. Where Debian's conventions differ
# from the README's `make install` table, the package follows Debian:
#   - the initramfs-tools hook and script go to /usr/share/initramfs-tools/ (the
#     package's place; /etc/initramfs-tools/ is the administrator's, and a conffile
#     there would outlive the binary after `apt remove` and break update-initramfs);
#   - systemd units go to /lib/systemd/system (Debian 12's place for packaged units);
#   - man pages are gzipped; the copyright and changelog go to /usr/share/doc/slotctl;
#   - the sysvinit script goes to the examples (Debian 12 boots with systemd; an
#     unregistered /etc/init.d script would run nowhere).
# Usage: make-deb.sh SLOTCTL_BINARY OUTPUT_DIR. Prints the package's path.
set -euo pipefail
binary=$1 out=$2
cd "$(dirname "$0")/.."
[ -x "$binary" ] || { echo "make-deb: $binary missing (make embedded)" >&2; exit 1; }
version=$("$binary" --version | sed -n '1s/^slotctl //p')
[ -n "$version" ] || { echo "make-deb: $binary --version printed no version" >&2; exit 1; }
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
bash scripts/install.sh "$root" /usr "$binary" >/dev/null

mkdir -p "$root/usr/share/initramfs-tools/scripts/local-top" "$root/lib/systemd"
mv "$root/etc/initramfs-tools/hooks" "$root/usr/share/initramfs-tools/hooks"
mv "$root/etc/initramfs-tools/scripts/local-top/slotctl" "$root/usr/share/initramfs-tools/scripts/local-top/slotctl"
rm -r "$root/etc/initramfs-tools"
mv "$root/usr/lib/systemd/system" "$root/lib/systemd/system"
rmdir "$root/usr/lib/systemd"
mkdir -p "$root/usr/share/doc/slotctl/examples/sysvinit"
mv "$root/etc/init.d/slotctl-confirm" "$root/usr/share/doc/slotctl/examples/sysvinit/slotctl-confirm"
rmdir "$root/etc/init.d"
chmod 0644 "$root/usr/share/doc/slotctl/examples/sysvinit/slotctl-confirm"
gzip -9n "$root"/usr/share/man/man*/*
strip --remove-section=.comment --remove-section=.note "$root/usr/sbin/slotctl"
install -D -m 0644 debian/lintian-overrides "$root/usr/share/lintian/overrides/slotctl"
install -m 0644 debian/copyright "$root/usr/share/doc/slotctl/copyright"
sed "s/@VERSION@/$version/" debian/changelog | gzip -9n > "$root/usr/share/doc/slotctl/changelog.gz"
chmod 0644 "$root/usr/share/doc/slotctl/changelog.gz"

mkdir -p "$root/DEBIAN"
install -m 0755 debian/postinst debian/prerm debian/postrm "$root/DEBIAN/"
# Every file under /etc is the administrator's to edit: a conffile.
(cd "$root" && find etc -type f | sed 's|^|/|' | sort) > "$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort | xargs md5sum) > "$root/DEBIAN/md5sums"
size=$(du -k -s --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" debian/control.in > "$root/DEBIAN/control"
find "$root" -type d -exec chmod 0755 {} +
mkdir -p "$out"
deb=$out/slotctl_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
