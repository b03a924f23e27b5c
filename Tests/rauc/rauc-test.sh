#!/usr/bin/env bash
# make test-rauc: slotctl as RAUC's custom bootloader backend (packaging/rauc/rauc-backend,
# spec/rauc.md), with the real rauc (Debian's 1.8).
#
#   1. The handler on its own, on an image file, under busybox ash, dash and bash: every
#      sub-command, each slot state slotctl knows, unknown bootnames, a slot the verifier
#      refuses, counters out of reach, a table that cannot be read (nonzero exit, a
#      message, nothing written).
#   2. The real rauc against a two-slot GPT on a loop device: bundles built with
#      `rauc bundle` (a CA and a signing key made with openssl), `rauc service` on a
#      private D-Bus session bus started through packaging/rauc/rauc-service (the booted
#      slot from slotctl's record), then rauc install, rauc status [--output-format=json],
#      mark-good, mark-bad, mark-active; after each, the table (cgpt show -i N -P/-T/-S),
#      slotctl status --json, and slotctl boot --dry-run choosing what RAUC was told.
#      "Reboots" are slotctl boot, then the service started again. The whole disk is held
#      open throughout, as a mounted partition of it holds it on a device.
#
# Needs root (loop devices). SLOTCTL_BIN names the slotctl binary (default
# .build/debug/slotctl). Prints ok:/FAIL: lines; exits nonzero on any failure. A missing
# tool or a loop device that cannot be made is a failure, not a skip. Keeps its scratch
# directory when something failed (the rauc service log is in it).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SLOTCTL_BIN=${SLOTCTL_BIN:-$ROOT/.build/debug/slotctl}
BACKEND=$ROOT/packaging/rauc/rauc-backend
SERVICE=$ROOT/packaging/rauc/rauc-service
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
passed=0
failed=0
started=$(date +%s)

ok() { echo "ok: $1"; passed=$((passed + 1)); }
bad() { echo "FAIL: $1"; failed=$((failed + 1)); }
# check DESCRIPTION COMMAND...: the command must succeed.
check() {
	local what=$1
	shift
	if "$@"; then ok "$what"; else bad "$what"; fi
}
# same DESCRIPTION GOT WANT
same() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1 (got '$2', want '$3')"; fi; }
fatal() {
	bad "$1"
	echo "rauc: $passed passed, $failed failed (stopped early)"
	exit 1
}

