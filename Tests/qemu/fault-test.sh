#!/usr/bin/env bash
# make test-faults (part of make test): real device-mapper fault targets under slotctl.
# The host kernel here has no device-mapper, so the test runs where it does: Debian's
# kernel under QEMU, in an initramfs made by Debian's mkinitramfs that carries the static
# slotctl, dmsetup and the dm-mod, dm-flakey and dm-delay modules. A script in the
# initramfs builds each fault table over the virtio disk (/dev/vda, a real block device),
# runs slotctl on /dev/mapper/faulty, prints what happened on the serial console and
# powers off; the host then judges the console and the disk image with sgdisk -v and
# cgpt show. A case whose table cannot be created fails the test (it never skips).
# The cases: read and write errors on either table copy and in an install copy, bad
# data at the read-back, a slow disk, and a disk that never answers (--io-timeout).
# Console log: .build/fault-test/console.log.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$ROOT/.build/fault-test
SLOTCTL_STATIC=${SLOTCTL_STATIC:-$ROOT/.build/embedded/static/slotctl}
QEMU_TIMEOUT=${QEMU_TIMEOUT:-300}
passed=0 failed=0
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
pass() { echo "ok: $*"; passed=$((passed + 1)); }
die() { echo "test-faults: $*" >&2; exit 1; }

KVER=$(ls /lib/modules | sort -V | tail -n 1)
KERNEL=/boot/vmlinuz-$KVER
[ -r "$KERNEL" ] || die "no kernel in /boot (linux-image-amd64)"
[ -x "$SLOTCTL_STATIC" ] || die "$SLOTCTL_STATIC missing (make embedded)"
for tool in qemu-system-x86_64 mkinitramfs dmsetup cgpt sgdisk openssl; do command -v "$tool" >/dev/null || die "$tool missing"; done

rm -rf "$WORK" && mkdir -p "$WORK"/{keys,conf/hooks,conf/scripts/init-premount} && cd "$WORK" || exit 1
umask 022
cp "$SLOTCTL_STATIC" slotctl && strip slotctl
openssl genpkey -algorithm ed25519 -out release.pem 2>/dev/null
openssl pkey -in release.pem -pubout -out keys/release.pem
host() { ./slotctl --disk disk.img --keys keys --config /dev/null --booted-file booted --cmdline-file /dev/null "$@"; }
head -c 3000000 /dev/urandom > payload1 && head -c 3000000 /dev/urandom > payload2
./slotctl sign --key release.pem --rollback-index 1 --image-version v1 payload1 -o v1.img >/dev/null || die "sign v1"
./slotctl sign --key release.pem --rollback-index 2 --image-version v2 payload2 -o v2.img >/dev/null || die "sign v2"
# Slot a holds v1, booted and confirmed; b is empty.
host format --size 64M --slot-size 16M >/dev/null || die "format"
host install v1.img --slot a >/dev/null && host boot >/dev/null && host mark-successful >/dev/null || die "install v1"

