import CSystem

/// Small whole files that must never be seen half-written: the booted-slot record, the
/// config file, the file counter store. One implementation of the power-cut-safe
/// replace (temp file, fsync, rename, fsync of the directory) for every caller.
public enum SmallFiles {
    /// The whole file, or nil if it does not exist. Refuses files over `limit` bytes, and
    /// anything but a regular file (opened without blocking, so a FIFO cannot hang it),
    /// unless `allowStreams`: then a FIFO or pipe is read to its end (for `sign --key`
    /// on a build host; never on the boot path).
    public static func read(_ path: String, limit: Int, allowStreams: Bool = false) throws(StorageError) -> [UInt8]? {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) } catch {
            if error.code == ENOENT { return nil }
            throw StorageError(.open, path: path, detail: "cannot open: \(error)")
        }
        let info: stat
        do { info = try fd.status() } catch { throw StorageError(.open, path: path, detail: "cannot stat: \(error)") }
        let type = info.st_mode & mode_t(S_IFMT)
        if allowStreams && type == mode_t(S_IFIFO) {
            fd.blockFromNowOn()
        } else if type != mode_t(S_IFREG) {
            throw StorageError(.notADisk, path: path, detail: "is \(FileBlockStore.typeName(type)), not a regular file")
        }
        let bytes: [UInt8]?
        do { bytes = try fd.readToEnd(limit: limit) } catch {
            throw StorageError(.read, path: path, detail: "cannot read: \(error)")
        }
        guard let bytes else { throw StorageError(.read, path: path, detail: "larger than \(limit) bytes") }
        return bytes
    }

    /// Replaces `path` with `bytes` so that a cut leaves the whole old or the whole new file.
    public static func replace(_ path: String, with bytes: [UInt8], mode: mode_t) throws(StorageError) {
        let temp = path + ".tmp"
        // A leftover temp file (a cut before the rename) is removed, and the new one is
        // created exclusively and never through a symbolic link: whatever sits at the
        // temp path, slotctl writes only a file it just made (spec/security.md).
        unlink(temp)
        do { // the temp file is closed at the end of this block, before the rename
            let fd: FileDescriptor
            do { fd = try FileDescriptor.open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode: mode) } catch {
                throw StorageError(.write, path: temp, detail: "cannot create: \(error)")
            }
            do {
                try fd.writeAll(bytes)
                try fd.sync()
            } catch {
                unlink(temp)
                throw StorageError(.write, path: temp, detail: "cannot write: \(error)")
            }
        }
        guard rename(temp, path) == 0 else {
            let error = Errno.current
            unlink(temp)
            throw StorageError(.write, path: path, detail: "cannot rename into place: \(error)")
        }
        // The rename is durable once the directory is.
        try? FileDescriptor.open(parentDirectory(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC).sync()
    }

    /// The lines of a small text file, each without its LF or CRLF end (Swift takes
    /// "\r\n" as one Character, so splitting on "\n" alone would see a CRLF file as one
    /// line). Empty lines are dropped. (The config parser keeps its own copy, with empty
    /// lines for numbering: `make fuzz` compiles it beside SlotCore alone.)
    public static func lines(_ text: String) -> [Substring] {
        text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" })
    }

    /// Creates `path` and any missing parents (mode 0755), for the files slotctl keeps
    /// under /run: the booted record, the measurement log. Best effort: the open that
    /// follows says what went wrong.
    public static func makeDirectories(_ path: String) {
        guard access(path, F_OK) != 0 else { return }
        let parent = parentDirectory(path)
        if parent != path { makeDirectories(parent) }
        mkdir(path, 0o755)
    }

    public static func parentDirectory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}

/// The same lines of a small file's bytes, as slices of them (no array or string made):
/// each ends at LF, one CR before it is dropped, and empty lines are skipped. Used by the
/// counter file and the Ed25519 PEM reader, on the boot path.
public struct ByteLines: Sequence, IteratorProtocol {
    private let bytes: [UInt8]
    private var start = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public mutating func next() -> ArraySlice<UInt8>? {
        while start < bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != 0x0A { end += 1 }
            var contentEnd = end
            if contentEnd > start && bytes[contentEnd - 1] == 0x0D { contentEnd -= 1 }
            let line = bytes[start..<contentEnd]
            start = end + 1
            if !line.isEmpty { return line }
        }
        return nil
    }
}
