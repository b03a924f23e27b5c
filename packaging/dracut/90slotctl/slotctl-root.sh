#!/bin/sh
# dracut initqueue job: runs `slotctl boot` through the shared helpers, then makes the
# chosen slot the root, read-only: in systemd mode as /dev/mapper/slotctl-root, which
# the sysroot.mount of slotctl-generator mounts; in shell mode by mounting it on
# $NEWROOT here.
type getarg >/dev/null 2>&1 || . /lib/dracut-lib.sh
# panic: dracut's die (an emergency shell with rd.shell; otherwise shell mode exits
# init, so the kernel panics and reboots after panic=N, and systemd mode halts).
slotctl_panic() { die "$*"; }
. /usr/lib/slotctl/boot.sh

NEWROOT=${NEWROOT:-/sysroot}
SLOTCTL_MAPPING=/dev/mapper/$SLOTCTL_VERITY_NAME

# The mapping systemd's sysroot.mount waits for. A slot without a dm-verity tree (and
# the recovery root) gets a read-only linear mapping of its whole device under the
# same name, so the unit can name it before the slot is known.
slotctl_map_root() {
	[ "$SLOTCTL_ROOT" = "$SLOTCTL_MAPPING" ] && return 0
	sectors=$(blockdev --getsz "$SLOTCTL_ROOT") || return 1
	dmsetup create "$SLOTCTL_VERITY_NAME" --readonly --table "0 $sectors linear $SLOTCTL_ROOT 0" || return 1
	udevadm settle --timeout=10 >/dev/null 2>&1
	SLOTCTL_ROOT=$SLOTCTL_MAPPING
}

# A slot's root is signed bytes, read-only: never fsck'd or replayed.
slotctl_use_root() {
	if [ -n "$DRACUT_SYSTEMD" ]; then
		slotctl_map_root
	else
		mkdir -p "$NEWROOT" && mount -o ro "$SLOTCTL_ROOT" "$NEWROOT"
	fi
}

slotctl_select_root
[ -n "$SLOTCTL_ROOT" ] || die "slotctl: no root selected"
if ! slotctl_use_root; then
	[ "$SLOTCTL_SLOT" = recovery ] && die "slotctl: cannot use the recovery root $SLOTCTL_ROOT"
	# Verified but unusable: marked failed, then SLOTCTL_ON_ERROR, which returns only
	# for `recovery`.
	slotctl_refuse_chosen "cannot use $SLOTCTL_ROOT as the root"
	slotctl_use_root || die "slotctl: cannot use the recovery root $SLOTCTL_ROOT"
fi
mkdir -p /run/slotctl
: > /run/slotctl/root-ready
exit 0
