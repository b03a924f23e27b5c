#!/bin/sh
# systemd generator (dracut's systemd mode): with root=slotctl, /sysroot is the device
# the slotctl job creates, /dev/mapper/slotctl-root (the dm-verity mapping, or a
# read-only linear mapping of a slot without a tree), mounted read-only and never
# fsck'd. Written to the early directory so it replaces the sysroot.mount that
# systemd's fstab generator makes from root=slotctl, which names no device.
# Arguments: the normal, early and late generator directories.
early=${2:-/run/systemd/generator.early}
# The command line as dracut's getarg reads it: /etc/cmdline and /etc/cmdline.d/*.conf
# (dracut --kernel-cmdline), then the kernel's; the last value wins.
# SLOTCTL_CMDLINE replaces the kernel's (make test-packaging).
files="/etc/cmdline $(ls /etc/cmdline.d/*.conf 2>/dev/null) ${SLOTCTL_CMDLINE:-/proc/cmdline}"
set -f
root=
timeout=0
for word in $(cat $files 2>/dev/null); do
	case "$word" in
	root=*) root=${word#root=} ;;
	rd.timeout=*) timeout=${word#rd.timeout=} ;;
	esac
done
[ "$root" = slotctl ] || exit 0
name=slotctl-root
boot_conf=${SLOTCTL_BOOT_CONF:-/etc/slotctl/boot.conf}
[ -r "$boot_conf" ] && name=$(. "$boot_conf" >/dev/null 2>&1; echo "${SLOTCTL_VERITY_NAME:-slotctl-root}")
device=/dev/mapper/$name
unit=$(systemd-escape --path "$device").device
mkdir -p "$early/initrd-root-fs.target.requires" "$early/$unit.d"
cat > "$early/sysroot.mount" <<UNIT
# Written by slotctl-generator (dracut module 90slotctl).
[Unit]
Before=initrd-root-fs.target
[Mount]
What=$device
Where=/sysroot
Options=ro
UNIT
ln -sf ../sysroot.mount "$early/initrd-root-fs.target.requires/sysroot.mount"
# The device appears only when the job has chosen and verified a slot, which can take a
# while (waiting for the disk, hashing a slot without a tree): rd.timeout, as dracut's
# own root generator, by default none.
case "$timeout" in '' | *[!0-9]*) timeout=0 ;; esac
printf '[Unit]\nJobTimeoutSec=%s\nJobRunningTimeoutSec=%s\n' "$timeout" "$timeout" > "$early/$unit.d/timeout.conf"
exit 0
