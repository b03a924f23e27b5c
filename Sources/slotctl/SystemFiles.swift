import CSystem
import SlotCore
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
        SmallFiles.makeDirectories(SmallFiles.parentDirectory(path))
        do { try SmallFiles.replace(path, with: Array(text.utf8), mode: 0o644) } catch {
            throw CLIError(.ioError, error.description)
        }
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    static func remove(_ path: String) { unlink(path) }

    /// Creates (or empties, with `truncate`) the regular file `path` and sizes it to
    /// `size` bytes, sparse. `notSameAs`: the file must not be that one (sign's payload):
    /// checked on the opened file, before a byte of it changes, so a symbolic or hard
    /// link to the payload is refused instead of emptied.
    static func createImage(_ path: String, size: UInt64, truncate: Bool = false,
                            notSameAs protected: (FileIdentity, String)? = nil) throws(CLIError) {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NONBLOCK, mode: 0o644) } catch {
            throw CLIError(.ioError, "\(path): cannot create image of \(size) bytes: \(error)")
        }
        guard let info = try? fd.status(), info.st_mode & mode_t(S_IFMT) == mode_t(S_IFREG) else {
            throw CLIError(.usage, "\(path): not a regular file; an image is created as a file")
        }
        if let (identity, name) = protected, FileIdentity(info).sameFile(as: identity) {
            throw CLIError(.usage, "\(path) is \(name) itself (the same file); nothing was written")
        }
        do {
            if truncate { try fd.resize(to: 0) }
            try fd.resize(to: size)
        } catch {
            throw CLIError(.ioError, "\(path): cannot create image of \(size) bytes: \(error)")
        }
    }

    /// The size of `path` in bytes, nil when it cannot be examined.
    static func fileSize(_ path: String) -> UInt64? {
        var info = stat()
        return stat(path, &info) == 0 ? UInt64(info.st_size) : nil
    }

    enum FileKind { case regular, blockDevice, other }

    /// What `path` is (symbolic links followed), nil when nothing is there.
    static func fileKind(_ path: String) -> FileKind? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        switch info.st_mode & mode_t(S_IFMT) {
        case mode_t(S_IFREG): return .regular
        case mode_t(S_IFBLK): return .blockDevice
        default: return .other
        }
    }
}
