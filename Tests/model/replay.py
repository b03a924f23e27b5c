#!/usr/bin/env python3
"""Conformance: replay random SPIN simulations of spec/model/slotctl.pml on the real
slotctl, over a real GPT image with signed slots and file counters.

For each seed: `spin -DTRACE ... -n SEED` prints the commands the model ran (CMD), where
a power cut struck (CUT w: after w mutating system calls of that command) and the state
after each command (STATE). The replay runs the same command with the real binary under
`cutter` (which kills it at the entry of its (w+1)-th pwrite/fsync/rename: the power
cut), then compares, after every step:
  - each slot's priority, tries, successful: `cgpt show -i N -A` (the copy cgpt reads)
  - which GPT copies are valid / stale / invalid: `slotctl status --json`
  - whether each slot's image verifies (signature, digest, rollback): `status --json`
  - the rollback counter (the counter file), the booted record, the exit status.

Usage: replay.py --bin SLOTCTL --cutter CUTTER --model PML --work DIR
                 [--slots 2] [--seeds 1..40] [--ops 40] [--define MUT_TIEBREAK]
                 [--expect-divergence]
Prints ok:/FAIL: lines; exit 1 on any failure (or, with --expect-divergence, when the
real binary agrees with a deliberately wrong model on every seed)."""
import argparse, json, os, re, shutil, subprocess, sys, time

MAXRI = 2
MAXT = 3


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


class Divergence(Exception):
    pass


class Rig:
    def __init__(self, args, dirname):
        self.args = args
        self.dir = dirname
        self.disk = os.path.join(dirname, "disk.img")
        self.ctr = os.path.join(dirname, "counters")
        self.booted = os.path.join(dirname, "booted")
        self.keys = os.path.join(args.work, "keys")

    def g(self):
        return [self.args.bin, "--disk", self.disk, "--keys", self.keys, "--counters", "file:" + self.ctr,
                "--booted-file", self.booted, "--cmdline-file", "/dev/null", "--lock-timeout", "30"]

    def run(self, argv, cut=0):
        r = sh([self.args.cutter, str(cut)] + self.g() + argv)
        return r.returncode, r.stdout + r.stderr

    def setup(self, ns, tie):
        os.makedirs(self.dir, exist_ok=True)
        for f in (self.disk, self.ctr, self.booted):
            if os.path.exists(f):
                os.remove(f)
        size = (ns + 2) * 1024 * 1024
        steps = [
            ["format", "--size", str(size), "--slots", str(ns), "--slot-size", "1M"],
            ["counters", "provision", "--locations", "1"],
            ["install", self.image(1, 1), "--slot", "a", "--tries", "1"],
            ["boot"],
            ["mark-successful"],
        ]
        for s in steps:
            r = sh(self.g() + s)
            if r.returncode != 0:
                raise RuntimeError("setup: slotctl %s: %s" % (" ".join(s), (r.stdout + r.stderr).strip()))
        os.remove(self.booted)
        if tie:
            r = sh(self.g() + ["install", self.image(1, 1), "--slot", "b", "--tries", "1"])
            if r.returncode != 0:
                raise RuntimeError("setup: install b: " + r.stderr.strip())
            # A cgpt-made tie: both confirmed at priority 15.
            for part in ("1", "2"):
                r = sh(["cgpt", "add", "-i", part, "-P", "15", "-T", "0", "-S", "1", self.disk])
                if r.returncode != 0:
                    raise RuntimeError("setup: cgpt add: " + r.stderr.strip())

    def image(self, ri, healthy):
        return os.path.join(self.args.work, "img-%d-%d.img" % (ri, healthy))

    def observe(self, ns):
        st = sh(self.g() + ["--json", "status"])
        try:
            res = json.loads(st.stdout)["result"]
        except Exception:
            raise Divergence("status --json failed: " + (st.stdout + st.stderr).strip()[:300])
        obs = {}
        p = res["primary"]["status"]
        b = res["backup"]["status"]
        obs["primary"] = 1 if p == "valid" else 0
        obs["backup"] = 1 if b in ("valid", "stale") else 0
        obs["stale"] = 1 if b == "stale" else 0
        for k in range(ns):
            a = sh(["cgpt", "show", "-i", str(k + 1), "-A", self.disk])
            if a.returncode != 0:
                raise Divergence("cgpt show -i %d -A failed: %s" % (k + 1, a.stderr.strip()))
            v = int(a.stdout.strip(), 16)
            obs["s%d" % k] = "%d,%d,%d" % (v & 15, (v >> 4) & 15, (v >> 8) & 1)
            img = res["slots"][k].get("image", {})
            obs["v%d" % k] = 1 if img.get("code") == 0 else 0
        with open(self.ctr) as f:
            lines = f.read().split("\n")
        obs["ctr"] = int(lines[1].split()[1])
        if os.path.exists(self.booted):
            with open(self.booted) as f:
                obs["booted"] = ord(f.read(1)) - ord("a")
        else:
            obs["booted"] = ns
        return obs


STATE_RE = re.compile(r"STATE (.*)")


def parse_state(line):
    fields = dict(re.findall(r"(\w+)=([\d,]+)", line))
    out = {}
    for key, val in fields.items():
        out[key] = val if "," in val else int(val)
    return out


