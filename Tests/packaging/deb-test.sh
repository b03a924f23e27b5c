#!/usr/bin/env bash
# make test-deb (part of make test): the Debian package from `make deb`.
#   - lintian finds no error and no warning (the one override, a static binary, is
#     explained in debian/lintian-overrides);
#   - both man pages render with `man -l` and pass groff -ww;
#   - `apt-get install ./slotctl_*.deb` installs it on this Debian 12 host, for real, and
#     its maintainer scripts rebuild the initramfs only where that is right:
#       * not configured (no slotctl.conf): nothing rebuilt, a note says what to do;
#       * configured: update-initramfs -u, and the initramfs carries slotctl through the
#         packaged hook (lsinitramfs);
#       * removed while booted with root=slotctl: the initramfs is left with slotctl;
#       * removed otherwise: rebuilt, without slotctl.
# SLOTCTL_CONF and SLOTCTL_CMDLINE point the maintainer scripts and the hook at scratch
# files, so the host's /etc and /proc/cmdline are not involved. The package is purged
# at the end. Needs root, apt, lintian, man-db, initramfs-tools and a kernel in /boot.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEB_DIR=${DEB_DIR:-$ROOT/.build/deb}
passed=0 failed=0
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
pass() { echo "ok: $*"; passed=$((passed + 1)); }
die() { echo "FAIL: $*"; exit 1; }
for tool in lintian man groff apt-get dpkg update-initramfs lsinitramfs; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done
[ "$(id -u)" = 0 ] || die "the package test installs a package: run it as root"
deb=$(ls "$DEB_DIR"/slotctl_*.deb 2>/dev/null | head -1)
[ -f "$deb" ] || die "no package in $DEB_DIR (make deb)"
work=$(mktemp -d)
cleanup() {
	dpkg -s slotctl >/dev/null 2>&1 && SLOTCTL_CONF=/nonexistent apt-get purge -y -qq slotctl >/dev/null 2>&1
	rm -f /etc/systemd/system/boot-complete.target.requires/slotctl-health-check.service \
		/etc/systemd/system/multi-user.target.wants/slotctl-mark-successful.service
	rm -rf "$work"
}
trap cleanup EXIT
dpkg -s slotctl >/dev/null 2>&1 && die "slotctl is already installed as a package here; the test would replace it"

lintian --fail-on error,warning "$deb" > "$work/lintian.out" 2>&1
rc=$?
[ $rc = 0 ] && pass "lintian: no errors or warnings" || fail "lintian ($rc): $(grep -v '^running with root' "$work/lintian.out")"

mkdir "$work/x" && dpkg-deb -x "$deb" "$work/x"
for page in usr/share/man/man8/slotctl.8.gz usr/share/man/man5/slotctl.conf.5.gz; do
	[ -f "$work/x/$page" ] || { fail "$page missing from the package"; continue; }
	text=$(MANWIDTH=80 man -l "$work/x/$page" 2>&1)
	lint=$(zcat "$work/x/$page" | groff -man -ww -z 2>&1)
	if [ -n "$text" ] && [ -z "$lint" ] && echo "$text" | grep -q "^NAME"; then pass "$page: man -l renders, groff -ww is silent"
	else fail "$page: $lint"; fi
done

kver=$(ls /boot/vmlinuz-* 2>/dev/null | sed 's|^/boot/vmlinuz-||' | sort -V | tail -1)
[ -n "$kver" ] || die "no kernel in /boot (linux-image-amd64)"
initrd=/boot/initrd.img-$kver
[ -f "$initrd" ] || update-initramfs -c -k "$kver" >/dev/null 2>&1 || die "could not make $initrd"
has_slotctl() { lsinitramfs "$initrd" | grep -qx "usr/sbin/slotctl"; }
has_slotctl && die "$initrd already holds slotctl; the test cannot tell what the package did"

# A configuration for the hook: the disk it names does not need to exist at build time.
mkdir -p "$work/keys"
openssl genpkey -algorithm ed25519 2>/dev/null | openssl pkey -pubout -out "$work/keys/release.pem" 2>/dev/null
printf 'disk = /dev/vda\nkeys = %s\n' "$work/keys" > "$work/slotctl.conf"
echo "BOOT_IMAGE=/vmlinuz root=slotctl ro" > "$work/cmdline-slotctl"
echo "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro" > "$work/cmdline-plain"
stamp() { stat -c %Y.%s "$initrd"; }

