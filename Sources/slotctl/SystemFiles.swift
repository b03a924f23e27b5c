#if canImport(Glibc)
import Glibc
#endif

/// Small file helpers for the CLI's own files (config, booted-slot record, kernel
/// command line). Plain libc: the boot path carries no Foundation.
enum SystemFiles {
    /// The whole file as text, or nil if it does not exist. Refuses files over `limit`.
    static func readText(_ path: String, limit: Int = 64 * 1024) throws(CLIError) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw CLIError(.usage, "\(path): cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let got = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if got < 0 {
                if errno == EINTR { continue }
                throw CLIError(.usage, "\(path): cannot read: \(String(cString: strerror(errno)))")
            }
            if got == 0 { break }
            bytes += chunk[0..<got]
            if bytes.count > limit { throw CLIError(.usage, "\(path): larger than \(limit) bytes") }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Replaces `path` with `text` power-cut safely: temp file, fsync, rename, fsync of
    /// the directory. Creates the directory (mode 0755) if it is missing.
    static func writeAtomically(_ path: String, _ text: String) throws(CLIError) {
        let directory = parentDirectory(path)
        if access(directory, F_OK) != 0 { makeDirectories(directory) }
        let temp = path + ".tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CLIError(.ioError, "\(temp): cannot create: \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == bytes.count, synced == 0 else {
            unlink(temp)
            throw CLIError(.ioError, "\(temp): cannot write: \(String(cString: strerror(errno)))")
        }
        guard rename(temp, path) == 0 else {
            throw CLIError(.ioError, "\(path): cannot rename into place: \(String(cString: strerror(errno)))")
        }
        let dirfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd >= 0 { fsync(dirfd); close(dirfd) }
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    static func remove(_ path: String) { unlink(path) }

    /// Creates an image file of `size` bytes, sparse (emptied first when `truncate`).
    static func createImage(_ path: String, size: UInt64, truncate: Bool = false) throws(CLIError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0o644)
        guard fd >= 0, ftruncate(fd, off_t(size)) == 0 else {
            let text = String(cString: strerror(errno))
            if fd >= 0 { close(fd) }
            throw CLIError(.ioError, "\(path): cannot create image of \(size) bytes: \(text)")
        }
        close(fd)
    }

    static func parentDirectory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    private static func makeDirectories(_ path: String) {
        let parent = parentDirectory(path)
        if parent != path, access(parent, F_OK) != 0 { makeDirectories(parent) }
        mkdir(path, 0o755)
    }
}