cat > conf/initramfs.conf <<'EOF'
MODULES=list
BUSYBOX=y
COMPRESS=gzip
RESUME=none
EOF
printf '%s\n' virtio_pci virtio_blk dm_mod dm_flakey dm_delay > conf/modules
cat > conf/hooks/faults <<EOF
#!/bin/sh
[ "\$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
copy_exec $WORK/slotctl /bin/slotctl
copy_exec /sbin/dmsetup /sbin/dmsetup
mkdir -p "\$DESTDIR/keys" && cp $WORK/keys/release.pem "\$DESTDIR/keys/"
cp $WORK/v2.img "\$DESTDIR/v2.img"
EOF
# The guest side: one case per fault table, each line of the verdict prefixed FAULT.
cat > conf/scripts/init-premount/faults <<'EOF'
#!/bin/sh
[ "$1" = prereqs ] && exit 0
say() { echo "FAULT: $*"; }
for m in dm_mod dm_flakey dm_delay; do modprobe $m; done
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 1; done
N=$(cat /sys/block/vda/size)
A0=2048 B0=34816 SLOT=32768
S() { /bin/slotctl --disk /dev/mapper/faulty --keys /keys --config /dev/null --booted-file /run/booted --cmdline-file /dev/null --lock-timeout 30 "$@"; }
# The next case's table replaces the live one in place (load + resume) rather than by
# remove + create: udev probes the device after each write slotctl closes, and a
# remove that races that probe fails with EBUSY.
table() { # name, then the table on stdin
	t=$(cat)
	if dmsetup info faulty >/dev/null 2>&1; then
		echo "$t" | dmsetup load faulty && dmsetup resume faulty
	else
		echo "$t" | dmsetup create faulty
	fi
	if [ $? -eq 0 ]; then say "$1: table ready"; else say "$1: NO TABLE"; fi
	echo 3 > /proc/sys/vm/drop_caches
}
run() { # case, slotctl args...
	c=$1; shift
	out=$(S "$@" 2>&1); rc=$?
	say "$c: rc=$rc $(echo "$out" | tr '\n' '|')"
}
linear() { echo "0 $N linear /dev/vda 0" | table "$1"; }
after_install() { # case: the disk healthy again, what the failed install left
	linear "$1-after"
	run "$1-after" --verification none status
	run "$1-boot" boot --dry-run
}

printf '0 1 linear /dev/vda 0\n1 33 error\n34 %s linear /dev/vda 34\n' $((N - 34)) | table primary-unreadable
run primary-unreadable --verification none status
run primary-unreadable-boot boot --dry-run

printf '0 1 linear /dev/vda 0\n1 33 flakey /dev/vda 1 0 1 1 error_writes\n34 %s linear /dev/vda 34\n' $((N - 34)) | table primary-write
run primary-write --verification none set-active b --tries 3
linear primary-write-after
run primary-write-after --verification none status

printf '0 %s linear /dev/vda 0\n%s 34 flakey /dev/vda %s 0 1 1 error_writes\n' $((N - 34)) $((N - 34)) $((N - 34)) | table backup-write
run backup-write --verification none set-active b --tries 3
linear backup-write-after
run backup-write-after --verification none status
run backup-write-restore --verification none mark-failed b

# A disk that never answers: reads held by a suspended device, then writes held by
# dm-delay for an hour. slotctl must give up after --io-timeout and exit 61 at once;
# releasing the device afterwards lets the killed worker end and the table load.
timed() { # case, slotctl args...: run, with the elapsed seconds
	c=$1; shift
	t0=$(date +%s); out=$(S --io-timeout 3 "$@" 2>&1); rc=$?; t1=$(date +%s)
	say "$c: rc=$rc secs=$((t1 - t0)) $(echo "$out" | tr '\n' '|')"
}
linear read-hang
dmsetup suspend faulty && echo 3 > /proc/sys/vm/drop_caches
timed read-hang boot
dmsetup resume faulty
sleep 2
run read-hang-after --verification none status
echo "0 $N delay /dev/vda 0 0 /dev/vda 0 3600000" | table write-hang
timed write-hang --verification none set-active b --tries 4
echo "0 $N linear /dev/vda 0" | dmsetup load faulty && dmsetup resume faulty
sleep 2
run write-hang-after --verification none status

# Bad data at the read-back: the slot's writes reach the disk with a byte changed.
printf '0 %s linear /dev/vda 0\n%s %s flakey /dev/vda %s 0 1 5 corrupt_bio_byte 1 w 90 0\n%s %s linear /dev/vda %s\n' \
	$B0 $B0 $SLOT $B0 $((B0 + SLOT)) $((N - B0 - SLOT)) $((B0 + SLOT)) | table install-corrupt
run install-corrupt install /v2.img --slot b
after_install install-corrupt

printf '0 %s linear /dev/vda 0\n%s %s flakey /dev/vda %s 0 1 1 error_writes\n%s %s linear /dev/vda %s\n' \
	$B0 $B0 $SLOT $B0 $((B0 + SLOT)) $((N - B0 - SLOT)) $((B0 + SLOT)) | table install-write
run install-write install /v2.img --slot b
after_install install-write

echo "0 $N delay /dev/vda 0 300" | table stall
run stall --verification none status
run stall-boot boot --dry-run

dmsetup remove --retry faulty
sync
say "done"
poweroff -f
EOF
chmod 755 conf/hooks/faults conf/scripts/init-premount/faults
mkinitramfs -d "$WORK/conf" -o initrd.img "$KVER" > initramfs.log 2>&1 || die "mkinitramfs failed (initramfs.log)"

accel=(-accel tcg)
[ "${QEMU_ACCEL:-tcg}" = kvm ] && accel=(-accel kvm -accel tcg)
timeout "$QEMU_TIMEOUT" qemu-system-x86_64 "${accel[@]}" -m 512 -smp 1 -nodefaults -no-reboot -display none \
	-serial file:console.log -kernel "$KERNEL" -initrd initrd.img \
	-append "console=ttyS0 panic=-1 loglevel=4" -drive "file=disk.img,format=raw,if=virtio,cache=writethrough"
[ $? -eq 124 ] && fail "the guest did not finish within ${QEMU_TIMEOUT}s"
tr -d '\r' < console.log | grep -a '^FAULT: ' | sed 's/^FAULT: //' > verdicts
sed 's/^/    | /' verdicts

expect() { # case, extended regex the verdict line must match, what it shows
	if grep -a -E "^$1: $2" verdicts >/dev/null; then pass "$3"; else fail "$3 ($1: $(grep -a "^$1: rc" verdicts | head -1))"; fi
}
grep -q "NO TABLE" verdicts && fail "a device-mapper table could not be created: $(grep 'NO TABLE' verdicts | tr '\n' ' ')"
expect primary-unreadable "rc=0 .*primary GPT \(LBA 1\): unreadable.*table read from the backup" "a read error on the primary table: the backup serves"
expect primary-unreadable-boot "rc=0 a\|" "... and boot (signed) chooses a"
expect primary-write "rc=61 .*primary GPT copy (may be partly written|was written but not confirmed)" "a write error on the primary: 61, saying what reached the disk"
expect primary-write-after "rc=0 .*b     2     root_b            0     0 " "... and the table loads afterwards, b unchanged"
expect backup-write "rc=0 .*warning: .*backup copy was not" "a write error on the backup: committed in the primary, a warning"
expect backup-write-after "rc=0 .*backup GPT .*stale.*b     2     root_b            15    3 " "... and the change holds, the backup is stale"
expect backup-write-restore "rc=40 " "... and the next write repairs it"
expect read-hang "rc=61 secs=([3-9]|1[0-9]) .*read of .* did not finish within 3(\.[0-9])? s .*does not answer" "a disk that never answers a read: boot gives up after --io-timeout with 61"
expect read-hang-after "rc=0 .*a     1     root_a            " "... and once the disk answers again the table loads"
expect write-hang "rc=61 secs=([3-9]|1[0-9]) .*flush \(fsync\).* did not finish within 3(\.[0-9])? s" "a disk that never finishes a write: set-active gives up with 61"
expect write-hang-after "rc=0 .*table read from" "... and once the write lands the table loads (old or new state)"
expect_b_left_unbootable() { # case of a failed install
	expect "$1-after" "rc=0 .*b     2     root_b            0     0      no " "... b is not bootable"
	expect "$1-boot" "rc=0 a\|" "... and the running slot a still boots"
}
expect install-corrupt "rc=32 " "bad data read back after the install copy: 32, the slot left unbootable"
expect_b_left_unbootable install-corrupt
expect install-write "rc=31 .*stays unbootable" "EIO during the install copy: 31, the target left unbootable"
expect_b_left_unbootable install-write
expect stall "rc=0 " "a device that answers 300 ms late: status finishes"
expect stall-boot "rc=0 a\|" "... and so does boot"
grep -q "^done" verdicts && pass "the guest ran every case" || fail "the guest did not reach the end (console.log)"
sgdisk -v disk.img | grep -q "No problems found" && pass "sgdisk -v: no problems" || fail "sgdisk -v: $(sgdisk -v disk.img)"
state() { echo "$(cgpt show -i "$1" -P disk.img) $(cgpt show -i "$1" -T disk.img) $(cgpt show -i "$1" -S disk.img)"; }
[ "$(state 2)" = "0 0 0" ] && pass "cgpt: b is unbootable (0 0 0)" || fail "cgpt: b is $(state 2)"
[ "$(state 1 | cut -d' ' -f3)" = 1 ] && pass "cgpt: a is still confirmed" || fail "cgpt: a is $(state 1)"
echo "faults: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
