#!/usr/bin/env bash
# make install: what a device needs, in the places the README names, under
# DESTDIR + PREFIX (PREFIX for /usr paths; /etc stays /etc). Prints every installed
# path, relative to DESTDIR. Usage: install.sh DESTDIR PREFIX SLOTCTL_BINARY
# The RAUC drop-in and the examples go under share/doc/slotctl/examples: enabling the
# RAUC backend is the administrator's choice (README, "Using slotctl with RAUC").
set -euo pipefail
dest=$1 prefix=$2 binary=$3
cd "$(dirname "$0")/.."
[ -x "$binary" ] || { echo "install: $binary missing (make embedded)" >&2; exit 1; }
inst() { # mode, source, installed path
	install -D -m "$1" "$2" "$dest$3"
	echo "$3"
}
inst 0755 "$binary" "$prefix/sbin/slotctl"
strip "$dest$prefix/sbin/slotctl" 2>/dev/null || true
inst 0644 packaging/lib/boot.sh "$prefix/lib/slotctl/boot.sh"
inst 0755 packaging/initramfs-tools/hooks/slotctl /etc/initramfs-tools/hooks/slotctl
inst 0755 packaging/initramfs-tools/scripts/local-top/slotctl /etc/initramfs-tools/scripts/local-top/slotctl
inst 0644 packaging/etc/boot.conf /etc/slotctl/boot.conf
for file in packaging/dracut/90slotctl/*; do
	inst 0755 "$file" "$prefix/lib/dracut/modules.d/90slotctl/${file##*/}"
done
inst 0755 packaging/libexec/slotctl-confirm "$prefix/libexec/slotctl/slotctl-confirm"
for unit in packaging/systemd/*.service; do
	inst 0644 "$unit" "$prefix/lib/systemd/system/${unit##*/}"
done
inst 0755 packaging/sysvinit/slotctl-confirm /etc/init.d/slotctl-confirm
inst 0755 packaging/rauc/rauc-backend "$prefix/lib/slotctl/rauc-backend"
inst 0755 packaging/rauc/rauc-service "$prefix/lib/slotctl/rauc-service"
examples=$prefix/share/doc/slotctl/examples
inst 0644 packaging/rauc/system.conf "$examples/rauc/system.conf"
inst 0644 packaging/rauc/rauc.conf "$examples/rauc/rauc.conf"
inst 0644 packaging/rauc/rauc.service.d/slotctl.conf "$examples/rauc/rauc.service.d/slotctl.conf"
# Made from the command grammar, so usage, man page and completion cannot drift apart.
generated=$(mktemp -d)
trap 'rm -rf "$generated"' EXIT
"$binary" help man-page > "$generated/slotctl.8"
"$binary" help bash-completion > "$generated/slotctl.bash"
"$binary" help conf-page > "$generated/slotctl.conf.5"
inst 0644 "$generated/slotctl.8" "$prefix/share/man/man8/slotctl.8"
inst 0644 "$generated/slotctl.conf.5" "$prefix/share/man/man5/slotctl.conf.5"
inst 0644 "$generated/slotctl.bash" "$prefix/share/bash-completion/completions/slotctl"