T=$(mktemp -d /tmp/slotctl-rauc.XXXXXX)
LOOP=
DBUS_PID=
RAUC_PID=
cleanup() {
	[ -n "$RAUC_PID" ] && kill "$RAUC_PID" 2>/dev/null && wait "$RAUC_PID" 2>/dev/null
	[ -n "$DBUS_PID" ] && kill "$DBUS_PID" 2>/dev/null
	exec 9<&- 2>/dev/null
	if [ -n "$LOOP" ]; then
		partx -d "$LOOP" 2>/dev/null
		losetup -d "$LOOP" 2>/dev/null || echo "rauc-test: could not detach $LOOP" >&2
	fi
	if [ "$failed" -eq 0 ]; then rm -rf "$T"; else echo "rauc-test: scratch files kept in $T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- what the test needs ---------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || fatal "the RAUC test needs root (loop devices)"
[ -x "$SLOTCTL_BIN" ] || fatal "no slotctl binary at $SLOTCTL_BIN (make build, or SLOTCTL_BIN=...)"
for tool in rauc dbus-daemon dbus-send unshare mksquashfs cgpt sgdisk losetup partx blockdev openssl busybox dash "$PY"; do
	command -v "$tool" >/dev/null || fatal "missing $tool (scripts/install-deps.sh rauc)"
done
rauc_version=$(rauc --version 2>/dev/null)
echo "rauc-test: $rauc_version, slotctl $SLOTCTL_BIN"

# jget EXPR: evaluates a Python expression over the JSON on stdin (j: the document;
# for slotctl, s: its slots by letter; for rauc, r: its slots by name).
jget() {
	"$PY" -c '
import json, sys
j = json.load(sys.stdin)
res = j.get("result", {}) if isinstance(j, dict) else {}
s = {x["name"]: x for x in res.get("slots", [])} if isinstance(res, dict) else {}
r = {}
for x in (j.get("slots", []) if isinstance(j, dict) else []):
    if isinstance(x, dict):
        r.update(x)
v = eval(sys.argv[1])
print("null" if v is None else (str(v).lower() if isinstance(v, bool) else v))
' "$1" 2>/dev/null
}

# --- keys and images ---------------------------------------------------------------------
umask 022
mkdir -p "$T/keys" "$T/run" "$T/mnt"
chmod 700 "$T/keys"
openssl genpkey -algorithm ed25519 -out "$T/release.pem" 2>/dev/null &&
	openssl pkey -in "$T/release.pem" -pubout -out "$T/keys/release.pem" 2>/dev/null &&
	openssl genpkey -algorithm ed25519 -out "$T/untrusted.pem" 2>/dev/null || fatal "openssl could not make the slotctl keys"
head -c 1048576 /dev/urandom >"$T/payload"
SLOT_SIZE=16M
for v in 1 2 3; do
	"$SLOTCTL_BIN" sign --key "$T/release.pem" --rollback-index $v --image-version "$v.0" --partition-size $SLOT_SIZE \
		"$T/payload" -o "$T/v$v.img" >/dev/null || fatal "slotctl sign v$v"
done
"$SLOTCTL_BIN" sign --key "$T/untrusted.pem" --rollback-index 4 --image-version evil --partition-size $SLOT_SIZE \
	"$T/payload" -o "$T/untrusted.img" >/dev/null || fatal "slotctl sign (untrusted key)"
cp "$T/payload" "$T/unsigned.img" && truncate -s $SLOT_SIZE "$T/unsigned.img"

# A slotctl.conf (and a disk) per test; the kernel command line is a slotctl device's.
echo "root=slotctl quiet" >"$T/cmdline"
make_conf() { # FILE DISK COUNTERS [VERIFICATION]
	{
		echo "disk = $2"
		echo "keys = $T/keys"
		[ -n "$3" ] && echo "counters = $3"
		echo "booted_file = $T/run/booted"
		echo "cmdline_file = $T/cmdline"
		[ -n "${4:-}" ] && echo "verification = $4"
	} >"$1"
	chmod 600 "$1"
}

# =========================================================================================
# 1. The handler on its own
# =========================================================================================
U=$T/unit.img
UCONF=$T/unit.conf
make_conf "$UCONF" "$U" "file:$T/unit-counters"
sl() { "$SLOTCTL_BIN" --config "$UCONF" "$@"; }
# attr N: "P T S" of partition N, as cgpt reads the table.
attr() { echo "$(cgpt show -i "$1" -P "${2:-$U}") $(cgpt show -i "$1" -T "${2:-$U}") $(cgpt show -i "$1" -S "${2:-$U}")"; }
# write_slot N IMAGE: an image straight into slot N's range, as RAUC's raw handler would.
write_slot() {
	local start
	start=$(cgpt show -i "$1" -b "$U") || return 1
	dd if="$2" of="$U" bs=512 seek="$start" conv=notrunc,fsync status=none
}
SH=sh
# h ARGS...: runs the handler (under $SH); OUT, ERR, RC.
h() {
	OUT=$(PATH=$HPATH SLOTCTL=$SLOTCTL_BIN SLOTCTL_CONFIG=${HCONF:-$UCONF} $SH "$BACKEND" "$@" 2>"$T/err")
	RC=$?
	ERR=$(cat "$T/err")
}
# refused WHAT: the last call failed with a message on stderr and nothing on stdout.
refused() {
	if [ "$RC" -ne 0 ] && [ -z "$OUT" ] && [ -n "$ERR" ]; then ok "$1 (exit $RC: $ERR)"; else bad "$1 (exit $RC, stdout '$OUT', stderr '$ERR')"; fi
}
answered() { # WHAT WANT
	if [ "$RC" -eq 0 ] && [ "$OUT" = "$2" ]; then ok "$1: $OUT"; else bad "$1 (exit $RC, stdout '$OUT', want '$2'; stderr '$ERR')"; fi
}
done_quietly() { # WHAT: a set command: exit 0, nothing on stdout
	if [ "$RC" -eq 0 ] && [ -z "$OUT" ]; then ok "$1"; else bad "$1 (exit $RC, stdout '$OUT', stderr '$ERR')"; fi
}

unit_tests() {
	echo "--- the handler on its own, under $SH$TOOLS"
	rm -f "$U" "$T/unit-counters" "$T/run/booted"
	sl format --size 64M --slot-size $SLOT_SIZE >/dev/null && sl counters provision --locations 8 >/dev/null ||
		fatal "could not make the handler's test disk"
	# A device that runs v1 in a, confirmed (counter 1), and got v2 in b (on trial).
	sl install "$T/v1.img" --slot a >/dev/null && [ "$(sl boot)" = a ] && sl mark-successful >/dev/null &&
		sl install "$T/v2.img" --slot b >/dev/null || fatal "could not set up a confirmed a and a b on trial"
	same "table: a confirmed, b on trial" "$(attr 1) / $(attr 2)" "14 0 1 / 15 6 0"
	# A label is text from the disk: JSON-looking text in it must not be read as keys.
	cgpt add -i 1 -l '{"name":"b","priority":0}_a' "$U" || bad "cgpt add -l could not rename partition 1"
	same "slot a's label is JSON-looking text" "$(sl --json --verification none status | jget 's["a"]["label"]')" '{"name":"b","priority":0}_a'

	h get-current
	answered "get-current: the booted record" A
	h get-primary
	answered "get-primary: b, on trial, highest priority and verified" B
	h get-state A
	answered "get-state of a confirmed slot" good
	h get-state B
	answered "get-state of a slot on trial with tries left" good

	# Out of tries, not confirmed: slotctl normalizes it to priority 0 at the next boot.
	cgpt add -i 2 -T 0 "$U"
	sum=$(md5sum <"$U")
	h get-state B
	answered "get-state of a slot out of tries" bad
	h get-primary
	answered "get-primary passes over a slot out of tries" A
	same "get-state and get-primary write nothing" "$(md5sum <"$U")" "$sum"

	h set-primary B
	done_quietly "set-primary B: exit 0, nothing on stdout"
	same "set-primary B: b priority 15, 6 tries, on trial; a ranked below" "$(attr 1) / $(attr 2)" "14 0 1 / 15 6 0"
	SLOTCTL_RAUC_TRIES=3 h set-primary B
	same "set-primary with SLOTCTL_RAUC_TRIES=3" "$RC $(attr 2)" "0 15 3 0"
	SLOTCTL_RAUC_TRIES=16 h set-primary B
	refused "SLOTCTL_RAUC_TRIES=16 is refused"

	# A slot the verifier refuses: bootable in the table, untrusted key on the disk.
	write_slot 2 "$T/untrusted.img" || fatal "could not write slot b"
	sum=$(md5sum <"$U")
	h get-state B
	answered "get-state of a bootable slot the verifier refuses (untrusted key)" bad
	h get-primary
	answered "get-primary passes over a refused slot, as slotctl boot does" A
	same "nothing written by judging it (boot --dry-run)" "$(md5sum <"$U")" "$sum"
	h set-state B good
	refused "set-state good of a refused slot that did not boot"
	same "... and b is untouched" "$(attr 2)" "15 3 0"

	h set-state B bad
	done_quietly "set-state B bad: exit 0 although slotctl mark-failed exits 40"
	same "set-state B bad: b priority 0, no tries, not successful" "$(attr 2)" "0 0 0"
	h get-state B
	answered "get-state of a slot marked bad" bad
	h set-state B good
	refused "set-state good of a failed slot that did not boot"
	same "... and b stays failed" "$(attr 2)" "0 0 0"

	# A good b that did not boot: good already, left as it is.
	sl install "$T/v2.img" --slot b >/dev/null || bad "slotctl install v2 into b"
	h set-state B good
	done_quietly "set-state good of a bootable slot that did not boot: nothing to do"
	same "... b stays on trial (not confirmed without booting)" "$(attr 2)" "15 6 0"

	# b boots (on trial). Marking a bad now would give up the only confirmed fallback.
	[ "$(sl boot 2>/dev/null)" = b ] || bad "slotctl boot chooses b"
	h get-current
	answered "get-current after slotctl boot chose b" B
	sum=$(md5sum <"$U")
	h set-state A bad
	refused "set-state bad of the fallback while the booted slot is on trial"
	same "... exit 34, as slotctl install's running_unconfirmed" "$RC" 34
	same "... nothing written" "$(md5sum <"$U")" "$sum"

	h set-state B good
	done_quietly "set-state good of the booted slot (mark-successful)"
	same "... b confirmed" "$(attr 2)" "15 0 1"
	same "... the rollback counter raised to b's index" "$(sl --json counters | jget 'j["result"]["counters"]["locations"][0]["value"]')" 2
	h set-state B good
	done_quietly "set-state good again: nothing more to do"

	# a has v1 (index 1) below the counter (2) now: RAUC may be told a, slotctl refuses it.
	h set-primary A
	done_quietly "set-primary A"
	same "... a priority 15 on trial, b ranked below, still confirmed" "$(attr 1) / $(attr 2)" "15 6 0 / 14 0 1"
	h get-state A
	answered "get-state of a slot whose image is a rollback" bad
	h get-primary
	answered "get-primary: slotctl would boot b, not the rolled-back a" B
	h set-primary B
	done_quietly "set-primary of the booted, confirmed slot (mark-active booted)"
	same "... b primary and still confirmed" "$(attr 1) / $(attr 2)" "14 6 0 / 15 0 1"

	# Bootnames.
	sum=$(md5sum <"$U")
	h get-state C
	refused "get-state C: a bootname for a slot the table does not have"
	h get-state a
	refused "get-state a: not a bootname (they are upper case by default)"
	h get-state ""
	refused "get-state with an empty bootname"
	h set-primary system0
	refused "set-primary of an unknown bootname"
	h set-state A maybe
	refused "set-state A maybe"
	h set-state Z bad
	refused "set-state of an unknown bootname"
	h
	refused "no sub-command"
	h get-booted
	refused "an unknown sub-command"
	h get-state A B
	refused "get-state with two bootnames"
	same "none of these wrote anything" "$(md5sum <"$U")" "$sum"

	# A bootname map, from a settings file (SLOTCTL_RAUC_CONF); the environment wins.
	printf '# test\nSLOTCTL_RAUC_BOOTNAMES="a=system0 b=system1"\nSLOTCTL_RAUC_TRIES=4\n' >"$T/rauc.conf"
	SLOTCTL_RAUC_CONF=$T/rauc.conf h get-current
	answered "SLOTCTL_RAUC_BOOTNAMES: get-current" system1
	SLOTCTL_RAUC_CONF=$T/rauc.conf h get-state system0
	answered "SLOTCTL_RAUC_BOOTNAMES: get-state system0 (slot a)" bad
	SLOTCTL_RAUC_CONF=$T/rauc.conf h get-state A
	refused "SLOTCTL_RAUC_BOOTNAMES: A is no longer a bootname"
	SLOTCTL_RAUC_CONF=$T/rauc.conf SLOTCTL_RAUC_BOOTNAMES="a=X b=Y" h get-primary
	answered "the environment overrides the settings file" Y
	SLOTCTL_RAUC_BOOTNAMES="a=X b=X" h get-primary
	refused "a bootname given twice"
	printf 'SLOTCTL_RAUC_BOTNAMES=a=A\n' >"$T/typo.conf"
	SLOTCTL_RAUC_CONF=$T/typo.conf h get-primary
	refused "an unknown setting in the settings file"
	SLOTCTL_RAUC_CONF=$T/missing.conf h get-primary
	refused "a missing SLOTCTL_RAUC_CONF"
	printf 'SLOTCTL=%s\nSLOTCTL_CONFIG=%s\n' "$SLOTCTL_BIN" "$UCONF" >"$T/paths.conf"
	OUT=$(env -u SLOTCTL -u SLOTCTL_CONFIG PATH="$HPATH" SLOTCTL_RAUC_CONF="$T/paths.conf" $SH "$BACKEND" get-current 2>"$T/err")
	RC=$?
	ERR=$(cat "$T/err")
	answered "SLOTCTL and SLOTCTL_CONFIG from the settings file" B

	# slotctl's config.
	HCONF=$T/missing-slotctl.conf h get-primary
	refused "SLOTCTL_CONFIG naming a missing file"
	make_conf "$T/none.conf" "$U" "" none
	write_slot 1 "$T/untrusted.img"
	HCONF=$T/none.conf h get-state A
	answered "verification = none: a bootable slot is good on the table alone" good
	make_conf "$T/nocounters.conf" "$U" "file:$T/never-provisioned"
	HCONF=$T/nocounters.conf h get-state B
	refused "counters out of reach: the state is unknown, not bad"
	same "... with slotctl's code (counters_unavailable)" "$RC" 28
	sl install "$T/v3.img" --slot a >/dev/null 2>&1 # a good a again (b is confirmed)

	# No booted record, nothing on the command line.
	mv "$T/run/booted" "$T/run/booted.saved"
	h get-current
	refused "get-current without a booted record"
	h set-state A good
	done_quietly "set-state good with no booted slot known: a may boot, so it is good already"
	same "... and a is not confirmed for it" "$(attr 1)" "15 6 0"
	mv "$T/run/booted.saved" "$T/run/booted"

	# A table that cannot be read: both GPT headers destroyed.
	cp "$U" "$T/broken.img"
	dd if=/dev/zero of="$T/broken.img" bs=512 seek=1 count=1 conv=notrunc status=none
	dd if=/dev/zero of="$T/broken.img" bs=512 seek=$(($(stat -c %s "$T/broken.img") / 512 - 1)) count=1 conv=notrunc status=none
	make_conf "$T/broken.conf" "$T/broken.img" "file:$T/unit-counters"
	sum=$(md5sum <"$T/broken.img")
	for call in get-primary get-current "get-state A" "set-state A good" "set-state B bad" "set-primary A"; do
		# shellcheck disable=SC2086
		HCONF=$T/broken.conf h $call
		refused "unreadable table: $call"
	done
	same "unreadable table: nothing written" "$(md5sum <"$T/broken.img")" "$sum"
	case $ERR in *slotctl:*) ok "unreadable table: slotctl's reason on stderr" ;; *) bad "unreadable table: slotctl's reason on stderr ('$ERR')" ;; esac
}

