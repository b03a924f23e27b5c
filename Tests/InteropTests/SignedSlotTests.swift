import Foundation
import Testing

/// Keys made by the openssl CLI, once per test run: private halves beside a key
/// directory holding the public halves.
final class KeySet: Sendable {
    static let shared = try! KeySet()
    let dir: URL
    var keys: String { dir.appendingPathComponent("keys").path }
    static let algorithms = ["ed25519", "p256", "rsa3072", "rsa4096"]

    init() throws {
        dir = try Tools.scratch()
        try FileManager.default.createDirectory(atPath: dir.appendingPathComponent("keys").path, withIntermediateDirectories: true)
        let options: [String: [String]] = [
            "ed25519": ["-algorithm", "ed25519"],
            "p256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "rsa3072": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
            "rsa4096": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"],
            "other": ["-algorithm", "ed25519"],
        ]
        for (name, args) in options {
            try Tools.must("openssl", ["genpkey"] + args + ["-out", privatePath(name)])
            try Tools.must("openssl", ["pkey", "-in", privatePath(name), "-pubout", "-out", publicPath(name)])
            if name != "other" {
                try FileManager.default.copyItem(atPath: publicPath(name), toPath: dir.appendingPathComponent("keys/\(name).pem").path)
            }
        }
    }

    func privatePath(_ name: String) -> String { dir.appendingPathComponent("\(name).key").path }
    func publicPath(_ name: String) -> String { dir.appendingPathComponent("\(name).pub").path }
}

/// Bytes of a signed image and where its parts are.
struct SignedImage {
    var bytes: Data
    var footerOffset: Int { bytes.count - 64 }
    var descriptorOffset: Int { Int(bytes[footerOffset + 16..<footerOffset + 24].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }) }
    var descriptorSize: Int { Int(bytes[footerOffset + 12..<footerOffset + 16].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }) }
    var signedBytes: Data { bytes.subdata(in: descriptorOffset..<descriptorOffset + 316) }
    var signature: Data { bytes.subdata(in: descriptorOffset + 316..<descriptorOffset + descriptorSize) }

    init(path: String) throws { bytes = try Data(contentsOf: URL(fileURLWithPath: path)) }
    func write(_ path: String) throws { try bytes.write(to: URL(fileURLWithPath: path)) }
}

/// ECDSA signatures: raw r||s (descriptor) <-> DER (openssl), written here independently of slotctl.
enum DER {
    static func integer(_ bytes: Data) -> Data {
        var b = Data(bytes.drop { $0 == 0 })
        if b.isEmpty { b = Data([0]) }
        if b.first! & 0x80 != 0 { b.insert(0, at: 0) }
        return Data([0x02, UInt8(b.count)]) + b
    }

    static func fromRaw(_ raw: Data) -> Data {
        let body = integer(raw.prefix(32)) + integer(raw.suffix(32))
        return Data([0x30, UInt8(body.count)]) + body
    }

    static func toRaw(_ der: Data) -> Data {
        var bytes = [UInt8](der), i = 2, out = Data()
        for _ in 0..<2 {
            let length = Int(bytes[i + 1])
            let value = Data(bytes[(i + 2)..<(i + 2 + length)].drop { $0 == 0 })
            out += Data(repeating: 0, count: 32 - value.count) + value
            i += 2 + length
        }
        bytes.removeAll()
        return out
    }
}

@Suite(.serialized) struct SignedSlotTests {
    let keys = KeySet.shared

    func sign(_ algorithm: String, payload: String, output: String, extra: [String] = []) throws {
        let run = try Tools.slotctl(["sign", "--key", keys.privatePath(algorithm), "--rollback-index", "3", "--image-version", "v-\(algorithm)",
                                     payload, "-o", output] + extra)
        #expect(run.status == 0, "sign \(algorithm): \(run.stderr)")
    }

    func verify(_ image: String, keys dir: String? = nil) throws -> Run {
        // No counters configured here: these tests are about signatures.
        try Tools.slotctl(["--keys", dir ?? keys.keys, "--config", "/dev/null", "verify", "--image", image])
    }

