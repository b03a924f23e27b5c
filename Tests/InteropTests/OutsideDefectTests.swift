import Foundation
import Testing
import SlotCore
import SlotCounters
import SlotCrypto
import SlotFlows
import SlotStorage
import SlotTestSupport

/// The defects found from outside (issue 23), each reproduced as it was reported, with
/// the real binary, real keys and real tools where the report used them.
@Suite(.serialized) struct OutsideDefectTests {
    let keys = KeySet.shared

    /// A scratch device: a formatted disk, file counters, a booted record, no config.
    struct Device {
        let dir: URL
        let keys: String
        var disk: String { dir.appendingPathComponent("disk.img").path }
        var counters: String { dir.appendingPathComponent("counters").path }
        var booted: String { dir.appendingPathComponent("booted").path }

        init(keys: String) throws {
            dir = try Tools.scratch()
            self.keys = keys
            #expect(try slotctl(["format", "--size", "12M", "--slot-size", "4M"]).status == 0)
            #expect(try slotctl(["counters", "provision"]).status == 0)
        }

        func slotctl(_ args: [String], config: String = "/dev/null") throws -> Run {
            try Tools.slotctl(["--disk", disk, "--keys", keys, "--counters", "file:" + counters, "--config", config,
                               "--booted-file", booted, "--cmdline-file", "/dev/null"] + args)
        }

        /// slotctl with only the key directory, booted record and config on the line.
        func configured(_ config: String, _ args: [String]) throws -> Run {
            try Tools.slotctl(["--keys", keys, "--config", config, "--booted-file", booted, "--cmdline-file", "/dev/null"] + args)
        }

        func write(_ name: String, _ text: String) throws -> String {
            let path = dir.appendingPathComponent(name).path
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            chmod(path, 0o644)
            return path
        }

        func remove() { try? FileManager.default.removeItem(at: dir) }
    }

    func image(_ dir: URL, index: Int, name: String, bytes: Int = 300_000, key: String = "ed25519", stream: Bool = false) throws -> String {
        try signedRandomPayload(dir, keys: keys, bytes: bytes, index: index, name: name, key: key, stream: stream)
    }

    /// v1 confirmed in a (counter 1), then v2 confirmed in b (counter 2): a still holds v1,
    /// now below its counter, and is made the next boot.
    func deviceWithADowngradeInA() throws -> Device {
        let device = try Device(keys: keys.keys)
        for (slot, index) in [("a", 1), ("b", 2)] {
            let path = try image(device.dir, index: index, name: "v\(index)")
            var run = try device.slotctl(["install", path, "--slot", slot])
            #expect(run.status == 0, "\(run.stderr)")
            run = try device.slotctl(["boot"])
            #expect(run.stdout == "\(slot)\n", "\(run.stderr)")
            #expect(try device.slotctl(["mark-successful"]).status == 0)
        }
        #expect(try device.slotctl(["set-active", "a"]).status == 0)
        return device
    }

    // 1. A CRLF config must not drop the counters (which turned rollback protection off).
    @Test func crlfConfigKeepsEveryKey() throws {
        let device = try deviceWithADowngradeInA()
        defer { device.remove() }
        let crlf = try device.write("crlf.conf", "# slot disk first\r\ndisk = \(device.disk) # slot disk\r\n"
                                    + "counters = file:\(device.counters)\r\n")
        let status = try #require(try Tools.json(try device.configured(crlf, ["--json", "status"]).stdout)["result"] as? [String: Any])
        #expect((status["counters"] as? [String: Any])?["spec"] as? String == "file:\(device.counters)")
        let run = try device.configured(crlf, ["boot"])
        #expect(run.status == 0 && run.stdout == "b\n", "a holds v1 below counter 2: \(run.stdout) \(run.stderr)")
        #expect(run.stderr.contains("slot a refused (rollback)"), "\(run.stderr)")
        // A lone CR would hide the line after it; a key given twice is ambiguous: both refused.
        for (name, text, needle) in [
            ("cr.conf", "disk = \(device.disk)\rcounters = file:\(device.counters)\n", "control character U+000D"),
            ("twice.conf", "disk = \(device.disk)\ncounters = file:\(device.counters)\ndisk = /dev/null\n", "set again (first on line 1)"),
        ] {
            let refused = try device.configured(try device.write(name, text), ["status"])
            #expect(refused.status == 64 && refused.stderr.contains(needle), "\(name): \(refused.stderr)")
        }
        // A CRLF booted record and command line name the slot as an LF one does.
        try Data("b\r\nrollback 0 2\r\n".utf8).write(to: URL(fileURLWithPath: device.booted))
        #expect(try device.slotctl(["set-active", "b"]).status == 0)
        let marked = try device.slotctl(["mark-successful"])
        #expect(marked.status == 0 && marked.stdout.contains("slot b marked successful"), "\(marked.stderr)")
        try FileManager.default.removeItem(atPath: device.booted)
        let cmdline = try device.write("cmdline", "quiet slotctl.slot=b\r\n")
        let viaCmdline = try Tools.slotctl(["--disk", device.disk, "--config", "/dev/null", "--verification", "none",
                                            "--booted-file", device.booted, "--cmdline-file", cmdline, "mark-failed"])
        #expect(viaCmdline.status == 40 && viaCmdline.stdout.contains("slot b marked failed"), "\(viaCmdline.stderr)")
    }