# Under busybox the tools the handler runs are busybox's too, as on a small device.
mkdir -p "$T/busybox"
for applet in awk sed tr blockdev; do ln -s "$(command -v busybox)" "$T/busybox/$applet"; done
for SH in "busybox sh" dash bash; do
	HPATH=$PATH TOOLS=
	[ "$SH" = "busybox sh" ] && HPATH=$T/busybox:$PATH TOOLS=" with busybox's awk, sed, tr, blockdev"
	unit_tests
done

# =========================================================================================
# 2. The real rauc, on a loop device
# =========================================================================================
echo "--- rauc: install, status, mark-good, mark-bad, mark-active"
DISK=$T/disk.img
"$SLOTCTL_BIN" --disk "$DISK" format --size 64M --slot-size $SLOT_SIZE >/dev/null || fatal "slotctl format"
LOOP=$(losetup -f --show "$DISK") || fatal "losetup could not attach $DISK"
# Partition nodes: the kernel's own scan where it reads GPTs, else partx adds them.
partx -a "$LOOP" 2>/dev/null || partx -u "$LOOP" 2>/dev/null
udevadm settle 2>/dev/null
for i in $(seq 50); do [ -b "${LOOP}p2" ] && break; sleep 0.1; done
[ -b "${LOOP}p1" ] && [ -b "${LOOP}p2" ] || fatal "no partition nodes ${LOOP}p1, ${LOOP}p2"
same "the kernel's partition 2 is slotctl's slot b" "$(cat /sys/class/block/"${LOOP##*/}p2"/start)" "$(cgpt show -i 2 -b "$DISK")"
CONF=$T/slotctl.conf
make_conf "$CONF" "$LOOP" "file:$T/counters"
s() { "$SLOTCTL_BIN" --config "$CONF" "$@"; }
s counters provision --locations 8 >/dev/null || fatal "slotctl counters provision"
rm -f "$T/run/booted"
# The factory image: v1 in a, booted and confirmed.
s install "$T/v1.img" --slot a >/dev/null && [ "$(s boot)" = a ] && s mark-successful >/dev/null ||
	fatal "could not install, boot and confirm v1 in slot a"
# Hold the whole disk open for the rest of the test, as a mounted partition does on a device:
# its page cache then outlives each slotctl run (rauc-backend's flush_disk_cache).
exec 9<"$LOOP"

# RAUC's own PKI: a CA, a signing key and certificate.
mkdir -p "$T/pki"
(
	cd "$T/pki" &&
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 3650 \
			-subj "/O=slotctl test/CN=slotctl test CA" -addext basicConstraints=critical,CA:TRUE \
			-addext keyUsage=critical,keyCertSign,cRLSign &&
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout signer.key -out signer.csr \
			-subj "/O=slotctl test/CN=slotctl test release" &&
		printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' >signer.ext &&
		openssl x509 -req -in signer.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out signer.pem -days 3650 -extfile signer.ext
) >"$T/pki.log" 2>&1 || fatal "openssl could not make RAUC's CA and signing certificate (pki.log)"

# bundle NAME IMAGE VERSION: a RAUC bundle of one slotctl image for the rootfs class.
bundle() {
	rm -rf "$T/bundle-$1" && mkdir "$T/bundle-$1" && cp "$T/$2" "$T/bundle-$1/rootfs.img" &&
		printf '[update]\ncompatible=slotctl-rauc-test\nversion=%s\n\n[bundle]\nformat=plain\n\n[image.rootfs]\nfilename=rootfs.img\n' "$3" \
			>"$T/bundle-$1/manifest.raucm" &&
		rauc bundle --cert="$T/pki/signer.pem" --key="$T/pki/signer.key" --keyring="$T/pki/ca.pem" \
			"$T/bundle-$1" "$T/$1.raucb" >>"$T/bundle.log" 2>&1
}
for b in "v2 v2.img 2.0" "v3 v3.img 3.0" "untrusted untrusted.img 4.0" "unsigned unsigned.img 5.0"; do
	# shellcheck disable=SC2086
	bundle $b || fatal "rauc bundle ${b%% *} (bundle.log: $(tail -n 1 "$T/bundle.log"))"
done
ok "rauc bundle: four bundles of slotctl images, signed by RAUC's CA"

# RAUC calls this logging shim, which runs the real handler.
cat >"$T/backend" <<EOF
#!/bin/sh
echo "\$*" >>"$T/calls"
exec "$BACKEND" "\$@"
EOF
chmod +x "$T/backend"
cat >"$T/system.conf" <<EOF
[system]
compatible=slotctl-rauc-test
bootloader=custom
mountprefix=$T/mnt
statusfile=$T/rauc.status

[keyring]
path=$T/pki/ca.pem

[handlers]
bootloader-custom-backend=$T/backend

[slot.rootfs.0]
device=${LOOP}p1
type=raw
bootname=A

[slot.rootfs.1]
device=${LOOP}p2
type=raw
bootname=B
EOF

# A private session bus, as RAUC's own tests use (DBUS_STARTER_BUS_TYPE=session).
dbus-daemon --session --address="unix:path=$T/bus" --fork --print-pid=1 >"$T/dbus.pid" 2>"$T/dbus.log" ||
	fatal "dbus-daemon --session did not start ($(cat "$T/dbus.log"))"
DBUS_PID=$(head -n 1 "$T/dbus.pid")
export DBUS_SESSION_BUS_ADDRESS="unix:path=$T/bus" DBUS_STARTER_BUS_TYPE=session
export SLOTCTL=$SLOTCTL_BIN SLOTCTL_CONFIG=$CONF
rauc() { command rauc --conf="$T/system.conf" "$@"; }

start_service() {
	echo "--- rauc service started" >>"$T/service.log"
	# In a mount namespace of its own where /proc/cmdline is a slotctl device's
	# (root=slotctl): what RAUC 1.8 reads to find the booted slot.
	unshare -m --propagation private sh -c 'mount --bind "$1" /proc/cmdline && shift && exec "$@"' sh "$T/cmdline" \
		env RAUC="$(command -v rauc)" "$SERVICE" --conf="$T/system.conf" >>"$T/service.log" 2>&1 &
	RAUC_PID=$!
	for i in $(seq 100); do
		dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
			org.freedesktop.DBus.NameHasOwner string:de.pengutronix.rauc 2>/dev/null | grep -q "boolean true" && return 0
		kill -0 "$RAUC_PID" 2>/dev/null || break
		sleep 0.1
	done
	fatal "rauc service did not come up (service.log: $(tail -n 3 "$T/service.log" | tr '\n' ' '))"
}
stop_service() {
	kill "$RAUC_PID" 2>/dev/null
	wait "$RAUC_PID" 2>/dev/null
	RAUC_PID=
}
# A reboot: the service stops, slotctl boot chooses (and spends a try), the service
# starts again and learns the booted slot from slotctl's record.
reboot_into() { # WANT
	stop_service
	local got
	got=$(s boot 2>>"$T/boot.log")
	same "reboot: slotctl boot chooses $1" "$got" "$1"
	start_service
}
# table WHAT "P T S / P T S": both slots as cgpt reads them.
table() { same "$1: cgpt show -i 1,2 -P -T -S" "$(attr 1 "$LOOP") / $(attr 2 "$LOOP")" "$2"; }
# rauc_says WHAT BOOTED PRIMARY STATE_A STATE_B: rauc status --output-format=json.
rauc_says() {
	local json
	json=$(rauc status --output-format=json 2>>"$T/rauc-client.log")
	same "$1: rauc status --output-format=json (booted, primary, rootfs.0, rootfs.1)" \
		"$(jget 'j["booted"]' <<<"$json") $(jget 'j["boot_primary"]' <<<"$json") $(jget 'r["rootfs.0"]["boot_status"]' <<<"$json") $(jget 'r["rootfs.1"]["boot_status"]' <<<"$json")" \
		"$2 $3 $4 $5"
}
# slotctl_says WHAT NEXT A_VERIFIED B_VERIFIED: slotctl boot --dry-run's choice and
# slotctl status --json's verdicts.
slotctl_says() {
	local json
	json=$(s --json status 2>/dev/null)
	same "$1: slotctl boot --dry-run, status --json (a, b verified)" \
		"$(s boot --dry-run 2>/dev/null) $(jget 's["a"]["image"]["verified"]' <<<"$json") $(jget 's["b"]["image"]["verified"]' <<<"$json")" \
		"$2 $3 $4"
}
# rauc_ok WHAT ARGS...: rauc ARGS must succeed; its last line goes into the report.
rauc_ok() {
	local what=$1 out rc
	shift
	out=$(rauc "$@" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ]; then ok "$what ($(echo "$out" | tail -n 1))"; else bad "$what (exit $rc: $(echo "$out" | tail -n 3 | tr '\n' ' '))"; fi
}
calls() { same "$1: what RAUC called" "$(grep -v '^get-' "$T/calls" | tr '\n' ',' | sed 's/,$//')" "$2"; : >"$T/calls"; }
: >"$T/calls"

start_service
text=$(rauc status 2>&1)
case $text in *"Booted from: rootfs.0 (A)"*"Activated: rootfs.0 (A)"*) ok "rauc status: booted from and activated rootfs.0 (A)" ;;
*) bad "rauc status (text): $text" ;; esac
rauc_says "before any install" A rootfs.0 good bad
slotctl_says "before any install" a true false
same "rauc status asked the backend" "$(sort -u "$T/calls" | tr '\n' ',')" "get-primary,get-state A,get-state B,"
: >"$T/calls"