    func pkeyutlOptions(_ algorithm: String) -> [String] {
        switch algorithm {
        case "ed25519": ["-rawin"]
        case "p256": ["-rawin", "-digest", "sha256"]
        default: ["-rawin", "-digest", "sha256", "-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "rsa_pss_saltlen:32"]
        }
    }

    func payload(in dir: URL, bytes: Int = 300_000) throws -> String {
        let path = dir.appendingPathComponent("payload.bin").path
        var generator = SystemRandomNumberGenerator()
        try Data((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &generator) }).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// slotctl's signatures verify in openssl, openssl's verify in slotctl, for every algorithm.
    @Test(arguments: KeySet.algorithms)
    func signaturesAgreeWithOpenSSL(algorithm: String) throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let payload = try payload(in: dir)
        let imagePath = dir.appendingPathComponent("image").path
        try sign(algorithm, payload: payload, output: imagePath)
        var image = try SignedImage(path: imagePath)
        // The digest in the descriptor is openssl's SHA-256 of the payload.
        let dgst = try Tools.must("openssl", ["dgst", "-sha256", "-r", payload]).prefix(64)
        let stored = image.bytes.subdata(in: image.descriptorOffset + 32..<image.descriptorOffset + 64)
        #expect(stored.map { String(format: "%02x", $0) }.joined() == dgst)

        let signedPath = dir.appendingPathComponent("signed.bin").path, sigPath = dir.appendingPathComponent("sig.bin").path
        try image.signedBytes.write(to: URL(fileURLWithPath: signedPath))
        try (algorithm == "p256" ? DER.fromRaw(image.signature) : image.signature).write(to: URL(fileURLWithPath: sigPath))
        let check = try Tools.run("openssl", ["pkeyutl", "-verify", "-pubin", "-inkey", keys.publicPath(algorithm)]
                                  + pkeyutlOptions(algorithm) + ["-in", signedPath, "-sigfile", sigPath])
        #expect(check.stdout.contains("Signature Verified Successfully"), "\(algorithm): \(check.stdout) \(check.stderr)")

        // The other way: openssl signs the same bytes, slotctl verifies.
        let opensslSig = dir.appendingPathComponent("openssl.sig").path
        try Tools.must("openssl", ["pkeyutl", "-sign", "-inkey", keys.privatePath(algorithm)] + pkeyutlOptions(algorithm)
                       + ["-in", signedPath, "-out", opensslSig])
        var signature = try Data(contentsOf: URL(fileURLWithPath: opensslSig))
        if algorithm == "p256" { signature = DER.toRaw(signature) }
        #expect(signature.count == image.signature.count)
        if algorithm != "ed25519" { #expect(signature != image.signature, "a fresh randomized signature") }
        image.bytes.replaceSubrange(image.descriptorOffset + 316..<image.descriptorOffset + image.descriptorSize, with: signature)
        try image.write(imagePath)
        let run = try verify(imagePath)
        #expect(run.status == 0 && run.stdout.contains("verdict: verified"), "\(algorithm): \(run.stdout) \(run.stderr)")
        #expect(run.stdout.contains("signer: \(keys.keys)/\(algorithm).pem"))
    }

    /// Every byte of descriptor and footer, and payload bytes at start, middle and end,
    /// changed one at a time: always refused, with a 20-family code; specific fields with
    /// their specific code.
    @Test func everyTamperedByteIsRefused() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let payload = try payload(in: dir, bytes: 10_000)
        let imagePath = dir.appendingPathComponent("image").path
        try sign("ed25519", payload: payload, output: imagePath)
        let good = try SignedImage(path: imagePath)
        #expect(try verify(imagePath).status == 0)
        let d = good.descriptorOffset, f = good.footerOffset
        let expected: [Int: Int32] = [
            d + 0: 24, d + 8: 24, d + 12: 24, d + 24: 24, d + 76: 24, d + 312: 24, // magic, version, sizes, algorithms
            d + 80: 21, d + 111: 21,                                             // key id: untrusted key
            d + 16: 20, d + 40: 20, d + 64: 20, d + 113: 20,                     // signed fields: signature fails
            d + 320: 20, d + 379: 20,                                            // signature bytes
            0: 23, 5_000: 23, 9_999: 23,                                         // payload
            f + 0: 26, f + 8: 24, f + 12: 24, f + 16: 24, f + 40: 24,            // footer
        ]
        var tampered = good
        let offsets = Array(d..<(d + good.descriptorSize)) + Array(f..<(f + 64)) + [0, 5_000, 9_999]
        for offset in offsets {
            tampered.bytes = good.bytes
            tampered.bytes[offset] ^= 0x01
            try tampered.write(imagePath)
            let run = try verify(imagePath)
            #expect((20...29).contains(run.status), "byte \(offset) flipped: exit \(run.status)")
            if let code = expected[offset] { #expect(run.status == code, "byte \(offset): exit \(run.status): \(run.stderr)") }
        }
        // Truncated or grown: the footer is no longer at the end.
        tampered.bytes = good.bytes.prefix(good.bytes.count - 100)
        try tampered.write(imagePath)
        #expect(try verify(imagePath).status == 26)
        tampered.bytes = good.bytes + Data(count: 4096)
        try tampered.write(imagePath)
        #expect(try verify(imagePath).status == 26)
        // A footer whose descriptor offset + size wraps around 2^64.
        tampered.bytes = good.bytes
        for i in 0..<8 { tampered.bytes[f + 16 + i] = 0xFF }
        try tampered.write(imagePath)
        let wrap = try verify(imagePath)
        #expect(wrap.status == 24 && wrap.stderr.contains("outside the partition"))
    }

    @Test func keyDirectoryCases() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let payload = try payload(in: dir, bytes: 5_000)
        let image = dir.appendingPathComponent("image").path
        // Signed by a key that is not in the directory.
        try sign("other", payload: payload, output: image)
        var run = try verify(image)
        #expect(run.status == 21 && run.stderr.contains("not in \(keys.keys)"))
        // A directory with a private key and junk: reported, the good keys still work.
        let mixed = dir.appendingPathComponent("mixed")
        try FileManager.default.createDirectory(at: mixed, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: keys.publicPath("p256"), toPath: mixed.appendingPathComponent("p256.pem").path)
        try FileManager.default.copyItem(atPath: keys.privatePath("other"), toPath: mixed.appendingPathComponent("private.pem").path)
        try "not a key\n".write(to: mixed.appendingPathComponent("junk.pem"), atomically: true, encoding: .utf8)
        try sign("p256", payload: payload, output: image)
        run = try verify(image, keys: mixed.path)
        #expect(run.status == 0)
        #expect(run.stdout.contains("private.pem") && run.stdout.contains("junk.pem"), "\(run.stdout)")
        // The descriptor claims ed25519 but names the P-256 key: refused as a key/algorithm mismatch.
        var signed = try SignedImage(path: image)
        signed.bytes[signed.descriptorOffset + 76] = 1
        try signed.write(image)
        run = try verify(image)
        #expect(run.status == 25, "\(run.stderr)")
        // A key of an unsupported kind cannot sign.
        let p384 = dir.appendingPathComponent("p384.key").path
        try Tools.must("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", p384])
        run = try Tools.slotctl(["sign", "--key", p384, "--rollback-index", "1", payload, "-o", image])
        #expect(run.status == 25 && run.stderr.contains("secp384r1"), "\(run.stderr)")
    }

    /// boot on a disk whose high-priority slot is tampered boots the other slot and leaves
    /// the tampered one unbootable, as cgpt confirms.
    @Test func bootSkipsATamperedSlot() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = dir.appendingPathComponent("disk.img").path, booted = dir.appendingPathComponent("booted").path
        func slotctl(_ args: [String]) throws -> Run {
            try Tools.slotctl(["--disk", disk, "--keys", keys.keys, "--booted-file", booted, "--config", "/dev/null"] + args)
        }
        #expect(try slotctl(["format", "--size", "12M", "--slot-size", "4M"]).status == 0)
        let payload = try payload(in: dir, bytes: 200_000)
        for (slot, lba) in [("a", 2048), ("b", 10240)] {
            let image = dir.appendingPathComponent("image_\(slot)").path
            try sign(slot == "a" ? "ed25519" : "rsa3072", payload: payload, output: image, extra: ["--partition-size", "4M"])
            try Tools.must("dd", ["if=\(image)", "of=\(disk)", "bs=512", "seek=\(lba)", "conv=notrunc", "status=none"])
        }
        #expect(try slotctl(["set-active", "a"]).status == 0)
        #expect(try slotctl(["set-active", "b"]).status == 0)
        var status = try Tools.json(try slotctl(["--json", "status"]).stdout)["result"] as! [String: Any]
        var slots = status["slots"] as! [[String: Any]]
        let imageB = slots[1]["image"] as! [String: Any]
        #expect(imageB["verified"] as? Bool == true && imageB["signer"] as? String == "\(keys.keys)/rsa3072.pem")
        #expect(imageB["version"] as? String == "v-rsa3072" && imageB["rollback_index"] as? Int == 3)
        // Tamper with b's payload: boot takes a, b is marked unbootable.
        // (Every bit of the byte flipped: a random byte would equal the old one 1 time in 256.)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: disk))
        try handle.seek(toOffset: UInt64(10240 * 512 + 1000))
        let old = try #require(try handle.read(upToCount: 1)?.first)
        try handle.seek(toOffset: UInt64(10240 * 512 + 1000))
        try handle.write(contentsOf: [old ^ 0xFF])
        try handle.close()
        // status reads no payload by default (its signature still holds); --full re-hashes
        // and finds the change.
        func imageOfB(_ args: [String]) throws -> [String: Any] {
            try Tools.statusImage(try slotctl(["--json", "status"] + args).stdout, slot: 1)
        }
        let cheap = try imageOfB([]), full = try imageOfB(["--full"])
        #expect(cheap["verified"] as? Bool == true && cheap["payload_check"] as? String == "none", "\(cheap)")
        #expect(full["verified"] as? Bool == false && full["status"] as? String == "digest_mismatch", "\(full)")
        #expect(try slotctl(["status"]).stdout.contains("payload not re-hashed (status --full does)"))
        let boot = try slotctl(["boot"])
        #expect(boot.status == 0 && boot.stdout == "a\n", "\(boot.stderr)")
        #expect(boot.stderr.contains("slot b refused (digest_mismatch)"))
        #expect(try Tools.cgptState(disk, 2) == [0, 0, 0])
        #expect(try Tools.cgptState(disk, 1)[0] == 14)
        try Tools.expectSgdiskClean(disk)
        status = try Tools.json(try slotctl(["--json", "status", "--full"]).stdout)["result"] as! [String: Any]
        slots = status["slots"] as! [[String: Any]]
        #expect((slots[1]["image"] as! [String: Any])["status"] as? String == "digest_mismatch")
        #expect((slots[0]["image"] as! [String: Any])["payload_check"] as? String == "full")
        // A key directory without a usable key is a configuration error: code 21 and no
        // slot is judged or marked.
        let empty = dir.appendingPathComponent("nokeys").path
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let before = try Data(contentsOf: URL(fileURLWithPath: disk))
        let none = try Tools.slotctl(["--disk", disk, "--keys", empty, "--booted-file", booted, "--config", "/dev/null", "boot"])
        #expect(none.status == 21 && none.stderr.contains("no trusted key"), "\(none.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: disk)) == before)
        // Keys present but none matches: every slot refused, no bootable slot (50), and
        // the refusals are written so they are not retried.
        let otherKeys = dir.appendingPathComponent("otherkeys").path
        try FileManager.default.createDirectory(atPath: otherKeys, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: keys.publicPath("other"), toPath: otherKeys + "/other.pem")
        let refused = try Tools.slotctl(["--disk", disk, "--keys", otherKeys, "--booted-file", booted, "--config", "/dev/null", "boot"])
        #expect(refused.status == 50 && refused.stderr.contains("slot a refused: signed by key"), "\(refused.stderr)")
        #expect(try Tools.cgptState(disk, 1) == [0, 0, 0])
    }
}