    // 2. -o through a symbolic or hard link to the payload is refused; the payload is kept.
    @Test func signNeverWritesOverItsPayload() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let payload = dir.appendingPathComponent("payload").path
        let original = Data((0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) })
        try original.write(to: URL(fileURLWithPath: payload))
        let symlink = dir.appendingPathComponent("sym").path, hardlink = dir.appendingPathComponent("hard").path
        try FileManager.default.createSymbolicLink(atPath: symlink, withDestinationPath: payload)
        #expect(link(payload, hardlink) == 0)
        for output in [symlink, hardlink, payload] {
            for extra in [[], ["--stream"], ["--verity"]] {
                let run = try Tools.slotctl(["sign", "--key", keys.privatePath("ed25519"), "--rollback-index", "1"] + extra
                                            + [payload, "-o", output])
                #expect(run.status == 64 && run.stderr.contains("the same file"), "\(output) \(extra): \(run.stderr)")
                #expect(try Data(contentsOf: URL(fileURLWithPath: payload)) == original, "\(output) \(extra): payload changed")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: symlink + ".image.tmp"))
    }

    // 3. One bad read must not retire a confirmed slot.
    @Test func anUnreadableSlotIsSkippedNotRetired() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let keyDirectory = KeyDirectory(path: keys.keys)
        let disk = MemoryStore(bytes: [UInt8](repeating: 0, count: 8 << 20), sectorSize: 512)
        _ = try FormatFlow.format(disk, .init(slotCount: 2, slotBytes: 3 << 20, prefix: "root", force: false)) { GUID(low: 5, high: 6) }
        let a = UInt8(ascii: "a"), b = UInt8(ascii: "b")
        for (slot, index) in [(a, 1), (b, 2)] {
            let path = try image(dir, index: index, name: "v\(index)")
            let source = MemoryStore(bytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), sectorSize: 512)
            _ = try InstallFlow.install(source: source, disk: disk, target: slot, booted: nil, keys: keyDirectory,
                                        counters: nil, hasher: PayloadHasher(), tries: 6)
            _ = try BootControl.markSuccessful(disk, slot: slot)
        }
        let table = try TableStore.load(disk)
        let start = disk.bytes
        func payload(_ letter: UInt8) -> Range<UInt64> {
            let slot = table.slots[table.slots.index(ofLetter: letter)!]
            return table.byteOffset(slot)..<table.byteOffset(slot) + 1000
        }
        let verifier = SignedSlotVerifier(keys: keyDirectory, counters: nil)
        // A transient error: the retry reads it, b boots.
        disk.failingReadRange = payload(b)
        disk.failingReadsLeft = 1
        var report = try BootControl.boot(disk, verifier: verifier, dryRun: false)
        #expect(report.slots[report.chosen].letter == b && report.unreadable.isEmpty && report.rejected.isEmpty)
        // A lasting one: b is passed over this time, left as it was; a boots.
        disk.bytes = start
        disk.failingReadRange = payload(b)
        report = try BootControl.boot(disk, verifier: verifier, dryRun: false)
        #expect(report.slots[report.chosen].letter == a && report.unreadable.map(\.letter) == [b] && report.rejected.isEmpty)
        #expect(TableFixtures.states(disk.bytes, sectorSize: 512)?[1] == S(15, 0, true), "b stays confirmed")
        // Readable again: b boots again.
        disk.failingReadRange = nil
        report = try BootControl.boot(disk, verifier: verifier, dryRun: false)
        #expect(report.slots[report.chosen].letter == b)
        // Both unreadable: an I/O error, not "no bootable slot", and nothing is written.
        disk.bytes = start
        disk.failingReadRange = payload(a).lowerBound..<payload(b).upperBound
        let writes = disk.writes
        #expect {
            try BootControl.boot(disk, verifier: verifier, dryRun: false)
        } throws: { error in
            guard let error = error as? FlowError else { return false }
            return error.code == .ioError && error.message.contains("left as it is") && error.message.contains("nothing was written")
        }
        #expect(disk.writes == writes && disk.bytes == start)
    }

    /// Runs `slotctl` under `timeout`, so a regression that blocks fails instead of hanging.
    func bounded(_ arguments: [String], seconds: Int = 20) throws -> Run {
        try Tools.run("timeout", ["\(seconds)", Tools.slotctl] + arguments)
    }

    // 4. FIFOs never hang a command; FIFOs and pipes with a sender install as streams.
    @Test func fifosNeverHang() throws {
        let device = try Device(keys: keys.keys)
        defer { device.remove() }
        let fifo = device.dir.appendingPathComponent("fifo").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let common = ["--keys", keys.keys, "--config", "/dev/null", "--booted-file", device.booted, "--cmdline-file", "/dev/null"]
        for args in [["--disk", fifo, "status"], ["--disk", fifo, "boot", "--dry-run"], ["--disk", fifo, "verify", "a"],
                     ["--disk", device.disk, "verify", "--image", fifo]] {
            let run = try bounded(common + args)
            #expect(run.status == 64 && run.stderr.contains("is a FIFO"), "\(args): \(run.status) \(run.stderr)")
        }
        // Counters on a FIFO: refused once a slot verifies and its counter is read.
        let v1 = try image(device.dir, index: 1, name: "v1")
        #expect(try device.slotctl(["install", v1, "--slot", "a"]).status == 0)
        var run = try bounded(common + ["--disk", device.disk, "--counters", "file:" + fifo, "boot"])
        #expect(run.status == 28 && run.stderr.contains("is a FIFO"), "\(run.status) \(run.stderr)")
        // A FIFO nobody writes to: the install gives up after the idle timeout, writes nothing.
        let before = try Data(contentsOf: URL(fileURLWithPath: device.disk))
        run = try bounded(common + ["--disk", device.disk, "install", fifo, "--slot", "b", "--stream-timeout", "1"])
        #expect(run.status == 10 && run.stderr.contains("no data for 1 s"), "\(run.status) \(run.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: device.disk)) == before)
        // With a sender: a FIFO, and /dev/stdin on a pipe, both install like `install -`.
        let stream = try image(device.dir, index: 2, name: "v2", stream: true)
        let disk = device.disk, keyDir = keys.keys
        for (slot, command) in [("b", "cat '\(stream)' > '\(fifo)' & "), ("a", "cat '\(stream)' | ")] {
            let source = slot == "b" ? fifo : "/dev/stdin"
            run = try Tools.run("sh", ["-c", command + "timeout 20 '\(Tools.slotctl)' --disk '\(disk)' --keys '\(keyDir)' --config /dev/null "
                                       + "--booted-file '\(device.booted)' install '\(source)' --slot \(slot)"])
            #expect(run.status == 0 && run.stdout.contains("into slot \(slot)"), "\(source): \(run.status) \(run.stderr)")
            #expect(try device.slotctl(["verify", slot]).status == 0)
        }
    }

    // 5. A second install into the same slot, run while the first is writing: whatever the
    // interleaving, the slot is never left bootable with an image that does not verify,
    // and the first install never says "stays unbootable" of a bootable slot.
    @Test func twoInstallsIntoOneSlotNeverLeaveATornSlotActive() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let keyDirectory = KeyDirectory(path: keys.keys)
        func load(_ path: String) throws -> MemoryStore {
            MemoryStore(bytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), sectorSize: 512)
        }
        let first = try load(try image(dir, index: 2, name: "slow", bytes: 1_500_000)) // two copy chunks
        let second = try load(try image(dir, index: 3, name: "fast", bytes: 700_000))
        let base = MemoryStore(bytes: [UInt8](repeating: 0, count: 8 << 20), sectorSize: 512)
        _ = try FormatFlow.format(base, .init(slotCount: 2, slotBytes: 3 << 20, prefix: "root", force: false)) { GUID(low: 7, high: 8) }
        let a = UInt8(ascii: "a")
        let start = base.bytes
        let clean = MemoryStore(bytes: start, sectorSize: 512)
        _ = try InstallFlow.install(source: first, disk: clean, target: a, booted: nil, keys: keyDirectory,
                                    counters: nil, hasher: PayloadHasher(), tries: 3)
        #expect(clean.writes == 2 + 1 + 4, "two chunks, footer, activation (a fresh slot needs no unbootable mark)")
        var outcomes: Set<String> = []
        // Before each copy chunk, before the footer, and just before the activation.
        for at in 0...(clean.writes - 4) {
            let disk = MemoryStore(bytes: start, sectorSize: 512)
            let meddling = InterleavingStore(disk, before: at) {
                _ = try? InstallFlow.install(source: second, disk: disk, target: a, booted: nil, keys: keyDirectory,
                                             counters: nil, hasher: PayloadHasher(), tries: 6)
            }
            var message = "installed"
            do {
                _ = try InstallFlow.install(source: first, disk: meddling, target: a, booted: nil, keys: keyDirectory,
                                            counters: nil, hasher: PayloadHasher(), tries: 3)
            } catch {
                message = error.message
            }
            let table = try TableStore.load(disk)
            let slot = table.slots[table.slots.index(ofLetter: a)!]
            let check = ImageVerification.verify(disk, offset: table.byteOffset(slot), size: table.byteSize(slot),
                                                 keys: keyDirectory, hasher: PayloadHasher())
            #expect(!slot.state.isBootable || check.verified, "second install before write \(at): slot a bootable but \(check.reason ?? "")")
            if message.contains("stays unbootable") { #expect(!slot.state.isBootable, "before write \(at): \(message)") }
            outcomes.insert(message.contains("marked unbootable again") ? "re-marked" : message == "installed" ? "installed" : "refused")
        }
        #expect(outcomes.contains("re-marked"), "the case of the report (the other install activated first) was reached: \(outcomes)")
    }

    // 6. Read-only media: a boot with nothing to write and a no-op mark work.
    @Test func readOnlyMediaBootWhenNothingIsWritten() throws {
        let device = try Device(keys: keys.keys)
        defer { device.remove() }
        let path = try image(device.dir, index: 1, name: "v1")
        #expect(try device.slotctl(["install", path, "--slot", "a"]).status == 0)
        #expect(try device.slotctl(["boot"]).stdout == "a\n")
        #expect(try device.slotctl(["mark-successful"]).status == 0)
        let mountpoint = device.dir.appendingPathComponent("ro")
        try FileManager.default.createDirectory(at: mountpoint, withIntermediateDirectories: true)
        let source = device.dir.appendingPathComponent("disk-dir")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: device.disk, toPath: source.appendingPathComponent("disk.img").path)
        try Tools.must("mount", ["--bind", source.path, mountpoint.path])
        defer { _ = try? Tools.run("umount", [mountpoint.path]) }
        try Tools.must("mount", ["-o", "remount,bind,ro", mountpoint.path])
        let readOnly = mountpoint.appendingPathComponent("disk.img").path
        func slotctl(_ args: [String]) throws -> Run {
            try Tools.slotctl(["--disk", readOnly, "--keys", keys.keys, "--counters", "file:" + device.counters, "--config", "/dev/null",
                               "--booted-file", device.booted, "--cmdline-file", "/dev/null"] + args)
        }
        var run = try slotctl(["boot"])
        #expect(run.status == 0 && run.stdout == "a\n", "\(run.stderr)")
        run = try slotctl(["mark-successful"])
        #expect(run.status == 0, "\(run.stderr)")
        // A write that is due still fails, with the reason.
        run = try slotctl(["set-active", "b"])
        #expect(run.status == 61 && run.stderr.contains("Read-only file system"), "\(run.stderr)")
    }

    // 7. Control characters in a GPT label never reach the terminal raw.
    @Test func labelsAreEscapedInText() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = dir.appendingPathComponent("disk.img").path
        #expect(try Tools.slotctl(["--disk", disk, "format", "--size", "12M", "--slot-size", "4M"]).status == 0)
        try Tools.must("sgdisk", ["-c", "1:\u{1b}[2J\nslot  b  x_a", disk])
        let run = try Tools.slotctl(["--disk", disk, "--config", "/dev/null", "--verification", "none", "status"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(!run.stdout.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" }, "raw control characters: \(run.stdout)")
        #expect(run.stdout.contains("\\u{1b}[2J\\u{a}slot  b  x_a"), "\(run.stdout)")
        #expect(!run.stdout.split(separator: "\n").contains { $0.hasPrefix("slot  b") })
    }

    // 8. A flush that fails after the primary was written: the message says what the disk holds.
    @Test func aFailedFlushSaysWhatReachedTheDisk() throws {
        let disk = TableFixtures.disk(states: [S(15, 3, false), S(14, 0, true)])
        let start = disk.bytes
        disk.failingFlush = true
        #expect {
            try BootControl.boot(disk, verifier: TableOnlyVerifier(), dryRun: false)
        } throws: { error in
            guard let error = error as? FlowError else { return false }
            return error.code == .ioError && error.message.contains("primary GPT copy was written but not confirmed")
                && error.message.contains("either the whole old or the whole new state")
        }
        let seen = TableFixtures.states(disk.bytes, sectorSize: 512)
        #expect(seen == TableFixtures.states(start, sectorSize: 512) || seen == [S(15, 2, false), S(14, 0, true)])
    }

    // A save with a bad backup writes the backup first; a backup that cannot be written
    // at all (worn sectors at the end of the card) must not stop the save.
    @Test func anUnwritableBackupDoesNotStopSaves() throws {
        let disk = TableFixtures.disk(states: [S(15, 3, false), S(14, 0, true)])
        for i in (disk.bytes.count - 512)..<disk.bytes.count { disk.bytes[i] ^= 0x5A } // backup header invalid
        disk.failingWriteRange = UInt64(disk.bytes.count - 64 * 512)..<UInt64(disk.bytes.count)
        let report = try BootControl.boot(disk, verifier: TableOnlyVerifier(), dryRun: false)
        #expect(report.consumedTry && report.wrote && report.warnings.contains { $0.contains("backup copy could not be written") },
                "\(report.warnings)")
        #expect(TableFixtures.states(disk.bytes, sectorSize: 512) == [S(15, 2, false), S(14, 0, true)])
    }

    // Keys as build hosts have them: `openssl ecparam -genkey` (EC PARAMETERS before the
    // key), a key through a FIFO, and a PKCS#1 public key given to sign (25).
    @Test func signingKeysAsBuildHostsHaveThem() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let payload = dir.appendingPathComponent("payload").path
        try Data(repeating: 7, count: 10_000).write(to: URL(fileURLWithPath: payload))
        let ec = dir.appendingPathComponent("ec.pem").path
        try Tools.must("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-out", ec])
        var run = try Tools.slotctl(["sign", "--key", ec, "--rollback-index", "1", payload, "-o", payload + ".img"])
        #expect(run.status == 0, "\(run.stderr)")
        run = try Tools.run("bash", ["-c", "'\(Tools.slotctl)' sign --key <(cat '\(keys.privatePath("ed25519"))') --rollback-index 1 "
                                     + "'\(payload)' -o '\(payload).img2'"])
        #expect(run.status == 0, "\(run.stderr)")
        let rsaPublic = dir.appendingPathComponent("rsa-pkcs1.pub").path
        try Tools.must("openssl", ["rsa", "-in", keys.privatePath("rsa3072"), "-RSAPublicKey_out", "-out", rsaPublic])
        run = try Tools.slotctl(["sign", "--key", rsaPublic, "--rollback-index", "1", payload, "-o", payload + ".img3"])
        #expect(run.status == 25 && run.stderr.contains("not a private key"), "\(run.status) \(run.stderr)")
    }

    // 9. The smaller ones.
    @Test func smallerDefects() throws {
        let device = try Device(keys: keys.keys)
        defer { device.remove() }
        // install - of an image file, not a stream.
        let path = try image(device.dir, index: 1, name: "v1")
        var run = try Tools.slotctl(["--disk", device.disk, "--keys", keys.keys, "--config", "/dev/null", "--booted-file", device.booted,
                                     "install", "-", "--slot", "a"], stdinFile: path)
        #expect(run.status == 11 && run.stderr.contains("is not a slotctl stream (made by sign --stream)"), "\(run.stderr)")
        // sign --key with the public half: 25.
        let payload = device.dir.appendingPathComponent("payload-v1").path
        let out = device.dir.appendingPathComponent("out.img").path
        run = try Tools.slotctl(["sign", "--key", keys.publicPath("ed25519"), "--rollback-index", "1", payload, "-o", out])
        #expect(run.status == 25 && run.stderr.contains("not a private key"), "\(run.status) \(run.stderr)")
        // sign --stream reports the size of the file it wrote.
        run = try Tools.slotctl(["--json", "sign", "--key", keys.privatePath("ed25519"), "--rollback-index", "1", "--stream", payload, "-o", out])
        let signed = try #require(try Tools.json(run.stdout)["result"] as? [String: Any])
        let size = try FileManager.default.attributesOfItem(atPath: out)[.size] as! Int
        #expect(signed["size"] as? Int == size && signed["partition_size"] as? Int != size, "\(signed)")
        // A key file with two public keys is refused, not read as its first.
        let twoKeys = device.dir.appendingPathComponent("two-keys")
        try FileManager.default.createDirectory(at: twoKeys, withIntermediateDirectories: true)
        let both = try Data(contentsOf: URL(fileURLWithPath: keys.publicPath("ed25519"))) + Data(contentsOf: URL(fileURLWithPath: keys.publicPath("other")))
        try both.write(to: twoKeys.appendingPathComponent("k.pem"))
        run = try Tools.slotctl(["--keys", twoKeys.path, "--config", "/dev/null", "verify", "--image", path])
        #expect(run.status == 21 && run.stdout.contains("holds 2 PEM blocks"), "\(run.status) \(run.stdout) \(run.stderr)")
        // format --size on a block device.
        let loop = try Tools.must("losetup", ["-f", "--show", device.disk]).trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? Tools.run("losetup", ["-d", loop]) }
        run = try Tools.slotctl(["--disk", loop, "--config", "/dev/null", "format", "--size", "12M", "--force"])
        #expect(run.status == 64 && run.stderr.contains("is a block device; format it without --size"), "\(run.stderr)")
        // Asking for fewer locations than there are changes nothing and says so.
        run = try device.slotctl(["counters", "provision", "--locations", "4"])
        #expect(run.status == 0 && run.stdout.contains("8 locations already provisioned"), "\(run.stdout)")
    }

    /// A TPM's locked base record cannot grow: asking for more locations is an error.
    @Test func provisioningMoreTPMLocationsThanThereAreIsRefused() throws {
        let tpm = try SoftwareTPM()
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        func slotctl(_ args: [String]) throws -> Run {
            try Tools.slotctl(["--counters", tpm.spec, "--config", "/dev/null"] + args)
        }
        var run = try slotctl(["counters", "provision", "--locations", "4"])
        #expect(run.status == 0, "\(run.stderr)")
        run = try slotctl(["counters", "provision", "--locations", "8"])
        #expect(run.status == 64 && run.stderr.contains("cannot grow to 8"), "\(run.status) \(run.stderr)")
        run = try slotctl(["counters", "provision"])
        #expect(run.status == 0 && run.stdout.contains("already provisioned, 4 locations"), "\(run.stderr)")
        #expect(try tpm.nvread(0x1505cff, size: 32).count == 4)
    }
}

/// A disk on which `meddle` runs once, just before the write numbered `before`: another
/// process writing the same slot at that moment.
final class InterleavingStore: BlockStore {
    let inner: MemoryStore
    let before: Int
    let meddle: () -> Void
    var writes = 0

    init(_ inner: MemoryStore, before: Int, meddle: @escaping () -> Void) {
        self.inner = inner
        self.before = before
        self.meddle = meddle
    }

    var sectorSize: Int { inner.sectorSize }
    var byteCount: UInt64 { inner.byteCount }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(StorageError) { try inner.read(into: buffer, at: offset) }
    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(StorageError) {
        if writes == before { meddle() }
        writes += 1
        try inner.write(bytes, at: offset)
    }
    func flush() throws(StorageError) { try inner.flush() }
}
