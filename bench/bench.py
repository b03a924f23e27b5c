#!/usr/bin/env python3
"""make bench: slotctl side by side with the tools a user would otherwise trust, each
comparison measured in the same run, alternating the commands; medians and ratios.
Not a test: nothing here asserts a time. Writes bench/results.md and prints it."""
import os, platform, re, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# `make embedded`'s static binary: what an initramfs runs. SLOTCTL_BENCH_BIN measures
# another build without touching the shared build directories.
SLOTCTL = os.environ.get("SLOTCTL_BENCH_BIN") or os.path.join(ROOT, ".build/embedded/static/slotctl")
# A static executable's malloc cannot be interposed: allocations are counted on the
# dynamically linked Embedded build of the same code (SLOTCTL_BENCH_DYNAMIC_BIN overrides).
SLOTCTL_DYNAMIC = os.environ.get("SLOTCTL_BENCH_DYNAMIC_BIN") or os.path.join(ROOT, ".build/embedded/dynamic/slotctl")
# `make static`: the same program with the full Swift runtime, for comparison.
SLOTCTL_RUNTIME = os.path.join(ROOT, ".build/static/release/slotctl")
QUICK = os.environ.get("BENCH_QUICK") == "1"  # smaller sizes, fewer runs (for a smoke run)
RUNS = 5 if QUICK else 15
work = tempfile.mkdtemp(prefix="slotctl-bench-")
rows = []


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def alternate(commands, runs=RUNS):
    """Median wall time of each command, runs interleaved A B A B ... after a warm-up."""
    times = [[] for _ in commands]
    for cmd in commands:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(runs):
        for i, cmd in enumerate(commands):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def max_rss_kb(cmd):
    out = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, check=True, capture_output=True, text=True)
    return int(out.stderr.strip().splitlines()[-1])


def random_file(path, size):
    with open(path, "wb") as f:
        chunk = os.urandom(1 << 20)
        left = size
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)


def row(what, ours, peer, peer_name, unit="ms", ratio_note="", target=""):
    ratio = ours / peer if peer else float("nan")
    rows.append((what, f"{ours:.2f} {unit}", f"{peer:.2f} {unit} ({peer_name})", f"{ratio:.2f}", target))


keys = os.path.join(work, "keys")
os.makedirs(keys)
sh("openssl", "genpkey", "-algorithm", "ed25519", "-out", os.path.join(work, "k.pem"))
sh("openssl", "pkey", "-in", os.path.join(work, "k.pem"), "-pubout", "-out", os.path.join(keys, "k.pem"))
base = [SLOTCTL, "--config", "/dev/null", "--keys", keys, "--booted-file", os.path.join(work, "booted")]

# 1. Table read and decision: slotctl boot --dry-run against cgpt show, 4 and 128 entries.
for entries in (4, 128):
    disk = os.path.join(work, f"table{entries}.img")
    sh("truncate", "-s", "256M", disk)
    args = ["sgdisk", "-o"]
    for i in range(1, entries + 1):
        kind = "FE3A2A5D-4F32-41A7-B725-ACCC3285A309" if i <= 2 else "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
        name = f"root_{'ab'[i - 1]}" if i <= 2 else f"data{i}"
        args += ["-n", f"{i}:0:+1M", "-t", f"{i}:{kind}", "-c", f"{i}:{name}"]
    sh(*args, disk)
    sh("cgpt", "add", "-i", "1", "-P", "2", "-T", "5", "-S", "0", disk)
    ours, peer = alternate([base + ["--disk", disk, "--verification", "none", "boot", "--dry-run"], ["cgpt", "show", disk]])
    row(f"table read + decision, {entries} entries", ours * 1e3, peer * 1e3, "cgpt show", target="≤ 1.5")

# 1b. The decision a device runs: signature checks, file counters, and a signed image with
# a dm-verity tree in each slot (boot checks the signature and the tree's top block).
signed_payload = os.path.join(work, "signed-payload")
random_file(signed_payload, 512 << 10)
signed_image = os.path.join(work, "signed.img")
sh(SLOTCTL, "--config", "/dev/null", "sign", "--key", os.path.join(work, "k.pem"), "--rollback-index", "1", "--verity",
   "--partition-size", "1M", signed_payload, "-o", signed_image)
