#!/usr/bin/env bash
# The model and the code cannot drift apart: random SPIN simulations of
# spec/model/slotctl.pml replayed on the real slotctl (Tests/model/replay.py), over a
# real GPT image with signed slots and file counters, power cuts included (cutter.c
# kills slotctl at the entry of the write the model's cut precedes). Then the same
# replay against deliberately wrong models must fail.
#
#   Tests/model/conformance.sh             quick: 2 and 3 slots, a few dozen traces
#   MODEL_TRACES=1000 Tests/model/conformance.sh    more traces per slot count
#
# The binary: $SLOTCTL_BIN, default $ROOT/.build/debug/slotctl. Needs spin, gcc,
# python3, cgpt, openssl.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${SLOTCTL_BIN:-$ROOT/.build/debug/slotctl}
TRACES=${MODEL_TRACES:-30}
OPS=${MODEL_OPS:-40}
failed=0
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

for tool in spin gcc python3 cgpt openssl; do
	command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed; the conformance replay cannot run"; exit 1; }
done
[ -x "$BIN" ] || { echo "FAIL: no slotctl binary at $BIN (set SLOTCTL_BIN or build it)"; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
gcc -O2 -Wall -o "$WORK/cutter" "$ROOT/Tests/model/cutter.c" || { echo "FAIL: cutter.c does not compile"; exit 1; }
cp "$ROOT/spec/model/slotctl.pml" "$WORK/"

# Keys and the signed images the model installs: rollback index 0..2, healthy or not
# (the two differ only in their version string: health is the init script's verdict).
mkdir -p "$WORK/keys"
openssl genpkey -algorithm ed25519 -out "$WORK/signing.pem" 2>/dev/null \
	&& openssl pkey -in "$WORK/signing.pem" -pubout -out "$WORK/keys/model.pem" 2>/dev/null \
	|| { echo "FAIL: openssl could not make a key"; exit 1; }
head -c 65536 /dev/urandom >"$WORK/payload"
for ri in 0 1 2; do
	for h in 0 1; do
		"$BIN" sign --key "$WORK/signing.pem" --rollback-index $ri --image-version "ri$ri-healthy$h" "$WORK/payload" \
			-o "$WORK/img-$ri-$h.img" >/dev/null || { echo "FAIL: slotctl sign failed"; exit 1; }
	done
done

replay() { python3 "$ROOT/Tests/model/replay.py" --bin "$BIN" --cutter "$WORK/cutter" --model "$WORK/slotctl.pml" --work "$WORK" "$@"; }

replay --slots 2 --seeds "1..$TRACES" --ops "$OPS" || failed=$((failed + 1))
replay --slots 3 --seeds "1..$((TRACES / 2 > 0 ? TRACES / 2 : 1))" --ops "$OPS" || failed=$((failed + 1))

if [ "$failed" != 0 ]; then
	echo "FAIL: the deliberate-bug checks are skipped: the real slotctl already differs from the true model"
	exit 1
fi

# Deliberate bugs, in the model only (the shipped sources are not touched): each must
# make the comparison with the real binary fail.
replay --slots 2 --seeds "1..200" --ops "$OPS" --define MUT_TIEBREAK --define NOASSERT --expect-divergence || failed=$((failed + 1))
replay --slots 2 --seeds "1..200" --ops "$OPS" --define MUT_RAISE_FIRST --define NOASSERT --expect-divergence || failed=$((failed + 1))

echo "conformance: $failed failed"
[ "$failed" = 0 ]
