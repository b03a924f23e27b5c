import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Pinned keys (spec/keys.md) against a software TPM whose owner has a password
/// (`tpm2_changeauth -c owner`), as a device in the field has: pinning needs it, boot
/// never does; a key file the pin does not name is refused; a rotation keeps the device
/// booting; power cuts at every TPM command and file write of each step leave a device
/// that boots, and the step run again finishes.
@Suite(.serialized) struct KeyPinTests {
    let keys = KeySet.shared
    static let pinIndex = "0x1505d00"
    static let password = "s3cret"

    struct Device {
        let dir: URL
        let tpm: SoftwareTPM
        var disk: String { dir.appendingPathComponent("disk.img").path }
        var keyDir: String { dir.appendingPathComponent("keys").path }
        var authFile: String { dir.appendingPathComponent("owner-auth").path }

        func slotctl(_ args: [String], cutter: (String, Int, String)? = nil) throws -> Run {
            let full = ["--disk", disk, "--keys", keyDir, "--counters", tpm.spec, "--config", "/dev/null",
                        "--booted-file", dir.appendingPathComponent("booted").path, "--cmdline-file", "/dev/null"] + args
            guard let (cutterPath, n, mode) = cutter else { return try Tools.slotctl(full) }
            // Under `make test-asan` the binary is instrumented: LeakSanitizer cannot run under
            // ptrace, and a cut process leaks by definition; the uncut runs check leaks.
            return try Tools.run("env", ["CUTTER_SYSCALLS=\(mode)", "ASAN_OPTIONS=detect_leaks=0", cutterPath, "\(n)", Tools.slotctl] + full)
        }

        func pin(_ args: [String] = [], cutter: (String, Int, String)? = nil) throws -> Run {
            try slotctl(["keys", "pin", "--owner-auth-file", authFile] + args, cutter: cutter)
        }

        /// Signs a payload with `key` and writes it raw into `slot`, activated by slotctl.
        func put(_ slot: String, index: Int, key: String) throws {
            let payload = dir.appendingPathComponent("payload-\(slot)-\(index)").path
            try Data("slot \(slot) at \(index) by \(key)\n".utf8).write(to: URL(fileURLWithPath: payload))
            let image = dir.appendingPathComponent("image-\(slot)").path
            let sign = try Tools.slotctl(["sign", "--key", key, "--rollback-index", "\(index)", "--partition-size", "4M", payload, "-o", image])
            #expect(sign.status == 0, "\(sign.stderr)")
            try Tools.must("dd", ["if=\(image)", "of=\(disk)", "bs=512", "seek=\(slot == "a" ? 2048 : 10240)", "conv=notrunc", "status=none"])
            #expect(try slotctl(["set-active", slot]).status == 0)
        }

        /// Releases signed by `key` into b, then a, each booted and confirmed: the middle
        /// of a rotation, after which no slot needs the old key.
        func reinstallBoth(key: String) throws {
            for (slot, index) in [("b", 2), ("a", 3)] {
                try put(slot, index: index, key: key)
                #expect(try slotctl(["boot"]).stdout == slot + "\n")
                #expect(try slotctl(["mark-successful"]).status == 0)
            }
        }

        /// The key ids the TPM pins, as slotctl shows them.
        func pinned() throws -> [String] {
            let run = try slotctl(["--json", "keys"])
            #expect(run.status == 0, "\(run.stderr)")
            let result = try Tools.json(run.stdout)["result"] as! [String: Any]
            return (result["pin"] as? [String: Any])?["key_ids"] as? [String] ?? []
        }

        /// Everything a power cut may touch: the TPM, the key directory, the disk.
        func snapshot(_ name: String) throws {
            try tpm.snapshot(name)
            let saved = dir.appendingPathComponent("saved-\(name)")
            try? FileManager.default.removeItem(at: saved)
            try FileManager.default.createDirectory(at: saved, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: keyDir, toPath: saved.appendingPathComponent("keys").path)
            try FileManager.default.copyItem(atPath: disk, toPath: saved.appendingPathComponent("disk.img").path)
        }

        func restore(_ name: String) throws {
            try tpm.restore(name)
            let saved = dir.appendingPathComponent("saved-\(name)")
            try FileManager.default.removeItem(atPath: keyDir)
            try FileManager.default.copyItem(atPath: saved.appendingPathComponent("keys").path, toPath: keyDir)
            try FileManager.default.removeItem(atPath: disk)
            try FileManager.default.copyItem(atPath: saved.appendingPathComponent("disk.img").path, toPath: disk)
        }
    }

    /// The key id as `openssl pkey -pubout -outform DER | sha256` makes it: not slotctl's code.
    func keyID(_ publicPEM: String) throws -> String {
        let der = try Tools.scratch().appendingPathComponent("key.der").path
        try Tools.must("openssl", ["pkey", "-pubin", "-in", publicPEM, "-outform", "DER", "-out", der])
        return try Tools.must("openssl", ["dgst", "-sha256", "-r", der]).split(separator: " ")[0].lowercased()
    }

