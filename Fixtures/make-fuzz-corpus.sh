#!/usr/bin/env bash
# Seeds for `make fuzz`, made fresh from real tools so no binary blob is committed:
#   gpt/    an 8-byte sector count + the first 34 sectors of a disk made by sgdisk
#           (one slot) and by slotctl format (two slots)
#   image/  the last 8 KiB of images made by slotctl sign (plain and --verity) and the
#           start of a --stream file
#   tpm/    TPM 2.0 responses as swtpm answers slotctl's commands (NV_ReadPublic of a
#           counter, NV_Read of 8 bytes, GetCapability TPM_PT_PERMANENT, an error)
#   config/ slotctl.conf texts: every key, comments, malformed lines
# Usage: Fixtures/make-fuzz-corpus.sh OUTDIR SLOTCTL
set -euo pipefail
out=$1
slotctl=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out/gpt" "$out/image" "$out/tpm" "$out/config"
# config/: the documented keys, a comment, a bad line and an unknown key.
printf 'disk = /dev/mmcblk0\nkeys = /etc/slotctl/keys  # trusted keys\ncounters = tpm:/dev/tpmrm0\n' > "$out/config/full"
printf 'sector_size = 4096\nverification = none\nbooted_file = /run/x\ncmdline_file = /proc/cmdline\n' > "$out/config/rest"
printf 'disk\n= value\nfoo = bar\n\t\r\n' > "$out/config/bad"

seed_gpt() { # seed_gpt IMAGE NAME
  local sectors=$(( $(stat -c %s "$1") / 512 ))
  python3 -c "import struct,sys; sys.stdout.buffer.write(struct.pack('<Q', $sectors))" > "$out/gpt/$2"
  head -c $((34 * 512)) "$1" >> "$out/gpt/$2"
}
truncate -s 1M "$tmp/sg.img"
sgdisk -o -n 1:34:+200K -t 1:FE3A2A5D-4F32-41A7-B725-ACCC3285A309 -c 1:root_a -A 1:set:48 "$tmp/sg.img" >/dev/null
seed_gpt "$tmp/sg.img" sgdisk
"$slotctl" --config /dev/null --disk "$tmp/fmt.img" format --size 4M --slot-size 1M >/dev/null
seed_gpt "$tmp/fmt.img" format

openssl genpkey -algorithm ed25519 -out "$tmp/k.pem" 2>/dev/null
head -c 20000 /dev/urandom > "$tmp/payload"
"$slotctl" --config /dev/null sign --key "$tmp/k.pem" --rollback-index 3 --image-version fuzz "$tmp/payload" -o "$tmp/plain" >/dev/null
"$slotctl" --config /dev/null sign --key "$tmp/k.pem" --rollback-index 3 --verity "$tmp/payload" -o "$tmp/verity" >/dev/null
"$slotctl" --config /dev/null sign --key "$tmp/k.pem" --rollback-index 3 --stream "$tmp/payload" -o "$tmp/stream" >/dev/null
tail -c 8192 "$tmp/plain" > "$out/image/plain"
tail -c 8192 "$tmp/verity" > "$out/image/verity"
head -c 444 "$tmp/stream" > "$out/image/stream"
# A state partition's history copy (spec/state.md) with one record, written by mark-failed.
"$slotctl" --config /dev/null --disk "$tmp/state.img" format --size 6M --slot-size 1M --state >/dev/null
"$slotctl" --config /dev/null --disk "$tmp/state.img" --verification none set-active b >/dev/null
"$slotctl" --config /dev/null --disk "$tmp/state.img" --verification none mark-failed b --by fuzz --reason seed >/dev/null || true
state_lba=$(sgdisk -i 3 "$tmp/state.img" | sed -n 's/^First sector: \([0-9]*\).*/\1/p')
dd if="$tmp/state.img" of="$out/image/history" bs=512 skip="$state_lba" count=16 status=none

python3 - "$out/tpm" <<'PY'
import struct, sys
def response(tag, body, code=0):
    return struct.pack(">HII", tag, 10 + len(body), code) + body
nv_public = struct.pack(">IHIHH", 0x01505C00, 0x000B, 0x22060014, 0, 8)
name = struct.pack(">HH", 34, 0x000B) + bytes(32)
seeds = {
    "nvreadpublic": response(0x8001, struct.pack(">H", len(nv_public)) + nv_public + name),
    # parameterSize, TPM2B_MAX_NV_BUFFER of 8 bytes, then the password session's response.
    "nvread": response(0x8002, struct.pack(">IH", 10, 8) + struct.pack(">Q", 5) + bytes([0, 0, 1, 0, 0])),
    "permanent": response(0x8001, bytes([0]) + struct.pack(">IIII", 6, 1, 0x200, 1)),
    "error": response(0x8001, b"", 0x18B),
}
for name, data in seeds.items():
    open(f"{sys.argv[1]}/{name}", "wb").write(data)
PY
