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
