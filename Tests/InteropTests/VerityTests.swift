import Foundation
import Testing

/// dm-verity trees slotctl builds are the trees `veritysetup format` builds.
@Suite(.serialized) struct VerityTests {
    let keys = KeySet.shared
    static let salt = "5a17c71e00112233445566778899aabbccddeeff00112233445566778899aabb"

    func randomFile(_ path: String, bytes: Int) throws {
        var generator = SystemRandomNumberGenerator()
        var data = Data(count: bytes)
        data.withUnsafeMutableBytes { raw in
            for i in stride(from: 0, to: bytes, by: 8) {
                var word = generator.next()
                let n = min(8, bytes - i)
                withUnsafeBytes(of: &word) { raw.baseAddress!.advanced(by: i).copyMemory(from: $0.baseAddress!, byteCount: n) }
            }
        }
        try data.write(to: URL(fileURLWithPath: path))
    }

    /// One, two and three tree levels; a payload that is not whole blocks.
    @Test(arguments: [1, 4096, 128 * 4096, 1_000_001, 65 * 1024 * 1024 + 1])
    func rootHashAndTreeMatchVeritysetup(payloadBytes: Int) throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let payload = dir.appendingPathComponent("payload").path, image = dir.appendingPathComponent("image").path
        try randomFile(payload, bytes: payloadBytes)
        let run = try Tools.slotctl(["--json", "sign", "--key", keys.privatePath("ed25519"), "--rollback-index", "1",
                                     "--verity", "--salt", Self.salt, payload, "-o", image])
        #expect(run.status == 0, "\(run.stderr)")
        let verity = try #require((try Tools.json(run.stdout)["result"] as? [String: Any])?["verity"] as? [String: Any])
        let blocks = verity["data_blocks"] as! Int, offset = verity["hash_offset"] as! Int
        #expect(blocks == max(2, (payloadBytes + 4095) / 4096) && offset == blocks * 4096)
        // veritysetup on a copy with the tree area zeroed: the same root hash and the same tree bytes.
        let copy = dir.appendingPathComponent("copy").path
        var bytes = try Data(contentsOf: URL(fileURLWithPath: image))
        let mine = bytes
        let treeEnd = bytes.count - 4096 // descriptor and footer share the last block, right after the tree
        bytes.replaceSubrange(offset..<treeEnd, with: Data(count: treeEnd - offset))
        try bytes.write(to: URL(fileURLWithPath: copy))
        let format = try Tools.must("veritysetup", ["format", "--no-superblock", "--hash-offset=\(offset)", "--data-blocks=\(blocks)",
                                                    "--salt=\(Self.salt)", copy, copy])
        let root = try #require(format.split(separator: "\n").first { $0.hasPrefix("Root hash:") }?
            .split(separator: "\t").last.map { $0.trimmingCharacters(in: .whitespaces) })
        #expect(root == verity["root_hash"] as? String)
        let theirs = try Data(contentsOf: URL(fileURLWithPath: copy))
        #expect(theirs.subdata(in: offset..<treeEnd) == mine.subdata(in: offset..<treeEnd), "identical hash trees")
        // And veritysetup accepts slotctl's image as is.
        let verify = try Tools.run("veritysetup", ["verify", "--no-superblock", "--hash-offset=\(offset)", "--data-blocks=\(blocks)",
                                                   "--salt=\(Self.salt)", image, image, root])
        #expect(verify.status == 0, "\(verify.stderr)")
    }

    /// boot checks the signed root hash against the tree's top block (not every payload
    /// byte: dm-verity does that as blocks are read) and prints what veritysetup needs.
    @Test func bootChecksTheTreeTopAndPrintsVerityParameters() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = dir.appendingPathComponent("disk.img").path
        func slotctl(_ args: [String]) throws -> Run {
            try Tools.slotctl(["--disk", disk, "--keys", keys.keys, "--config", "/dev/null",
                               "--booted-file", dir.appendingPathComponent("booted").path] + args)
        }
        #expect(try slotctl(["format", "--size", "12M", "--slot-size", "4M"]).status == 0)
        let payload = dir.appendingPathComponent("payload").path, image = dir.appendingPathComponent("image").path
        try randomFile(payload, bytes: 1_000_000)
        let sign = try Tools.slotctl(["--json", "sign", "--key", keys.privatePath("p256"), "--rollback-index", "1", "--verity",
                                      payload, "-o", image])
        let signed = try #require((try Tools.json(sign.stdout)["result"] as? [String: Any])?["verity"] as? [String: Any])
        #expect(try slotctl(["install", image, "--slot", "a"]).status == 0)
        var run = try slotctl(["--json", "boot", "--dry-run"])
        let verity = try #require((try Tools.json(run.stdout)["result"] as? [String: Any])?["verity"] as? [String: Any])
        #expect(verity["root_hash"] as? String == signed["root_hash"] as? String && verity["salt"] as? String == signed["salt"] as? String)
        #expect(verity["hash_offset"] as? Int == 245 * 4096 && verity["data_blocks"] as? Int == 245 && verity["data_device"] as? String == disk)

        let slotStart = 2048 * 512, treeTop = slotStart + 245 * 4096
        func flip(_ at: Int) throws {
            let handle = try FileHandle(forUpdating: URL(fileURLWithPath: disk))
            try handle.seek(toOffset: UInt64(at))
            let byte = try handle.read(upToCount: 1)!
            try handle.seek(toOffset: UInt64(at))
            try handle.write(contentsOf: Data([byte[0] ^ 0x01]))
            try handle.close()
        }
        // A changed data byte: boot does not read every block (dm-verity will refuse that
        // block when it is read), but verify, which hashes the payload, refuses the slot.
        try flip(slotStart + 12_345)
        #expect(try slotctl(["boot", "--dry-run"]).stdout == "a\n")
        #expect(try slotctl(["verify", "a"]).status == 23)
        try flip(slotStart + 12_345)
        // A changed lower tree block: boot's top-block check passes, dm-verity would fail
        // that block at run time; verify rebuilds the whole tree and refuses.
        try flip(treeTop + 4096 + 10)
        #expect(try slotctl(["verify", "a"]).status == 23)
        try flip(treeTop + 4096 + 10)
        #expect(try slotctl(["verify", "a"]).status == 0)
        // A changed top tree block: boot refuses the slot.
        try flip(treeTop + 7)
        run = try slotctl(["boot"])
        #expect(run.status == 50 && run.stderr.contains("dm-verity root hash"), "\(run.stderr)")
    }

    /// install checks every tree block (file and stream) before it activates anything.
    @Test func installRefusesABadTreeAnywhere() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = dir.appendingPathComponent("disk.img").path
        func slotctl(_ args: [String], stdin: String? = nil) throws -> Run {
            try Tools.slotctl(["--disk", disk, "--keys", keys.keys, "--config", "/dev/null",
                               "--booted-file", dir.appendingPathComponent("booted").path] + args, stdinFile: stdin)
        }
        #expect(try slotctl(["format", "--size", "12M", "--slot-size", "4M"]).status == 0)
        let payload = dir.appendingPathComponent("payload").path
        try randomFile(payload, bytes: 600_000) // 147 blocks: two tree levels at 602112
        let image = dir.appendingPathComponent("image").path, stream = dir.appendingPathComponent("stream").path
        #expect(try Tools.slotctl(["sign", "--key", keys.privatePath("ed25519"), "--rollback-index", "1", "--verity", payload, "-o", image]).status == 0)
        #expect(try Tools.slotctl(["sign", "--key", keys.privatePath("ed25519"), "--rollback-index", "1", "--verity", "--stream",
                                   payload, "-o", stream]).status == 0)
        for (path, shift) in [(image, 0), (stream, 64 + 380)] {
            for treeByte in [10, 4096 + 10] { // top level, level 0
                var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
                bytes[shift + 602_112 + treeByte] ^= 0x01
                let bad = dir.appendingPathComponent("bad").path
                try bytes.write(to: URL(fileURLWithPath: bad))
                #expect(try Tools.slotctl(["--keys", keys.keys, "--config", "/dev/null", "verify", "--image", bad]).status == (shift == 0 ? 23 : 26))
                let run = path == image ? try slotctl(["install", bad, "--slot", "a"]) : try slotctl(["install", "-", "--slot", "a"], stdin: bad)
                #expect(run.status == (path == image ? 23 : 32), "\(path) tree byte \(treeByte): \(run.status) \(run.stderr)")
                let status = try Tools.json(try slotctl(["--json", "status"]).stdout)["result"] as! [String: Any]
                #expect((status["slots"] as! [[String: Any]])[0]["bootable"] as? Bool == false)
            }
        }
        #expect(try slotctl(["install", "-", "--slot", "a"], stdin: stream).status == 0)
        #expect(try slotctl(["boot"]).stdout == "a\n")
    }
}
