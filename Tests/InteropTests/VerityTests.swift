import Foundation
import Testing
import SlotCore
import SlotCrypto
import SlotFlows
import SlotTestSupport

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

    /// The descriptor allows data and hash blocks of different sizes, as veritysetup does
    /// (`sign` itself always makes 4096/4096): level 0 hashes data blocks, the levels
    /// above hash blocks. The tree veritysetup builds with such sizes is the one slotctl
    /// builds, and an image carrying it verifies; with a changed tree byte it does not.
    @Test(arguments: [(1024, 4096), (4096, 512), (512, 1024)])
    func differingDataAndHashBlockSizesMatchVeritysetup(dataBlockSize: Int, hashBlockSize: Int) throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let dataBlocks = 1000 // two levels with 128 digests a block, three with 16
        let payloadSize = dataBlocks * dataBlockSize
        let treeOffset = (payloadSize + 4095) / 4096 * 4096
        let geometry = try #require(VerityGeometry(dataBlocks: UInt64(dataBlocks), hashBlockSize: UInt32(hashBlockSize)))
        let treeSize = Int(geometry.treeBytes)
        let descriptorOffset = (treeOffset + treeSize + 4095) / 4096 * 4096
        let path = dir.appendingPathComponent("image").path
        try randomFile(path, bytes: payloadSize)
        var image = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        image += [UInt8](repeating: 0, count: descriptorOffset + 4096 - payloadSize)
        try Data(image).write(to: URL(fileURLWithPath: path))
        let format = try Tools.must("veritysetup", ["format", "--no-superblock", "--data-block-size=\(dataBlockSize)",
                                                    "--hash-block-size=\(hashBlockSize)", "--data-blocks=\(dataBlocks)",
                                                    "--hash-offset=\(treeOffset)", "--salt=\(Self.salt)", path, path])
        let root = try #require(format.split(separator: "\n").first { $0.hasPrefix("Root hash:") }?
            .split(separator: "\t").last.map { $0.trimmingCharacters(in: .whitespaces) })
        image = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let theirTree = Array(image[treeOffset..<treeOffset + treeSize])

        // The builder alone: veritysetup's root hash and tree bytes.
        let salt = try #require(parseHexSalt(Self.salt))
        let tree = MemoryStore(bytes: [UInt8](repeating: 0, count: treeSize), sectorSize: 512)
        let built = try VerityBuilder.build(source: MemoryStore(bytes: image, sectorSize: 512), target: tree, dataBlocks: UInt64(dataBlocks),
                                            dataBlockSize: UInt32(dataBlockSize), hashBlockSize: UInt32(hashBlockSize), salt: salt,
                                            treeOffset: 0)
        #expect(built.hexText == root)
        #expect(tree.bytes == theirTree, "identical hash trees")

        // A signed image with these parameters (what another signer could make) verifies.
        let key = try PrivateKey(pemPath: keys.privatePath("ed25519"))
        var descriptor = SlotDescriptor()
        descriptor.payloadSize = UInt64(payloadSize)
        descriptor.rollbackIndex = 1
        descriptor.signatureAlgorithm = .ed25519
        for (i, byte) in SHA256Stream.digest(Array(image[0..<payloadSize])).enumerated() { descriptor.payloadDigest[i] = byte }
        for (i, byte) in key.keyID.enumerated() { descriptor.keyID[i] = byte }
        descriptor.flags = SlotDescriptor.flagVerity
        descriptor.verity.dataBlockSize = UInt32(dataBlockSize)
        descriptor.verity.hashBlockSize = UInt32(hashBlockSize)
        descriptor.verity.dataBlocks = UInt64(dataBlocks)
        descriptor.verity.treeOffset = UInt64(treeOffset)
        descriptor.verity.treeSize = UInt64(treeSize)
        descriptor.verity.saltSize = UInt32(salt.count)
        for (i, byte) in salt.enumerated() { descriptor.verity.salt[i] = byte }
        for (i, byte) in built.enumerated() { descriptor.verity.rootHash[i] = byte }
        var descriptorBytes = [UInt8](repeating: 0, count: descriptor.totalSize)
        var descriptorSpan = descriptorBytes.mutableSpan
        descriptor.serializeSigned(into: &descriptorSpan)
        let signature = try key.sign(message: Array(descriptorBytes[0..<SlotDescriptor.signedSize]), algorithm: .ed25519)
        descriptorBytes.replaceSubrange(SlotDescriptor.signedSize..., with: signature)
        var footer = [UInt8](repeating: 0, count: ImageFooter.size)
        var footerSpan = footer.mutableSpan
        ImageFooter(descriptorOffset: UInt64(descriptorOffset), descriptorSize: UInt32(descriptorBytes.count)).serialize(into: &footerSpan)
        image.replaceSubrange(descriptorOffset..<descriptorOffset + descriptorBytes.count, with: descriptorBytes)
        image.replaceSubrange(image.count - ImageFooter.size..<image.count, with: footer)
        try Data(image).write(to: URL(fileURLWithPath: path))
        func verify() throws -> Run { try Tools.slotctl(["--keys", keys.keys, "--config", "/dev/null", "verify", "--image", path]) }
        var run = try verify()
        #expect(run.status == 0, "\(dataBlockSize)/\(hashBlockSize): \(run.stderr)")

        // A changed byte in the last level-0 block: the payload still matches its digest,
        // only the rebuilt tree tells.
        image[treeOffset + treeSize - hashBlockSize + 3] ^= 0x01
        try Data(image).write(to: URL(fileURLWithPath: path))
        run = try verify()
        #expect(run.status == 23 && run.stderr.contains("hash tree differs"), "\(run.status) \(run.stderr)")
    }

    func parseHexSalt(_ text: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            guard let byte = UInt8(text[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        return bytes
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
        // status checks what boot does (the tree top), unless --full.
        func imageOfA(_ args: [String]) throws -> [String: Any] {
            try Tools.statusImage(try slotctl(["--json", "status"] + args).stdout, slot: 0)
        }
        let cheap = try imageOfA([]), full = try imageOfA(["--full"])
        #expect(cheap["verified"] as? Bool == true && cheap["payload_check"] as? String == "verity_root", "\(cheap)")
        #expect(full["verified"] as? Bool == false && full["status"] as? String == "digest_mismatch", "\(full)")
        try flip(slotStart + 12_345)
        // A changed lower tree block: boot's top-block check passes, dm-verity would fail
        // that block at run time; verify rebuilds the whole tree and refuses.
        try flip(treeTop + 4096 + 10)
        #expect(try slotctl(["verify", "a"]).status == 23)
        try flip(treeTop + 4096 + 10)
        #expect(try slotctl(["verify", "a"]).status == 0)
        // A changed top tree block: boot refuses the slot.
        try flip(treeTop + 7)
        #expect(try imageOfA([])["status"] as? String == "digest_mismatch")
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