def simulate(args, seed):
    defs = ["-DTRACE", "-DATOMIC_RAISE", "-DNS=%d" % args.slots, "-DMAXT=%d" % MAXT, "-DMAXRI=%d" % MAXRI,
            "-DMAXOPS=%d" % args.ops] + ["-D" + d for d in args.define]
    r = sh(["spin"] + defs + ["-n%d" % seed, "-u10000000", os.path.basename(args.model)],
           cwd=os.path.dirname(os.path.abspath(args.model)))
    if r.returncode != 0 or "INIT" not in r.stdout:
        raise RuntimeError("spin simulation failed: " + (r.stdout + r.stderr)[-400:])
    if re.search(r"assertion violated|Error:", r.stdout + r.stderr):
        raise RuntimeError("the model itself failed in simulation: " + (r.stdout + r.stderr)[-400:])
    lines = [l.strip() for l in r.stdout.splitlines()]
    return [l for l in lines if re.match(r"(INIT|CMD|CUT|STATE)", l)]


def replay(args, seed, rig):
    trace = simulate(args, seed)
    ns = args.slots
    tie = int(re.search(r"tie=(\d)", trace[0]).group(1))
    rig.setup(ns, tie)
    i = 1
    steps = 0
    cuts = 0

    def compare(model, real, what, rc_model=None, rc_real=None):
        diffs = []
        for key in sorted(model):
            if key == "rc":
                continue
            if key in real and model[key] != real[key]:
                diffs.append("%s model=%s real=%s" % (key, model[key], real[key]))
        if rc_model is not None and rc_model != rc_real:
            diffs.append("exit status model=%s real=%s" % (rc_model, rc_real))
        if diffs:
            raise Divergence("%s: %s" % (what, "; ".join(diffs)))

    # The initial state.
    compare(parse_state(trace[i]), rig.observe(ns), "initial state")
    i += 1
    while i < len(trace):
        line = trace[i]
        m = re.match(r"CMD (\S+)(.*)", line)
        if not m:
            raise RuntimeError("unexpected trace line %r" % line)
        cmd, rest = m.group(1), [int(x) for x in m.group(2).split()]
        cut = None
        if i + 1 < len(trace) and trace[i + 1].startswith("CUT"):
            cut = int(trace[i + 1].split()[1])
            i += 1
        state_line = trace[i + 1] if i + 1 < len(trace) else None
        i += 2
        if cmd == "boot":
            argv = ["boot"]
        elif cmd == "mark-successful":
            argv = ["mark-successful"]
        elif cmd == "mark-failed":
            argv = ["mark-failed"]
        elif cmd == "set-active":
            argv = ["set-active", chr(97 + rest[0]), "--tries", str(rest[1])]
        elif cmd == "install":
            argv = ["install", rig.image(rest[1], rest[2]), "--slot", chr(97 + rest[0]), "--tries", str(rest[3])]
        elif cmd == "reboot":
            argv = None
        else:
            raise RuntimeError("unknown command " + cmd)
        what = "seed %d step %d: %s%s" % (seed, steps + 1, " ".join(argv or ["reboot"]),
                                          (" (power cut after %d writes)" % cut) if cut is not None else "")
        rc_real = 0
        out = ""
        if argv is not None:
            rc_real, out = rig.run(argv, cut=(cut + 1) if cut is not None else 0)
        if cut is not None:
            cuts += 1
            if rc_real != 137:
                raise Divergence("%s: the model cut after %d writes but the command made fewer (exit %d: %s)"
                                 % (what, cut, rc_real, out.strip()[:200]))
        if argv is None or cut is not None:
            # /run is gone after a reboot or a power cut.
            if os.path.exists(rig.booted):
                os.remove(rig.booted)
        if state_line is None:
            break
        model = parse_state(state_line)
        compare(model, rig.observe(ns), what,
                rc_model=model["rc"] if cut is None and argv is not None else None, rc_real=rc_real)
        steps += 1
    return steps, cuts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--cutter", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--seeds", default="1..20")
    ap.add_argument("--ops", type=int, default=40)
    ap.add_argument("--define", action="append", default=[])
    ap.add_argument("--expect-divergence", action="store_true")
    args = ap.parse_args()
    lo, hi = (int(x) for x in args.seeds.split(".."))
    label = "replay %d slots, seeds %d..%d%s" % (args.slots, lo, hi,
                                                  (" against the mutated model " + ",".join(d for d in args.define if d.startswith("MUT_"))) if args.define else "")
    total_steps = total_cuts = 0
    diverged = []
    start = time.time()
    for seed in range(lo, hi + 1):
        rig = Rig(args, os.path.join(args.work, "s%d-%d" % (args.slots, seed)))
        try:
            steps, cuts = replay(args, seed, rig)
            total_steps += steps
            total_cuts += cuts
            shutil.rmtree(rig.dir, ignore_errors=True)
        except Divergence as e:
            diverged.append(str(e))
            if args.expect_divergence:
                break
            print("FAIL: %s: the real slotctl differs from the model: %s (kept in %s)" % (label, e, rig.dir))
        except RuntimeError as e:
            print("FAIL: %s: seed %d: %s" % (label, seed, e))
            return 1
    secs = time.time() - start
    if args.expect_divergence:
        if diverged:
            print("ok: %s: the real slotctl disagrees, as it must: %s" % (label, diverged[0]))
            return 0
        print("FAIL: %s: the real slotctl agreed with a deliberately wrong model on every seed "
              "(%d steps, %d power cuts): the replay is too weak" % (label, total_steps, total_cuts))
        return 1
    if diverged:
        return 1
    print("ok: %s: %d traces, %d steps (%d with a power cut) replayed on the real slotctl: "
          "table (cgpt), copies, images, counter, booted slot and exit status equal the model after every step (%.0fs)"
          % (label, hi - lo + 1, total_steps, total_cuts, secs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
