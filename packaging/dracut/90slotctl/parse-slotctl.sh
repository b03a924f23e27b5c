#!/bin/sh
# dracut cmdline hook (sourced): claim root=slotctl and queue the slot selection for
# when udev has settled, so the slot disk exists. The job (slotctl-root.sh) readies
# the root: in systemd mode it creates the device the sysroot.mount of
# slotctl-generator waits for; in shell mode it mounts the slot on $NEWROOT.
[ -z "$root" ] && root=$(getarg root=)
if [ "$root" = slotctl ]; then
	rootok=1
	/sbin/initqueue --settled --onetime --unique --name slotctl-root /sbin/slotctl-root
	# The initqueue is done when the job has readied the root, or when dracut's die ran
	# (with rd.shell; its job is a child of the initqueue, so die ends only the job).
	echo '[ -e /run/slotctl/root-ready ] || [ -e /run/initramfs/.die ]' > "$hookdir/initqueue/finished/slotctl-root.sh"
fi
