import CSystem

/// The one place slotctl talks to the kernel about files, in swift-system's manner: every
/// call is retried on EINTR, reads and writes move all their bytes or say why not, a
/// descriptor closes itself, and errno stays a value (`Errno`) until a message prints it.
/// Everything above SlotStorage sees `FileDescriptor`, never a raw descriptor to close.

/// An errno value, kept as a value so callers can act on it (ENOENT, ELOOP, EWOULDBLOCK)
/// and turned into text only when it is shown.
public struct Errno: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: Int32

    public init(_ code: Int32) { self.code = code }

    /// errno as the last failed call left it.
    public static var current: Errno { Errno(slotctl_errno()) }

    public var description: String {
        guard let text = strerror(code) else { return "slotctl_errno() \(code)" }
        return String(decoding: UnsafeRawBufferPointer(start: text, count: strlen(text)), as: UTF8.self)
    }
}

/// An open file descriptor. Owned ones close when the last reference goes; the standard
/// streams are borrowed and never closed.
public final class FileDescriptor: Sendable {
    public let raw: Int32
    private let owned: Bool

    /// Takes ownership of `raw`, an open descriptor.
    public init(adopting raw: Int32) {
        self.raw = raw
        owned = true
    }

    private init(borrowing raw: Int32) {
        self.raw = raw
        owned = false
    }

    public static let standardInput = FileDescriptor(borrowing: 0)
    public static let standardOutput = FileDescriptor(borrowing: 1)
    public static let standardError = FileDescriptor(borrowing: 2)

    deinit { if owned { close(raw) } }

