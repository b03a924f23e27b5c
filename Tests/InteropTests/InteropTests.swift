import Foundation
import Testing

let kernelType = "FE3A2A5D-4F32-41A7-B725-ACCC3285A309"
let slotType = "FBDD8489-B026-4652-B35F-A1FEB8CC13DB"

/// Tables made by cgpt and sgdisk read right in slotctl; tables slotctl writes read right
/// in cgpt and pass sgdisk -v; attribute bits outside 48-56 survive every write.
@Suite(.serialized) struct InteropTests {
    func slotState(_ status: [String: Any], _ name: String) throws -> [Int] {
        let result = try #require(status["result"] as? [String: Any])
        let slots = try #require(result["slots"] as? [[String: Any]])
        let slot = try #require(slots.first { $0["name"] as? String == name }, "no slot \(name)")
        return [slot["priority"] as! Int, slot["tries"] as! Int, (slot["successful"] as! Bool) ? 1 : 0]
    }

    func status(_ disk: String, _ extra: [String] = []) throws -> [String: Any] {
        let run = try Tools.slotctl(["--disk", disk, "--json", "--booted-file", "/nonexistent/booted", "--verification", "none"] + extra + ["status"])
        #expect(run.status == 0, "status: \(run.stderr)")
        return try Tools.json(run.stdout)
    }

    @Test func cgptMadeTableReadsRightAndSlotctlWritesReadRightInCgpt() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = dir.appendingPathComponent("cgpt.img").path
        let booted = dir.appendingPathComponent("booted").path
        try Tools.must("truncate", ["-s", "32M", disk])
        try Tools.must("cgpt", ["create", disk])
        try Tools.must("cgpt", ["boot", "-p", disk]) // a protective MBR, so sgdisk -v has nothing to say
        try Tools.must("cgpt", ["add", "-i", "1", "-b", "2048", "-s", "8192", "-t", "kernel", "-l", "root_a", "-P", "2", "-T", "5", "-S", "0", disk])
        try Tools.must("cgpt", ["add", "-i", "2", "-b", "10240", "-s", "8192", "-t", "kernel", "-l", "root_b", "-P", "1", "-T", "0", "-S", "1", disk])
        try Tools.must("cgpt", ["add", "-i", "3", "-b", "18432", "-s", "2048", "-t", "data", "-l", "data_c", disk])
        var s = try status(disk)
        #expect(try slotState(s, "a") == [2, 5, 0])
        #expect(try slotState(s, "b") == [1, 0, 1])
        let slots = (s["result"] as! [String: Any])["slots"] as! [[String: Any]]
        #expect(slots.count == 2, "the data partition named data_c is not a slot")
        #expect(slots[0]["type_guid"] as? String == kernelType)
        let cgptGUID = try Tools.must("cgpt", ["show", "-i", "1", "-u", disk]).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(slots[0]["unique_guid"] as? String == cgptGUID)

        let boot = try Tools.slotctl(["--disk", disk, "--booted-file", booted, "--verification", "none", "boot"])
        #expect(boot.status == 0 && boot.stdout == "a\n", "\(boot.stderr)")
        #expect(try Tools.cgptState(disk, 1) == [2, 4, 0])
        try Tools.expectSgdiskClean(disk)

        #expect(try Tools.slotctl(["--disk", disk, "--booted-file", booted, "--verification", "none", "mark-successful"]).status == 0)
        #expect(try Tools.cgptState(disk, 1) == [2, 0, 1])
        try Tools.expectSgdiskClean(disk)

        #expect(try Tools.slotctl(["--disk", disk, "set-active", "b", "--tries", "3"]).status == 0)
        #expect(try Tools.cgptState(disk, 2) == [15, 3, 0])
        #expect(try Tools.cgptState(disk, 1) == [2, 0, 1])
        try Tools.expectSgdiskClean(disk)

