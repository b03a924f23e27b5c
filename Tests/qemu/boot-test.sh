#!/usr/bin/env bash
# make test-qemu: boots Debian's kernel in QEMU with an initramfs made from packaging/
# (the static slotctl, the trusted key and one of the hooks) on a GPT disk with two
# signed dm-verity slots, and walks the update story through real reboots.
#
#   boot-test.sh [initramfs-tools | dracut | dracut-shell | kexec]
#
# initramfs-tools (default): Debian's mkinitramfs with the hook and local-top script;
#   the whole story below (steps 1-7, ten boots).
# dracut: Debian's dracut with packaging/dracut/90slotctl in its default systemd mode
#   (systemd is PID 1 of the initramfs); dracut-shell: the same module in dracut's shell
#   mode (systemd left out). Steps 1, 2, 2b, 5, 6 and 7 (seven boots): the module's part is
#   the same for steps 3 and 4, which only slotctl's decision tells apart. dracut is the
#   host's when installed; otherwise Debian's dracut packages are unpacked into .build
#   (scripts/install-deps.sh qemu), since they cannot be installed beside initramfs-tools.
# kexec: the initramfs-tools initramfs as stage-0 with SLOTCTL_KEXEC=yes (spec/kexec.md):
#   every slot carries its own kernel (Debian's, marked K<version> on its command line),
#   initramfs and command line in its verified root, and stage-0 starts it; the story
#   before the main story below (steps k1-k6).
#
# The story:
#   1. slot a (v1) boots through dm-verity, its health checks pass, it is confirmed;
#   2. v2 installed to b fails its health check: mark-failed, reboot, a boots again;
#   3. v3 written to b raw, signed by a key the device does not trust: refused, a boots;
#   4. v4 installed to b with 2 tries hangs (reboots before confirming) until the tries
#      run out, then a boots;
#   2b. (dracut) v6 in b verifies but is no file system: the job marks it failed and
#      takes its error action;
#   5. v5 (no dm-verity tree) installed to b is good: b boots read-only and is confirmed;
#   6. with b taken out, a's v1 is below the rollback counter v5 raised: refused, and
#      the initramfs takes its no-bootable-slot action (panic);
#   7. the same with SLOTCTL_ON_NO_SLOT=recovery: the recovery root (partition 4; 3 is the state partition)
#      runs, read-only.
# Rollback counters live in a software TPM (swtpm) that QEMU presents as a TPM 2.0 TIS
# device: the guest's slotctl reaches it through /dev/tpmrm0, and the host cross-checks
# every value with tpm2_nvread.
# Every step is judged by the serial console and by cgpt on the disk afterwards. A failed
# step prints its console log (and all logs stay in $WORK). A boot that does not end by
# itself within QEMU_TIMEOUT (a halt, a shell, a hang) fails.
#
# Environment: QEMU_ACCEL (default tcg: on these machines /dev/kvm opens but a KVM guest
# hangs before its first console line; QEMU_ACCEL=kvm where KVM works), QEMU_TIMEOUT
# seconds per boot (default 240), SLOTCTL_STATIC (default .build/embedded/static/slotctl, make embedded),
# DRACUT_ROOT (where Debian's dracut packages are unpacked; default .build/dracut/root).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
FLAVOUR=${1:-initramfs-tools}
case "$FLAVOUR" in
initramfs-tools | dracut | dracut-shell | kexec) ;;
*) echo "usage: $0 [initramfs-tools | dracut | dracut-shell | kexec]" >&2; exit 2 ;;
esac
WORK=${WORK:-$ROOT/.build/qemu-test/$FLAVOUR}
SLOTCTL_STATIC=${SLOTCTL_STATIC:-$ROOT/.build/embedded/static/slotctl}
QEMU_TIMEOUT=${QEMU_TIMEOUT:-240}
SLOT_SIZE=40M ROOTFS_SIZE=24M DISK_SIZE=96M
# A kexec slot also holds a kernel (8 MB) and an initramfs (11 MB).
[ "$FLAVOUR" = kexec ] && SLOT_SIZE=56M ROOTFS_SIZE=48M DISK_SIZE=128M

passed=0
failed=0
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
pass() { echo "ok: $*"; passed=$((passed + 1)); }
die() { echo "test-qemu ($FLAVOUR): $*" >&2; echo "qemu ($FLAVOUR): $passed passed, $((failed + 1)) failed"; exit 1; }

KVER=$(ls /lib/modules | sort -V | tail -n 1)
KERNEL=/boot/vmlinuz-$KVER
[ -n "$KVER" ] && [ -r "$KERNEL" ] || die "no kernel in /boot (linux-image-amd64)"
[ -x "$SLOTCTL_STATIC" ] || die "$SLOTCTL_STATIC missing (make embedded)"
for tool in qemu-system-x86_64 mke2fs cgpt openssl busybox veritysetup swtpm tpm2_nvread; do
	command -v "$tool" >/dev/null || die "$tool missing"
done
DRACUT_ROOT=${DRACUT_ROOT:-$ROOT/.build/dracut/root}
case "$FLAVOUR" in
initramfs-tools | kexec) command -v mkinitramfs >/dev/null || die "mkinitramfs missing (initramfs-tools)" ;;
*)
	# The host's dracut, or Debian's unpacked. Either way a private copy of its module
	# tree with ours added, so the test installs nothing into the host's dracut.
	if command -v dracut >/dev/null; then
		DRACUT=$(command -v dracut) DRACUT_BASE=/usr/lib/dracut LSINITRD=$(command -v lsinitrd)
	else
		DRACUT=$DRACUT_ROOT/usr/bin/dracut DRACUT_BASE=$DRACUT_ROOT/usr/lib/dracut LSINITRD=$DRACUT_ROOT/usr/bin/lsinitrd
	fi
	[ -x "$DRACUT" ] && [ -d "$DRACUT_BASE/modules.d" ] || die "no dracut (scripts/install-deps.sh qemu unpacks Debian's into $DRACUT_ROOT)"
	;;
esac
QEMU_ACCEL=${QEMU_ACCEL:-tcg}