    /// A device with TPM counters provisioned, an owner password set, one key (ed25519)
    /// in its own key directory, and slot a signed by it and booted once.
    func device() throws -> Device {
        let dir = try Tools.scratch()
        let device = Device(dir: dir, tpm: try SoftwareTPM())
        try FileManager.default.createDirectory(atPath: device.keyDir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: keys.publicPath("ed25519"), toPath: device.keyDir + "/release.pem")
        try Data(Self.password.utf8).write(to: URL(fileURLWithPath: device.authFile))
        chmod(device.authFile, 0o600)
        chmod(device.keyDir, 0o755)
        #expect(try device.slotctl(["format", "--size", "12M", "--slot-size", "4M"]).status == 0)
        #expect(try device.slotctl(["counters", "provision", "--locations", "8"]).status == 0)
        let auth = try Tools.run("env", ["TPM2TOOLS_TCTI=\(device.tpm.tcti)", "tpm2_changeauth", "-c", "owner", Self.password])
        #expect(auth.status == 0, "\(auth.stderr)")
        try device.put("a", index: 1, key: keys.privatePath("ed25519"))
        #expect(try device.slotctl(["boot"]).stdout == "a\n")
        return device
    }

    @Test func aPinNeedsTheOwnerAndRefusesKeysItDoesNotName() throws {
        let device = try device()
        defer { try? FileManager.default.removeItem(at: device.dir) }
        // Without the owner's password: refused, the response code named; nothing pinned.
        var run = try device.slotctl(["keys", "pin"])
        #expect(run.status == 28 && run.stderr.contains("TPM_RC_BAD_AUTH"), "\(run.stderr)")
        #expect(try device.pinned().isEmpty)
        run = try device.pin()
        #expect(run.status == 0, "\(run.stderr)")
        let release = try keyID(keys.publicPath("ed25519"))
        #expect(try device.pinned() == [release])
        // tpm2_nvread reads the pin slotctl wrote: magic, count 1, the key id.
        let out = device.dir.appendingPathComponent("pin.bin").path
        let read = try Tools.run("env", ["TPM2TOOLS_TCTI=\(device.tpm.tcti)", "tpm2_nvread", Self.pinIndex, "-C", Self.pinIndex, "-s", "272", "-o", out])
        #expect(read.status == 0, "\(read.stderr)")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
        #expect(Array(bytes[0..<8]) == Array("SLOTPIN1".utf8) && bytes[8] == 1)
        #expect(bytes[16..<48].map { String(format: "%02x", $0) }.joined() == release)
        // Rewriting it needs the owner too: tpm2_nvwrite with the index's (empty) auth fails.
        let rogueWrite = try Tools.run("env", ["TPM2TOOLS_TCTI=\(device.tpm.tcti)", "tpm2_nvwrite", Self.pinIndex, "-C", Self.pinIndex, "-i", "/dev/null"])
        #expect(rogueWrite.status != 0)

        // An added key file: its image is refused (21), the pinned key's image still boots.
        try FileManager.default.copyItem(atPath: keys.publicPath("p256"), toPath: device.keyDir + "/added.pem")
        try device.put("b", index: 2, key: keys.privatePath("p256"))
        run = try device.slotctl(["boot"])
        #expect(run.status == 0 && run.stdout == "a\n", "\(run.stderr)")
        #expect(run.stderr.contains("slot b refused (untrusted_key)"), "\(run.stderr)")
        run = try device.slotctl(["verify", "b"])
        #expect(run.status == 21, "\(run.stdout) \(run.stderr)")
        #expect(try device.slotctl(["keys"]).stdout.contains("added.pem: ") && (try device.slotctl(["keys"]).stdout.contains("NOT PINNED")))
        let shown = try Tools.json(try device.slotctl(["--json", "status"]).stdout)["result"] as! [String: Any]
        #expect((shown["key_problems"] as! [String]).contains { $0.contains("added.pem") && $0.contains("not pinned") })
        // install refuses an image signed by the added key.
        let image = device.dir.appendingPathComponent("image-b").path
        run = try device.slotctl(["install", image, "--slot", "b"])
        #expect(run.status == 21, "\(run.stderr)")
        // A swapped key file (the trusted name, another key): nothing verifies; 21.
        try FileManager.default.removeItem(atPath: device.keyDir + "/added.pem")
        try FileManager.default.removeItem(atPath: device.keyDir + "/release.pem")
        try FileManager.default.copyItem(atPath: keys.publicPath("p256"), toPath: device.keyDir + "/release.pem")
        run = try device.slotctl(["boot", "--dry-run"])
        #expect(run.status == 21 && run.stderr.contains("not pinned"), "\(run.stderr)")
    }

