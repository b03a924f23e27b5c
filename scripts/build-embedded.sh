#!/bin/bash
# make embedded: slotctl from the same sources in Embedded Swift (spec/embedded.md), as
# the two binaries an initramfs can carry:
#   .build/embedded/static/slotctl   static: libcrypto, libuuid, libblkid and libc inside
#   .build/embedded/dynamic/slotctl  linked against the system's libcrypto.so.3, libuuid,
#                                    libblkid and libc, as veritysetup is
# The layers are compiled as one module: Embedded Swift specializes the standard library
# into every module that uses it, and one module keeps a single copy (half the code of a
# module-by-module build). The `import SlotX` lines between the layers are dropped in a
# staging copy; nothing else changes. main.swift is the normal build's entry point; here
# Entry.swift's C `main` takes its place.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${EMBEDDED_OUT:-.build/embedded}
SWIFTC=${SWIFTC:-swiftc}
LAYERS=(SlotCore SlotStorage SlotCrypto SlotCounters SlotFlows slotctl)
mkdir -p "$OUT/static" "$OUT/dynamic"
rm -rf "$OUT/sources" && mkdir -p "$OUT/sources"
for layer in "${LAYERS[@]}"; do
	for file in Sources/"$layer"/*.swift; do
		[ "$file" = Sources/slotctl/main.swift ] && continue
		sed -E '/^import (SlotCore|SlotStorage|SlotCrypto|SlotCounters|SlotFlows)$/d' "$file" \
			>"$OUT/sources/${layer}_$(basename "$file")"
	done
done
# LLVM's machine outliner folds repeated instruction sequences (retain/release pairs, error
# returns, bounds checks) into shared functions: 82 KB less code for no measurable time.
"$SWIFTC" -enable-experimental-feature Embedded -enable-experimental-feature Extern \
	-target x86_64-unknown-linux-gnu -wmo -Osize -Xllvm -enable-machine-outliner -parse-as-library -Xfrontend -function-sections \
	-I Sources/CSystem -I Sources/CLibCrypto -I Sources/CLibUUID -I Sources/CLibBlkid \
	-module-name slotctl -c "$OUT"/sources/*.swift -o "$OUT/slotctl.o"

# String comparison and case mapping need the Unicode tables the toolchain ships for Embedded.
TOOLCHAIN=$(dirname "$(dirname "$(readlink -f "$(command -v "$SWIFTC")")")")
UNICODE=$TOOLCHAIN/lib/swift/embedded/x86_64-unknown-linux-gnu/libswiftUnicodeDataTables.a
[ -f "$UNICODE" ] || { echo "build-embedded: no $UNICODE in this toolchain" >&2; exit 1; }
LIBS=("$UNICODE" -lcrypto -luuid -lblkid -lm)
clang -Wl,--gc-sections -o "$OUT/dynamic/slotctl" "$OUT/slotctl.o" "${LIBS[@]}"
# glibc warns that libcrypto's getaddrinfo/dlopen need its shared libraries at run time;
# slotctl never reaches them (no network BIO, no engines), so the warnings are dropped.
clang -static -Wl,--gc-sections -o "$OUT/static/slotctl" "$OUT/slotctl.o" "${LIBS[@]}" -lpthread \
	2> >(grep -v "statically linked applications requires at runtime" >&2)
strip "$OUT/dynamic/slotctl"
# The static binary drops its unwind tables too (0.6 MB, mostly libc's and libcrypto's):
# nothing in slotctl unwinds. Embedded Swift traps instead of unwinding, errors are
# return values, there is no C++, no thread is cancelled, and no backtrace is taken.
# (In the dynamic binary they sit inside its loaded segment and removing them saves nothing.)
strip --remove-section=.eh_frame --remove-section=.eh_frame_hdr "$OUT/static/slotctl"
ls -l "$OUT/static/slotctl" "$OUT/dynamic/slotctl"
