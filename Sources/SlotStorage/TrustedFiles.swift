import CSystem

/// A file slotctl would not take its trust from, with the one-line reason.
public struct TrustError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The rule for every file slotctl takes trust or defaults from: the key directory and
/// each key in it, the config file, the booted record and the kernel command line
/// (spec/security.md, "Files slotctl trusts"). Whoever can change one of them decides
/// which keys are trusted, whether signatures are checked, or which slot gets confirmed,
/// so each must be:
/// - not a symbolic link itself (opened with O_NOFOLLOW: a link placed where a key or
///   the config belongs could point anywhere; its parents resolve normally),
/// - a regular file (a directory for the key directory), or the null device, which
///   reads as empty (`--config /dev/null`),
/// - owned by root or by the user slotctl runs as,
/// - not writable by group or others.
/// The check is made on the opened descriptor (fstat), so nothing can be swapped in
/// between the check and the read.
public enum TrustedFiles {
    public enum Kind: Sendable { case file, directory }

    /// The largest file read under this rule: configs, records and PEM keys are small.
    public static let readLimit = 64 * 1024

    /// Opens `name` (relative to `directory`, or a path) read-only under the rule, or
    /// nil if it does not exist. `shownAs` names it in messages.
    public static func open(_ name: String, _ kind: Kind, in directory: FileDescriptor? = nil,
                            shownAs: String? = nil) throws(TrustError) -> FileDescriptor? {
        let shown = shownAs ?? name
        let base = directory?.raw ?? AT_FDCWD
        // O_NONBLOCK: a FIFO planted where a file belongs must not hang the boot; it is
        // refused by the type check right after.
        let flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | (kind == .directory ? O_DIRECTORY : 0)
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(name, flags, in: base) } catch {
            if error.code == ENOENT { return nil }
            // O_DIRECTORY on a link reports ENOTDIR before O_NOFOLLOW's ELOOP.
            var link = stat()
            if error.code == ELOOP || (error.code == ENOTDIR && fstatat(base, name, &link, AT_SYMLINK_NOFOLLOW) == 0
                                       && link.st_mode & mode_t(S_IFMT) == mode_t(S_IFLNK)) {
                throw TrustError("\(shown): refused: a symbolic link (spec/security.md)")
            }
            if error.code == ENOTDIR && kind == .directory { throw TrustError("\(shown): refused: not a directory (spec/security.md)") }
            throw TrustError("\(shown): cannot open: \(error)")
        }
        let info: stat
        do { info = try fd.status() } catch { throw TrustError("\(shown): cannot stat: \(error)") }
        if let reason = judge(mode: info.st_mode, owner: info.st_uid, device: info.st_rdev, kind: kind, user: geteuid()) {
            throw TrustError("\(shown): refused: \(reason) (spec/security.md)")
        }
        return fd
    }

    /// Why a file with this mode, owner and device number may not be trusted, or nil.
    public static func judge(mode: mode_t, owner: uid_t, device: dev_t, kind: Kind, user: uid_t) -> String? {
        let type = mode & mode_t(S_IFMT)
        switch kind {
        case .directory:
            guard type == mode_t(S_IFDIR) else { return "not a directory" }
        case .file:
            if type == mode_t(S_IFCHR) && isNullDevice(device) { return nil }
            guard type == mode_t(S_IFREG) else { return "not a regular file" }
        }
        guard owner == 0 || owner == user else {
            return "owned by uid \(owner), neither root nor the user slotctl runs as (uid \(user))"
        }
        guard mode & mode_t(slotctl_S_IWGRP | slotctl_S_IWOTH) == 0 else {
            return "writable by group or others (mode 0\(String(mode & 0o7777, radix: 8)))"
        }
        return nil
    }

    /// Character device 1:3, in glibc's dev_t encoding (the makedev macro is not
    /// imported into Swift).
    static func isNullDevice(_ device: dev_t) -> Bool {
        let major = (device >> 8) & 0xFFF | (device >> 32) & ~0xFFF
        let minor = device & 0xFF | (device >> 12) & ~0xFF
        return major == 1 && minor == 3
    }

    /// The whole file under the rule, or nil if it does not exist; over `limit` bytes
    /// is refused.
    public static func read(_ name: String, in directory: FileDescriptor? = nil, shownAs: String? = nil,
                            limit: Int = readLimit) throws(TrustError) -> [UInt8]? {
        guard let fd = try open(name, .file, in: directory, shownAs: shownAs) else { return nil }
        let shown = shownAs ?? name
        let bytes: [UInt8]?
        do { bytes = try fd.readToEnd(limit: limit) } catch { throw TrustError("\(shown): cannot read: \(error)") }
        guard let bytes else { throw TrustError("\(shown): refused: larger than \(limit) bytes") }
        return bytes
    }
}