rm -rf "$WORK"
mkdir -p "$WORK"/{keys,logs,tpm}
cd "$WORK" || exit 1
umask 022

# The binary the device runs: the static one, stripped as an initramfs would carry it.
cp "$SLOTCTL_STATIC" slotctl && strip slotctl
HOST_SLOTCTL=$WORK/slotctl

# Keys made by openssl: the release key the device trusts, and one it does not.
openssl genpkey -algorithm ed25519 -out release.pem 2>/dev/null
openssl pkey -in release.pem -pubout -out keys/release.pem
openssl genpkey -algorithm ed25519 -out rogue.pem 2>/dev/null

# The device's configuration, the same in the initramfs and in every slot's root.
cat > slotctl.conf <<EOF
disk = /dev/vda
keys = /etc/slotctl/keys
counters = tpm:/dev/tpmrm0
# Measured boot into PCR 8 (nothing else extends it here: SeaBIOS, no GRUB); the guest
# prints `slotctl measure --json` and the host compares it with its own prediction.
measure = pcr:8
EOF
cat > boot.conf <<'EOF'
SLOTCTL_DISK_WAIT=30
SLOTCTL_ON_NO_SLOT=panic
# v5 has no dm-verity tree (step 5): the hook's read-only path for such a slot.
SLOTCTL_REQUIRE_VERITY=no
EOF
[ "$FLAVOUR" = kexec ] && echo "SLOTCTL_KEXEC=yes" >> boot.conf

# A slot's root file system: busybox-static, the static slotctl, the confirmation script
# from packaging/, and one health check whose behaviour the step chooses:
#   pass   exit 0                    fail   exit 1
#   hang   reboot before the confirmation could run (a boot that never completes)
make_rootfs() {
	local version=$1 health=$2 dir=rootfs-$1
	rm -rf "$dir"
	mkdir -p "$dir"/{bin,sbin,usr/sbin,usr/libexec/slotctl,etc/slotctl/keys,etc/slotctl/health.d,proc,sys,dev,run,tmp}
	cp "$(command -v busybox)" "$dir/bin/busybox"
	for applet in sh cat echo mount umount sleep sync reboot poweroff head sed grep ls mkdir ln timeout logger dmesg tr; do
		ln -s busybox "$dir/bin/$applet"
	done
	cp "$HOST_SLOTCTL" "$dir/usr/sbin/slotctl"
	cp "$ROOT/packaging/libexec/slotctl-confirm" "$dir/usr/libexec/slotctl/slotctl-confirm"
	cp slotctl.conf "$dir/etc/slotctl.conf"
	cp keys/release.pem "$dir/etc/slotctl/keys/"
	echo "$version" > "$dir/etc/slot-version"
	# kexec: the slot's own kernel (Debian's, marked K<version> on its command line) and
	# initramfs (the test's, which sees slotctl.slot= and runs boot --chosen). The command
	# line is the step's: KEXEC_CMDLINE, or the usual one; KEXEC_NO_INITRD leaves it out.
	if [ "$FLAVOUR" = kexec ]; then
		mkdir -p "$dir/boot/slotctl"
		cp "$KERNEL" "$dir/boot/slotctl/vmlinuz"
		[ -n "${KEXEC_NO_INITRD:-}" ] || cp initrd.img "$dir/boot/slotctl/initrd.img"
		echo "${KEXEC_CMDLINE:-root=slotctl console=ttyS0 panic=-1 loglevel=4} slotctl.kernel=K$version" > "$dir/boot/slotctl/cmdline"
	fi
	# systemd's switch-root (dracut's systemd mode) takes only a tree with an os-release.
	printf 'NAME="slotctl test slot"\nID=slotctl-test\nVERSION_ID=%s\n' "$version" > "$dir/etc/os-release"
	# PID 1 here is a shell script with no shutdown of its own: reboot at once.
	cat > "$dir/etc/default-slotctl" <<'EOF'
SLOTCTL_CHECK_TIMEOUT=30
SLOTCTL_REBOOT=/bin/kmsg-reboot
EOF
	case "$health" in
	pass) printf '#!/bin/sh\necho "health: all good"\nexit 0\n' ;;
	fail) printf '#!/bin/sh\necho "health: service did not start"\nexit 1\n' ;;
	hang) printf '#!/bin/sh\necho "health: hung; the watchdog reboots"\nsync\nreboot -f\nsleep 60\n' ;;
	esac > "$dir/etc/slotctl/health.d/10-service"
	chmod 755 "$dir/etc/slotctl/health.d/10-service"
	mkdir -p "$dir/etc/default" && mv "$dir/etc/default-slotctl" "$dir/etc/default/slotctl"
	# The confirmation's reboot after a failed check, with what it told the kernel log
	# first: the boot that would show it is gone once the machine reboots.
	printf '#!/bin/sh\ndmesg | grep "slotctl: confirm: " | sed "s/^/QEMU-KMSG: /"\nreboot -f\n' > "$dir/bin/kmsg-reboot"
	chmod 755 "$dir/bin/kmsg-reboot"
	# PID 1 of the slot: say what booted, run the post-boot confirmation from packaging/
	# (checks, then mark-successful, or mark-failed and reboot), then power off.
	cat > "$dir/sbin/init" <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "QEMU-TEST: running version $(cat /etc/slot-version) from slot $(head -n 1 /run/slotctl/booted) root $(grep ' / ' /proc/mounts | head -n 1 | sed 's/^\([^ ]*\) [^ ]* [^ ]* \([^ ,]*\).*/\1 \2/')"
echo "QEMU-TEST: kernel command line: $(cat /proc/cmdline)"
echo "QEMU-TEST: measure: $(/usr/sbin/slotctl --json measure 2>&1)"
# A slot that carries a kernel: what kexec would start from this very root (kexec flavour).
[ -f /boot/slotctl/vmlinuz ] && echo "QEMU-TEST: kexec dry run: $(/usr/sbin/slotctl --json kexec --dry-run / 2>&1)"
# What the initramfs told the kernel log about this boot.
dmesg | grep 'slotctl: ' | sed 's/^/QEMU-KMSG: /'
/usr/libexec/slotctl/slotctl-confirm
echo "QEMU-TEST: confirm exited $?"
dmesg | grep 'slotctl: confirm: ' | sed 's/^/QEMU-KMSG: /'
/usr/sbin/slotctl status
sync
echo "QEMU-TEST: power off"
poweroff -f
sleep 60
EOF
	chmod 755 "$dir/sbin/init"
	# ext4 without a journal: mounted read-only through dm-verity, never written.
	mke2fs -q -t ext4 -O ^has_journal -b 4096 -d "$dir" "rootfs-$version.ext4" "$ROOTFS_SIZE" || die "mke2fs $version"
}

