import Foundation
import Testing

/// Many slotctl processes at once on one disk (issue 15): every change lands, the table
/// stays clean for sgdisk, readers never fail, and a held lock is waited for, then
/// reported with its holder (spec/locking.md).
@Suite(.serialized) struct ConcurrencyTests {
    let keys = KeySet.shared

    /// Runs `commands` (argument lists for slotctl) all at once, each in the background,
    /// plus `readers` processes that run `status` in a loop until the writers are done.
    /// Returns each writer's exit status and stderr, and whether every reader succeeded.
    func together(_ disk: String, _ commands: [[String]], readers: Int, dir: URL) throws -> (codes: [Int32], errors: [String], readersOK: Bool) {
        func quoted(_ word: String) -> String { "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        let base = [Tools.slotctl, "--disk", disk, "--keys", keys.keys, "--config", "/dev/null",
                    "--booted-file", dir.appendingPathComponent("booted").path, "--cmdline-file", "/dev/null"].map(quoted)
        var script = "rm -f \(quoted(dir.path))/rc.* \(quoted(dir.path))/err.* \(quoted(dir.path))/reader.*\n"
        for (n, command) in commands.enumerated() {
            let out = quoted(dir.appendingPathComponent("rc.\(n)").path), err = quoted(dir.appendingPathComponent("err.\(n)").path)
            script += "( " + (base + command.map(quoted)).joined(separator: " ") + " >/dev/null 2>\(err); echo $? > \(out) ) &\n"
        }
        for n in 0..<readers {
            let out = quoted(dir.appendingPathComponent("reader.\(n)").path)
            script += "( ok=0; for i in 1 2 3 4 5 6 7 8; do " + (base + ["--verification", "none", "status"]).joined(separator: " ")
                + " >/dev/null 2>>\(out).err || ok=1; done; echo $ok > \(out) ) &\n"
        }
        script += "wait\n"
        let run = try Tools.run("bash", ["-c", script])
        #expect(run.status == 0, "\(run.stderr)")
        var codes: [Int32] = [], errors: [String] = []
        for n in 0..<commands.count {
            let text = (try? String(contentsOfFile: dir.appendingPathComponent("rc.\(n)").path, encoding: .utf8)) ?? "-1"
            codes.append(Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1)
            errors.append((try? String(contentsOfFile: dir.appendingPathComponent("err.\(n)").path, encoding: .utf8)) ?? "")
        }
        var readersOK = true
        for n in 0..<readers {
            let text = (try? String(contentsOfFile: dir.appendingPathComponent("reader.\(n)").path, encoding: .utf8)) ?? "1"
            if text.trimmingCharacters(in: .whitespacesAndNewlines) != "0" {
                readersOK = false
                let err = (try? String(contentsOfFile: dir.appendingPathComponent("reader.\(n).err").path, encoding: .utf8)) ?? ""
                Issue.record("reader \(n) failed: \(err)")
            }
        }
        return (codes, errors, readersOK)
    }

    func slotctl(_ disk: String, _ args: [String]) throws -> Run {
        try Tools.slotctl(["--disk", disk, "--config", "/dev/null", "--verification", "none", "--booted-file", "/nonexistent/slotctl-booted",
                           "--cmdline-file", "/dev/null"] + args)
    }

