/// What every flow reads and writes through: a byte-addressed device with a logical
/// sector size and a flush. Implemented by `FileBlockStore` (image files, block devices)
/// and, in tests only, by a fault-injecting store that cuts power after the N-th write.
public protocol BlockStore: AnyObject {
    /// Logical sector size in bytes (512 or 4096).
    var sectorSize: Int { get }
    /// Size in bytes.
    var byteCount: UInt64 { get }
    /// Fills `buffer` from `offset`; a short read is an error.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(StorageError)
    /// Writes all of `bytes` at `offset`.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(StorageError)
    /// Makes every write before it durable.
    func flush() throws(StorageError)
}

public struct StorageError: Error, Equatable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable { case open, read, write, flush, shortRead, geometry, readOnly, notADisk, timedOut, locked }
    public var kind: Kind
    public var path: String
    public var detail: String

    public init(_ kind: Kind, path: String, detail: String) {
        self.kind = kind
        self.path = path
        self.detail = detail
    }

    public var description: String { "\(path): \(detail)" }
}

extension BlockStore {
    /// Reads `count` bytes at `offset` into a new array (sizes are bounded by the caller).
    public func readBytes(count: Int, at offset: UInt64) throws(StorageError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var failure: StorageError? = nil
        bytes.withUnsafeMutableBytes { buffer in
            do throws(StorageError) { try read(into: buffer, at: offset) } catch { failure = error }
        }
        if let failure { throw failure }
        return bytes
    }

    public func writeBytes(_ bytes: [UInt8], at offset: UInt64) throws(StorageError) {
        var failure: StorageError? = nil
        bytes.withUnsafeBytes { buffer in
            do throws(StorageError) { try write(buffer, at: offset) } catch { failure = error }
        }
        if let failure { throw failure }
    }
}

/// A one-way byte source: `install -` reads the OTA client's stream through it.
public protocol ByteStream: AnyObject {
    var name: String { get }
    /// Reads up to `buffer.count` bytes; 0 means the stream has ended.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(StorageError) -> Int
}

extension ByteStream {
    /// Fills `buffer` completely; returns how many bytes came before the stream ended.
    public func readFully(into buffer: UnsafeMutableRawBufferPointer) throws(StorageError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
            if n == 0 { break }
            done += n
        }
        return done
    }
}

/// Reads `count` bytes at `offset` of `store` into scratch memory that lives only while
/// `body` runs (on the stack when it is small): for a sector that is parsed and dropped,
/// such as a GPT header or an image footer, with no array made for it. A free function,
/// not a method: Embedded Swift cannot specialize a generic method on an existential.
public func withBytes<Result>(of store: BlockStore, count: Int, at offset: UInt64,
                              _ body: (Span<UInt8>) -> Result) throws(StorageError) -> Result {
    try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: count) { (buffer) throws(StorageError) -> Result in
        buffer.initialize(repeating: 0)
        try store.read(into: UnsafeMutableRawBufferPointer(buffer), at: offset)
        return body(UnsafeBufferPointer(buffer).span)
    }
}
