#!/usr/bin/env bash
# make check-model: the A/B policy model (spec/model/slotctl.pml) checked exhaustively
# with SPIN. Every run prints the states explored and the properties that hold; a run
# that finds a violation, or cannot search the whole space, or cannot run at all, FAILs.
# Then the deliberate bugs (spec/model/README.md) must each be caught.
#
#   Tests/model/check-model.sh          the quick set (well under a minute, in make test)
#   Tests/model/check-model.sh --deep   the deeper bounded set (make check-model-deep)
#
# Needs spin (Debian: spin) and a C compiler (gcc). SPIN_JOBS is not used: runs are
# sequential, one core.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MODEL=$ROOT/spec/model/slotctl.pml
DEEP=0
[ "${1:-}" = --deep ] && DEEP=1
passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

for tool in spin gcc; do
	command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (apt-get install spin gcc); the model cannot be checked"; exit 1; }
done
[ -f "$MODEL" ] || { echo "FAIL: $MODEL is missing"; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp "$MODEL" "$WORK/"

SAFETY_PROPS="P1 good-slot-boots, P2 never-nothing-bootable, P3 raise<=confirmed, P4 no-downgrade-boots, P5 never-chosen-incomplete, P6 try-spent-before-boot, P7 install-never-running, P8 table-usable, no-deadlock"
LIVE_PROPS="P6' ltl trials: ([]<> trialBoot) -> ([]<> activation)"

# What a counterexample violates: the property tag (P1..P8) in the comment of the
# assertion's line, or the LTL claim; with the trail's length.
why() {
	local dir=$1
	shift
	local out=$dir/pan.out
	local msg=$(grep -m1 -E 'assertion violated|acceptance cycle|invalid end state' "$out" | sed 's/^pan:1: //')
	local line=$( (cd "$dir" && spin "$@" -t slotctl.pml 2>&1) | sed -n 's/.*slotctl.pml:\([0-9]*\), Error: assertion violated.*/\1/p' | head -1)
	local tag=""
	[ -n "$line" ] && tag=$(sed -n "${line}p" "$dir/slotctl.pml" | grep -oE 'P[0-9]+[^*]*' | head -1 | sed 's/ *$//')
	if [ -n "$tag" ]; then echo "$tag ($msg)"; elif grep -q 'acceptance cycle' "$out"; then echo "P6' ltl trials: $msg"; else echo "$msg"; fi
}

# run NAME KIND(safety|liveness|bitstate) EXPECT(hold|violate) DEFINES...
run() {
	local name=$1 kind=$2 expect=$3
	shift 3
	local defs=("$@")
	local dir=$WORK/$name
	mkdir -p "$dir"
	cp "$WORK/slotctl.pml" "$dir/"
	local ccflags=(-O2 -w)
	local panflags=(-m4000000)
	local spinflags=()
	case $kind in
	safety) ccflags+=(-DSAFETY -DCOLLAPSE) ;;
	bitstate) ccflags+=(-DSAFETY -DBITSTATE); panflags+=(-w31 -k3) ;;
	liveness) spinflags+=(-DLIVENESS); ccflags+=(-DCOLLAPSE); panflags+=(-a) ;;
	esac
	[ "$expect" = violate ] && ccflags+=(-DBFS) && [ "$kind" = liveness ] && ccflags=(-O2 -w -DCOLLAPSE)
	local start=$(date +%s.%N)
	if ! (cd "$dir" && spin "${spinflags[@]}" "${defs[@]}" -a slotctl.pml >spin.out 2>&1); then
		fail "$name: spin -a failed: $(tail -3 "$dir/spin.out" | tr '\n' ' ')"
		return
	fi
	if ! (cd "$dir" && gcc "${ccflags[@]}" "${defs[@]}" -o pan pan.c >cc.out 2>&1); then
		fail "$name: compiling pan failed: $(tail -3 "$dir/cc.out" | tr '\n' ' ')"
		return
	fi
	(cd "$dir" && ./pan "${panflags[@]}" >pan.out 2>&1)
	local secs=$(echo "$(date +%s.%N) - $start" | bc)
	local out=$dir/pan.out
	local errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$out" | head -1)
	local states=$(sed -n 's/^ *\([0-9e+.]*\) states, stored.*/\1/p' "$out" | head -1)
	local depth=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$out" | head -1)
	local what="${defs[*]}"
	if [ -z "$errors" ] || [ -z "$states" ]; then
		fail "$name ($what): pan did not finish: $(tail -5 "$out" | tr '\n' ' ')"
		return
	fi
	if grep -q "max search depth too small" "$out"; then
		fail "$name ($what): the search depth bound was hit (pan -m): the space was not covered"
		return
	fi
	if [ "$expect" = hold ]; then
		if [ "$errors" = 0 ]; then
			local props=$SAFETY_PROPS
			[ "$kind" = liveness ] && props=$LIVE_PROPS
			local cover="exhaustive"
			[ "$kind" = bitstate ] && cover="bitstate (bounded: hash coverage $(sed -n 's/.*hash factor: \([0-9.e+]*\).*/\1/p' "$out" | head -1))"
			ok "$name ($what): $cover, $states states, depth $depth, ${secs%???????}s: hold: $props"
		else
			fail "$name ($what): $(why "$dir" "${spinflags[@]}" "${defs[@]}")"
			(cd "$dir" && spin "${spinflags[@]}" "${defs[@]}" -t slotctl.pml 2>/dev/null | grep -E 'CMD|CUT|STATE|INIT' | tail -20 | sed 's/^/    /')
		fi
	else
		if [ "$errors" != 0 ]; then
			ok "$name ($what): caught: $(why "$dir" "${spinflags[@]}" "${defs[@]}"), after $states states"
		else
			fail "$name ($what): the deliberate bug was NOT caught ($states states): the properties are too weak"
		fi
	fi
}

if [ "$DEEP" = 0 ]; then
	run s2-tpm safety hold -DNS=2 -DMAXT=2 -DMAXRI=2
	run s2-file safety hold -DNS=2 -DMAXT=3 -DMAXRI=3 -DATOMIC_RAISE
	run s3-tpm safety hold -DNS=3 -DMAXT=1 -DMAXRI=2
	run s2-live liveness hold -DNS=2 -DMAXT=2 -DMAXRI=2
	# The deliberate bugs must be caught by the properties.
	run mut-raise-first safety violate -DNS=2 -DMUT_RAISE_FIRST
	run mut-no-try liveness violate -DNS=2 -DMUT_NOTRY
	# Not a bug in the code: the documented limit of set-active (README.md, Findings).
	run set-active-anytime safety violate -DNS=2 -DOPERATOR_ANYTIME
else
	run s2-deep safety hold -DNS=2 -DMAXT=4 -DMAXRI=4
	run s3-deep safety hold -DNS=3 -DMAXT=2 -DMAXRI=2
	run s3-file-deep safety hold -DNS=3 -DMAXT=2 -DMAXRI=3 -DATOMIC_RAISE
	run s3-live liveness hold -DNS=3 -DMAXT=1 -DMAXRI=2
	run s3-bitstate bitstate hold -DNS=3 -DMAXT=3 -DMAXRI=3
	run mut-raise-first-3 safety violate -DNS=3 -DMUT_RAISE_FIRST
fi

echo "check-model$([ "$DEEP" = 1 ] && echo -deep): $passed passed, $failed failed"
[ "$failed" = 0 ]
