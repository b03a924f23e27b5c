#!/bin/sh
# dracut cmdline hook (sourced): claim root=slotctl and queue the slot selection for
# when udev has settled, so the slot disk exists. The job mounts the chosen slot on
# $NEWROOT itself, in both of dracut's modes: in systemd mode no generator knows the
# device beforehand (systemd's fstab generator skips a root= that is not a device
# path), so there is no sysroot.mount to wait for; systemd sees the mount appear.
[ -z "$root" ] && root=$(getarg root=)
if [ "$root" = slotctl ]; then
	rootok=1
	/sbin/initqueue --settled --onetime --unique --name slotctl-root /sbin/slotctl-root
	# The initqueue is done when the job has readied the root, or has stopped the boot
	# with dracut's die (its job runs as a child of the initqueue, so die ends only the job).
	echo '[ -e /run/slotctl/root-ready ] || [ -e /run/initramfs/.die ]' > "$hookdir/initqueue/finished/slotctl-root.sh"
fi
