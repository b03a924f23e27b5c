# slotctl early-boot helpers: sourced by the initramfs-tools local-top script and the
# dracut hook, so both make the same decision in the same way. POSIX sh (busybox ash).
#
# The caller sets slotctl_panic (how this initramfs stops: initramfs-tools `panic`,
# dracut `die`) and then calls slotctl_select_root. On return SLOTCTL_ROOT names the
# device to mount as / (the dm-verity mapping when the signed image carries a tree),
# or the function never returns (panic, reboot, poweroff).

SLOTCTL=${SLOTCTL:-/usr/sbin/slotctl}
SLOTCTL_CONF=${SLOTCTL_CONF:-/etc/slotctl.conf}
SLOTCTL_BOOT_CONF=${SLOTCTL_BOOT_CONF:-/etc/slotctl/boot.conf}

# Defaults; /etc/slotctl/boot.conf (packaging/etc/boot.conf) documents each.
SLOTCTL_DISK_WAIT=30
SLOTCTL_ON_NO_SLOT=recovery
SLOTCTL_ON_TABLE_UNUSABLE=panic
SLOTCTL_ON_ERROR=panic
SLOTCTL_RECOVERY_ROOT=
SLOTCTL_REQUIRE_VERITY=no
SLOTCTL_VERITY_NAME=slotctl-root
SLOTCTL_KEXEC=no
# shellcheck disable=SC1090
[ -r "$SLOTCTL_BOOT_CONF" ] && . "$SLOTCTL_BOOT_CONF"

# Every decision also goes to the kernel log, tagged `slotctl:` with a syslog priority
# (user facility: 13 notice, 12 warning, 11 error), so dmesg and, once the system is
# up, `journalctl -b -t slotctl` tell the story of the boot. Lines are cut at 200 bytes
# and a boot writes at most 40 of them. SLOTCTL_KMSG names another file (tests).
SLOTCTL_KMSG=${SLOTCTL_KMSG:-/dev/kmsg}
slotctl_kmsg_lines=0
slotctl_kmsg() {
	level=$1
	shift
	[ "$slotctl_kmsg_lines" -lt 40 ] && [ -w "$SLOTCTL_KMSG" ] || return 0
	slotctl_kmsg_lines=$((slotctl_kmsg_lines + 1))
	# printf alone (a builtin): a dracut initramfs has no tr or cut.
	printf '<%s>slotctl: %.200s\n' "$level" "$*" >> "$SLOTCTL_KMSG" 2>/dev/null
}
slotctl_log() { echo "slotctl-boot: $*" >&2; slotctl_kmsg 13 "$*"; }
slotctl_log_error() { echo "slotctl-boot: $*" >&2; slotctl_kmsg 11 "$*"; }

# Runs `slotctl boot --shell` with the config; its stdout is left in `out`, its status
# in `rc`, and each line it wrote to stderr (a refused slot, counters out of reach) is
# shown and logged as a warning.
slotctl_run_boot() {
	errors=${TMPDIR:-/run}/slotctl-boot.$$
	if [ -n "$slotctl_chosen" ]; then
		out=$("$SLOTCTL" --config "$SLOTCTL_CONF" boot --shell --chosen "$slotctl_chosen" 2>"$errors")
	else
		out=$("$SLOTCTL" --config "$SLOTCTL_CONF" boot --shell 2>"$errors")
	fi
	rc=$?
	if [ -s "$errors" ]; then
		while IFS= read -r line; do
			echo "$line" >&2
			slotctl_kmsg 12 "${line#slotctl: }"
		done < "$errors"
	fi
	rm -f "$errors"
}

# The second stage of a kexec boot (spec/kexec.md): a stage-0 chose and verified slot X
# and started X's own kernel with slotctl.slot=X added to the command line. This
# initramfs then verifies X again (`boot --chosen X`), spends no try and never kexecs.
# Only with SLOTCTL_KEXEC=yes: without it slotctl.slot= means nothing to the hook, as
# before.
SLOTCTL_CMDLINE=${SLOTCTL_CMDLINE:-/proc/cmdline}
slotctl_chosen=
if [ "$SLOTCTL_KEXEC" = yes ]; then
	# shellcheck disable=SC2013
	for word in $(cat "$SLOTCTL_CMDLINE" 2>/dev/null); do
		case "$word" in slotctl.slot=*) slotctl_chosen=${word#slotctl.slot=} ;; esac
	done
fi

# Stage-0 of a kexec boot (SLOTCTL_KEXEC=yes): the chosen slot's root (SLOTCTL_ROOT, the
# dm-verity mapping) is mounted read-only and `slotctl kexec` starts the kernel the slot
# carries; it checks the mount is a dm-verity mapping and the image has a tree, so nothing
# unsigned is loaded. Returns only when the kernel could not be started: SLOTCTL_ON_ERROR
# is taken, after marking the slot failed when the failure proves it bad, as for a root
# that cannot be mounted.
slotctl_kexec() {
	dir=/run/slotctl/root
	mkdir -p "$dir"
	if ! mount -o ro "$SLOTCTL_ROOT" "$dir"; then
		slotctl_refuse_chosen "cannot mount $SLOTCTL_ROOT to read the slot's kernel"
		return 0
	fi
	slotctl_log "slot $SLOTCTL_SLOT: starting its own kernel"
	errors=${TMPDIR:-/run}/slotctl-kexec.$$
	"$SLOTCTL" --config "$SLOTCTL_CONF" kexec "$dir" 2>"$errors"
	krc=$?
	reason=
	[ -s "$errors" ] && IFS= read -r reason < "$errors"
	rm -f "$errors"
	umount "$dir" 2>/dev/null
	reason="its kernel was not started (status $krc): ${reason#slotctl: }"
	case "$krc" in
	# Proven bad: no kernel that can be loaded (52), or the slot refused by verification
	# (a block altered after signing is 23): marked failed, as a root that cannot be mounted.
	52 | 2[0-7] | 29) slotctl_refuse_chosen "$reason" ;;
	# Counters out of reach (28), an I/O error (61), anything else proves nothing about
	# the slot: not marked; the try it spent is spent, and the action is taken.
	*) slotctl_act "$SLOTCTL_ON_ERROR" "slot $SLOTCTL_SLOT: $reason; not marked failed" ;;
	esac
}

