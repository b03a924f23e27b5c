/// Storage adapters the flows build on: a window into a store, and a store that
/// compares instead of writing.

/// A view of a store shifted by `offset` (a slot partition inside a disk).
public final class OffsetStore: BlockStore {
    public let base: BlockStore
    public let offset: UInt64
    public init(base: BlockStore, offset: UInt64) {
        self.base = base
        self.offset = offset
    }
    public var sectorSize: Int { base.sectorSize }
    public var byteCount: UInt64 { base.byteCount - offset }
    public func read(into buffer: UnsafeMutableRawBufferPointer, at position: UInt64) throws(StorageError) {
        try base.read(into: buffer, at: offset + position)
    }
    public func write(_ bytes: UnsafeRawBufferPointer, at position: UInt64) throws(StorageError) {
        try base.write(bytes, at: offset + position)
    }
    public func flush() throws(StorageError) { try base.flush() }
}

/// A store whose writes compare instead of write: used to check a stored tree against
/// the one the payload gives, with the very code that builds trees.
public final class CompareStore: BlockStore {
    public let base: BlockStore
    /// The lowest byte offset where a write differed from what the base holds.
    public private(set) var firstMismatch: UInt64? = nil
    public init(base: BlockStore) { self.base = base }
    public var sectorSize: Int { base.sectorSize }
    public var byteCount: UInt64 { base.byteCount }
    public func read(into buffer: UnsafeMutableRawBufferPointer, at position: UInt64) throws(StorageError) {
        try base.read(into: buffer, at: position)
    }
    public func write(_ bytes: UnsafeRawBufferPointer, at position: UInt64) throws(StorageError) {
        let stored = try base.readBytes(count: bytes.count, at: position)
        for i in 0..<bytes.count where stored[i] != bytes[i] {
            if firstMismatch == nil || position + UInt64(i) < firstMismatch! { firstMismatch = position + UInt64(i) }
            break
        }
    }
    public func flush() throws(StorageError) {}
}
