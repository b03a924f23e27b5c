#!/bin/sh
# dracut cmdline hook (sourced): claim root=slotctl and queue the slot selection for
# when udev has settled, so the slot disk exists.
[ -z "$root" ] && root=$(getarg root=)
if [ "$root" = slotctl ]; then
	rootok=1
	/sbin/initqueue --settled --onetime --unique --name slotctl-root /sbin/slotctl-root
	wait_for_dev -n /dev/root
fi