# The value of one `name = value` line of slotctl.conf, read as slotctl reads it (a `#`
# starts a comment, the last line wins). The initramfs hooks call it at build time too,
# for `keys =`.
slotctl_conf_value() {
	sed -n "s/#.*//; s/\r\$//; s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$SLOTCTL_CONF" 2>/dev/null |
		sed 's/[[:space:]]*$//' | tail -n 1
}

# The `disk =` of slotctl.conf: the hook must wait for that device to appear.
slotctl_disk() { slotctl_conf_value disk; }

# Waits up to SLOTCTL_DISK_WAIT seconds for a device node (what: for the message).
slotctl_wait_for() {
	waited=0
	while [ ! -e "$1" ]; do
		if [ "$waited" -ge "$SLOTCTL_DISK_WAIT" ]; then
			slotctl_log "$2 $1 did not appear within ${SLOTCTL_DISK_WAIT}s"
			return 1
		fi
		sleep 1
		waited=$((waited + 1))
	done
}

slotctl_wait_for_disk() {
	disk=$(slotctl_disk)
	[ -n "$disk" ] || return 0
	slotctl_wait_for "$disk" "slot disk"
}

# One of the recovery actions of boot.conf: panic, reboot, poweroff or recovery (mount
# SLOTCTL_RECOVERY_ROOT instead; panic when none is set).
slotctl_act() {
	action=$1
	shift
	slotctl_log_error "$* -> $action"
	case "$action" in
	reboot) sync; reboot -f ;;
	poweroff) sync; poweroff -f ;;
	recovery)
		if [ -n "$SLOTCTL_RECOVERY_ROOT" ]; then
			slotctl_wait_for "$SLOTCTL_RECOVERY_ROOT" "recovery root" ||
				slotctl_panic "slotctl: $* (recovery root $SLOTCTL_RECOVERY_ROOT missing)"
			SLOTCTL_ROOT=$SLOTCTL_RECOVERY_ROOT
			SLOTCTL_SLOT=recovery
			slotctl_log "booting the recovery root $SLOTCTL_ROOT"
			return 0
		fi
		slotctl_panic "slotctl: $* (no SLOTCTL_RECOVERY_ROOT set)"
		;;
	*) slotctl_panic "slotctl: $*" ;;
	esac
	# reboot/poweroff/panic should not return; never fall through to an unverified root.
	slotctl_log "stopped: $action returned; not booting an unverified root"
	while :; do sleep 60; done
}

# The chosen slot passed slotctl but cannot be used (its partition is not the verified
# range, it has no dm-verity tree where one is required, the mapping failed): mark it
# failed, so the booted record does not name a slot that never ran and the next boot
# tries the next slot, then take SLOTCTL_ON_ERROR.
slotctl_refuse_chosen() {
	"$SLOTCTL" --config "$SLOTCTL_CONF" mark-failed "$SLOTCTL_SLOT" --by initramfs --reason "$*" >/dev/null
	slotctl_act "$SLOTCTL_ON_ERROR" "slot $SLOTCTL_SLOT: $*; marked failed"
}

slotctl_settle() {
	command -v udevadm >/dev/null 2>&1 && udevadm settle --timeout=10 >/dev/null 2>&1
	waited=0
	while [ ! -b "$SLOTCTL_DEVICE" ] && [ "$waited" -lt 10 ]; do
		sleep 1
		waited=$((waited + 1))
	done
}