counters = "file:" + os.path.join(work, "counters")
sh(*base, "--counters", counters, "counters", "provision")
for entries in (4, 128):
    disk = os.path.join(work, f"table{entries}.img")
    for part in (1, 2):
        start = int(sh("cgpt", "show", "-i", str(part), "-b", disk).stdout.strip())
        sh("dd", f"if={signed_image}", f"of={disk}", "bs=512", f"seek={start}", "conv=notrunc", "status=none")
    signed = base + ["--counters", counters, "--disk", disk, "boot", "--dry-run"]
    sh(*signed)
    ours, peer = alternate([signed, ["cgpt", "show", disk]])
    row(f"signed decision (keys, file counters, verity image per slot), {entries} entries", ours * 1e3, peer * 1e3,
        "cgpt show", target="≤ 1.6 (issue 19)")
    if entries == 4:
        rows.append(("peak RSS, signed decision, 4 entries", f"{max_rss_kb(signed)} KiB",
                     f"{max_rss_kb(['cgpt', 'show', disk])} KiB (cgpt show)", "", "≤ 5 MiB (issue 19)"))
        signed_4 = signed
        if os.path.exists(SLOTCTL_RUNTIME):
            runtime = [SLOTCTL_RUNTIME] + signed[1:]
            ours, peer = alternate([runtime, ["cgpt", "show", disk]])
            row("signed decision, 4 entries, Swift-runtime static build (make static)", ours * 1e3, peer * 1e3, "cgpt show",
                target="for comparison")

# 1c. The floor: a C program that reads one PEM key and verifies one Ed25519 signature with
# static libcrypto and does nothing else (bench/floor.c), OpenSSL's default way and the
# lean way (no config file, raw key import).
floor = os.path.join(work, "floor")
subprocess.run(["gcc", "-O2", "-static", "-o", floor, os.path.join(ROOT, "bench", "floor.c"), "-lcrypto", "-lpthread"],
               check=True, capture_output=True)
sh("strip", floor)
message, signature = os.path.join(work, "floor-message"), os.path.join(work, "floor-signature")
random_file(message, 316)
sh("openssl", "pkeyutl", "-sign", "-inkey", os.path.join(work, "k.pem"), "-rawin", "-in", message, "-out", signature)
disk4 = os.path.join(work, "table4.img")
public_key = os.path.join(keys, "k.pem")
default_floor, lean_floor, ours, peer = alternate([[floor, public_key, message, signature],
                                                   [floor, "--lean", public_key, message, signature],
                                                   signed_4, ["cgpt", "show", disk4]])
row("C floor: one PEM key, one Ed25519 verify, static libcrypto (bench/floor.c)", default_floor * 1e3, peer * 1e3, "cgpt show",
    target="for reference")
row("C floor, lean: no config file, raw key import", lean_floor * 1e3, peer * 1e3, "cgpt show", target="for reference")
row("signed decision, 4 entries, against the lean C floor", ours * 1e3, lean_floor * 1e3, "lean C floor", target="")

# 1d. Size: the stripped binaries, and what the dynamic one adds to an initramfs that
# already carries veritysetup (its file and every library it needs that veritysetup's
# do not already bring), compressed the way mkinitramfs does (zstd -9).
def stripped_size(path):
    copy = os.path.join(work, "stripped")
    shutil.copy(path, copy)
    sh("strip", copy)
    return os.path.getsize(copy)

# The static Embedded binary is stripped of its unwind tables too (scripts/build-embedded.sh);
# the C floor is stripped the same way, so the ratio compares like with like (in the C
# floor's layout they sit inside its loaded segment, so its file stays the same size).
bare_floor = os.path.join(work, "floor-bare")
sh("strip", "--remove-section=.eh_frame", "--remove-section=.eh_frame_hdr", "-o", bare_floor, floor)
rows.append(("size, static Embedded binary, stripped, no unwind tables", f"{os.path.getsize(SLOTCTL) / 1e6:.2f} MB",
             f"{os.path.getsize(bare_floor) / 1e6:.2f} MB (C floor, the same way; {os.path.getsize(floor) / 1e6:.2f} MB with "
             "unwind tables)", f"{os.path.getsize(SLOTCTL) / os.path.getsize(bare_floor):.2f}", "≤ 5 MB"))
if os.path.exists(SLOTCTL_RUNTIME):
    rows.append(("size, Swift-runtime static binary (make static), stripped", f"{stripped_size(SLOTCTL_RUNTIME) / 1e6:.2f} MB",
                 "", "", "for comparison"))

def closure(binary):
    out = sh("ldd", binary).stdout
    return {binary} | {os.path.realpath(m) for m in re.findall(r"(/\S+\.so[.\d]*)", out)}

