import SlotCore
import SlotCrypto
import SlotStorage

/// Hashes byte ranges of a store through one fixed, reused buffer: memory does not grow
/// with the payload. One per process is enough. The buffer and the hash context are made
/// at the first use: a boot that checks only signatures and verity tree tops needs neither.
public final class PayloadHasher {
    public static let chunkSize = 1 << 20
    private var storage: UnsafeMutableRawBufferPointer? = nil
    private var buffer: UnsafeMutableRawBufferPointer {
        if let storage { return storage }
        let made = UnsafeMutableRawBufferPointer.allocate(byteCount: PayloadHasher.chunkSize, alignment: 4096)
        storage = made
        return made
    }
    private lazy var sha = SHA256Stream()
    /// Called after each chunk read, copied or received, with the bytes done so far in
    /// the current call: how `install` reports progress (InstallSteps). Nil: no reports.
    public var onChunk: ((UInt64) -> Void)? = nil

    public init() {}

    deinit { storage?.deallocate() }

    /// SHA-256 of `count` bytes at `offset`.
    public func digest(_ store: BlockStore, offset: UInt64, count: UInt64) throws(StorageError) -> [UInt8] {
        sha.reset() // a read error in an earlier use must not leak into this digest
        var done: UInt64 = 0
        while done < count {
            let n = Int(min(UInt64(buffer.count), count - done))
            let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
            try store.read(into: chunk, at: offset + done)
            sha.update(UnsafeRawBufferPointer(chunk))
            done += UInt64(n)
            onChunk?(done)
        }
        return sha.finish()
    }

    /// Copies `count` bytes from `source` to `target` through the one buffer, hashing
    /// nothing (install verifies by reading the slot back afterwards).
    public func copyUnhashed(from source: BlockStore, sourceOffset: UInt64, to target: BlockStore, targetOffset: UInt64,
                     count: UInt64) throws(StorageError) {
        var done: UInt64 = 0
        while done < count {
            let n = Int(min(UInt64(buffer.count), count - done))
            let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
            try source.read(into: chunk, at: sourceOffset + done)
            try target.write(UnsafeRawBufferPointer(chunk), at: targetOffset + done)
            done += UInt64(n)
            onChunk?(done)
        }
    }

    /// Copies `count` bytes from a stream to `target` at `targetOffset`, hashing the first
    /// `hashed` of them; returns (bytes received, digest). Fewer bytes than `count` means
    /// the stream ended early.
    public func copyStream(from stream: ByteStream, to target: BlockStore, targetOffset: UInt64, count: UInt64,
                           hashed: UInt64) throws(StorageError) -> (received: UInt64, digest: [UInt8]) {
        sha.reset()
        var done: UInt64 = 0
        while done < count {
            let n = Int(min(UInt64(buffer.count), count - done))
            let got = try stream.readFully(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n]))
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<got])
            if done < hashed {
                sha.update(UnsafeRawBufferPointer(rebasing: chunk[0..<Int(min(UInt64(got), hashed - done))]))
            }
            try target.write(chunk, at: targetOffset + done)
            done += UInt64(got)
            onChunk?(done)
            if got < n { break }
        }
        return (done, sha.finish())
    }

    /// Copies `count` bytes from `source` at 0 to `target` at 0, then zeros up to
    /// `paddedCount`, and returns the SHA-256 of all of it: one pass, one buffer (used by
    /// `sign`). `eachChunk` sees every chunk, padding included, before the next is read,
    /// so the dm-verity tree is built from it instead of reading the payload a second
    /// time. Every chunk but the last is `chunkSize` bytes.
    public func copyAndDigest(from source: BlockStore, to target: BlockStore, count: UInt64, paddedCount: UInt64? = nil,
                              eachChunk: ((UnsafeRawBufferPointer) throws(StorageError) -> Void)? = nil) throws(StorageError) -> [UInt8] {
        sha.reset()
        let total = max(count, paddedCount ?? count)
        var done: UInt64 = 0
        while done < total {
            let n = Int(min(UInt64(buffer.count), total - done))
            let copied = done < count ? Int(min(UInt64(n), count - done)) : 0
            let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
            if copied > 0 { try source.read(into: UnsafeMutableRawBufferPointer(rebasing: chunk[0..<copied]), at: done) }
            UnsafeMutableRawBufferPointer(rebasing: chunk[copied...]).initializeMemory(as: UInt8.self, repeating: 0)
            try target.write(UnsafeRawBufferPointer(chunk), at: done)
            sha.update(UnsafeRawBufferPointer(chunk))
            try eachChunk?(UnsafeRawBufferPointer(chunk))
            done += UInt64(n)
        }
        return sha.finish()
    }
}