        let failed = try Tools.slotctl(["--disk", disk, "mark-failed", "b"])
        #expect(failed.status == 40)
        #expect(try Tools.cgptState(disk, 2) == [0, 0, 0])
        try Tools.expectSgdiskClean(disk)

        // cgpt writes after slotctl, slotctl reads cgpt's write.
        try Tools.must("cgpt", ["add", "-i", "2", "-P", "7", "-T", "2", "-S", "0", disk])
        s = try status(disk)
        #expect(try slotState(s, "b") == [7, 2, 0])
    }

    @Test func sgdiskMadeTableKeepsForeignAttributeBits() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = dir.appendingPathComponent("sgdisk.img").path
        try Tools.must("truncate", ["-s", "48M", disk])
        try Tools.must("sgdisk", ["-o", "-n", "1:2048:+8M", "-t", "1:\(slotType)", "-c", "1:system_a",
                                  "-n", "2:0:+8M", "-t", "2:\(slotType)", "-c", "2:system_b",
                                  "-n", "3:0:+4M", "-c", "3:userdata",
                                  // Foreign bits: required (0), legacy BIOS bootable (2), bits 60 and 63.
                                  "-A", "1:set:0", "-A", "1:set:60", "-A", "2:set:2", "-A", "2:set:63",
                                  // Slot a: priority 1, successful.
                                  "-A", "1:set:48", "-A", "1:set:56", disk])
        let foreignA: UInt64 = 1 << 0 | 1 << 60, foreignB: UInt64 = 1 << 2 | 1 << 63
        #expect(try slotState(try status(disk), "a") == [1, 0, 1])
        #expect(try slotState(try status(disk), "b") == [0, 0, 0])

        #expect(try Tools.slotctl(["--disk", disk, "set-active", "b"]).status == 0)
        let booted = dir.appendingPathComponent("run/slotctl/booted").path
        let boot = try Tools.slotctl(["--disk", disk, "--booted-file", booted, "--verification", "none", "boot"])
        #expect(boot.stdout == "b\n")
        #expect(try String(contentsOfFile: booted, encoding: .utf8) == "b\n")
        #expect(try Tools.slotctl(["--disk", disk, "--booted-file", booted, "--verification", "none", "mark-successful"]).status == 0)

        let a = try Tools.sgdiskAttributes(disk, 1), b = try Tools.sgdiskAttributes(disk, 2)
        #expect(a & ~(0x1FF << 48) == foreignA, "\(String(a, radix: 16))")
        #expect(b & ~(0x1FF << 48) == foreignB, "\(String(b, radix: 16))")
        // b: priority 15, tries 0, successful. a stays as it was (priority 1 is below 15).
        #expect(b & (0x1FF << 48) == 0x010F_0000_0000_0000)
        #expect(a & (0x1FF << 48) == 0x0101_0000_0000_0000)
        try Tools.expectSgdiskClean(disk)
        #expect(try Tools.cgptState(disk, 2) == [15, 0, 1])
    }

    @Test func formatMakesATableSgdiskAndCgptAccept() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        for sectorSize in ["512", "4096"] {
            let disk = dir.appendingPathComponent("fmt\(sectorSize).img").path
            let run = try Tools.slotctl(["--disk", disk, "--sector-size", sectorSize, "format", "--size", "40M",
                                         "--slots", "3", "--slot-size", "8M"])
            #expect(run.status == 0, "\(run.stderr)")
            let again = try Tools.slotctl(["--disk", disk, "format"])
            #expect(again.status == 65, "format refuses to replace a table without --force")
            if sectorSize == "512" {
                try Tools.expectSgdiskClean(disk)
                let info = try Tools.must("sgdisk", ["-i", "3", disk])
                #expect(info.contains("Partition name: 'root_c'") && info.contains(slotType))
                #expect(try Tools.cgptState(disk, 3) == [0, 0, 0])
            } else {
                try withLoop(disk, sectorSize: 4096) { loop in
                    try Tools.expectSgdiskClean(loop)
                    #expect(try Tools.cgptState(loop, 2) == [0, 0, 0])
                }
            }
        }
    }

    /// A disk that grew (an image extended, a volume resized): the backup GPT is moved to
    /// the new end at the next write, as sgdisk expects.
    @Test func grownDiskGetsItsBackupMovedToTheEnd() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = dir.appendingPathComponent("grown.img").path
        try Tools.must("truncate", ["-s", "32M", disk])
        try Tools.must("sgdisk", ["-o", "-n", "1:2048:+4M", "-t", "1:\(slotType)", "-c", "1:root_a", disk])
        try Tools.must("truncate", ["-s", "48M", disk])
        #expect(try Tools.run("sgdisk", ["-v", disk]).stdout.contains("Problem"), "sgdisk sees the misplaced backup")
        #expect(try Tools.slotctl(["--disk", disk, "set-active", "a"]).status == 0)
        try Tools.expectSgdiskClean(disk)
        let s = try status(disk)
        let backup = (s["result"] as! [String: Any])["backup"] as! [String: Any]
        #expect(backup["header_lba"] as? Int == 48 * 2048 - 1 && backup["status"] as? String == "valid")
    }

    /// format never eats a disk that holds a GPT, slots or not.
    @Test func formatRefusesAnyExistingGPT() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = dir.appendingPathComponent("data.img").path
        try Tools.must("truncate", ["-s", "32M", disk])
        try Tools.must("sgdisk", ["-o", "-n", "1:0:+20M", "-c", "1:userdata", disk])
        let before = try Data(contentsOf: URL(fileURLWithPath: disk))
        let run = try Tools.slotctl(["--disk", disk, "format"])
        #expect(run.status == 65 && run.stderr.contains("already holds a GPT"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: disk)) == before)
        #expect(try Tools.slotctl(["--disk", disk, "format", "--force", "--slot-size", "8M"]).status == 0)
        try Tools.expectSgdiskClean(disk)
    }

    /// A real block device with 4096-byte logical sectors: a loop device.
    @Test func blockDeviceWith4096ByteSectors() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let image = dir.appendingPathComponent("4k.img").path
        try Tools.must("truncate", ["-s", "64M", image])
        try withLoop(image, sectorSize: 4096) { loop in
            try Tools.must("sgdisk", ["-o", "-n", "1:256:+16M", "-t", "1:\(kernelType)", "-c", "1:root_a",
                                      "-n", "2:0:+16M", "-t", "2:\(kernelType)", "-c", "2:root_b", loop])
            let s = try status(loop)
            let result = s["result"] as! [String: Any]
            #expect(result["sector_size"] as? Int == 4096 && result["block_device"] as? Bool == true)
            #expect(try Tools.slotctl(["--disk", loop, "set-active", "a", "--tries", "2"]).status == 0)
            let boot = try Tools.slotctl(["--disk", loop, "--booted-file", dir.appendingPathComponent("b").path, "--verification", "none", "--json", "boot"])
            let bootJSON = try Tools.json(boot.stdout)["result"] as! [String: Any]
            #expect(bootJSON["slot"] as? String == "a")
            #expect(bootJSON["device"] as? String == loop + "p1")
            #expect(bootJSON["offset"] as? Int == 256 * 4096)
            #expect(try Tools.cgptState(loop, 1) == [15, 1, 0])
            try Tools.expectSgdiskClean(loop)
        }
        // The same image as a file: the 4096-byte layout is found by probing.
        let s = try status(image)
        #expect((s["result"] as! [String: Any])["sector_size"] as? Int == 4096)
        #expect(try slotState(s, "a") == [15, 1, 0])
    }

    func withLoop(_ image: String, sectorSize: Int, _ body: (String) throws -> Void) throws {
        let loop = try Tools.must("losetup", ["-f", "--show", "--sector-size", "\(sectorSize)", image])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? Tools.run("losetup", ["-d", loop]) }
        try body(loop)
    }
}