    @Test func anIndexThatIsNotAPinIsRefused() throws {
        let device = try device()
        defer { try? FileManager.default.removeItem(at: device.dir) }
        let define = try Tools.run("env", ["TPM2TOOLS_TCTI=\(device.tpm.tcti)", "tpm2_nvdefine", Self.pinIndex, "-C", "o", "-P", Self.password,
                                           "-s", "16", "-a", "ownerwrite|authread|ownerread"])
        #expect(define.status == 0, "\(define.stderr)")
        var run = try device.slotctl(["boot"])
        #expect(run.status == 28 && run.stderr.contains("not slotctl's key pin"), "\(run.stderr)")
        run = try device.pin()
        #expect(run.status == 28 && run.stderr.contains("not slotctl's key pin"), "\(run.stderr)")
    }

    /// OLD (ed25519) to NEW (p256): add, reinstall, remove; the device boots throughout.
    @Test func aRotationKeepsTheDeviceBooting() throws {
        let device = try device()
        defer { try? FileManager.default.removeItem(at: device.dir) }
        #expect(try device.pin().status == 0)
        // A rotation step needs the owner too; without it nothing changes.
        var run = try device.slotctl(["keys", "pin", "--add", keys.publicPath("p256")])
        #expect(run.status == 28 && run.stderr.contains("TPM_RC_BAD_AUTH"), "\(run.stderr)")
        #expect(!FileManager.default.fileExists(atPath: device.keyDir + "/p256.pem"))
        run = try device.pin(["--add", keys.publicPath("p256")])
        #expect(run.status == 0, "\(run.stderr)")
        let old = try keyID(keys.publicPath("ed25519")), new = try keyID(keys.publicPath("p256"))
        #expect(Set(try device.pinned()) == [old, new])
        #expect(FileManager.default.fileExists(atPath: device.keyDir + "/p256.pem"), "the new key joins the directory as p256.pem")
        #expect(try device.slotctl(["boot"]).stdout == "a\n")
        // a (signed by OLD) may boot: OLD cannot go yet.
        run = try device.pin(["--remove", device.keyDir + "/release.pem"])
        #expect(run.status == 64 && run.stderr.contains("slot a holds an image signed by key"), "\(run.stderr)")
        // Releases signed by NEW into both slots, then OLD goes.
        try device.reinstallBoth(key: keys.privatePath("p256"))
        run = try device.pin(["--remove", device.keyDir + "/release.pem"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(try device.pinned() == [new])
        #expect(!FileManager.default.fileExists(atPath: device.keyDir + "/release.pem"))
        #expect(try device.slotctl(["boot"]).status == 0)
        // The last key cannot go.
        run = try device.pin(["--remove", new])
        #expect(run.status == 64 && run.stderr.contains("no pinned key would be left"), "\(run.stderr)")
    }

    /// Cuts at every TPM command (sendto) and every file write of `keys pin`, `--add` and
    /// `--remove`: after each, the device boots, and the step run again finishes.
    @Test func powerCutsAtEveryWriteLeaveABootableDevice() throws {
        let device = try device()
        defer { try? FileManager.default.removeItem(at: device.dir) }
        let cutter = device.dir.appendingPathComponent("cutter").path
        try Tools.must("gcc", ["-O2", "-o", cutter, Tools.packageRoot.appendingPathComponent("Tests/model/cutter.c").path])
        let old = try keyID(keys.publicPath("ed25519")), new = try keyID(keys.publicPath("p256"))

        func cutEverywhere(_ step: [String], expect final: Set<String>, bootsWith: String) throws {
            try device.snapshot("before")
            var cuts = 0
            for mode in ["send", "file"] {
                let counted = try device.pin(step, cutter: (cutter, 0, mode))
                #expect(counted.status == 0, "\(step) uncut: \(counted.stderr)")
                let total = Int(counted.stderr.split(separator: "\n").last { $0.hasPrefix("cutter: ") }?
                    .split(separator: " ")[1] ?? "0") ?? 0
                #expect(mode == "file" || total >= 3, "\(step): \(total) TPM commands")
                for n in 0..<total {
                    try device.restore("before")
                    let cut = try device.pin(step, cutter: (cutter, n + 1, mode))
                    #expect(cut.status == 137, "\(step) \(mode) cut \(n + 1): \(cut.status) \(cut.stderr)")
                    cuts += 1
                    // The device boots after the cut, with the keys it had or will have.
                    let boot = try device.slotctl(["boot"])
                    #expect(boot.status == 0 && boot.stdout == bootsWith + "\n", "\(step) \(mode) cut \(n + 1): boot \(boot.status) \(boot.stderr)")
                    // The same step again finishes it.
                    let again = try device.pin(step)
                    #expect(again.status == 0, "\(step) \(mode) cut \(n + 1): again \(again.stderr) \(cut.stderr)")
                    #expect(Set(try device.pinned()) == final, "\(step) \(mode) cut \(n + 1)")
                }
                try device.restore("before")
            }
            #expect(cuts >= 3)
            #expect(try device.pin(step).status == 0)
        }
        // The first pin, then the rotation's two steps.
        try cutEverywhere([], expect: [old], bootsWith: "a")
        try cutEverywhere(["--add", keys.publicPath("p256")], expect: [old, new], bootsWith: "a")
        try device.reinstallBoth(key: keys.privatePath("p256"))
        try cutEverywhere(["--remove", old], expect: [new], bootsWith: "a")
    }
}
