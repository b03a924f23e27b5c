import Foundation
import SlotCore
import Testing

/// The command line as scripts use it: exit codes, stdout, one-line stderr, JSON, the
/// config file, the booted-slot record and the kernel command line.
@Suite struct CLITests {
    struct Disk {
        let dir: URL
        var path: String { dir.appendingPathComponent("disk.img").path }
        var booted: String { dir.appendingPathComponent("run/booted").path }
        var cmdline: String { dir.appendingPathComponent("cmdline").path }

        init() throws {
            dir = try Tools.scratch()
            let run = try Tools.slotctl(["--disk", path, "format", "--size", "24M", "--slot-size", "8M"])
            #expect(run.status == 0, "\(run.stderr)")
        }

        func slotctl(_ arguments: [String]) throws -> Run {
            // These tests are about the table and the policy; signed slots have their own.
            try Tools.slotctl(["--disk", path, "--booted-file", booted, "--cmdline-file", cmdline, "--verification", "none",
                               "--config", dir.appendingPathComponent("none.conf").path] + arguments)
        }

        func remove() { try? FileManager.default.removeItem(at: dir) }
    }

    /// Writes an empty config so --config names a file that exists.
    func emptyConfig(_ disk: Disk) throws {
        try "".write(toFile: disk.dir.appendingPathComponent("none.conf").path, atomically: true, encoding: .utf8)
    }

    func oneLine(_ text: String) -> Bool { text.hasSuffix("\n") && text.dropLast().contains("\n") == false && text.hasPrefix("slotctl: ") }

