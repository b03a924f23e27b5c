#!/bin/sh
# dracut initqueue job: runs `slotctl boot` through the shared helpers, then points
# /dev/root at the chosen (verity-mapped) slot and queues its read-only mount.
type getarg >/dev/null 2>&1 || . /lib/dracut-lib.sh
slotctl_panic() { die "$*"; }
. /usr/lib/slotctl/boot.sh

slotctl_select_root
[ -n "$SLOTCTL_ROOT" ] || die "slotctl: no root selected"
ln -sf "$SLOTCTL_ROOT" /dev/root
printf 'mount -o ro %s %s\n' "$SLOTCTL_ROOT" "${NEWROOT:-/sysroot}" > "$hookdir/mount/01-slotctl.sh"
exit 0
