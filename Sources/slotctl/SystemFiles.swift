#if canImport(Glibc)
import Glibc
#endif
import SlotCrypto
import SlotStorage

/// Small file helpers for the CLI's own files (config, booted-slot record, kernel
/// command line). Plain libc: the boot path carries no Foundation.
enum SystemFiles {
    /// The whole file as text, or nil if it does not exist. Every file read here (the
    /// config, the booted record, the kernel command line) decides defaults or which
    /// slot is confirmed, so it must pass `TrustedFiles`' rule; a refusal is code 64.
    static func readText(_ path: String) throws(CLIError) -> String? {
        do { return try TrustedFiles.read(path).map { String(decoding: $0, as: UTF8.self) } } catch {
            throw CLIError(.usage, error.message)
        }
    }

    /// Replaces `path` with `text` power-cut safely (SmallFiles.replace). Creates the
    /// directory (mode 0755) if it is missing.
    static func writeAtomically(_ path: String, _ text: String) throws(CLIError) {
        let directory = SmallFiles.parentDirectory(path)
        if access(directory, F_OK) != 0 { makeDirectories(directory) }
        do { try SmallFiles.replace(path, with: Array(text.utf8), mode: 0o644) } catch {
            throw CLIError(.ioError, error.description)
        }
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

    private static func makeDirectories(_ path: String) {
        let parent = SmallFiles.parentDirectory(path)
        if parent != path, access(parent, F_OK) != 0 { makeDirectories(parent) }
        mkdir(path, 0o755)
    }
}
