#!/usr/bin/env bash
# make test-packaging: static checks of packaging/ that need no VM.
#   - every shell script parses (sh -n under busybox ash where it is POSIX sh; the RAUC
#     backend under dash too);
#   - the systemd units, enabled as the README says, give systemd no ordering cycle
#     (a cycle makes systemd drop mark-successful: no update would ever be confirmed);
#   - boot.sh reads `disk =` from slotctl.conf as slotctl does (comments, last line wins);
#   - the dracut generator writes a valid sysroot.mount for root=slotctl only.
set -uo pipefail
cd "$(dirname "$0")/../.."
passed=0
failed=0
check() { if eval "$2"; then echo "ok: $1"; passed=$((passed + 1)); else echo "FAIL: $1"; failed=$((failed + 1)); fi; }

for f in packaging/lib/boot.sh packaging/initramfs-tools/hooks/slotctl packaging/initramfs-tools/scripts/local-top/slotctl \
	packaging/dracut/90slotctl/parse-slotctl.sh packaging/dracut/90slotctl/slotctl-root.sh \
	packaging/dracut/90slotctl/slotctl-generator.sh packaging/libexec/slotctl-confirm \
	packaging/sysvinit/slotctl-confirm packaging/etc/boot.conf; do
	check "busybox sh -n $f" "busybox sh -n '$f'"
done
check "bash -n packaging/dracut/90slotctl/module-setup.sh" "bash -n packaging/dracut/90slotctl/module-setup.sh"

# The RAUC backend and its service wrapper (Tests/rauc/rauc-test.sh runs them with rauc).
for f in packaging/rauc/rauc-backend packaging/rauc/rauc-service; do
	check "busybox sh -n $f" "busybox sh -n '$f'"
	check "dash -n $f" "dash -n '$f'"
	check "$f is executable" "[ -x '$f' ]"
done
got=$(SLOTCTL=/nonexistent SLOTCTL_RAUC_CONF=/dev/null busybox sh packaging/rauc/rauc-backend 2>/dev/null; echo "rc=$?")
check "rauc-backend without a sub-command: usage, exit 64, nothing on stdout (got '$got')" "[ '$got' = rc=64 ]"