    /// open(2) (openat(2) with `directory`), retried on EINTR.
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0,
                            in directory: Int32 = AT_FDCWD) throws(Errno) -> FileDescriptor {
        while true {
            // withCString: a native String lends its own NUL-terminated bytes (an implicit
            // conversion would copy them into a new array first).
            let fd = path.withCString { slotctl_openat(directory, $0, flags, mode) }
            if fd >= 0 { return FileDescriptor(adopting: fd) }
            if slotctl_errno() != EINTR { throw .current }
        }
    }

    /// A TCP socket (AF_INET, SOCK_STREAM).
    public static func tcpSocket() throws(Errno) -> FileDescriptor {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw .current }
        return FileDescriptor(adopting: fd)
    }

    /// fstat(2).
    public func status() throws(Errno) -> stat {
        var info = stat()
        guard fstat(raw, &info) == 0 else { throw .current }
        return info
    }

    /// Clears O_NONBLOCK, set for an open that must not block on a FIFO: from here on
    /// reads and writes block as usual.
    public func blockFromNowOn() {
        _ = slotctl_fcntl_int(raw, F_SETFL, slotctl_fcntl(raw, F_GETFL) & ~O_NONBLOCK)
    }

    /// One read(2), retried on EINTR; 0 at the end. EAGAIN is thrown (non-blocking).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        while true {
            let got = systemRead(raw, buffer.baseAddress, buffer.count)
            if got >= 0 { return got }
            if slotctl_errno() != EINTR { throw .current }
        }
    }

    /// Fills `buffer` from `offset` with pread(2); returns how many bytes came before the
    /// end of the file (fewer than asked only there).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(Errno) -> Int {
        var done = 0
        while done < buffer.count {
            let got = pread(raw, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if got < 0 {
                if slotctl_errno() == EINTR { continue }
                throw .current
            }
            if got == 0 { break }
            done += got
        }
        return done
    }

    /// Everything left to read, refusing more than `limit` bytes (`nil` then). Reads into
    /// one buffer sized by fstat for a regular file (one byte more, to see the end), grown
    /// only if the file grows meanwhile or is a stream: a small file costs one allocation.
    /// A size of 0 says nothing (/proc/cmdline is a regular file of size 0 with text in
    /// it), so it starts at 4 KiB like a stream.
    public func readToEnd(limit requested: Int) throws(Errno) -> [UInt8]? {
        let limit = min(max(requested, 0), Int.max - 1)  // so that limit + 1 is a count
        var expected = 4096
        if let info = try? status(), info.st_mode & mode_t(S_IFMT) == mode_t(S_IFREG), info.st_size > 0 {
            expected = Int(clamping: info.st_size)
        }
        var bytes = [UInt8](repeating: 0, count: min(max(expected, 0), limit) + 1)
        var filled = 0
        while true {
            if filled == bytes.count {
                bytes.append(contentsOf: repeatElement(0, count: min(bytes.count, limit + 1 - filled)))
            }
            var failure: Errno? = nil
            let got = bytes.withUnsafeMutableBytes { buffer in
                do throws(Errno) { return try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...])) } catch {
                    failure = error
                    return 0
                }
            }
            if let failure { throw failure }
            if got == 0 {
                bytes.removeLast(bytes.count - filled)
                return bytes
            }
            filled += got
            if filled > limit { return nil }
        }
    }

    /// Writes all of `bytes` (write(2), or pwrite(2) at `offset`), retried on EINTR and
    /// after short writes.
    public func writeAll(_ bytes: UnsafeRawBufferPointer, at offset: UInt64? = nil) throws(Errno) {
        var done = 0
        while done < bytes.count {
            let put = offset.map { pwrite(raw, bytes.baseAddress! + done, bytes.count - done, off_t($0) + off_t(done)) }
                ?? systemWrite(raw, bytes.baseAddress! + done, bytes.count - done)
            if put < 0 {
                if slotctl_errno() == EINTR { continue }
                throw .current
            }
            if put == 0 { throw Errno(EIO) }
            done += put
        }
    }

    public func writeAll(_ bytes: [UInt8]) throws(Errno) {
        var failure: Errno? = nil
        bytes.withUnsafeBytes { buffer in
            do throws(Errno) { try writeAll(buffer) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Sends all of `bytes` on a socket without raising SIGPIPE.
    public func sendAll(_ bytes: [UInt8]) throws(Errno) {
        var done = 0
        while done < bytes.count {
            let put = bytes.withUnsafeBytes { send(raw, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL)) }
            if put < 0 {
                if slotctl_errno() == EINTR { continue }
                throw .current
            }
            done += put
        }
    }

    /// fsync(2).
    public func sync() throws(Errno) {
        while fsync(raw) != 0 {
            if slotctl_errno() != EINTR { throw .current }
        }
    }

    /// ftruncate(2).
    public func resize(to size: UInt64) throws(Errno) {
        while ftruncate(raw, off_t(size)) != 0 {
            if slotctl_errno() != EINTR { throw .current }
        }
    }

    /// Waits up to `milliseconds` for input; false on timeout. EINTR waits again.
    public func waitForInput(milliseconds: Int32) throws(Errno) -> Bool {
        var poller = pollfd(fd: raw, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&poller, 1, milliseconds)
            if ready >= 0 { return ready > 0 }
            if slotctl_errno() != EINTR { throw .current }
        }
    }

    /// flock(2) without waiting: false when another open file holds a conflicting lock.
    public func tryLock(exclusive: Bool) throws(Errno) -> Bool {
        while flock(raw, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0 {
            if slotctl_errno() == EWOULDBLOCK { return false }
            if slotctl_errno() != EINTR { throw .current }
        }
        return true
    }

    /// A new descriptor for the same open file, for a C API that takes ownership of the
    /// one it is given (fdopendir); this one still closes itself.
    public func duplicate() throws(Errno) -> Int32 {
        let copy = dup(raw)
        guard copy >= 0 else { throw .current }
        return copy
    }
}

// read(2) and write(2) under names FileDescriptor's own `read` methods do not shadow.
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int { read(fd, buffer, count) }
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int { write(fd, buffer, count) }