    @Test func updateStoryWithExitCodes() throws {
        let disk = try Disk()
        defer { disk.remove() }
        try emptyConfig(disk)
        // Fresh: nothing bootable.
        var run = try disk.slotctl(["boot"])
        #expect(run.status == 50 && run.stdout.isEmpty && oneLine(run.stderr), "\(run.stderr)")
        #expect(run.stderr.contains("no bootable slot"))
        // a active, booted, confirmed.
        #expect(try disk.slotctl(["set-active", "a", "--tries", "2"]).status == 0)
        run = try disk.slotctl(["boot"])
        #expect(run.status == 0 && run.stdout == "a\n")
        #expect(try disk.slotctl(["mark-successful"]).stdout == "slot a marked successful\n")
        // Update to b: boot b, health check fails, mark-failed exits 40, next boot falls back to a.
        #expect(try disk.slotctl(["set-active", "b"]).status == 0)
        #expect(try disk.slotctl(["boot"]).stdout == "b\n")
        run = try disk.slotctl(["mark-failed"])
        #expect(run.status == 40 && run.stdout.contains("slot b marked failed"))
        #expect(try disk.slotctl(["boot"]).stdout == "a\n")
        // b never confirmed and out of tries after a hang: two boots with tries 2, then fallback.
        #expect(try disk.slotctl(["set-active", "b", "--tries", "2"]).status == 0)
        #expect(try disk.slotctl(["boot"]).stdout == "b\n")
        #expect(try disk.slotctl(["boot"]).stdout == "b\n")
        // The fallback says so (stderr, which the hook copies to the kernel log), once.
        let dry = try Tools.json(try disk.slotctl(["--json", "boot", "--dry-run"]).stdout)["result"] as! [String: Any]
        #expect(dry["exhausted"] as? [String] == ["b"] && dry["slot"] as? String == "a", "\(dry)")
        run = try disk.slotctl(["boot"])
        #expect(run.stdout == "a\n" && run.stderr.contains("slotctl: warning: slot b ran out of tries without being confirmed"),
                "\(run.stderr)")
        run = try disk.slotctl(["boot"])
        #expect(run.stdout == "a\n" && run.stderr.isEmpty, "\(run.stderr)")
        // mark-successful on an unbootable slot is refused.
        run = try disk.slotctl(["mark-successful", "b"])
        #expect(run.status == 51 && oneLine(run.stderr))
    }

    @Test func dryRunChangesNothing() throws {
        let disk = try Disk()
        defer { disk.remove() }
        try emptyConfig(disk)
        #expect(try disk.slotctl(["set-active", "a"]).status == 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: disk.path))
        let run = try disk.slotctl(["--json", "boot", "--dry-run"])
        #expect(run.status == 0)
        let result = try Tools.json(run.stdout)["result"] as! [String: Any]
        #expect(result["slot"] as? String == "a" && result["consumed_try"] as? Bool == true && result["wrote"] as? Bool == false)
        #expect(try Data(contentsOf: URL(fileURLWithPath: disk.path)) == before)
        #expect(!FileManager.default.fileExists(atPath: disk.booted))
    }

    @Test func jsonShapes() throws {
        let disk = try Disk()
        defer { disk.remove() }
        try emptyConfig(disk)
        _ = try disk.slotctl(["set-active", "b", "--tries", "4"])
        var run = try disk.slotctl(["--json", "status"])
        var object = try Tools.json(run.stdout)
        #expect(object["code"] as? Int == 0 && object["status"] as? String == "ok" && object["command"] as? String == "status")
        let result = try #require(object["result"] as? [String: Any])
        #expect(result["next_boot"] as? String == "b")
        #expect(result["source"] as? String == "primary" && result["repair_needed"] as? Bool == false)
        let slots = try #require(result["slots"] as? [[String: Any]])
        #expect(slots.map { $0["name"] as? String } == ["a", "b"])
        #expect(slots[1]["label"] as? String == "root_b" && slots[1]["partition"] as? Int == 2)
        #expect(slots[1]["priority"] as? Int == 15 && slots[1]["tries"] as? Int == 4 && slots[1]["bootable"] as? Bool == true)
        #expect(slots[1]["attributes"] as? String == "0x004F000000000000")
        // Errors: the same code on stdout as JSON, the line on stderr.
        run = try disk.slotctl(["--json", "set-active", "z"])
        object = try Tools.json(run.stdout)
        #expect(run.status == 64 && object["code"] as? Int == 64 && object["status"] as? String == "usage")
        #expect((object["error"] as? String)?.contains("no slot z") == true && oneLine(run.stderr))
    }

    /// --version and `version --json` name the release and the build; sign's old
    /// `--version S` is refused with the new spelling; every JSON object carries
    /// schema_version; each command has its own --help, and a missing argument is named.
    @Test func versionHelpAndSchema() throws {
        var run = try Tools.slotctl(["--version"])
        #expect(run.status == 0 && run.stdout.hasPrefix("slotctl ") && run.stdout.contains("crypto: OpenSSL")
                && run.stdout.contains("descriptor 1"), "\(run.stdout)")
        run = try Tools.slotctl(["version", "--json"])
        var object = try Tools.json(run.stdout)
        #expect(object["schema_version"] as? Int == 1 && object["code"] as? Int == 0)
        let result = try #require(object["result"] as? [String: Any])
        #expect(result["version"] is String && result["static"] is Bool && (result["crypto"] as? String)?.hasPrefix("OpenSSL") == true)
        // sign's old spelling still names the image's version, with a notice of the new one.
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let payload = dir.appendingPathComponent("payload").path, image = dir.appendingPathComponent("image").path
        try Data(repeating: 7, count: 5000).write(to: URL(fileURLWithPath: payload))
        run = try Tools.slotctl(["sign", "--key", KeySet.shared.privatePath("ed25519"), "--rollback-index", "1",
                                 "--version", "1.0", payload, "-o", image])
        #expect(run.status == 0 && run.stderr.contains("--image-version"), "\(run.stderr)")
        run = try Tools.slotctl(["--keys", KeySet.shared.keys, "--config", "/dev/null", "--json", "verify", "--image", image])
        let report = try #require((try Tools.json(run.stdout)["result"] as? [String: Any])?["image_report"] as? [String: Any])
        #expect(run.status == 0 && report["version"] as? String == "1.0", "\(run.stdout)")
        run = try Tools.slotctl(["--json", "--config", "/dev/null", "status"])
        object = try Tools.json(run.stdout)
        #expect(run.status == 64 && object["schema_version"] as? Int == 1 && object["code"] as? Int == 64)
        run = try Tools.slotctl(["set-active", "--help"])
        #expect(run.status == 0 && run.stdout.contains("--tries N") && run.stdout.contains("Example:"))
        // The help's default is a literal (so the grammar is static data): it must be the policy's.
        #expect(run.stdout.contains("default \(Policy.defaultTries))"), "\(run.stdout)")
        run = try Tools.slotctl(["help", "install"])
        #expect(run.status == 0 && run.stdout.contains("--stream-timeout SECONDS"))
        run = try Tools.slotctl(["--config", "/dev/null", "set-active"])
        #expect(run.status == 64 && run.stderr.contains("missing SLOT"), "\(run.stderr)")
    }

    /// `current` names the booted slot and its version from the descriptor (no hashing);
    /// boot --json carries what booted; verify and status show the same verity object.
    @Test func currentAndWhatBooted() throws {
        let disk = try Disk()
        defer { disk.remove() }
        let keys = KeySet.shared
        func slotctl(_ arguments: [String]) throws -> Run {
            try Tools.slotctl(["--disk", disk.path, "--keys", keys.keys, "--booted-file", disk.booted, "--cmdline-file", "/dev/null",
                               "--config", "/dev/null"] + arguments)
        }
        var run = try slotctl(["current"])
        #expect(run.status == 64 && run.stderr.contains("no booted slot"), "\(run.stderr)")
        let payload = disk.dir.appendingPathComponent("payload").path, image = disk.dir.appendingPathComponent("image").path
        try Data(repeating: 3, count: 100_000).write(to: URL(fileURLWithPath: payload))
        run = try slotctl(["sign", "--key", keys.privatePath("ed25519"), "--rollback-index", "2", "--image-version", "3.1",
                           "--verity", "--partition-size", "8M", payload, "-o", image])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(try slotctl(["install", image, "--slot", "a"]).status == 0)
        run = try slotctl(["--json", "boot"])
        var result = try #require(try Tools.json(run.stdout)["result"] as? [String: Any])
        #expect(result["slot"] as? String == "a" && result["version"] as? String == "3.1" && result["rollback_index"] as? Int == 2
                && (result["key_id"] as? String)?.count == 64, "\(run.stdout)")
        run = try slotctl(["current"])
        #expect(run.status == 0 && run.stdout == "a (version '3.1', rollback index 2)\n", "\(run.stdout) \(run.stderr)")
        run = try slotctl(["--json", "current"])
        result = try #require(try Tools.json(run.stdout)["result"] as? [String: Any])
        #expect(result["slot"] as? String == "a" && result["version"] as? String == "3.1" && result["verified_at_boot"] as? Bool == true)
        run = try slotctl(["--json", "verify", "a"])
        let report = try #require((try Tools.json(run.stdout)["result"] as? [String: Any])?["image_report"] as? [String: Any])
        let verity = try #require(report["verity"] as? [String: Any])
        #expect((verity["root_hash"] as? String)?.count == 64 && verity["hash_offset"] is Int)
        run = try slotctl(["--json", "status"])
        let slots = try #require((try Tools.json(run.stdout)["result"] as? [String: Any])?["slots"] as? [[String: Any]])
        let statusVerity = (slots[0]["image"] as? [String: Any])?["verity"] as? [String: Any]
        #expect(statusVerity?["root_hash"] as? String == verity["root_hash"] as? String)
        #expect((slots[1]["image"] as? [String: Any])?["verity"] == nil, "slot b holds no image: no descriptor, no verity key")
    }

    @Test func usageErrors() throws {
        let disk = try Disk()
        defer { disk.remove() }
        try emptyConfig(disk)
        for args in [["frobnicate"], ["status", "--bogus"], ["set-active"], ["set-active", "a", "--tries", "0"],
                     ["set-active", "a", "--tries", "16"], ["mark-successful", "ab"], ["--sector-size", "1024", "status"]] {
            let run = try disk.slotctl(args)
            #expect(run.status == 64 && oneLine(run.stderr), "\(args): \(run.status) \(run.stderr)")
        }
        // mark-* without a booted record nor slotctl.slot= names what is missing.
        let run = try disk.slotctl(["mark-successful"])
        #expect(run.status == 64 && run.stderr.contains("name the slot"))
        let noDisk = try Tools.slotctl(["--config", disk.dir.appendingPathComponent("none.conf").path, "status"])
        #expect(noDisk.status == 64 && noDisk.stderr.contains("no disk"))
    }

    @Test func bootedSlotFromKernelCommandLine() throws {
        let disk = try Disk()
        defer { disk.remove() }
        try emptyConfig(disk)
        _ = try disk.slotctl(["set-active", "b"])
        try "BOOT_IMAGE=/vmlinuz root=PARTUUID=x slotctl.slot=b quiet\n".write(toFile: disk.cmdline, atomically: true, encoding: .utf8)
        let run = try disk.slotctl(["mark-successful"])
        #expect(run.status == 0 && run.stdout == "slot b marked successful\n", "\(run.stderr)")
    }

    @Test func configFileSuppliesDefaultsAndFlagsOverride() throws {
        let disk = try Disk()
        defer { disk.remove() }
        let config = disk.dir.appendingPathComponent("slotctl.conf").path
        try """
        # slotctl configuration
        disk = \(disk.path)
        verification = none
        booted_file = \(disk.booted)   # where boot records the slot

        """.write(toFile: config, atomically: true, encoding: .utf8)
        #expect(try Tools.slotctl(["--config", config, "set-active", "a"]).status == 0)
        var run = try Tools.slotctl(["--config", config, "boot"])
        #expect(run.status == 0 && run.stdout == "a\n", "\(run.stderr)")
        #expect(try String(contentsOfFile: disk.booted, encoding: .utf8) == "a\n")
        // A flag wins over the file: a disk that does not exist.
        run = try Tools.slotctl(["--config", config, "--disk", disk.dir.appendingPathComponent("nope.img").path, "status"])
        #expect(run.status == 61 && run.stderr.contains("nope.img"))
        // An unknown key is an error with the line number, never ignored.
        try "disk = \(disk.path)\nverification = none\ndsik = typo\n".write(toFile: config, atomically: true, encoding: .utf8)
        run = try Tools.slotctl(["--config", config, "status"])
        #expect(run.status == 64 && run.stderr.contains("slotctl.conf:3: unknown key 'dsik'"))
    }

    @Test func damagedCopiesThroughTheCLI() throws {
        let disk = try Disk()
        defer { disk.remove() }
        try emptyConfig(disk)
        _ = try disk.slotctl(["set-active", "a"])
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: disk.path))
        try handle.seek(toOffset: 512)
        try handle.write(contentsOf: Data(repeating: 0, count: 512))
        try handle.close()
        var run = try disk.slotctl(["--json", "status"])
        var result = try Tools.json(run.stdout)["result"] as! [String: Any]
        #expect(run.status == 0 && result["source"] as? String == "backup" && result["repair_needed"] as? Bool == true)
        #expect((result["primary"] as! [String: Any])["status"] as? String == "invalid")
        #expect(try disk.slotctl(["boot"]).stdout == "a\n")
        try Tools.expectSgdiskClean(disk.path)
        result = try Tools.json(try disk.slotctl(["--json", "status"]).stdout)["result"] as! [String: Any]
        #expect(result["repair_needed"] as? Bool == false)
        // Both headers gone: 60, one line, nothing written.
        let size = try FileManager.default.attributesOfItem(atPath: disk.path)[.size] as! UInt64
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: disk.path))
        for offset in [512, size - 512] {
            try h.seek(toOffset: UInt64(offset))
            try h.write(contentsOf: Data(repeating: 0xFF, count: 512))
        }
        try h.close()
        let before = try Data(contentsOf: URL(fileURLWithPath: disk.path))
        for command in [["boot"], ["mark-successful", "a"], ["status"]] {
            run = try disk.slotctl(command)
            #expect(run.status == 60 && oneLine(run.stderr) && run.stderr.contains("slot table unusable"), "\(command): \(run.stderr)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: disk.path)) == before)
    }
}
