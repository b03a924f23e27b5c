#!/usr/bin/env bash
# `make demo`: an A/B update story on a disk image, step by step, with the slot table
# after each step as `slotctl status` and `cgpt show` print it.
set -euo pipefail
cd "$(dirname "$0")/.."
SLOTCTL=${SLOTCTL:-.build/debug/slotctl}
DEMO=${DEMO_DIR:-demo}
rm -rf "$DEMO" && mkdir -p "$DEMO/run"
DEMO=$(cd "$DEMO" && pwd)
DISK="$DEMO/disk.img"
# Rollback counters: a file by default; a real software TPM with DEMO_TPM=1.
COUNTERS="file:$DEMO/counters"
if [ "${DEMO_TPM:-0}" = 1 ]; then
  PORT=${DEMO_TPM_PORT:-23210}
  mkdir -p "$DEMO/tpm"
  swtpm socket --tpm2 --server type=tcp,port=$PORT,bindaddr=127.0.0.1 --ctrl type=tcp,port=$((PORT + 1)),bindaddr=127.0.0.1 \
    --tpmstate dir="$DEMO/tpm" --flags not-need-init,startup-clear &
  SWTPM_PID=$!
  trap 'kill -9 $SWTPM_PID 2>/dev/null' EXIT
  sleep 0.5
  COUNTERS="tpm:tcp:127.0.0.1:$PORT"
fi
mkdir -p "$DEMO/keys"
cat > "$DEMO/slotctl.conf" <<CONF
disk = $DISK
keys = $DEMO/keys
counters = $COUNTERS
booted_file = $DEMO/run/booted
cmdline_file = $DEMO/cmdline
CONF
: > "$DEMO/cmdline"
slotctl() { "$SLOTCTL" --config "$DEMO/slotctl.conf" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { slotctl status | sed -n '/^slot /,/^next boot/p'; }
cgpt_line() { for i in 1 2; do printf 'cgpt: partition %s priority=%s tries=%s successful=%s\n' "$i" \
  "$(cgpt show -i $i -P "$DISK")" "$(cgpt show -i $i -T "$DISK")" "$(cgpt show -i $i -S "$DISK")"; done; }
run() { echo "\$ slotctl $*"; set +e; slotctl "$@"; rc=$?; set -e; echo "(exit $rc)"; }
# The build host signs each release; the device installs it into a slot.
release() { # release VERSION: sign a small payload for VERSION (rollback index = its number)
  printf 'root file system %s\n' "$1" > "$DEMO/payload-$1"
  slotctl sign --key "$DEMO/release.pem" --rollback-index "${1#v}" --image-version "$1" \
    "$DEMO/payload-$1" -o "$DEMO/image-$1" | sed 's/^/  (build host) /'
}

step "0. A release key (openssl genpkey); its public half goes into the key directory"
openssl genpkey -algorithm ed25519 -out "$DEMO/release.pem"
openssl pkey -in "$DEMO/release.pem" -pubout -out "$DEMO/keys/release.pem"
ls "$DEMO/keys"

step "0b. Rollback counters ($COUNTERS): provision 4 locations"
run counters provision --locations 4

step "1. Make a 64 MiB disk image with two 16 MiB slots (GPT, slotctl's slot type)"
run format --size 64M --slot-size 16M --state
sgdisk -v "$DISK" | grep -m1 -i "problem"

step "2. Nothing is bootable yet: boot says so with code 50, so the hook can go to recovery"
run boot

step "3. Install signed v1 into slot a (verified, written, read back, activated with 6 tries); the first boot verifies it and consumes one try"
release v1
run install "$DEMO/image-v1" --slot a
run boot
show

step "4. The health checks pass: mark-successful (defaults to the booted slot) raises the rollback counter to v1's index"
run mark-successful
show
cgpt_line

step "5. An update: install v2 into the inactive slot (b), active with 3 tries"
release v2
run install "$DEMO/image-v2" --tries 3
run boot
show

step "6. v2's health check fails: mark-failed (exit 40); the next boot falls back to a"
run mark-failed --by confirm --reason "health check: the service did not start"
run boot
show

step "7. v3 into b; this time the device hangs before confirming, twice; tries run out"
release v3
run install "$DEMO/image-v3" --tries 2
run boot
run boot
echo "(no mark-successful: the watchdog rebooted)"
run boot
show

step "8. v4 arrives with a damaged byte: install refuses it before writing anything"
release v4
cp "$DEMO/image-v4" "$DEMO/image-v4-damaged"
printf 'X' | dd of="$DEMO/image-v4-damaged" bs=1 seek=3 conv=notrunc status=none
run install "$DEMO/image-v4-damaged" --tries 3
show

step "9. v4 intact, this time signed with a dm-verity tree: installed, boots (tree top checked), confirmed; the counter goes to 4"
slotctl sign --key "$DEMO/release.pem" --rollback-index 4 --image-version v4 --verity \
  "$DEMO/payload-v4" -o "$DEMO/image-v4" | sed 's/^/  (build host) /'
run install "$DEMO/image-v4" --tries 3
echo "what the initramfs hook gets for veritysetup:"
slotctl --json boot --dry-run | sed 's/.*"verity":\({[^}]*}\).*/  \1/'

run boot
run mark-successful
show
cgpt_line

step "10. An old image comes back: v2 (rollback index 2) is below the counter (4): install refuses it"
run install "$DEMO/image-v2"
run verify --image "$DEMO/image-v2"
run counters

step "11. A damaged primary GPT is read from the backup and repaired at the next write"
dd if=/dev/zero of="$DISK" bs=512 seek=1 count=1 conv=notrunc status=none
slotctl status | sed -n '2,4p'
run boot
slotctl status | sed -n '2,4p'
sgdisk -v "$DISK" | grep -m1 -i "problem"

step "12. The table, each slot's image and the counters as status shows them"
slotctl status

step "Done. Installing from a stream and dm-verity come next (see README)."