# The units installed and enabled as the README's guide says.
units=$(mktemp -d)
trap 'rm -rf "$units"' EXIT
mkdir -p "$units/multi-user.target.wants" "$units/boot-complete.target.requires"
cp packaging/systemd/*.service "$units/"
ln -s ../slotctl-health-check.service "$units/multi-user.target.wants/"
ln -s ../slotctl-mark-successful.service "$units/multi-user.target.wants/"
ln -s ../slotctl-health-check.service "$units/boot-complete.target.requires/"
verify=$(SYSTEMD_UNIT_PATH="$units:" systemd-analyze verify multi-user.target 2>&1)
check "systemd: no ordering cycle with the units enabled" "! grep -qi 'cycle' <<<\"\$verify\""
order=$(SYSTEMD_UNIT_PATH="$units:" systemd-analyze verify slotctl-mark-successful.service 2>&1)
check "systemd: mark-successful parses" "! grep -qiE 'unknown|invalid|bad' <<<\"\$order\""
check "systemd: mark-successful runs after boot-complete.target, which requires the checks" \
	"grep -q '^After=.*boot-complete.target' packaging/systemd/slotctl-mark-successful.service && grep -q '^Before=boot-complete.target' packaging/systemd/slotctl-health-check.service"

# boot.sh's reading of slotctl.conf.
conf=$units/slotctl.conf
printf 'disk = /dev/old\n# disk = /dev/commented\ndisk = /dev/mmcblk0   # the eMMC\r\nkeys = /k\n' > "$conf"
got=$(SLOTCTL_CONF=$conf SLOTCTL_BOOT_CONF=/nonexistent busybox sh -c '. packaging/lib/boot.sh; slotctl_disk')
check "boot.sh reads disk = as slotctl does (got '$got')" "[ '$got' = /dev/mmcblk0 ]"
got=$(SLOTCTL_CONF=$conf SLOTCTL_BOOT_CONF=/nonexistent busybox sh -c '. packaging/lib/boot.sh; slotctl_conf_value keys')
check "boot.sh reads keys = for the hooks (got '$got')" "[ '$got' = /k ]"

# The dracut module's systemd generator: root=slotctl gets a sysroot.mount of the
# mapping (named by boot.conf), read-only; any other root= gets nothing.
gen=$units/generator
mkdir -p "$gen/normal" "$gen/early" "$gen/late" "$gen/other"
echo "quiet root=/dev/sda1 rd.timeout=30 root=slotctl console=ttyS0" > "$gen/cmdline"
echo "SLOTCTL_VERITY_NAME=os-root" > "$gen/boot.conf"
SLOTCTL_CMDLINE=$gen/cmdline SLOTCTL_BOOT_CONF=$gen/boot.conf busybox sh packaging/dracut/90slotctl/slotctl-generator.sh \
	"$gen/normal" "$gen/early" "$gen/late"
check "generator: sysroot.mount mounts /dev/mapper/os-root read-only" \
	"grep -qx 'What=/dev/mapper/os-root' '$gen/early/sysroot.mount' && grep -qx 'Options=ro' '$gen/early/sysroot.mount' && [ -L '$gen/early/initrd-root-fs.target.requires/sysroot.mount' ]"
check "generator: the last root= counts, and the device waits rd.timeout" \
	"grep -qx 'JobTimeoutSec=30' '$gen/early/dev-mapper-os\\x2droot.device.d/timeout.conf'"
check "generator: systemd-analyze verify accepts its sysroot.mount" \
	"SYSTEMD_UNIT_PATH='$gen/early:' systemd-analyze verify sysroot.mount"
echo "root=/dev/sda2 ro" > "$gen/cmdline"
SLOTCTL_CMDLINE=$gen/cmdline busybox sh packaging/dracut/90slotctl/slotctl-generator.sh "$gen/normal" "$gen/other" "$gen/late"
check "generator: another root= gets no unit" "[ -z \"\$(ls -A '$gen/other')\" ]"

# The kernel log (boot.sh): decisions and slotctl's own warnings go to /dev/kmsg with the
# `slotctl:` tag and a syslog priority; a boot writes at most 40 lines.
kmsg=$units/kmsg
: > "$kmsg"
cat > "$units/fake-slotctl" <<'FAKE'
#!/bin/sh
echo "slotctl: warning: slot b refused (untrusted_key): signed by key 00ff, which is not in /k; marked unbootable" >&2
printf "SLOTCTL_SLOT='a'\nSLOTCTL_TRIES='5'\n"
FAKE
chmod +x "$units/fake-slotctl"
got=$(SLOTCTL=$units/fake-slotctl SLOTCTL_KMSG=$kmsg SLOTCTL_CONF=/dev/null SLOTCTL_BOOT_CONF=/nonexistent TMPDIR=$units \
	busybox sh -c '. packaging/lib/boot.sh; slotctl_run_boot; eval "$out"; echo "rc=$rc slot=$SLOTCTL_SLOT tries=$SLOTCTL_TRIES"; slotctl_log "slot a chosen"; slotctl_log_error "no bootable slot -> panic"' 2>/dev/null)
check "boot.sh: slotctl boot's output and status kept (got '$got')" "[ '$got' = 'rc=0 slot=a tries=5' ]"
check "boot.sh: slotctl's warning in the kernel log as a warning" \
	"grep -qx '<12>slotctl: warning: slot b refused (untrusted_key): signed by key 00ff, which is not in /k; marked unbootable' '$kmsg'"
check "boot.sh: a decision as a notice, an action as an error" \
	"grep -qx '<13>slotctl: slot a chosen' '$kmsg' && grep -qx '<11>slotctl: no bootable slot -> panic' '$kmsg'"
check "boot.sh: no temp file left behind" "! ls '$units'/slotctl-boot.* >/dev/null 2>&1"
: > "$kmsg"
SLOTCTL_KMSG=$kmsg SLOTCTL_BOOT_CONF=/nonexistent busybox sh -c '. packaging/lib/boot.sh; i=0; while [ $i -lt 60 ]; do slotctl_log "line $i $(printf %0300d 0)"; i=$((i + 1)); done' 2>/dev/null
check "boot.sh: at most 40 kernel-log lines a boot, each cut at 200 bytes" \
	"[ \$(wc -l < '$kmsg') -eq 40 ] && [ \$(awk '{ if (length > m) m = length } END { print m }' '$kmsg') -le 215 ]"

echo "packaging: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
