import SlotCore
import SlotCrypto
import SlotStorage

/// Builds dm-verity hash trees identical to `veritysetup format --no-superblock`
/// (spec/image-format.md): SHA-256, salt prepended, levels top first.
public enum VerityBuilder {
    /// Hashes data blocks [0, dataBlocks) of `source` and writes the tree at
    /// `treeOffset` of `target`; returns the root hash. One pass over the data through
    /// one buffer; the tree is built as it goes (VerityTreeWriter), so memory does not
    /// grow with the payload.
    public static func build(source: BlockStore, target: BlockStore, dataBlocks: UInt64, dataBlockSize: UInt32,
                             hashBlockSize: UInt32, salt: [UInt8], treeOffset: UInt64) throws(FlowError) -> [UInt8] {
        let tree = try VerityTreeWriter(target: target, dataBlocks: dataBlocks, dataBlockSize: dataBlockSize,
                                        hashBlockSize: hashBlockSize, salt: salt, treeOffset: treeOffset)
        let blockBytes = UInt64(dataBlockSize)
        let chunkBlocks = UInt64(max(1, PayloadHasher.chunkSize / Int(dataBlockSize)))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(chunkBlocks * blockBytes), alignment: 4096)
        defer { buffer.deallocate() }
        do throws(StorageError) {
            var done: UInt64 = 0
            while done < dataBlocks {
                let count = min(chunkBlocks, dataBlocks - done)
                let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(count * blockBytes)])
                try source.read(into: chunk, at: done * blockBytes)
                try tree.append(UnsafeRawBufferPointer(chunk))
                done += count
            }
            return try tree.finish()
        } catch {
            throw FlowError.io(error, doing: "verity: building the hash tree")
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
        // Data and hash blocks may differ in size (the descriptor allows it, as veritysetup
        // does): level 0 hashes data blocks, the levels above hash hash blocks.
        let root = try build(source: region, target: compare, dataBlocks: v.dataBlocks, dataBlockSize: v.dataBlockSize,
                             hashBlockSize: v.hashBlockSize, salt: salt, treeOffset: v.treeOffset)
        if let mismatch = compare.firstMismatch {
            return "dm-verity hash tree differs from the payload's at byte \(mismatch - v.treeOffset) of the tree"
        }
        let expected = (0..<32).map { v.rootHash[$0] }
        guard constantTimeEqual(root.span, expected.span) else {
            return "dm-verity root hash is \(root.hexText), the descriptor says \(expected.hexText)"
        }
        return nil
    }

    /// SHA-256(salt || top block): the root hash `veritysetup` prints and `open` takes,
    /// with the salt taken where the descriptor holds it (no copy on the boot path).
    public static func rootHash(topBlock: [UInt8], of verity: VerityParameters) -> [UInt8] {
        let stream = SHA256Stream()
        let salt = verity.salt.span
        salt.withUnsafeBytes { stream.update(UnsafeRawBufferPointer(rebasing: $0[0..<Int(verity.saltSize)])) }
        topBlock.withUnsafeBytes { stream.update($0) }
        return stream.finish()
    }
}

/// A dm-verity tree built while its data blocks arrive, in one pass over them: each data
/// block's digest goes into level 0's open hash block; a hash block is written as soon
/// as it is full, and its digest goes into the open block of the level above. Memory is
/// one hash block per level whatever the payload size (holding level 0 would be 1/128
/// of it), and the data is never read twice: `sign` feeds the payload as it copies it.
/// Each level's blocks are written once, in order, so the target may be a CompareStore.
public final class VerityTreeWriter {
    private let target: BlockStore
    private let geometry: VerityGeometry
    private let dataBlocks: UInt64
    private let dataBlockSize: Int
    private let hashBlockSize: Int
    private let digestsPerHashBlock: Int
    private let treeOffset: UInt64
    private let hasher: SaltedBlockHasher
    /// The hash block being filled on each level, level 0 first, zeros past its digests
    /// (the padding veritysetup leaves in a level's last block).
    private let openBlocks: UnsafeMutableRawBufferPointer
    private var digestsInOpenBlock: [Int]
    private var blocksWritten: [UInt64]
    private var dataBlocksHashed: UInt64 = 0