def initramfs_bytes(files):
    tree = os.path.join(work, "initramfs-tree")
    shutil.rmtree(tree, ignore_errors=True)
    for f in files:
        os.makedirs(tree + os.path.dirname(f), exist_ok=True)
        shutil.copy(f, tree + f)
    names = subprocess.run(["find", "."], cwd=tree, check=True, capture_output=True).stdout
    cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=tree, input=names, check=True, capture_output=True).stdout
    return len(cpio), len(subprocess.run(["zstd", "-q", "-9", "-c"], input=cpio, check=True, capture_output=True).stdout)

verity = closure(shutil.which("veritysetup"))
added = closure(SLOTCTL_DYNAMIC) - verity
base_raw, base_zstd = initramfs_bytes(verity)
with_raw, with_zstd = initramfs_bytes(verity | closure(SLOTCTL_DYNAMIC))
rows.append(("initramfs growth, dynamic Embedded binary beside veritysetup (cpio, zstd -9)",
             f"+{(with_zstd - base_zstd) / 1e6:.2f} MB compressed", f"+{(with_raw - base_raw) / 1e6:.2f} MB uncompressed; "
             f"files added: {', '.join(sorted(os.path.basename(f) for f in added))}", "", "≤ 1 MB"))

# 2. Payload verification throughput against openssl dgst -sha256 and sha256sum, cache warm.
for mib in ((16, 64) if QUICK else (256, 1024)):
    payload = os.path.join(work, f"payload{mib}")
    random_file(payload, mib << 20)
    image = os.path.join(work, f"image{mib}")
    sh(*(base + ["sign", "--key", os.path.join(work, "k.pem"), "--rollback-index", "1", payload, "-o", image]))
    ours, ssl, s256 = alternate([base + ["verify", "--image", image], ["openssl", "dgst", "-sha256", image],
                                 ["sha256sum", image]], runs=max(3, RUNS // 3))
    rows.append((f"verify {mib} MiB image (SHA-256 of the payload)", f"{mib / ours:.0f} MiB/s",
                 f"{mib / ssl:.0f} MiB/s (openssl dgst), {mib / s256:.0f} MiB/s (sha256sum)",
                 f"{ssl / ours:.2f} of openssl's throughput", "≥ 0.95"))
    os.remove(payload)

# 3. Peak memory of verify and install as the payload grows.
sizes = (4, 16, 64) if QUICK else (16, 256, 1024)
disk = os.path.join(work, "install.img")
slot = max(sizes) + 8
sh(*(base + ["--disk", disk, "format", "--size", f"{2 * slot + 4}M", "--slot-size", f"{slot}M"]))
memory = []
for mib in sizes:
    payload = os.path.join(work, f"mem{mib}")
    random_file(payload, mib << 20)
    image = os.path.join(work, f"memimage{mib}")
    sh(*(base + ["sign", "--key", os.path.join(work, "k.pem"), "--rollback-index", "1", payload, "-o", image]))
    os.remove(payload)
    verify_kb = max_rss_kb(base + ["verify", "--image", image])
    install_kb = max_rss_kb(base + ["--disk", disk, "install", image, "--slot", "a"])
    memory.append((mib, verify_kb, install_kb))
    os.remove(image)
spread_v = max(m[1] for m in memory) - min(m[1] for m in memory)
spread_i = max(m[2] for m in memory) - min(m[2] for m in memory)
for mib, v, i in memory:
    rows.append((f"peak RSS, {mib} MiB payload", f"verify {v / 1024:.1f} MiB", f"install {i / 1024:.1f} MiB", "", ""))
rows.append(("peak RSS growth across sizes", f"verify +{spread_v / 1024:.2f} MiB", f"install +{spread_i / 1024:.2f} MiB", "", "≤ 1 MiB"))

# 4. dm-verity tree, tree work only on both sides. slotctl has no tree-only command:
# `sign --verity` also copies, digests and fsyncs the payload, and `verify --image` also
# checks its SHA-256. So slotctl's tree time is the difference between the same command
# with and without --verity, all on the same payload with the same salt, each pair
# measured in one alternating run with the peer: build against `veritysetup format`
# (reads the data, writes and fsyncs the tree), check against `veritysetup verify`
# (reads the data and the tree, compares). The whole `sign --verity` against the two
# steps it replaces (`sign`, then `veritysetup format`) is shown as well.
mib = 16 if QUICK else 256
payload = os.path.join(work, "verity")
random_file(payload, mib << 20)
salt = "5a17c71e00112233445566778899aabbccddeeff00112233445566778899aabb"
hashdev = os.path.join(work, "hashdev")
verity_image, plain_image = os.path.join(work, "verity.img"), os.path.join(work, "plain.img")
sign = base + ["sign", "--key", os.path.join(work, "k.pem"), "--rollback-index", "1"]
sign_verity, sign_plain = sign + ["--verity", "--salt", salt, payload, "-o", verity_image], sign + [payload, "-o", plain_image]
format_tree = ["veritysetup", "format", "--no-superblock", f"--salt={salt}", payload, hashdev]
with_tree, without_tree, peer = alternate([sign_verity, sign_plain, format_tree], runs=max(5, RUNS // 2))
ours = with_tree - without_tree
rows.append((f"dm-verity tree build, {mib} MiB: `sign --verity` − `sign`", f"{ours * 1e3:.2f} ms",
             f"{peer * 1e3:.2f} ms (veritysetup format)", f"{peer / ours:.2f} of veritysetup's speed", "≥ 1.0"))
rows.append((f"sign --verity, {mib} MiB, whole command", f"{with_tree * 1e3:.2f} ms",
             f"{(without_tree + peer) * 1e3:.2f} ms (sign, then veritysetup format)",
             f"{(without_tree + peer) / with_tree:.2f} of their speed", ""))
root = re.search(r"Root hash:\s*([0-9a-f]+)", sh(*format_tree).stdout).group(1)
with_tree, without_tree, peer = alternate([base + ["verify", "--image", verity_image], base + ["verify", "--image", plain_image],
                                           ["veritysetup", "verify", "--no-superblock", f"--salt={salt}", payload, hashdev, root]],
                                          runs=max(5, RUNS // 2))
ours = with_tree - without_tree
rows.append((f"dm-verity tree check, {mib} MiB: `verify --image` with − without tree", f"{ours * 1e3:.2f} ms",
             f"{peer * 1e3:.2f} ms (veritysetup verify)", f"{peer / ours:.2f} of veritysetup's speed", ""))
os.remove(payload)

# 5. Heap allocations of the signed boot --dry-run (4 entries) and of the table-only one,
# counted by caller (bench/malloc-count.c, LD_PRELOAD) on the dynamic Embedded build:
# libcrypto's own, slotctl's own (both of its processes, the I/O watchdog and its worker,
# each allocation counted once: the worker's counts start at the fork), and everything else.
counter_lib = os.path.join(work, "malloc-count.so")
subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", counter_lib, os.path.join(ROOT, "bench", "malloc-count.c"), "-ldl"],
               check=True, capture_output=True)
def allocations(cmd):
    out = os.path.join(work, "malloc-count.txt")
    if os.path.exists(out):
        os.remove(out)
    subprocess.run([SLOTCTL_DYNAMIC] + cmd[1:], env=dict(os.environ, LD_PRELOAD=counter_lib, MALLOC_COUNT_OUT=out),
                   check=True, capture_output=True)
    totals = {}
    for line in open(out):
        fields = line.split()
        for name, value in zip(fields[0::2], fields[1::2]):
            totals[name] = totals.get(name, 0) + int(value)
    return totals
for what, cmd in (("signed", signed_4), ("table only", signed_4[:-2] + ["--verification", "none", "boot", "--dry-run"])):
    counted = allocations(cmd)
    rows.append((f"heap allocations, {what} boot --dry-run, 4 entries (dynamic Embedded build)",
                 f"{counted['program']} slotctl's own", f"{counted['libcrypto']} libcrypto's, {counted['other']} others'",
                 "", "≤ 50 outside libcrypto"))

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
lines = [f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}; "
         f"static Embedded build (make embedded); page cache warm; medians of {RUNS} alternating runs" + (" (BENCH_QUICK)" if QUICK else "") + ".", "",
         "| what | slotctl | peer | ratio | budget |", "|---|---|---|---|---|"]
lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
lines += ["", "dm-verity rows: slotctl has no tree-only command, so its tree time is the same command "
          "with `--verity` (or on the image with a tree) minus without, same payload and salt, medians of one "
          "alternating run with the peer. `veritysetup format` reads the data and writes and fsyncs the tree; "
          "`sign --verity` builds the tree from the payload as it copies it (one read) and writes it into the "
          "image, fsynced with it. `veritysetup verify` reads data and tree and compares; `verify --image` "
          "rebuilds the tree from the payload and compares every byte and the root. The whole-command row is "
          "what `--verity` costs against signing and then running `veritysetup format`."]
if os.environ.get("SLOTCTL_BENCH_BIN"):
    lines += ["", f"slotctl measured: {os.path.relpath(SLOTCTL, ROOT)} (SLOTCTL_BENCH_BIN), allocations on "
              f"{os.path.relpath(SLOTCTL_DYNAMIC, ROOT)}."]
text = "\n".join(lines) + "\n"
with open(os.path.join(ROOT, "bench", "results.md"), "w") as f:
    f.write(text)
print(text)
shutil.rmtree(work, ignore_errors=True)
