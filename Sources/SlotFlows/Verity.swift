import SlotCore
import SlotCrypto
import SlotStorage

/// Builds dm-verity hash trees identical to `veritysetup format --no-superblock`
/// (spec/image-format.md): SHA-256, salt prepended, levels top first.
public enum VerityBuilder {
    /// Hashes data blocks [0, dataBlocks) of `source` and writes the tree at
    /// `treeOffset` of `target`; returns the root hash. Level 0 is held in memory
    /// (32 bytes per 4 KiB data block), the data streams through one buffer.
    public static func build(source: BlockStore, target: BlockStore, dataBlocks: UInt64, blockSize: UInt32,
                             salt: [UInt8], treeOffset: UInt64) throws(FlowError) -> [UInt8] {
        guard let geometry = VerityGeometry(dataBlocks: dataBlocks, hashBlockSize: blockSize) else {
            throw FlowError(.usage, "verity: no data blocks")
        }
        let sha = SHA256Stream()
        let block = Int(blockSize)
        var level = [UInt8](repeating: 0, count: Int(geometry.blocks[0]) * block)
        let chunkBlocks = max(1, PayloadHasher.chunkSize / block)
        var chunk = [UInt8](repeating: 0, count: chunkBlocks * block)
        var done: UInt64 = 0
        do throws(StorageError) {
            while done < dataBlocks {
                let n = Int(min(UInt64(chunkBlocks), dataBlocks - done))
                var failure: StorageError? = nil
                chunk.withUnsafeMutableBytes { raw in
                    do throws(StorageError) {
                        try source.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<n * block]), at: done * UInt64(block))
                    } catch { failure = error }
                }
                if let failure { throw failure }
                chunk.withUnsafeBytes { data in
                    level.withUnsafeMutableBytes { out in
                        salt.withUnsafeBytes { saltBytes in
                            for i in 0..<n {
                                sha.update(saltBytes)
                                sha.update(UnsafeRawBufferPointer(rebasing: data[i * block..<(i + 1) * block]))
                                sha.finish(into: out.baseAddress! + Int(done + UInt64(i)) * 32)
                            }
                        }
                    }
                }
                done += UInt64(n)
            }
            for index in 0..<geometry.levelCount {
                try target.writeBytes(level, at: treeOffset + geometry.levelOffset(index))
                guard index + 1 < geometry.levelCount else { break }
                var next = [UInt8](repeating: 0, count: Int(geometry.blocks[index + 1]) * block)
                hashBlocks(level, into: &next, blockSize: block, salt: salt, sha: sha)
                level = next
            }
        } catch {
            throw FlowError.io(error, doing: "verity: building the hash tree")
        }
        return rootHash(topBlock: level, salt: salt)
    }

    static func hashBlocks(_ level: [UInt8], into next: inout [UInt8], blockSize: Int, salt: [UInt8], sha: SHA256Stream) {
        level.withUnsafeBytes { data in
            next.withUnsafeMutableBytes { out in
                salt.withUnsafeBytes { saltBytes in
                    for i in 0..<(level.count / blockSize) {
                        sha.update(saltBytes)
                        sha.update(UnsafeRawBufferPointer(rebasing: data[i * blockSize..<(i + 1) * blockSize]))
                        sha.finish(into: out.baseAddress! + i * 32)
                    }
                }
            }
        }
    }

    /// Rebuilds the tree of a signed image (at `offset` of `store`) and compares it with
    /// the stored tree byte for byte and with the signed root hash. Returns why it differs,
    /// or nil when it matches.
    public static func check(_ store: BlockStore, offset: UInt64, descriptor: SlotDescriptor) throws(FlowError) -> String? {
        let v = descriptor.verity
        let region = OffsetStore(base: store, offset: offset)
        let compare = CompareStore(base: region)
        let salt = (0..<Int(v.saltSize)).map { v.salt[$0] }
        let root = try build(source: region, target: compare, dataBlocks: v.dataBlocks, blockSize: v.hashBlockSize,
                             salt: salt, treeOffset: v.treeOffset)
        if let mismatch = compare.firstMismatch {
            return "dm-verity hash tree differs from the payload's at byte \(mismatch - v.treeOffset) of the tree"
        }
        let expected = (0..<32).map { v.rootHash[$0] }
        guard constantTimeEqual(root.span, expected.span) else {
            return "dm-verity root hash is \(hex(root)), the descriptor says \(hex(expected))"
        }
        return nil
    }

    /// SHA-256(salt || top block): the root hash `veritysetup` prints and `open` takes.
    public static func rootHash(topBlock: [UInt8], salt: [UInt8]) -> [UInt8] {
        SHA256Stream.digest(salt + topBlock)
    }
}

/// A view of a store shifted by `offset` (a slot partition inside a disk).
final class OffsetStore: BlockStore {
    let base: BlockStore
    let offset: UInt64
    init(base: BlockStore, offset: UInt64) {
        self.base = base
        self.offset = offset
    }
    var sectorSize: Int { base.sectorSize }
    var byteCount: UInt64 { base.byteCount - offset }
    func read(into buffer: UnsafeMutableRawBufferPointer, at position: UInt64) throws(StorageError) {
        try base.read(into: buffer, at: offset + position)
    }
    func write(_ bytes: UnsafeRawBufferPointer, at position: UInt64) throws(StorageError) {
        try base.write(bytes, at: offset + position)
    }
    func flush() throws(StorageError) { try base.flush() }
}

/// A store whose writes compare instead of write: used to check a stored tree against
/// the one the payload gives, with the very code that builds trees.
final class CompareStore: BlockStore {
    let base: BlockStore
    private(set) var firstMismatch: UInt64? = nil
    init(base: BlockStore) { self.base = base }
    var sectorSize: Int { base.sectorSize }
    var byteCount: UInt64 { base.byteCount }
    func read(into buffer: UnsafeMutableRawBufferPointer, at position: UInt64) throws(StorageError) {
        try base.read(into: buffer, at: position)
    }
    func write(_ bytes: UnsafeRawBufferPointer, at position: UInt64) throws(StorageError) {
        let stored = try base.readBytes(count: bytes.count, at: position)
        for i in 0..<bytes.count where stored[i] != bytes[i] {
            if firstMismatch == nil || position + UInt64(i) < firstMismatch! { firstMismatch = position + UInt64(i) }
            break
        }
    }
    func flush() throws(StorageError) {}
}