sign() { # version index key [plain: no dm-verity tree]
	local verity=--verity
	[ "${4:-}" = plain ] && verity=
	"$HOST_SLOTCTL" sign --key "$3" --rollback-index "$2" --image-version "$1" $verity \
		--partition-size "$SLOT_SIZE" "rootfs-$1.ext4" -o "v$1.img" >/dev/null || die "sign v$1"
}

host() { "$HOST_SLOTCTL" --disk disk.img --keys keys --booted-file "$WORK/host-booted" --cmdline-file /dev/null "$@"; }

# cgpt's view of slot N: priority tries successful.
cgpt_state() {
	echo "$(cgpt show -i "$1" -P disk.img) $(cgpt show -i "$1" -T disk.img) $(cgpt show -i "$1" -S disk.img)"
}

# --- The software TPM. On the host it listens on TCP (provisioning and cross-checks);
# for a boot it serves QEMU's TPM emulator device over a UNIX socket. Same state dir.
# A free pair of ports: nothing answers on either.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
TPM_PORT=$((24000 + $$ % 2000 * 2))
while port_in_use "$TPM_PORT" || port_in_use $((TPM_PORT + 1)); do TPM_PORT=$((TPM_PORT + 2)); done
TPM_PID=
tpm_stop() { [ -n "$TPM_PID" ] && kill "$TPM_PID" 2>/dev/null && wait "$TPM_PID" 2>/dev/null; TPM_PID=; }
QEMU_PID=
trap '[ -n "$QEMU_PID" ] && kill "$QEMU_PID" 2>/dev/null; tpm_stop' EXIT
tpm_host_start() {
	swtpm socket --tpm2 --server type=tcp,port=$TPM_PORT,bindaddr=127.0.0.1 \
		--ctrl type=tcp,port=$((TPM_PORT + 1)),bindaddr=127.0.0.1 --tpmstate dir="$WORK/tpm" \
		--flags not-need-init,startup-clear &
	TPM_PID=$!
	# Ours only if our swtpm is still running once the port answers.
	for _ in $(seq 50); do port_in_use "$TPM_PORT" && kill -0 "$TPM_PID" 2>/dev/null && return 0; sleep 0.1; done
	die "swtpm did not start on port $TPM_PORT"
}
# The counter at rollback location 0 as slotctl reads it, and checked against the raw
# value tpm2_nvread reads from the NV index (the raw value is base + counter).
TPM_BASE=
counter_value() {
	tpm_host_start
	local json raw
	json=$("$HOST_SLOTCTL" --counters "tpm:tcp:127.0.0.1:$TPM_PORT" --json counters)
	COUNTER=$(sed -n 's/.*"location":0,"value":\([0-9]*\).*/\1/p' <<<"$json")
	raw=$(TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$TPM_PORT" tpm2_nvread 0x01505C00 -C 0x01505C00 -s 8 | od -An -tx1 | tr -d ' \n')
	tpm_stop
	RAW=$((16#$raw))
}
expect_counter() { # value description
	counter_value
	if [ "$COUNTER" = "$1" ] && [ "$RAW" = $((TPM_BASE + $1)) ]; then
		pass "$2 (slotctl: $COUNTER, tpm2_nvread: base $TPM_BASE + $COUNTER)"
	else
		fail "$2: slotctl reads '$COUNTER', tpm2_nvread $RAW with base $TPM_BASE; expected $1"
	fi
}

BOOT_NUMBER=0
# One power-on; the guest powers off (or reboots, which -no-reboot turns into an exit).
boot() {
	BOOT_NUMBER=$((BOOT_NUMBER + 1))
	LOG=logs/boot-$BOOT_NUMBER.log
	echo "--- boot $BOOT_NUMBER: $*"
	local accel=(-accel tcg)
	[ "$QEMU_ACCEL" = kvm ] && accel=(-accel kvm -accel tcg)
	rm -f "$WORK/tpm/ctrl.sock"
	swtpm socket --tpm2 --tpmstate dir="$WORK/tpm" --ctrl type=unixio,path="$WORK/tpm/ctrl.sock" --terminate &
	TPM_PID=$!
	for _ in $(seq 50); do [ -S "$WORK/tpm/ctrl.sock" ] && break; sleep 0.1; done
	[ -S "$WORK/tpm/ctrl.sock" ] || die "swtpm did not create its socket for QEMU"
	: > "$LOG"
	timeout "$QEMU_TIMEOUT" qemu-system-x86_64 "${accel[@]}" -m 512 -smp 1 -nodefaults -no-reboot \
		-display none -serial "file:$LOG" \
		-chardev socket,id=chrtpm,path="$WORK/tpm/ctrl.sock" -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0 \
		-kernel "$KERNEL" -initrd initrd.img \
		-append "root=slotctl console=ttyS0 panic=-1 loglevel=4 $KERNEL_ARGS" \
		-drive "file=disk.img,format=raw,if=virtio,cache=writethrough" &
	QEMU_PID=$!
	# CUT_AT=PATTERN: a power cut (QEMU killed) as soon as the console shows PATTERN.
	if [ -n "${CUT_AT:-}" ]; then
		while kill -0 "$QEMU_PID" 2>/dev/null && ! grep -a -q -E "$CUT_AT" "$LOG"; do sleep 0.05; done
		# QEMU itself (QEMU_PID is timeout's): a cut, not a shutdown.
		pkill -KILL -P "$QEMU_PID" qemu-system 2>/dev/null && echo "    | (power cut at /$CUT_AT/)"
	fi
	wait "$QEMU_PID"
	local rc=$?
	QEMU_PID=
	tpm_stop
	# Every boot ends by itself: powered off, rebooted (-no-reboot), or a panic that
	# reboots (panic=-1). One that hangs (a halt, a shell, a wait that never ends) fails.
	if [ "$rc" -eq 124 ]; then
		fail "boot $BOOT_NUMBER: did not end within ${QEMU_TIMEOUT}s"
		show_log
	fi
	grep -a -E "QEMU-TEST|slotctl-boot|slotctl-confirm|slotctl: warning|health:|Kernel panic|FATAL|System halted|reboot: Restarting" "$LOG" | tr -d '\r' | sed 's/^/    | /'
}

# The PCR the guest read through QEMU's TPM device (swtpm) against the host's prediction
# for IMAGE in SLOT (spec/measured-boot.md); with "log", the guest's measurement log must
# replay to it too (after a kexec, through the record `boot --chosen` adds once the PCR
# shows stage-0's measurement: stage-0's own log stays in its /run).
expect_measured() { # image slot [log]
	local predicted line
	predicted=$("$HOST_SLOTCTL" --keys keys --json measure predict "$1" --slot "$2" --pcr 8 | sed -n 's/.*"value":"\([0-9a-f]*\)".*/\1/p')
	line=$(grep -a "QEMU-TEST: measure: " "$LOG" | tr -d '\r' | head -n 1)
	if [ -n "$predicted" ] && echo "$line" | grep -q "\"value\":\"$predicted\""; then
		pass "boot $BOOT_NUMBER: PCR 8 read in the guest equals the host's prediction for $1 in slot $2 ($predicted)"
	else
		fail "boot $BOOT_NUMBER: PCR 8 is not the prediction $predicted for $1 in slot $2: $line"
	fi
	if [ "${3:-}" = log ]; then
		if echo "$line" | grep -q '"log_matches":true' && echo "$line" | grep -q '"slot":"'"$2"'"'; then
			pass "boot $BOOT_NUMBER: the guest's measurement log replays to PCR 8 and names slot $2"
		else
			fail "boot $BOOT_NUMBER: the guest's measurement log does not replay to PCR 8: $line"
		fi
	fi
}

show_log() { echo "=== console of boot $BOOT_NUMBER ($LOG):"; tr -d '\r' < "$LOG" | tail -n 80; }

expect_console() { # pattern description
	if grep -a -q -E "$1" "$LOG"; then pass "$2"; else fail "$2 (console lacks /$1/)"; show_log; fi
}
expect_not_console() {
	if grep -a -q -E "$1" "$LOG"; then fail "$2 (console has /$1/)"; show_log; else pass "$2"; fi
}
expect_state() { # partition "P T S" description
	local got
	got=$(cgpt_state "$1")
	if [ "$got" = "$2" ]; then pass "$3 (cgpt -P/-T/-S: $got)"; else fail "$3: cgpt -P/-T/-S of $1 is '$got', expected '$2'"; fi
}

# --- The initramfs, with the static slotctl, the trusted key, the config and the hook.
initramfs_tools() { # Debian's mkinitramfs with our hook and local-top script.
	mkdir -p initramfs-conf/hooks initramfs-conf/scripts/local-top
	cat > initramfs-conf/initramfs.conf <<'EOF'
MODULES=list
BUSYBOX=y
COMPRESS=gzip
RESUME=none
FSTYPE=ext4
EOF
	printf '%s\n' virtio_pci virtio_blk ext4 dm_verity > initramfs-conf/modules
	cp "$ROOT/packaging/initramfs-tools/hooks/slotctl" initramfs-conf/hooks/slotctl
	cp "$ROOT/packaging/initramfs-tools/scripts/local-top/slotctl" initramfs-conf/scripts/local-top/slotctl
	chmod 755 initramfs-conf/hooks/slotctl initramfs-conf/scripts/local-top/slotctl
	SLOTCTL_BIN=$HOST_SLOTCTL SLOTCTL_CONF=$WORK/slotctl.conf SLOTCTL_BOOT_CONF=$WORK/boot.conf \
		SLOTCTL_LIB=$ROOT/packaging/lib/boot.sh SLOTCTL_KEYS_SRC=$WORK/keys \
		mkinitramfs -d "$WORK/initramfs-conf" -o initrd.img "$KVER" > logs/initramfs.log 2>&1 || return 1
	CONTENTS=$(lsinitramfs initrd.img)
}
dracut_initramfs() { # dracut with packaging/dracut/90slotctl, in the mode of $FLAVOUR.
	local modules
	rm -rf dracut-base && cp -a "$DRACUT_BASE" dracut-base
	cp -r "$ROOT/packaging/dracut/90slotctl" dracut-base/modules.d/
	# Only what the boot needs (and what they depend on), as a device's image would have;
	# no host configuration.
	if [ "$FLAVOUR" = dracut ]; then
		# A test-only module: before switch-root, what the initramfs's journal holds under
		# the tag slotctl goes to the console, so the test reads `journalctl -t slotctl`.
		mkdir -p dracut-base/modules.d/99journaltest
		cat > dracut-base/modules.d/99journaltest/module-setup.sh <<'EOF2'
#!/bin/bash
check() { return 255; }
depends() { echo systemd-initrd; }
install() {
	inst_multiple journalctl
	inst_hook pre-pivot 99 "$moddir/journal-dump.sh"
}
EOF2
		cat > dracut-base/modules.d/99journaltest/journal-dump.sh <<'EOF2'
#!/bin/sh
journalctl -b -t slotctl -o cat --no-pager 2>&1 | while read -r line; do echo "QEMU-JOURNAL: $line" > /dev/console; done
EOF2
		chmod 755 dracut-base/modules.d/99journaltest/*
		modules="base systemd-initrd dracut-systemd slotctl journaltest"
	else
		modules="base udev-rules slotctl"
	fi
	mkdir -p dracut-conf.d
	dracutbasedir=$WORK/dracut-base SLOTCTL_BIN=$HOST_SLOTCTL SLOTCTL_CONF=$WORK/slotctl.conf \
		SLOTCTL_BOOT_CONF=$WORK/boot.conf SLOTCTL_LIB=$ROOT/packaging/lib/boot.sh SLOTCTL_KEYS_SRC=$WORK/keys \
		"$DRACUT" --conf /dev/null --confdir "$WORK/dracut-conf.d" --no-hostonly --no-hostonly-cmdline \
		--gzip --force --modules "$modules" --add-drivers "virtio_pci virtio_blk ext4 dm_verity" \
		initrd.img "$KVER" > logs/initramfs.log 2>&1 || return 1
	grep -q "Including module: slotctl" logs/initramfs.log || { echo "dracut left out the slotctl module"; return 1; }
	CONTENTS=$(dracutbasedir=$WORK/dracut-base "$LSINITRD" initrd.img)
	# The mode asked for: systemd as the initramfs's init, or dracut's shell init.
	if [ "$FLAVOUR" = dracut ]; then
		grep -q 'init -> usr/lib/systemd/systemd' <<<"$CONTENTS" || { echo "not a systemd initramfs"; return 1; }
	elif grep -q 'init -> usr/lib/systemd/systemd' <<<"$CONTENTS"; then
		echo "a systemd initramfs, not dracut's shell mode"
		return 1
	fi
}
make_initramfs() { # from boot.conf as it is now
	case "$FLAVOUR" in
	initramfs-tools | kexec) KERNEL_ARGS=; initramfs_tools ;;
	# rd.shell=0: no emergency shell for whoever holds the console, as on a device.
	*) KERNEL_ARGS=rd.shell=0; dracut_initramfs ;;
	esac || { cat logs/initramfs.log; die "making the $FLAVOUR initramfs failed"; }
}
make_initramfs
if grep -q 'usr/sbin/slotctl$' <<<"$CONTENTS" && grep -q 'etc/slotctl/keys/release.pem$' <<<"$CONTENTS" &&
	grep -q 'veritysetup$' <<<"$CONTENTS" && grep -q 'dm-verity.ko' <<<"$CONTENTS"; then
	pass "$FLAVOUR put slotctl, the key, veritysetup and dm-verity into the initramfs"
else
	fail "the $FLAVOUR initramfs lacks slotctl, the key, veritysetup or dm-verity"
fi

# --- kexec (spec/kexec.md): stage-0 (Debian's kernel, this initramfs with
#     SLOTCTL_KEXEC=yes) chooses and verifies a slot, then starts the kernel the slot
#     carries in its verified root; that kernel's initramfs verifies the slot again
#     (boot --chosen, no try spent) and mounts it. The slots' kernels are Debian's, told
#     apart by slotctl.kernel=K<version> on their own command lines.
if [ "$FLAVOUR" = kexec ]; then
	make_rootfs 1 pass; sign 1 1 release.pem
	# v2 keeps v1's rollback index, so that a's v1 stays a fallback once v2 is confirmed.
	make_rootfs 2 pass; sign 2 1 release.pem
	# v3's kernel panics at boot: no initramfs, and a root that does not exist.
	KEXEC_NO_INITRD=1 KEXEC_CMDLINE="console=ttyS0 panic=-1 loglevel=4 root=/dev/vdz" make_rootfs 3 pass
	sign 3 3 release.pem
	# v4 is signed without a dm-verity tree: nothing covers its kernel once it is read.
	make_rootfs 4 pass; sign 4 4 release.pem plain
	# v5's kernel is altered on the disk after it was signed and installed (step k5).
	make_rootfs 5 pass; sign 5 5 release.pem
	make_rootfs 6 pass; sign 6 1 release.pem
	tpm_host_start
	"$HOST_SLOTCTL" --counters "tpm:tcp:127.0.0.1:$TPM_PORT" counters provision --locations 8 >/dev/null || die "provision the TPM"
	tpm_stop
	counter_value
	TPM_BASE=$((RAW - COUNTER))
	host format --size "$DISK_SIZE" --slot-size "$SLOT_SIZE" --state >/dev/null || die "format"
	host install v1.img --slot a >/dev/null || die "install v1"

	# k1. a's own kernel runs a, which confirms itself.
	boot "v1 in a, its own kernel"
	expect_console "slotctl-boot: slot a: starting its own kernel" "boot $BOOT_NUMBER: stage-0 chose a and started its kernel"
	expect_console "QEMU-TEST: kernel command line: .*slotctl.kernel=K1 slotctl.slot=a" \
		"boot $BOOT_NUMBER: a's kernel K1 runs, with slotctl.slot=a added to its command line"
	expect_console "QEMU-TEST: running version 1 from slot a root /dev/mapper/slotctl-root ro" \
		"boot $BOOT_NUMBER: K1's initramfs verified a again and mounted it through dm-verity"
	expect_console "booted slot confirmed" "boot $BOOT_NUMBER: a confirmed from its own kernel"
	expect_measured v1.img a log
	expect_console 'QEMU-TEST: kexec dry run: \{"schema_version":1,"code":0,"status":"ok","command":"kexec","result":\{"slot":"a","root":"/","kernel_bytes":[1-9][0-9]+,"initrd_bytes":[1-9][0-9]+,"cmdline":"root=slotctl console=ttyS0 panic=-1 loglevel=4 slotctl.kernel=K1 slotctl.slot=a","dry_run":true\}\}' \
		"boot $BOOT_NUMBER: kexec --json --dry-run on a's own verified root names its kernel, initramfs and command line (spec/json.md)"
	expect_state 1 "15 0 1" "after boot $BOOT_NUMBER: a confirmed, one try spent (by stage-0 only)"
	expect_counter 1 "after boot $BOOT_NUMBER: the counter raised to v1's index"

	# k2. v2 installed to b: b's kernel K2 runs b, which is confirmed.
	host install v2.img --slot b >/dev/null || die "install v2"
	boot "v2 in b, its own kernel"
	expect_console "QEMU-TEST: kernel command line: .*slotctl.kernel=K2 slotctl.slot=b" \
		"boot $BOOT_NUMBER: b's kernel K2 runs, from slot b"
	expect_console "QEMU-TEST: running version 2 from slot b root /dev/mapper/slotctl-root ro" "boot $BOOT_NUMBER: v2 runs from b"
	expect_console "booted slot confirmed" "boot $BOOT_NUMBER: b confirmed"
	expect_state 2 "15 0 1" "after boot $BOOT_NUMBER: b confirmed"
	expect_counter 1 "after boot $BOOT_NUMBER: the counter at v2's index (v1's)"

	# k3. v3 in b with 2 tries: its kernel panics at boot. Each boot spends a try in
	#     stage-0, then a's kernel K1 runs a again.
	host install v3.img --slot b --tries 2 >/dev/null || die "install v3"
	boot "v3 in b, its kernel panics (try 1 of 2)"
	expect_console "slotctl-boot: slot b: starting its own kernel" "boot $BOOT_NUMBER: stage-0 started b's kernel K3"
	expect_console "Kernel panic - not syncing: VFS: Unable to mount root fs" "boot $BOOT_NUMBER: K3 panicked"
	expect_not_console "QEMU-TEST: running" "boot $BOOT_NUMBER: nothing ran"
	expect_state 2 "15 1 0" "after boot $BOOT_NUMBER: b has 1 try left"
	boot "v3 in b, its kernel panics (try 2 of 2)"
	expect_console "Kernel panic - not syncing: VFS: Unable to mount root fs" "boot $BOOT_NUMBER: K3 panicked again"
	expect_state 2 "15 0 0" "after boot $BOOT_NUMBER: b has no tries left"
	boot "tries spent: back to a's kernel"
	expect_console "slot b ran out of tries without being confirmed" "boot $BOOT_NUMBER: stage-0 retired b"
	expect_console "QEMU-TEST: kernel command line: .*slotctl.kernel=K1 slotctl.slot=a" "boot $BOOT_NUMBER: a's kernel K1 runs again"
	expect_console "QEMU-TEST: running version 1 from slot a" "boot $BOOT_NUMBER: v1 runs from a"
	expect_counter 1 "after boot $BOOT_NUMBER: the panicking v3 (index 3) raised nothing"

	# k4. v4 has no dm-verity tree: its kernel is refused before it is loaded, b is
	#     marked failed and the error action (panic, which reboots) taken.
	host install v4.img --slot b >/dev/null || die "install v4"
	boot "v4 in b, no dm-verity tree"
	expect_console "its kernel was not started \(status 52\): kexec: slot b: its image has no dm-verity tree" \
		"boot $BOOT_NUMBER: b's kernel refused as not covered by the signature"
	expect_not_console "slotctl.kernel=K4|QEMU-TEST: running" "boot $BOOT_NUMBER: K4 never ran"
	expect_state 2 "0 0 0" "after boot $BOOT_NUMBER: b marked failed"

	# k5. v5's kernel altered after signing: one byte of vmlinuz flipped on the disk. The
	#     table and the descriptor verify; reading the kernel through dm-verity fails.
	host install v5.img --slot b >/dev/null || die "install v5"
	block=$(debugfs -R "bmap /boot/slotctl/vmlinuz 1000" rootfs-5.ext4 2>/dev/null)
	[ -n "$block" ] && [ "$block" -gt 0 ] || die "debugfs: no block 1000 of v5's vmlinuz"
	byte=$(($(cgpt show -i 2 -b disk.img) * 512 + block * 4096 + 100))
	old=$(od -An -tu1 -j "$byte" -N1 disk.img | tr -d ' ')
	printf "\\$(printf '%03o' $((255 - old)))" | dd of=disk.img bs=1 seek="$byte" conv=notrunc status=none
	boot "v5 in b, its kernel altered after signing"
	expect_console "its kernel was not started \(status 23\): kexec: slot b: /boot/slotctl/vmlinuz in the slot: a block at byte [0-9]+ does not match the slot's dm-verity tree" \
		"boot $BOOT_NUMBER: the altered kernel refused by dm-verity as it was read"
	expect_not_console "slotctl.kernel=K5|QEMU-TEST: running" "boot $BOOT_NUMBER: K5 never ran"
	expect_state 2 "0 0 0" "after boot $BOOT_NUMBER: b marked failed"
	expect_counter 1 "after boot $BOOT_NUMBER: the counter unchanged"

	# k6. A power cut during the kexec step (QEMU killed once stage-0 says it starts b's
	#     kernel): the try it spent is spent, nothing else changed, and the next boot
	#     starts b's kernel as before.
	host install v6.img --slot b --tries 3 >/dev/null || die "install v6"
	CUT_AT="slot b: starting its own kernel" boot "v6 in b, power cut while its kernel is started"
	expect_not_console "QEMU-TEST: running" "boot $BOOT_NUMBER: cut before the slot ran"
	expect_state 2 "15 2 0" "after boot $BOOT_NUMBER: b spent one try, nothing else lost"
	boot "v6 in b after the cut"
	expect_console "QEMU-TEST: kernel command line: .*slotctl.kernel=K6 slotctl.slot=b" "boot $BOOT_NUMBER: b's kernel K6 runs"
	expect_console "booted slot confirmed" "boot $BOOT_NUMBER: b confirmed"
	expect_state 2 "15 0 1" "after boot $BOOT_NUMBER: b confirmed"
	sgdisk -v disk.img | grep -q "No problems found" && pass "sgdisk -v after the guest's writes: no problems" || fail "sgdisk -v complains"
	echo "console logs: $WORK/logs"
	echo "qemu ($FLAVOUR): $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit
fi

# --- The disk: two slots made by slotctl, checked by sgdisk; v1 installed into a.
make_rootfs 1 pass; sign 1 1 release.pem
make_rootfs 2 fail; sign 2 2 release.pem
make_rootfs 3 pass; sign 3 3 rogue.pem
make_rootfs 4 hang; sign 4 4 release.pem
make_rootfs 5 pass; sign 5 5 release.pem plain
# v6: signed and valid, but its payload is no file system (a build that went wrong).
head -c 8M /dev/zero > rootfs-6.ext4; sign 6 6 release.pem
tpm_host_start
"$HOST_SLOTCTL" --counters "tpm:tcp:127.0.0.1:$TPM_PORT" counters provision --locations 8 >/dev/null || die "provision the TPM"
tpm_stop
counter_value
TPM_BASE=$((RAW - COUNTER))
[ "$COUNTER" = 0 ] || die "a freshly provisioned counter reads $COUNTER"
host format --size "$DISK_SIZE" --slot-size "$SLOT_SIZE" --state >/dev/null || die "format"
host install v1.img --slot a >/dev/null || die "install v1"
sgdisk -v disk.img | grep -q "No problems found" && pass "sgdisk -v: no problems" || fail "sgdisk -v complains"

# 1. a boots through dm-verity and confirms itself.
boot "v1 in a"
expect_console "QEMU-TEST: running version 1 from slot a root /dev/mapper/slotctl-root ro" "boot $BOOT_NUMBER: v1 runs from slot a on the dm-verity mapping, read-only"
expect_console "booted slot confirmed" "boot $BOOT_NUMBER: health checks passed and a was confirmed"
expect_measured v1.img a log
expect_console "QEMU-KMSG: .*slotctl: slot a chosen: version '1', on trial, [0-9]+ tries left, /dev/vda1" \
	"boot $BOOT_NUMBER: the kernel log says which slot was chosen, its version and tries left"
if [ "$FLAVOUR" = dracut ]; then
	expect_console "QEMU-JOURNAL: slot a chosen: version '1', on trial, [0-9]+ tries left" \
		"boot $BOOT_NUMBER: journalctl -b -t slotctl in the systemd initramfs shows the same line"
fi
expect_console "QEMU-KMSG: .*slotctl: confirm: health check 10-service passed" \
	"boot $BOOT_NUMBER: the confirmation logged its health check to the kernel log"
expect_console "QEMU-KMSG: .*slotctl: confirm: booted slot confirmed" "boot $BOOT_NUMBER: ... and its verdict"
expect_state 1 "15 0 1" "after boot $BOOT_NUMBER: a is confirmed"
expect_counter 1 "after boot $BOOT_NUMBER: mark-successful raised the TPM counter to v1's index"

# 2. v2 installed to b fails its health check: marked failed, reboot, a boots again.
host install v2.img --slot b >/dev/null || die "install v2"
expect_state 2 "15 6 0" "install v2: b active with 6 tries, not confirmed"
boot "v2 in b, health check fails"
expect_console "QEMU-TEST: running version 2 from slot b" "boot $BOOT_NUMBER: v2 runs from slot b"
expect_console "health check 10-service failed" "boot $BOOT_NUMBER: the health check failed"
expect_not_console "booted slot confirmed" "boot $BOOT_NUMBER: b was not confirmed"
expect_console "QEMU-KMSG: .*slotctl: confirm: health check 10-service failed \(exit 1\)" \
	"boot $BOOT_NUMBER: the failed check is in the kernel log"
expect_console "QEMU-KMSG: .*slotctl: confirm: booted slot marked failed" "boot $BOOT_NUMBER: ... and the verdict"
expect_state 2 "0 0 0" "after boot $BOOT_NUMBER: b marked failed"
if host --verification none status | grep -q "why not bootable: marked failed by confirm: health check 10-service failed (exit 1)"; then
	pass "after boot $BOOT_NUMBER: status says the confirm script marked b failed, and which check failed"
else
	fail "after boot $BOOT_NUMBER: status lacks the why: $(host --verification none status | grep -A1 '^b ')"
fi
expect_counter 1 "after boot $BOOT_NUMBER: the failed v2 did not raise the counter"
boot "fallback"
expect_console "QEMU-TEST: running version 1 from slot a" "boot $BOOT_NUMBER: fell back to v1 in a"
# Activating b ranked a just below it (priority 14); a stays confirmed.
expect_state 1 "14 0 1" "after boot $BOOT_NUMBER: a still confirmed, ranked below b"

# 2b. dracut: v6 in b verifies but does not mount. The job finds out before it lets the
#     boot go on (in systemd mode by a trial mount), marks b failed and takes
#     SLOTCTL_ON_ERROR (panic, which reboots); a boots next (step 5 shows a still runs).
#     initramfs-tools leaves the mount to its own scripts, whose failure panics and
#     spends a try per boot until the tries run out, as in step 4.
if [ "$FLAVOUR" != initramfs-tools ]; then
	host install v6.img --slot b >/dev/null || die "install v6"
	boot "v6 in b, not a file system"
	expect_console "slot b: cannot use /dev/mapper/slotctl-root as the root; marked failed -> panic" \
		"boot $BOOT_NUMBER: the unmountable v6 was refused by the dracut job"
	expect_not_console "QEMU-TEST: running|emergency|Emergency" "boot $BOOT_NUMBER: nothing booted, no emergency shell"
	expect_state 2 "0 0 0" "after boot $BOOT_NUMBER: b marked failed"
fi

# Steps 3 and 4 differ from step 2 only in what slotctl decides: with initramfs-tools.
if [ "$FLAVOUR" = initramfs-tools ]; then
	# 3. v3, signed by a key the device does not trust, written raw into b and activated
	#    with cgpt: the initramfs refuses it and a boots.
	part_start=$(cgpt show -i 2 -b disk.img)
	dd if=v3.img of=disk.img bs=512 seek="$part_start" conv=notrunc status=none
	cgpt add -i 2 -P 15 -T 6 -S 0 disk.img
	boot "v3 (untrusted key) in b"
	expect_console "slot b refused \(untrusted_key\)" "boot $BOOT_NUMBER: slotctl refused b's untrusted signature"
	expect_console "QEMU-KMSG: .*slotctl: warning: slot b refused \(untrusted_key\)" \
		"boot $BOOT_NUMBER: the refusal is in the kernel log of the boot that fell back"
	expect_console "QEMU-TEST: running version 1 from slot a" "boot $BOOT_NUMBER: a boots instead"
	expect_not_console "running version 3" "boot $BOOT_NUMBER: v3 never ran"
	expect_state 2 "0 0 0" "after boot $BOOT_NUMBER: b marked unbootable"

	# 4. v4 installed to b with 2 tries never completes its boot: each boot spends a try,
	#    then a boots.
	host install v4.img --slot b --tries 2 >/dev/null || die "install v4"
	boot "v4 in b, try 1 of 2"
	expect_console "QEMU-TEST: running version 4 from slot b" "boot $BOOT_NUMBER: v4 runs from b (try 1)"
	expect_state 2 "15 1 0" "after boot $BOOT_NUMBER: b has 1 try left"
	boot "v4 in b, try 2 of 2"
	expect_console "QEMU-TEST: running version 4 from slot b" "boot $BOOT_NUMBER: v4 runs from b (try 2)"
	expect_state 2 "15 0 0" "after boot $BOOT_NUMBER: b has no tries left"
	boot "tries spent"
	expect_console "QEMU-TEST: running version 1 from slot a" "boot $BOOT_NUMBER: tries spent, a boots"
	expect_console "QEMU-KMSG: .*slotctl: warning: slot b ran out of tries without being confirmed" \
		"boot $BOOT_NUMBER: the fallback is in the kernel log"
	expect_not_console "running version 4" "boot $BOOT_NUMBER: v4 did not run again"
fi

# 5. v5 is good: b boots and is confirmed; a stays as the fallback. It has no dm-verity
#    tree: slotctl hashed it whole before choosing it, and the hook keeps it read-only
#    (the partition set read-only; in dracut's systemd mode a read-only linear mapping
#    under the name the generated sysroot.mount waits for).
host install v5.img --slot b >/dev/null || die "install v5"
boot "v5 in b"
v5_root=/dev/vda2
[ "$FLAVOUR" = dracut ] && v5_root=/dev/mapper/slotctl-root
expect_console "slot b chosen: version '5', on trial, [0-9]+ tries left, /dev/vda2 \(verification signature, verity 0\)" "boot $BOOT_NUMBER: slotctl chose b, verified without a tree"
expect_console "QEMU-TEST: running version 5 from slot b root $v5_root ro" "boot $BOOT_NUMBER: v5 runs from b on $v5_root, read-only"
expect_console "booted slot confirmed" "boot $BOOT_NUMBER: b confirmed"
expect_state 2 "15 0 1" "after boot $BOOT_NUMBER: b confirmed"
expect_counter 5 "after boot $BOOT_NUMBER: the counter was raised to v5's index"

# 6. b taken out: a still holds v1, below the counter now. It must not boot; with no
#    slot left the initramfs takes SLOTCTL_ON_NO_SLOT (here panic, which reboots).
cgpt add -i 2 -P 0 disk.img
boot "b out, a's v1 below the counter"
expect_console "slot a refused: rollback index 1 is below the counter 5" "boot $BOOT_NUMBER: a's v1 refused as a rollback"
expect_console "no bootable slot \(status 5[0-9]\) -> panic" "boot $BOOT_NUMBER: the initramfs took its no-bootable-slot action"
# dracut: panic stops the boot in the job (the FATAL line), then reboots as panic=-1
# asks, before any fallback of dracut's (an emergency shell) could run.
if [ "$FLAVOUR" != initramfs-tools ]; then
	expect_console "FATAL: slotctl: no bootable slot" "boot $BOOT_NUMBER: the dracut job stopped the boot"
	expect_not_console "emergency|Emergency|debug shell" "boot $BOOT_NUMBER: no emergency shell or mode"
fi
expect_not_console "QEMU-TEST: running" "boot $BOOT_NUMBER: nothing booted"
expect_counter 5 "after boot $BOOT_NUMBER: the counter is unchanged"
sgdisk -v disk.img | grep -q "No problems found" && pass "sgdisk -v after the guest's writes: no problems" || fail "sgdisk -v complains after the guest's writes"

# 7. The same boot with SLOTCTL_ON_NO_SLOT=recovery: the hook mounts the recovery root
#    (a third partition, no slot of slotctl's) read-only instead. boot.conf is part of
#    the initramfs, so the initramfs is made again.
mkdir -p rootfs-recovery/{bin,sbin,proc,sys,dev,run,etc}
cp "$(command -v busybox)" rootfs-recovery/bin/busybox
for applet in sh echo mount poweroff sleep grep head sed; do ln -s busybox "rootfs-recovery/bin/$applet"; done
echo 'NAME="slotctl test recovery"' > rootfs-recovery/etc/os-release
cat > rootfs-recovery/sbin/init <<'EOF'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc 2>/dev/null
echo "QEMU-TEST: recovery running root $(grep ' / ' /proc/mounts | head -n 1 | sed 's/^\([^ ]*\) [^ ]* [^ ]* \([^ ,]*\).*/\1 \2/')"
poweroff -f
sleep 60
EOF
chmod 755 rootfs-recovery/sbin/init
mke2fs -q -t ext4 -O ^has_journal -b 4096 -d rootfs-recovery recovery.ext4 6M || die "mke2fs recovery"
# Partition 4: 3 is the state partition (format --state).
sgdisk -n 4:0:+8M -c 4:recovery disk.img >/dev/null || die "sgdisk: no room for a recovery partition"
dd if=recovery.ext4 of=disk.img bs=512 seek="$(cgpt show -i 4 -b disk.img)" conv=notrunc status=none
printf 'SLOTCTL_ON_NO_SLOT=recovery\nSLOTCTL_RECOVERY_ROOT=/dev/vda4\n' >> boot.conf
make_initramfs
a_before=$(cgpt_state 1)
boot "no slot, recovery root"
expect_console "no bootable slot \(status 5[0-9]\) -> recovery" "boot $BOOT_NUMBER: the initramfs took the recovery action"
recovery_root=/dev/vda4
[ "$FLAVOUR" = dracut ] && recovery_root=/dev/mapper/slotctl-root
expect_console "QEMU-TEST: recovery running root $recovery_root ro" "boot $BOOT_NUMBER: the recovery root runs from $recovery_root, read-only"
expect_not_console "QEMU-TEST: running|emergency|Emergency" "boot $BOOT_NUMBER: no slot ran, no emergency shell"
expect_state 1 "$a_before" "after boot $BOOT_NUMBER: a's entry unchanged (refused before)"
sgdisk -v disk.img | grep -q "No problems found" && pass "sgdisk -v with the recovery partition: no problems" || fail "sgdisk -v complains with the recovery partition"

echo "console logs: $WORK/logs"
echo "qemu ($FLAVOUR): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