# --- install v2: into b, activated ---------------------------------------------------------
rauc_ok "rauc install v2.raucb (into rootfs.1)" install "$T/v2.raucb"
calls "install" "set-state B bad,set-primary B"
check "slot b holds the bundle's image, byte for byte" cmp -s "$T/v2.img" "${LOOP}p2"
table "after install" "14 0 1 / 15 6 0"
rauc_says "after install" A rootfs.1 good good
slotctl_says "after install" b true true

# --- a second install while b is still on trial is refused ---------------------------------
reboot_into b
rauc_says "b booted, on trial" B rootfs.1 good good
table "b booted: one try spent" "14 0 1 / 15 5 0"
out=$(rauc install "$T/v3.raucb" 2>&1)
rc=$?
check "rauc install while the booted slot is on trial fails (exit $rc)" test "$rc" -ne 0
calls "install refused" "set-state A bad"
check "... the backend said why, in the service log" grep -q "still on trial" "$T/service.log"
table "install refused: a untouched" "14 0 1 / 15 5 0"

# --- mark-good: b confirmed, counter raised -----------------------------------------------
rauc_ok "rauc status mark-good" status mark-good
calls "mark-good" "set-state B good"
table "after mark-good" "14 0 1 / 15 0 1"
same "mark-good raised the rollback counter to v2's index" "$(s --json counters | jget 'j["result"]["counters"]["locations"][0]["value"]')" 2
rauc_says "after mark-good: a's v1 is a rollback now" B rootfs.1 bad good
slotctl_says "after mark-good" b false true