# True when the kernel's partition device covers exactly the bytes slotctl verified.
# slotctl reads the GPT by the UEFI rules and the kernel by its own (a disk whose MBR
# lacks the protective entry, entries slotctl refuses as overlapping): the mounted
# partition must be the verified one. /sys gives start and size in 512-byte units.
slotctl_same_range() {
	node=$(readlink -f "$SLOTCTL_DEVICE" 2>/dev/null) || node=$SLOTCTL_DEVICE
	sys=/sys/class/block/${node##*/}
	[ -r "$sys/start" ] && [ -r "$sys/size" ] || return 1
	[ "$(($(cat "$sys/start") * 512))" = "$SLOTCTL_OFFSET" ] && [ "$(($(cat "$sys/size") * 512))" = "$SLOTCTL_SIZE" ]
}

slotctl_open_verity() {
	veritysetup open "$SLOTCTL_DEVICE" "$SLOTCTL_VERITY_NAME" "$SLOTCTL_DEVICE" "$SLOTCTL_VERITY_ROOT_HASH" \
		--no-superblock --hash="$SLOTCTL_VERITY_HASH_ALGORITHM" \
		--data-blocks="$SLOTCTL_VERITY_DATA_BLOCKS" --data-block-size="$SLOTCTL_VERITY_DATA_BLOCK_SIZE" \
		--hash-block-size="$SLOTCTL_VERITY_HASH_BLOCK_SIZE" --hash-offset="$SLOTCTL_VERITY_HASH_OFFSET" \
		--salt="$SLOTCTL_VERITY_SALT"
}

# Runs `slotctl boot --shell` (which consumes a try and verifies the slot before it
# prints anything), then maps the status family to an action, then opens dm-verity
# when the verified descriptor carries a root hash.
slotctl_select_root() {
	SLOTCTL_ROOT=
	if ! slotctl_wait_for_disk; then
		slotctl_act "$SLOTCTL_ON_TABLE_UNUSABLE" "slot disk missing"
		return 0
	fi
	slotctl_run_boot
	case "$rc" in
	0) ;;
	50|51)
		slotctl_act "$SLOTCTL_ON_NO_SLOT" "no bootable slot (status $rc)"
		return 0 ;;
	60|61|62|63)
		slotctl_act "$SLOTCTL_ON_TABLE_UNUSABLE" "slot table unusable or unreadable (status $rc)"
		return 0 ;;
	*)
		slotctl_act "$SLOTCTL_ON_ERROR" "slotctl boot failed (status $rc)"
		return 0 ;;
	esac
	# Values are single-quoted by slotctl (spec/cli.md), so eval cannot run anything.
	eval "$out"
	if [ "${SLOTCTL_SUCCESSFUL:-0}" = 1 ]; then trial="confirmed"; else trial="on trial, ${SLOTCTL_TRIES:-?} tries left"; fi
	slotctl_log "slot $SLOTCTL_SLOT chosen: version '${SLOTCTL_IMAGE_VERSION:-}', $trial, $SLOTCTL_DEVICE (verification $SLOTCTL_VERIFICATION, verity $SLOTCTL_VERITY)"
	# When boot wrote the table (a try spent, a slot refused), udev sees the disk closed
	# after a write and has the kernel re-read its partitions: the partition devices
	# vanish and come back. Wait for that before looking at them.
	# A re-read can also start just after the settle, so a mismatch is looked at again for
	# a few seconds before it counts.
	slotctl_settle
	checks=1
	until slotctl_same_range; do
		if [ "$checks" -ge 5 ]; then
			slotctl_refuse_chosen "the kernel's $SLOTCTL_DEVICE is not the range slotctl verified (bytes $SLOTCTL_OFFSET+$SLOTCTL_SIZE)"
			return 0
		fi
		sleep 1
		slotctl_settle
		checks=$((checks + 1))
	done
	if [ "$SLOTCTL_VERITY" != 1 ]; then
		if [ "$SLOTCTL_REQUIRE_VERITY" = yes ]; then
			slotctl_refuse_chosen "no dm-verity tree and SLOTCTL_REQUIRE_VERITY=yes"
			return 0
		fi
		# The signed bytes must stay as signed: no journal replay, no remount rw.
		if ! blockdev --setro "$SLOTCTL_DEVICE"; then
			slotctl_refuse_chosen "cannot make $SLOTCTL_DEVICE read-only"
			return 0
		fi
		SLOTCTL_ROOT=$SLOTCTL_DEVICE
		[ "$SLOTCTL_KEXEC" = yes ] && [ -z "$slotctl_chosen" ] && slotctl_kexec
		return 0
	fi
	modprobe dm_verity 2>/dev/null
	# The root hash is the one slotctl just verified against the signed descriptor: from
	# here on the kernel checks every block as it is read, so nothing verified earlier
	# can be swapped before use.
	# Once more after a settle if the first try fails: a partition re-read can take the
	# device node away for a moment.
	if ! slotctl_open_verity; then
		slotctl_settle
		if ! slotctl_open_verity; then
			slotctl_refuse_chosen "veritysetup open failed"
			return 0
		fi
	fi
	SLOTCTL_ROOT=/dev/mapper/$SLOTCTL_VERITY_NAME
	[ "$SLOTCTL_KEXEC" = yes ] && [ -z "$slotctl_chosen" ] && slotctl_kexec
	return 0
}
