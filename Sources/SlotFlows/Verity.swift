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

    /// SHA-256(salt || top block): the root hash `veritysetup` prints and `open` takes.
    public static func rootHash(topBlock: [UInt8], salt: [UInt8]) -> [UInt8] {
        SHA256Stream.digest(salt + topBlock)
    }
}