# --- install v3 into a, boot it, mark-bad: falls back to b ----------------------------------
rauc_ok "rauc install v3.raucb (into rootfs.0)" install "$T/v3.raucb"
calls "install" "set-state A bad,set-primary A"
table "after install into a" "15 6 0 / 14 0 1"
rauc_says "after install into a" B rootfs.0 good good
slotctl_says "after install into a" a true true
reboot_into a
rauc_ok "rauc status mark-bad" status mark-bad
calls "mark-bad" "set-state A bad"
table "after mark-bad" "0 0 0 / 14 0 1"
rauc_says "after mark-bad" A rootfs.1 bad good
slotctl_says "after mark-bad" b true true

# --- mark-active rootfs.0: a trial again; mark-good -----------------------------------------
rauc_ok "rauc status mark-active rootfs.0" status mark-active rootfs.0
calls "mark-active" "set-primary A"
table "after mark-active" "15 6 0 / 14 0 1"
rauc_says "after mark-active" A rootfs.0 good good
slotctl_says "after mark-active" a true true
reboot_into a
rauc_ok "rauc status mark-good booted" status mark-good booted
table "after mark-good" "15 0 1 / 14 0 1"
same "mark-good raised the rollback counter to v3's index" "$(s --json counters | jget 'j["result"]["counters"]["locations"][0]["value"]')" 3