    /// A tree for `dataBlocks` data blocks, to be written at `treeOffset` of `target`.
    public init(target: BlockStore, dataBlocks: UInt64, dataBlockSize: UInt32, hashBlockSize: UInt32, salt: [UInt8],
                treeOffset: UInt64) throws(FlowError) {
        guard dataBlockSize > 0, let geometry = VerityGeometry(dataBlocks: dataBlocks, hashBlockSize: hashBlockSize) else {
            throw FlowError(.usage, "verity: no tree for \(dataBlocks) data blocks with \(hashBlockSize)-byte hash blocks")
        }
        self.target = target
        self.geometry = geometry
        self.dataBlocks = dataBlocks
        self.dataBlockSize = Int(dataBlockSize)
        self.hashBlockSize = Int(hashBlockSize)
        digestsPerHashBlock = Int(hashBlockSize) / Int(VerityGeometry.digestSize)
        self.treeOffset = treeOffset
        hasher = SaltedBlockHasher(salt: salt)
        openBlocks = UnsafeMutableRawBufferPointer.allocate(byteCount: geometry.levelCount * Int(hashBlockSize), alignment: 4096)
        openBlocks.initializeMemory(as: UInt8.self, repeating: 0)
        digestsInOpenBlock = [Int](repeating: 0, count: geometry.levelCount)
        blocksWritten = [UInt64](repeating: 0, count: geometry.levelCount)
    }

    deinit { openBlocks.deallocate() }

    private var topLevel: Int { geometry.levelCount - 1 }

    private func openBlock(_ level: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: openBlocks[level * hashBlockSize..<(level + 1) * hashBlockSize])
    }

    /// Hashes the next data blocks: `data` is a whole number of them.
    public func append(_ data: UnsafeRawBufferPointer) throws(StorageError) {
        precondition(data.count % dataBlockSize == 0, "VerityTreeWriter.append: not a whole number of data blocks")
        let count = UInt64(data.count / dataBlockSize)
        precondition(count <= dataBlocks - dataBlocksHashed, "VerityTreeWriter.append: more data blocks than the tree covers")
        var next = 0
        while next < data.count {
            // As many blocks as level 0's open block has room for (the top level never
            // fills past its one block: the count check above sees to that).
            let fitting = min(digestsPerHashBlock - digestsInOpenBlock[0], (data.count - next) / dataBlockSize)
            let end = next + fitting * dataBlockSize
            hasher.digest(eachBlockOf: UnsafeRawBufferPointer(rebasing: data[next..<end]), blockSize: dataBlockSize,
                          into: openBlocks.baseAddress! + digestsInOpenBlock[0] * Int(VerityGeometry.digestSize))
            digestsInOpenBlock[0] += fitting
            next = end
            if digestsInOpenBlock[0] == digestsPerHashBlock && topLevel > 0 { try closeBlock(level: 0) }
        }
        dataBlocksHashed += count
    }

    /// Writes the last, partly filled block of each level, then the top block; returns
    /// the root hash. Every data block must have been appended.
    public func finish() throws(StorageError) -> [UInt8] {
        precondition(dataBlocksHashed == dataBlocks, "VerityTreeWriter.finish: \(dataBlocksHashed) of \(dataBlocks) data blocks appended")
        // Closing a level's last block can fill (and close) the one above: the condition
        // is evaluated as each level comes.
        for level in 0..<topLevel where digestsInOpenBlock[level] > 0 { try closeBlock(level: level) }
        let top = UnsafeRawBufferPointer(openBlock(topLevel))
        try target.write(top, at: treeOffset + geometry.levelOffset(topLevel))
        blocksWritten[topLevel] += 1
        for level in 0..<geometry.levelCount {
            assert(blocksWritten[level] == geometry.blocks[level], "VerityTreeWriter: level \(level) has the wrong block count")
        }
        var root = [UInt8](repeating: 0, count: Int(VerityGeometry.digestSize))
        root.withUnsafeMutableBytes { hasher.digest(eachBlockOf: top, blockSize: hashBlockSize, into: $0.baseAddress!) }
        return root
    }

    /// Writes `level`'s open block where the next block of that level goes, adds its
    /// digest to the level above, and starts a new, zeroed block.
    private func closeBlock(level: Int) throws(StorageError) {
        let block = openBlock(level)
        let position = treeOffset + geometry.levelOffset(level) + blocksWritten[level] * UInt64(hashBlockSize)
        try target.write(UnsafeRawBufferPointer(block), at: position)
        blocksWritten[level] += 1
        let above = level + 1
        hasher.digest(eachBlockOf: UnsafeRawBufferPointer(block), blockSize: hashBlockSize,
                      into: openBlocks.baseAddress! + above * hashBlockSize + digestsInOpenBlock[above] * Int(VerityGeometry.digestSize))
        digestsInOpenBlock[above] += 1
        block.initializeMemory(as: UInt8.self, repeating: 0)
        digestsInOpenBlock[level] = 0
        if above < topLevel && digestsInOpenBlock[above] == digestsPerHashBlock { try closeBlock(level: above) }
    }
}
