import Foundation
import Testing

/// The kexec boot's slotctl side on the host (spec/kexec.md): `boot --chosen` and the
/// refusals of `kexec` that come before anything is loaded. Loading and jumping are only
/// ever done inside QEMU (make test-qemu, the kexec flavour): on the host they would
/// replace the machine's kernel.
@Suite(.serialized) struct KexecTests {
    let keys = KeySet.shared

    /// A scratch device: a formatted disk, file counters, a booted record, no config.
    typealias Device = OutsideDefectTests.Device

    func install(_ device: Device, slot: String, index: Int, verity: Bool) throws {
        let payload = device.dir.appendingPathComponent("payload-\(index)").path
        try Data((0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) }).write(to: URL(fileURLWithPath: payload))
        let image = device.dir.appendingPathComponent("image-\(index)").path
        var run = try Tools.slotctl(["sign", "--key", keys.privatePath("ed25519"), "--rollback-index", "\(index)"]
                                    + (verity ? ["--verity"] : []) + [payload, "-o", image])
        #expect(run.status == 0, "\(run.stderr)")
        run = try device.slotctl(["install", image, "--slot", slot])
        #expect(run.status == 0, "\(run.stderr)")
    }

    @Test func bootChosenVerifiesThatSlotAndSpendsNoTry() throws {
        let device = try Device(keys: keys.keys)
        defer { try? FileManager.default.removeItem(at: device.dir) }
        try install(device, slot: "a", index: 1, verity: true)
        try install(device, slot: "b", index: 2, verity: true)
        // Stage-0 chose b and spent a try: the stage-2 view of the same table.
        var run = try device.slotctl(["boot"])
        #expect(run.status == 0 && run.stdout == "b\n", "\(run.stderr)")
        try FileManager.default.removeItem(atPath: device.booted)
        let before = (try Tools.cgptState(device.disk, 1), try Tools.cgptState(device.disk, 2))
        run = try device.slotctl(["boot", "--shell", "--chosen", "b"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("SLOTCTL_SLOT='b'") && run.stdout.contains("SLOTCTL_VERITY='1'"), "\(run.stdout)")
        #expect(try Tools.cgptState(device.disk, 1) == before.0 && Tools.cgptState(device.disk, 2) == before.1,
                "boot --chosen wrote the table")
        // The booted record mark-successful needs: the slot and what it claims.
        #expect(try String(contentsOfFile: device.booted, encoding: .utf8) == "b\nrollback 0 2\n")
        // The slot that spent its last try is still run by its own kernel's initramfs.
        #expect(try device.slotctl(["set-active", "a", "--tries", "1"]).status == 0)
        #expect(try device.slotctl(["boot"]).stdout == "a\n")
        #expect(try Tools.cgptState(device.disk, 1) == [15, 0, 0])
        run = try device.slotctl(["boot", "--chosen", "a"])
        #expect(run.status == 0 && run.stdout == "a\n", "\(run.stderr)")
        // A slot made unbootable since stage-0 chose it is refused (50), one a refused image too.
        #expect(try device.slotctl(["mark-failed", "a"]).status == 40)
        run = try device.slotctl(["boot", "--chosen", "a"])
        #expect(run.status == 50 && run.stderr.contains("slot a has priority 0"), "\(run.stderr)")
        let otherKeys = device.dir.appendingPathComponent("other-keys").path
        try FileManager.default.createDirectory(atPath: otherKeys, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: keys.publicPath("other"), toPath: otherKeys + "/other.pem")
        let bBefore = try Tools.cgptState(device.disk, 2)
        run = try Tools.slotctl(["--disk", device.disk, "--keys", otherKeys, "--config", "/dev/null", "--booted-file", device.booted,
                                 "boot", "--chosen", "b"])
        #expect(run.status == 21 && run.stderr.contains("boot --chosen: slot b refused"), "\(run.stderr)")
        #expect(try Tools.cgptState(device.disk, 2) == bBefore && bBefore[0] > 0, "a refusal by boot --chosen wrote the table")
    }

    @Test func kexecRefusesWhatTheSignatureDoesNotCover() throws {
        let device = try Device(keys: keys.keys)
        defer { try? FileManager.default.removeItem(at: device.dir) }
        try install(device, slot: "a", index: 1, verity: false)
        try install(device, slot: "b", index: 2, verity: true)
        let root = device.dir.appendingPathComponent("root").path
        try FileManager.default.createDirectory(atPath: root + "/boot/slotctl", withIntermediateDirectories: true)
        try Data("not a kernel".utf8).write(to: URL(fileURLWithPath: root + "/boot/slotctl/vmlinuz"))
        // No booted slot: nothing to start.
        var run = try device.slotctl(["kexec", "--dry-run", root])
        #expect(run.status == 64 && run.stderr.contains("no booted slot"), "\(run.stderr)")
        // a's image has no dm-verity tree: its kernel is not covered, whatever the root.
        try "a\nrollback 0 1\n".write(toFile: device.booted, atomically: true, encoding: .utf8)
        run = try device.slotctl(["kexec", "--dry-run", root])
        #expect(run.status == 52 && run.stderr.contains("slot a: its image has no dm-verity tree"), "\(run.stderr)")
        // Without signature checks nothing proves the kernel.
        run = try device.slotctl(["--verification", "none", "kexec", "--dry-run", root])
        #expect(run.status == 52 && run.stderr.contains("verification is off"), "\(run.stderr)")
        // b has a tree, but a plain directory is not its mounted dm-verity mapping.
        try "b\nrollback 0 2\n".write(toFile: device.booted, atomically: true, encoding: .utf8)
        run = try device.slotctl(["kexec", "--dry-run", root])
        #expect(run.status == 52 && run.stderr.contains("is not a mount point"), "\(run.stderr)")
        #expect(oneLine(run.stderr))
        // Nothing was written by any of it.
        #expect(try Tools.cgptState(device.disk, 2)[0] == 15)
    }

    func oneLine(_ text: String) -> Bool { text.split(separator: "\n").count == 1 }
}
