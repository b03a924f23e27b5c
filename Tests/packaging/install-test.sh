#!/usr/bin/env bash
# make test-install (part of make test): `make install` into a scratch root. Every
# installed path must be named in README.md (the list a device builder follows), the
# binary must run, the man page must pass groff's warnings (-ww) and the bash completion
# must complete a command's options. The binary is the static Embedded one (make embedded).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SLOTCTL_STATIC=${SLOTCTL_STATIC:-$ROOT/.build/embedded/static/slotctl}
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
conf=$dest/usr/share/man/man5/slotctl.conf.5
warnings=$(groff -man -ww -z "$conf" 2>&1)
[ -z "$warnings" ] && pass "slotctl.conf.5: groff -man -ww finds nothing" || fail "slotctl.conf.5: $warnings"
# Every key the parser accepts is in the page, and the page names no key it refuses.
text=$(groff -man -Tascii -P-cbou "$conf" 2>/dev/null || true)
keys=$(printf '%s\n' "$text" | sed -n '/^KEYS/,/^EXAMPLE/p' | sed -n 's/^       \([a-z_]*\)\( .*\)\{0,1\}$/\1/p' | grep -v '^$')
[ -n "$keys" ] || fail "slotctl.conf.5 lists no keys"
for key in $keys; do
	probe=$(mktemp)
	printf '%s = x\n' "$key" > "$probe"
	out=$("$dest/usr/sbin/slotctl" --config "$probe" current 2>&1)
	rm -f "$probe"
	case $out in *"unknown key"*) fail "slotctl.conf.5 documents '$key', which slotctl refuses as unknown" ;; esac
done
probe=$(mktemp)
printf 'no_such_key = x\n' > "$probe"
"$dest/usr/sbin/slotctl" --config "$probe" current 2>&1 | grep -q "unknown key" || fail "an unknown key is not refused"
rm -f "$probe"
[ "$(echo "$keys" | wc -l)" -ge 9 ] && pass "slotctl.conf.5 documents $(echo $keys | wc -w) keys, each accepted by the parser" \
	|| fail "slotctl.conf.5 documents only: $keys"
completion=$dest/usr/share/bash-completion/completions/slotctl
bash -n "$completion" && pass "completion: bash -n" || fail "completion: bash -n"
got=$(bash -c '. "$1"; COMP_WORDS=(slotctl set-active --t); COMP_CWORD=2; _slotctl; echo "${COMPREPLY[*]}"' _ "$completion")
[ "$got" = "--tries" ] && pass "completion: set-active --t completes --tries" || fail "completion: set-active --t gave '$got'"
got=$(bash -c '. "$1"; COMP_WORDS=(slotctl mark-); COMP_CWORD=1; _slotctl; echo "${COMPREPLY[*]}"' _ "$completion")
[ "$got" = "mark-successful mark-failed" ] && pass "completion: commands" || fail "completion: mark- gave '$got'"
rm -f "$dest.list" "$dest.err"
echo "install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
