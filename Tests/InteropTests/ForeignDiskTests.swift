import Foundation
import Testing

/// `format` never overwrites a disk that is not empty without `--force` (issue 15): every
/// label and signature below is made by the real tool, the refusal names what libblkid
/// found (as `wipefs` lists it), and the disk's bytes are unchanged.
@Suite(.serialized) struct ForeignDiskTests {
    static let makers: [(name: String, expect: String, make: @Sendable (String) throws -> Void)] = [
        ("dos", "a dos partition table", { try sfdisk($0, "label: dos\n,4M,83\n,4M,83\n") }),
        ("sun", "a sun partition table", { try sfdisk($0, "label: sun\n,4M\n") }),
        ("sgi", "a sgi partition table", { try sfdisk($0, "label: sgi\n,4M\n") }),
        ("gpt by sgdisk, no slots", "already holds a GPT", { try Tools.must("sgdisk", ["-n", "1:2048:+4M", "-t", "1:8300", $0]) }),
        ("ext4", "ext4 (filesystem)", { try Tools.must("mkfs.ext4", ["-q", "-F", $0]) }),
        ("swap", "swap (other)", { try Tools.must("mkswap", ["-q", $0]) }),
        ("luks", "crypto_LUKS (crypto)", { path in
            let key = path + ".key"
            try Data("passphrase".utf8).write(to: URL(fileURLWithPath: key))
            try Tools.must("cryptsetup", ["luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
                                          "--pbkdf-force-iterations", "1000", "--key-file", key, path])
        }),
    ]

    static func sfdisk(_ path: String, _ script: String) throws {
        let file = path + ".sfdisk"
        try Data(script.utf8).write(to: URL(fileURLWithPath: file))
        let run = try Tools.run("sfdisk", ["-q", path], stdinFile: file)
        guard run.status == 0 else { throw ToolFailure(description: "sfdisk: \(run.stderr)") }
    }

    @Test(arguments: [false, true])
    func formatRefusesWhatIsNotOurs(onLoopDevice: Bool) throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        for maker in Self.makers {
            let image = dir.appendingPathComponent("disk-\(maker.name.prefix(3)).img").path
            try Tools.must("truncate", ["-s", "24M", image])
            try maker.make(image)
            var disk = image
            if onLoopDevice {
                disk = try Tools.must("losetup", ["-f", "--show", image]).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            defer { if onLoopDevice { _ = try? Tools.run("losetup", ["-d", disk]) } }
            let before = try Data(contentsOf: URL(fileURLWithPath: image))
            var run = try Tools.slotctl(["--disk", disk, "--config", "/dev/null", "format", "--slot-size", "8M"])
            #expect(run.status == 65 && run.stderr.contains(maker.expect) && run.stderr.contains("--force"),
                    "\(maker.name): \(run.status) \(run.stderr)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: image)) == before, "\(maker.name): the disk changed")
            run = try Tools.slotctl(["--disk", disk, "--config", "/dev/null", "format", "--slot-size", "8M", "--force"])
            #expect(run.status == 0, "\(maker.name) --force: \(run.stderr)")
            try Tools.expectSgdiskClean(disk)
        }
    }

    /// An empty disk (all zeros) formats without --force.
    @Test func anEmptyDiskFormats() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = dir.appendingPathComponent("empty.img").path
        try Tools.must("truncate", ["-s", "24M", disk])
        let run = try Tools.slotctl(["--disk", disk, "--config", "/dev/null", "format", "--slot-size", "8M"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(try Tools.cgptState(disk, 1) == [0, 0, 0])
    }
}

/// Sector 0 (issue 15): `status` says what it holds; a write adds a protective MBR only
/// where sector 0 is all zeros, and never changes one that holds anything.
@Suite(.serialized) struct ProtectiveMBRTests {
    func slotctl(_ disk: String, _ args: [String]) throws -> Run {
        try Tools.slotctl(["--disk", disk, "--config", "/dev/null", "--verification", "none", "--booted-file", "/nonexistent/booted",
                           "--cmdline-file", "/dev/null"] + args)
    }

    func mbr(_ disk: String) throws -> String? {
        let result = try #require(try Tools.json(try slotctl(disk, ["--json", "status"]).stdout)["result"] as? [String: Any])
        return result["mbr"] as? String
    }

    func sector0(_ disk: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: disk)).prefix(512) }

    @Test func anEmptySectorZeroGetsAProtectiveMBR() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = dir.appendingPathComponent("cgpt.img").path
        try Tools.must("truncate", ["-s", "24M", disk])
        try Tools.must("cgpt", ["create", disk])
        try Tools.must("cgpt", ["add", "-i", "1", "-b", "2048", "-s", "8192", "-t", "kernel", "-l", "root_a", disk])
        try Tools.must("cgpt", ["add", "-i", "2", "-b", "10240", "-s", "8192", "-t", "kernel", "-l", "root_b", disk])
        #expect(try sector0(disk) == Data(count: 512), "cgpt create leaves sector 0 empty")
        #expect(try mbr(disk) == "missing")
        #expect(try slotctl(disk, ["status"]).stdout.contains("sector 0: empty, no protective MBR"))
        #expect(try sector0(disk) == Data(count: 512), "status writes nothing")
        #expect(try slotctl(disk, ["set-active", "a"]).status == 0)
        #expect(try mbr(disk) == "protective")
        try Tools.expectSgdiskClean(disk)
        #expect(try Tools.cgptState(disk, 1) == [15, 6, 0])
        // sgdisk reads the MBR slotctl wrote as protective: its record is type 0xEE from LBA 1.
        let record = try sector0(disk).subdata(in: 446..<462)
        #expect(record[4] == 0xEE && record[8..<12] == Data([1, 0, 0, 0]))
    }

    @Test func aHybridOrForeignSectorZeroIsNeverWritten() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = dir.appendingPathComponent("disk.img").path
        #expect(try Tools.slotctl(["--disk", disk, "format", "--size", "24M", "--slot-size", "8M"]).status == 0)
        #expect(try mbr(disk) == "protective")
        try Tools.must("sgdisk", ["-h", "1", disk])
        #expect(try mbr(disk) == "hybrid")
        var before = try sector0(disk)
        #expect(try slotctl(disk, ["set-active", "a"]).status == 0)
        #expect(try slotctl(disk, ["boot"]).stdout == "a\n")
        #expect(try sector0(disk) == before, "a hybrid MBR stays exactly as it was")
        // A DOS MBR with boot code and a Linux record, no 0xEE: foreign, kept.
        var dos = Data((0..<512).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        dos.replaceSubrange(446..<510, with: Data(count: 64))
        dos[446 + 4] = 0x83
        dos[510] = 0x55; dos[511] = 0xAA
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: disk))
        try handle.write(contentsOf: dos)
        try handle.close()
        #expect(try mbr(disk) == "foreign")
        before = try sector0(disk)
        #expect(try slotctl(disk, ["mark-failed", "a"]).status == 40)
        #expect(try sector0(disk) == before, "a foreign sector 0 stays exactly as it was")
        #expect(try Tools.cgptState(disk, 1) == [0, 0, 0])
    }
}
