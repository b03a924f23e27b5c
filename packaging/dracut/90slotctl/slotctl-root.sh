#!/bin/sh
# dracut initqueue job: runs `slotctl boot` through the shared helpers, then readies the
# chosen slot as the root, read-only: in systemd mode as /dev/mapper/slotctl-root (the
# SLOTCTL_VERITY_NAME of boot.conf), which the sysroot.mount of slotctl-generator
# mounts; in shell mode by mounting it on $NEWROOT here.
type getarg >/dev/null 2>&1 || . /lib/dracut-lib.sh

# The `panic` action of boot.conf. With rd.shell on the command line, dracut's die (its
# emergency shell). Otherwise the boot stops here, in this job, so no dracut fallback
# (its emergency shell is on by default in shell mode) runs after it: as after a kernel
# panic, reboot when panic=N asks for it (after N seconds; at once for N < 0), else stay
# stopped.
slotctl_panic() {
	getargbool 0 rd.shell && die "$*"
	echo "<24>dracut: FATAL: $*" > /dev/kmsg
	echo "slotctl-boot: FATAL: $*" >&2
	after=$(getarg panic=)
	case "$after" in
	'' | 0 | *[!0-9-]*) ;;
	*)
		[ "$after" -gt 0 ] && sleep "$after"
		sync
		reboot -f
		;;
	esac
	while :; do sleep 60; done
}
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

# A slot's root is signed bytes, read-only: never fsck'd or replayed. In systemd mode
# the root is mounted once here and let go: a verified slot whose file system does not
# mount must fail now, while this job can still mark it failed and take
# SLOTCTL_ON_ERROR; sysroot.mount failing later would only end in dracut's emergency
# handling, on every boot.
slotctl_use_root() {
	if [ -n "$DRACUT_SYSTEMD" ]; then
		slotctl_map_root || return 1
		mkdir -p /run/slotctl/trial && mount -o ro "$SLOTCTL_ROOT" /run/slotctl/trial || return 1
		umount /run/slotctl/trial
	else
		mkdir -p "$NEWROOT" && mount -o ro "$SLOTCTL_ROOT" "$NEWROOT"
	fi
}

# A mapping of that name left from elsewhere would make a good slot look unusable after
# its try was spent: stop before slotctl runs.
dmsetup info "$SLOTCTL_VERITY_NAME" >/dev/null 2>&1 &&
	slotctl_panic "slotctl: a device-mapper device $SLOTCTL_VERITY_NAME exists before slotctl ran"
slotctl_select_root
[ -n "$SLOTCTL_ROOT" ] || slotctl_panic "slotctl: no root selected"
if ! slotctl_use_root; then
	[ "$SLOTCTL_SLOT" = recovery ] && slotctl_panic "slotctl: cannot use the recovery root $SLOTCTL_ROOT"
	# Free the name for a recovery root.
	dmsetup remove "$SLOTCTL_VERITY_NAME" >/dev/null 2>&1
	# Verified but unusable: marked failed, then SLOTCTL_ON_ERROR, which returns only
	# for `recovery`.
	slotctl_refuse_chosen "cannot use $SLOTCTL_ROOT as the root"
	slotctl_use_root || slotctl_panic "slotctl: cannot use the recovery root $SLOTCTL_ROOT"
fi
mkdir -p /run/slotctl
: > /run/slotctl/root-ready
exit 0