# 1. Not configured: installed, nothing rebuilt, a note.
before=$(stamp)
out=$(SLOTCTL_CONF=$work/none.conf apt-get install -y -qq "$deb" 2>&1)
rc=$?
[ $rc = 0 ] && [ -x /usr/sbin/slotctl ] && /usr/sbin/slotctl --version | grep -q "^slotctl " \
	&& pass "apt-get install ./$(basename "$deb"): installed, slotctl runs" || fail "apt-get install failed ($rc): $out"
dpkg -L slotctl | grep -qx /usr/share/initramfs-tools/hooks/slotctl && pass "the hook is in the package's place" \
	|| fail "dpkg -L: no /usr/share/initramfs-tools/hooks/slotctl"
[ "$(stamp)" = "$before" ] && echo "$out" | grep -q "is left as it is" \
	&& pass "not configured: the initramfs is not rebuilt, and the note says so" || fail "not configured: $out"
# The hook itself, run by update-initramfs on an unconfigured host: succeeds, adds nothing.
out=$(SLOTCTL_CONF=$work/none.conf update-initramfs -u -k "$kver" 2>&1)
[ $? = 0 ] && ! has_slotctl && pass "unconfigured host: update-initramfs still succeeds, without slotctl" \
	|| fail "unconfigured update-initramfs: $out"

# 2. Configured: the postinst rebuilds, and the initramfs carries slotctl.
out=$(SLOTCTL_CONF=$work/slotctl.conf SLOTCTL_KEYS_SRC=$work/keys apt-get install -y -qq --reinstall "$deb" 2>&1)
[ $? = 0 ] && has_slotctl && lsinitramfs "$initrd" | grep -qx "usr/lib/slotctl/boot.sh" \
	&& pass "configured: the postinst ran update-initramfs -u; slotctl and boot.sh are in $initrd" \
	|| fail "configured install: $out"

# 3. Removed on a host booted with root=slotctl: the initramfs keeps slotctl. The units
#    were enabled as the README says (links made here as systemctl enable makes them):
#    removal takes the links away with the units.
mkdir -p /etc/systemd/system/boot-complete.target.requires /etc/systemd/system/multi-user.target.wants
ln -sf /lib/systemd/system/slotctl-health-check.service /etc/systemd/system/boot-complete.target.requires/
ln -sf /lib/systemd/system/slotctl-mark-successful.service /etc/systemd/system/multi-user.target.wants/
before=$(stamp)
out=$(SLOTCTL_CONF=$work/slotctl.conf SLOTCTL_CMDLINE=$work/cmdline-slotctl apt-get remove -y -qq slotctl 2>&1)
[ $? = 0 ] && [ "$(stamp)" = "$before" ] && has_slotctl && echo "$out" | grep -q "keeps slotctl" \
	&& pass "removed under root=slotctl: the initramfs is left as it was, and the note says why" || fail "remove (root=slotctl): $out"
[ ! -e /usr/share/initramfs-tools/hooks/slotctl ] && [ ! -e /usr/sbin/slotctl ] && pass "removed: binary and hook gone" \
	|| fail "remove left the binary or the hook"
[ ! -L /etc/systemd/system/boot-complete.target.requires/slotctl-health-check.service ] \
	&& [ ! -L /etc/systemd/system/multi-user.target.wants/slotctl-mark-successful.service ] \
	&& pass "removed: no target still wants or requires a slotctl unit" || fail "remove left links to the removed units"

# 4. Removed on a host that boots otherwise: rebuilt without slotctl.
SLOTCTL_CONF=$work/none.conf apt-get install -y -qq "$deb" >/dev/null 2>&1 || fail "reinstall failed"
out=$(SLOTCTL_CONF=$work/slotctl.conf SLOTCTL_CMDLINE=$work/cmdline-plain apt-get purge -y -qq slotctl 2>&1)
[ $? = 0 ] && ! has_slotctl && ! dpkg -s slotctl >/dev/null 2>&1 \
	&& pass "purged on a host not booted through slotctl: the initramfs is rebuilt without it" || fail "purge: $out"

echo "deb: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
