#!/usr/bin/env bash
# make test-install (part of make test): `make install` into a scratch root. Every
# installed path must be named in README.md (the list a device builder follows), the
# binary must run, the man page must pass groff's warnings (-ww) and the bash completion
# must complete a command's options. The binary is the static one (make static).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SLOTCTL_STATIC=${SLOTCTL_STATIC:-$ROOT/.build/static/release/slotctl}
passed=0 failed=0
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
pass() { echo "ok: $*"; passed=$((passed + 1)); }
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
if ! bash "$ROOT/scripts/install.sh" "$dest" /usr "$SLOTCTL_STATIC" > "$dest.list" 2> "$dest.err"; then
	fail "install.sh failed: $(cat "$dest.err")"
fi
count=$(wc -l < "$dest.list")
[ "$count" -ge 20 ] && pass "make install put $count files in place" || fail "only $count files installed"
while read -r path; do
	[ -f "$dest$path" ] || fail "$path listed but not installed"
	grep -qF "\`$path\`" "$ROOT/README.md" || fail "$path is installed but README.md does not name it"
done < "$dest.list"
[ "$failed" -eq 0 ] && pass "every installed path is named in README.md"
"$dest/usr/sbin/slotctl" --version | grep -q "^slotctl [0-9]" && pass "the installed slotctl runs (--version)" \
	|| fail "the installed slotctl does not run"
[ -x "$dest/usr/lib/dracut/modules.d/90slotctl/module-setup.sh" ] && [ -x "$dest/etc/initramfs-tools/hooks/slotctl" ] \
	&& pass "hook and dracut module are executable" || fail "hook or dracut module not executable"
man=$dest/usr/share/man/man8/slotctl.8
warnings=$(groff -man -ww -z "$man" 2>&1)
[ -z "$warnings" ] && pass "slotctl.8: groff -man -ww finds nothing" || fail "slotctl.8: $warnings"
text=$(groff -man -Tascii -P-cbou "$man" 2>/dev/null || true)
for word in "mark-successful" "--io-timeout" "--image-version" "EXIT STATUS"; do
	echo "$text" | grep -qF -- "$word" || fail "slotctl.8 does not mention $word"
done
completion=$dest/usr/share/bash-completion/completions/slotctl
bash -n "$completion" && pass "completion: bash -n" || fail "completion: bash -n"
got=$(bash -c '. "$1"; COMP_WORDS=(slotctl set-active --t); COMP_CWORD=2; _slotctl; echo "${COMPREPLY[*]}"' _ "$completion")
[ "$got" = "--tries" ] && pass "completion: set-active --t completes --tries" || fail "completion: set-active --t gave '$got'"
got=$(bash -c '. "$1"; COMP_WORDS=(slotctl mark-); COMP_CWORD=1; _slotctl; echo "${COMPREPLY[*]}"' _ "$completion")
[ "$got" = "mark-successful mark-failed" ] && pass "completion: commands" || fail "completion: mark- gave '$got'"
rm -f "$dest.list" "$dest.err"
echo "install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