    /// A fresh 40 MiB image with four 8 MiB slots in `dir`, or a loop device over it (the
    /// caller detaches it).
    func fourSlotDisk(_ dir: URL, onLoopDevice: Bool) throws -> String {
        let image = dir.appendingPathComponent("disk.img").path
        #expect(try Tools.slotctl(["--disk", image, "format", "--size", "40M", "--slots", "4", "--slot-size", "8M"]).status == 0)
        guard onLoopDevice else { return image }
        return try Tools.must("losetup", ["-f", "--show", image]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The report's case (`set-active b --tries 5` beside `mark-failed a`, 40 times), and
    /// four writers beside two readers, on an image file and on a loop device.
    @Test(arguments: [false, true])
    func everyChangeLands(onLoopDevice: Bool) throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = try fourSlotDisk(dir, onLoopDevice: onLoopDevice)
        defer { if onLoopDevice { _ = try? Tools.run("losetup", ["-d", disk]) } }
        let none = ["--verification", "none"]
        for round in 0..<40 {
            for slot in ["d", "c", "b", "a"] { #expect(try slotctl(disk, ["set-active", slot, "--tries", "3"]).status == 0) }
            let result = try together(disk, [none + ["set-active", "b", "--tries", "5"], none + ["mark-failed", "a"]], readers: 0, dir: dir)
            #expect(result.codes == [0, 40], "round \(round): \(result.errors)")
            #expect(try Tools.cgptState(disk, 2) == [15, 5, 0] && Tools.cgptState(disk, 1) == [0, 0, 0], "round \(round): a change was lost")
        }
        for round in 0..<10 {
            for slot in ["d", "c", "b", "a"] { #expect(try slotctl(disk, ["set-active", slot, "--tries", "3"]).status == 0) }
            let result = try together(disk, [none + ["mark-successful", "a"], none + ["mark-failed", "b"],
                                             none + ["mark-successful", "c"], none + ["mark-failed", "d"]], readers: 2, dir: dir)
            #expect(result.codes == [0, 40, 0, 40], "round \(round): \(result.errors)")
            #expect(result.readersOK, "round \(round)")
            let states = try (1...4).map { try Tools.cgptState(disk, $0) }
            #expect(states[0][2] == 1 && states[0][0] > 0 && states[1] == [0, 0, 0] && states[2][2] == 1 && states[2][0] > 0
                    && states[3] == [0, 0, 0], "round \(round): \(states)")
            try Tools.expectSgdiskClean(disk)
        }
    }

    /// `boot` (it spends a try and writes the booted record) beside marks of other slots,
    /// and readers: the try is spent exactly once each round and every mark lands.
    @Test(arguments: [false, true])
    func bootBesideOtherWriters(onLoopDevice: Bool) throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = try fourSlotDisk(dir, onLoopDevice: onLoopDevice)
        defer { if onLoopDevice { _ = try? Tools.run("losetup", ["-d", disk]) } }
        let none = ["--verification", "none"]
        for round in 0..<10 {
            for slot in ["d", "c", "b", "a"] { #expect(try slotctl(disk, ["set-active", slot, "--tries", "3"]).status == 0) }
            let result = try together(disk, [none + ["boot"], none + ["mark-successful", "b"], none + ["mark-failed", "c"],
                                             none + ["set-active", "d", "--tries", "3"]], readers: 2, dir: dir)
            // set-active d may land before or after the boot: the boot takes whichever
            // slot leads then, and spends one of its tries.
            #expect(result.codes == [0, 0, 40, 0], "round \(round): \(result.errors)")
            #expect(result.readersOK, "round \(round)")
            let booted = (try? String(contentsOfFile: dir.appendingPathComponent("booted").path, encoding: .utf8)) ?? ""
            let a = try Tools.cgptState(disk, 1), b = try Tools.cgptState(disk, 2), c = try Tools.cgptState(disk, 3)
            let d = try Tools.cgptState(disk, 4)
            let spent = booted.hasPrefix("a") ? a[1] == 2 && d == [15, 3, 0] : booted.hasPrefix("d") && d == [15, 2, 0] && a[1] == 3
            #expect(spent, "round \(round): booted \(booted), a \(a) d \(d)")
            #expect(b[2] == 1 && b[0] > 0 && c == [0, 0, 0], "round \(round): b \(b) c \(c)")
            try Tools.expectSgdiskClean(disk)
        }
    }

    /// A signal that ends the slotctl its caller started ends the process doing the work
    /// too (the I/O watchdog's worker, spec/locking.md): a set-active waiting for a lock
    /// and then terminated never writes once the lock is free.
    @Test func aSignalEndsTheWorkerToo() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = dir.appendingPathComponent("disk.img").path
        #expect(try Tools.slotctl(["--disk", disk, "format", "--size", "12M", "--slot-size", "4M"]).status == 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: disk))
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        holder.arguments = ["-x", disk, "sleep", "3"]
        try holder.run()
        usleep(300_000)
        let waiter = Process()
        waiter.executableURL = URL(fileURLWithPath: Tools.slotctl)
        waiter.arguments = ["--disk", disk, "--config", "/dev/null", "--verification", "none", "--lock-timeout", "20",
                            "--booted-file", "/nonexistent/slotctl-booted", "--cmdline-file", "/dev/null", "set-active", "b"]
        try waiter.run()
        usleep(500_000)
        waiter.terminate()
        waiter.waitUntilExit()
        #expect(waiter.terminationReason == .uncaughtSignal && waiter.terminationStatus == SIGTERM)
        holder.waitUntilExit() // the lock is free from here on
        usleep(1_000_000)
        #expect(try Data(contentsOf: URL(fileURLWithPath: disk)) == before, "the terminated set-active wrote after all")
        // And the option is checked like the lock timeout.
        let run = try slotctl(disk, ["--io-timeout", "-1", "status"])
        #expect(run.status == 64 && run.stderr.contains("I/O timeout"), "\(run.stderr)")
    }

    /// An install into one slot beside marks of the others: the install lands whole and
    /// verified, and so does every mark; on an image file and on a loop device.
    @Test(arguments: [false, true])
    func anInstallBesideOtherWriters(onLoopDevice: Bool) throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = try fourSlotDisk(dir, onLoopDevice: onLoopDevice)
        defer { if onLoopDevice { _ = try? Tools.run("losetup", ["-d", disk]) } }
        let none = ["--verification", "none"]
        for round in 0..<4 {
            let image = try signedRandomPayload(dir, keys: keys, bytes: 3_000_000, index: round + 1, name: "v\(round)",
                                                key: "ed25519", stream: round % 2 == 1)
            for slot in ["c", "b", "a"] { #expect(try slotctl(disk, ["set-active", slot, "--tries", "3"]).status == 0) }
            let result = try together(disk, [["install", image, "--slot", "d"], none + ["mark-successful", "a"],
                                             none + ["mark-failed", "b"], none + ["mark-successful", "c"]], readers: 2, dir: dir)
            #expect(result.codes == [0, 0, 40, 0], "round \(round): \(result.errors)")
            #expect(result.readersOK)
            let d = try Tools.cgptState(disk, 4)
            #expect(d == [15, 6, 0], "round \(round): d is \(d)")
            #expect(try Tools.slotctl(["--disk", disk, "--keys", keys.keys, "--config", "/dev/null", "verify", "d"]).status == 0)
            let a = try Tools.cgptState(disk, 1), b = try Tools.cgptState(disk, 2), c = try Tools.cgptState(disk, 3)
            #expect(a[2] == 1 && b == [0, 0, 0] && c[2] == 1, "round \(round): \(a) \(b) \(c)")
            try Tools.expectSgdiskClean(disk)
            #expect(try slotctl(disk, ["mark-failed", "d"]).status == 40)
        }
    }

    /// Bytes another program writes through another device node of the same disk (RAUC
    /// writes the partition node; here a second loop device over the image) are what the
    /// next slotctl judges, even while the whole-disk node stays open elsewhere and its
    /// page cache still holds the old bytes.
    @Test func writesThroughAnotherNodeAreSeen() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = try fourSlotDisk(dir, onLoopDevice: true)
        defer { _ = try? Tools.run("losetup", ["-d", disk]) }
        let image = dir.appendingPathComponent("disk.img").path
        let other = try Tools.must("losetup", ["-f", "--show", image]).trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? Tools.run("losetup", ["-d", other]) }
        // Someone keeps the disk open, so its cache outlives each slotctl.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/bin/sh")
        holder.arguments = ["-c", "exec 3<\(disk); read line"]
        let release = Pipe()
        holder.standardInput = release
        try holder.run()
        defer { try? release.fileHandleForWriting.close(); holder.waitUntilExit() }
        let keyDirectory = keys.keys
        func run(_ args: [String]) throws -> Run {
            try Tools.slotctl(["--disk", disk, "--keys", keyDirectory, "--config", "/dev/null",
                               "--booted-file", "/nonexistent/slotctl-booted", "--cmdline-file", "/dev/null"] + args)
        }
        #expect(try run(["verify", "b"]).status == 26, "slot b starts empty (unsigned)")
        let payload = dir.appendingPathComponent("payload").path
        try Data(repeating: 0x5A, count: 300_000).write(to: URL(fileURLWithPath: payload))
        let signed = dir.appendingPathComponent("signed").path
        #expect(try Tools.slotctl(["sign", "--key", keys.privatePath("ed25519"), "--rollback-index", "1",
                                   "--partition-size", "8M", payload, "-o", signed]).status == 0)
        let info = try Tools.must("sgdisk", ["-i", "2", disk])
        let start = try #require(info.split(separator: "\n").first { $0.hasPrefix("First sector:") }?
            .split(separator: " ").dropFirst(2).first.flatMap { Int($0) })
        try Tools.must("dd", ["if=\(signed)", "of=\(other)", "bs=512", "seek=\(start)", "conv=notrunc,fsync", "status=none"])
        let after = try run(["verify", "b"])
        #expect(after.status == 0, "slotctl judged the disk's stale cache: \(after.status) \(after.stderr)")
    }

    /// A lock held by another program (util-linux `flock`, as partitioning tools take it)
    /// is waited for up to --lock-timeout, then reported with its holder; nothing changes.
    @Test func aHeldLockIsWaitedForThenNamed() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = dir.appendingPathComponent("disk.img").path
        #expect(try Tools.slotctl(["--disk", disk, "format", "--size", "12M", "--slot-size", "4M"]).status == 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: disk))
        for (mode, readerWaits) in [("-x", true), ("-s", false)] {
            let holder = Process()
            holder.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
            holder.arguments = [mode, disk, "sleep", "3"]
            try holder.run()
            defer { holder.terminate(); holder.waitUntilExit() }
            usleep(300_000)
            var run = try slotctl(disk, ["--lock-timeout", "0.5", "set-active", "a"])
            #expect(run.status == 66 && run.stderr.contains("is locked by pid \(holder.processIdentifier) (flock)")
                    && run.stderr.contains("no exclusive lock within 0.5 s"), "\(mode): \(run.status) \(run.stderr)")
            run = try slotctl(disk, ["--lock-timeout", "0.5", "status"])
            #expect((run.status == 66) == readerWaits, "\(mode): status \(run.status) \(run.stderr)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: disk)) == before)
            // A wait long enough outlasts the holder.
            run = try slotctl(disk, ["--lock-timeout", "10", "--json", "status"])
            #expect(run.status == 0, "\(run.stderr)")
        }
        let run = try slotctl(disk, ["--lock-timeout", "x", "status"])
        #expect(run.status == 64 && run.stderr.contains("lock timeout"), "\(run.stderr)")
    }
}