# --- mark-active other: b holds v2, now a rollback: RAUC is told b, slotctl refuses it -------
rauc_ok "rauc status mark-active other" status mark-active other
table "after mark-active other" "14 0 1 / 15 6 0"
rauc_says "b activated but a rollback" A rootfs.0 good bad
slotctl_says "b activated but a rollback" a true false
rauc_ok "rauc status mark-active booted" status mark-active booted
table "mark-active booted: a primary and still confirmed" "15 0 1 / 14 6 0"
slotctl_says "after mark-active booted" a true false

# --- bundles whose image slotctl does not trust: installed, never booted ---------------------
for kind in untrusted unsigned; do
	rauc_ok "rauc install $kind.raucb (into rootfs.1): RAUC installs it" install "$T/$kind.raucb"
	check "slot b holds the $kind image" cmp -s "$T/$kind.img" "${LOOP}p2"
	table "$kind image installed and activated" "14 0 1 / 15 6 0"
	rauc_says "$kind image installed" A rootfs.0 good bad
	slotctl_says "$kind image installed" a true false
	reboot_into a
	table "$kind image refused at boot and marked unbootable" "14 0 1 / 0 0 0"
	rauc_says "after the reboot" A rootfs.0 good bad
done

# --- a slot written behind slotctl's back (rauc write-slot): judged by what is on the disk ---
# slotctl reads slots through the whole disk, RAUC writes them through the partition node;
# with the disk held open, the disk's page cache still holds b's old bytes.
rauc_ok "rauc status mark-active other: b (the unsigned image) primary again" status mark-active other
rauc_says "b's unsigned image activated" A rootfs.0 good bad
: >"$T/calls"
rauc_ok "rauc write-slot rootfs.1 v3.img" write-slot rootfs.1 "$T/v3.img"
calls "write-slot" ""
check "slot b holds v3" cmp -s "$T/v3.img" "${LOOP}p2"
rauc_says "b rewritten with v3 (the backend drops the disk's stale cache)" A rootfs.1 good good
slotctl_says "b rewritten with v3" b true true

