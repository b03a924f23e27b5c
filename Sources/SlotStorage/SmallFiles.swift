#if canImport(Glibc)
import Glibc
#endif

/// Small whole files that must never be seen half-written: the booted-slot record, the
/// config file, the file counter store. One implementation of the power-cut-safe
/// replace (temp file, fsync, rename, fsync of the directory) for every caller.
public enum SmallFiles {
    /// The whole file, or nil if it does not exist. Refuses files over `limit` bytes, and
    /// anything but a regular file (opened without blocking, so a FIFO cannot hang it),
    /// unless `allowStreams`: then a FIFO or pipe is read to its end (for `sign --key`
    /// on a build host; never on the boot path).
    public static func read(_ path: String, limit: Int, allowStreams: Bool = false) throws(StorageError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw StorageError(.open, path: path, detail: "cannot open: \(errnoText())")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw StorageError(.open, path: path, detail: "cannot stat: \(errnoText())") }
        let type = info.st_mode & S_IFMT
        if allowStreams && type == S_IFIFO {
            blockingFromNowOn(fd)
        } else if type != S_IFREG {
            throw StorageError(.notADisk, path: path, detail: "is \(FileBlockStore.typeName(type)), not a regular file")
        }
        do { return try readAll(fd, limit: limit) } catch {
            switch error {
            case .read(let code):
                throw StorageError(.read, path: path, detail: "cannot read: \(String(cString: strerror(code)))")
            case .tooLarge:
                throw StorageError(.read, path: path, detail: "larger than \(limit) bytes")
            }
        }
    }

    /// Why `readAll` stopped: read(2) failed with this errno, or the file passed the limit.
    public enum ReadFailure: Error {
        case read(Int32)
        case tooLarge
    }

    /// Everything left to read from an open descriptor, refusing more than `limit` bytes.
    /// The one read loop for small whole files: this type's `read` and the trusted-file
    /// reader (SlotCrypto's TrustedFiles), which open the file each by their own rule.
    public static func readAll(_ fd: Int32, limit: Int) throws(ReadFailure) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let got = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if got < 0 {
                if errno == EINTR { continue }
                throw .read(errno)
            }
            if got == 0 { return bytes }
            bytes += chunk[0..<got]
            if bytes.count > limit { throw .tooLarge }
        }
    }

    /// Replaces `path` with `bytes` so that a cut leaves the whole old or the whole new file.
    public static func replace(_ path: String, with bytes: [UInt8], mode: mode_t) throws(StorageError) {
        let temp = path + ".tmp"
        // A leftover temp file (a cut before the rename) is removed, and the new one is
        // created exclusively and never through a symbolic link: whatever sits at the
        // temp path, slotctl writes only a file it just made (spec/security.md).
        unlink(temp)
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw StorageError(.write, path: temp, detail: "cannot create: \(errnoText())") }
        var written = 0
        while written < bytes.count {
            let put = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if put < 0 && errno == EINTR { continue }
            if put <= 0 { break }
            written += put
        }
        let synced = written == bytes.count ? fsync(fd) : -1
        close(fd)
        guard written == bytes.count, synced == 0 else {
            let text = errnoText()
            unlink(temp)
            throw StorageError(.write, path: temp, detail: "cannot write: \(text)")
        }
        guard rename(temp, path) == 0 else {
            let text = errnoText()
            unlink(temp)
            throw StorageError(.write, path: path, detail: "cannot rename into place: \(text)")
        }
        let dirfd = open(parentDirectory(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd >= 0 { fsync(dirfd); close(dirfd) }
    }

    /// Clears O_NONBLOCK on a descriptor opened with it only so that the open itself
    /// could not block on a FIFO: from here on reads and writes block as usual.
    public static func blockingFromNowOn(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
    }

    /// The lines of a small text file, each without its LF or CRLF end (Swift takes
    /// "\r\n" as one Character, so splitting on "\n" alone would see a CRLF file as one
    /// line). Empty lines are dropped. (The config parser keeps its own copy, with empty
    /// lines for numbering: `make fuzz` compiles it beside SlotCore alone.)
    public static func lines(_ text: String) -> [Substring] {
        text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" })
    }

    public static func parentDirectory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
