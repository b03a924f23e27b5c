/// dm-verity hash tree geometry, as `veritysetup format` lays it out (format 1, no
/// superblock): level 0 holds one digest per data block, each level above one digest per
/// block of the level below, until a level fits one block; levels are stored top first,
/// each block zero-padded. The root hash is SHA-256(salt || top block).
public struct VerityGeometry: Sendable {
    public static let maxLevels = 16
    public static let digestSize: UInt64 = 32
    /// Blocks per level; level 0 is the lowest (digests of data blocks).
    public private(set) var blocks = InlineArray<16, UInt64>(repeating: 0)
    public private(set) var levelCount = 0
    public let hashBlockSize: UInt32

    /// nil for fewer than 2 data blocks (veritysetup makes no tree for one block; slotctl
    /// pads to two instead of special-casing it) or a hash block holding under 2 digests.
    public init?(dataBlocks: UInt64, hashBlockSize: UInt32) {
        guard dataBlocks >= 2, hashBlockSize >= 64 else { return nil }
        self.hashBlockSize = hashBlockSize
        let perBlock = UInt64(hashBlockSize) / VerityGeometry.digestSize
        var count = dataBlocks
        while count > 1 && levelCount < VerityGeometry.maxLevels {
            count = count / perBlock + (count % perBlock == 0 ? 0 : 1)
            blocks[levelCount] = count
            levelCount += 1
        }
        guard count == 1 else { return nil }
    }

    public var treeBlocks: UInt64 {
        var total: UInt64 = 0
        for level in 0..<levelCount { total += blocks[level] }
        return total
    }

    public var treeBytes: UInt64 { treeBlocks * UInt64(hashBlockSize) }

    /// Where `level` starts, in bytes from the tree's start (the top level is first).
    public func levelOffset(_ level: Int) -> UInt64 {
        var offset: UInt64 = 0
        var above = levelCount - 1
        while above > level {
            offset += blocks[above]
            above -= 1
        }
        return offset * UInt64(hashBlockSize)
    }
}