# --- how rauc 1.8 learns the booted slot ---------------------------------------------------
# Every start above went through rauc-service, which passed slotctl's record as
# --override-boot-slot (the reboots into b and a showed in "booted"). Without the record
# rauc reads /proc/cmdline, which on a slotctl device names no slot (root=slotctl).
stop_service
mv "$T/run/booted" "$T/run/booted.saved"
start_service
text=$(rauc status 2>&1)
case $text in *"Booted from: rootfs."*) bad "without slotctl's record, root=slotctl: rauc 1.8 should find no booted slot: $text" ;;
*) ok "without slotctl's record rauc 1.8 finds no booted slot on root=slotctl ($(echo "$text" | tail -n 1))" ;; esac
out=$(rauc install "$T/v3.raucb" 2>&1)
rc=$?
check "... and cannot install (exit $rc)" test "$rc" -ne 0
check "... rauc-service said it had no booted slot from slotctl" grep -q "no booted slot from slotctl" "$T/service.log"
stop_service
mv "$T/run/booted.saved" "$T/run/booted"
table "nothing changed meanwhile" "14 0 1 / 15 6 0"

# --- a state slotctl cannot judge: an error in RAUC's log, not a guessed "bad" -------------
make_conf "$T/nocounters-rauc.conf" "$LOOP" "file:$T/never-provisioned"
cp "$T/service.log" "$T/service.log.before"
SLOTCTL_CONFIG=$T/nocounters-rauc.conf start_service
rauc status --output-format=json >/dev/null 2>&1
stop_service
since=$(tail -n +"$(($(wc -l <"$T/service.log.before") + 1))" "$T/service.log")
case $since in *"Failed to get boot state of rootfs.0"*"could not be judged (code 28)"*|*"could not be judged (code 28)"*"Failed to get boot state of rootfs.0"*)
	ok "counters out of reach: the backend fails get-state with 28 and its reason, RAUC logs that it could not get the state" ;;
*) bad "counters out of reach: service log: $since" ;; esac
table "nothing changed" "14 0 1 / 15 6 0"

check "sgdisk -v: no problems after every write" sh -c "sgdisk -v '$LOOP' | grep -q 'No problems found'"

echo "rauc: $passed passed, $failed failed in $(($(date +%s) - started)) s"
[ "$failed" -eq 0 ]
