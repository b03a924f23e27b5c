#!/usr/bin/env bash
# make test-lock-mutation (part of make test): proves ConcurrencyTests can fail. It builds
# a slotctl whose FileLock.acquire takes no lock (a copy of Sources/ in
# .build/mutant, with one line added), runs the report's case of ConcurrencyTests
# (set-active beside mark-failed, 40 rounds, image file and loop device) against that
# binary through SLOTCTL_BIN, and passes only if the suite then FAILS, that is, if
# changes are lost or the table is left unclean without the lock. The real binary must
# pass the same suite (make test-unit runs it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MUTANT=$ROOT/.build/mutant
rm -rf "$MUTANT/src" && mkdir -p "$MUTANT/src"
cp -r "$ROOT/Package.swift" "$ROOT/Sources" "$ROOT/Tests" "$MUTANT/src/"
lockfile=$MUTANT/src/Sources/SlotStorage/FileLock.swift
marker='    public static func acquire('
grep -qF "$marker" "$lockfile" || { echo "test-lock-mutation: FileLock.acquire not found; update this script" >&2; exit 1; }
# The mutation: return before flock(2) is ever called.
awk -v m="$marker" '{ print } index($0, m) == 1 { print "        if true { return }" }' "$lockfile" > "$lockfile.new"
mv "$lockfile.new" "$lockfile"
grep -q "if true { return }" "$lockfile" || { echo "test-lock-mutation: the mutation was not applied" >&2; exit 1; }
echo "test-lock-mutation: building slotctl without its disk lock"
(cd "$MUTANT/src" && swift build --product slotctl --build-path "$MUTANT/build" 2>&1 | grep -E "error:|Build complete" || true)
bin=$MUTANT/build/debug/slotctl
[ -x "$bin" ] || { echo "test-lock-mutation: the mutant did not build" >&2; exit 1; }
cd "$ROOT"
swift build --build-tests >/dev/null
if SLOTCTL_BIN=$bin swift test --skip-build --filter 'ConcurrencyTests/everyChangeLands' > "$MUTANT/test.log" 2>&1; then
	echo "FAIL: ConcurrencyTests passed with the lock removed: they prove nothing (log: $MUTANT/test.log)"
	exit 1
fi
lost=$(grep -c "a change was lost" "$MUTANT/test.log" || true)
if [ "$lost" -eq 0 ]; then
	echo "FAIL: without the lock the suite failed, but not by losing a change (log: $MUTANT/test.log)"
	exit 1
fi
echo "ok: with the lock removed ConcurrencyTests fail: a change was lost in $lost rounds (log: $MUTANT/test.log)"
