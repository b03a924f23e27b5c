import CSystem

/// Where slotctl takes a secret from (the TPM owner password): never the command line,
/// which every user can read in /proc. Either a file only its owner can read, or a
/// descriptor the caller opened (a pipe from a secret store, a file redirected in).
/// The secret is the bytes as given to `tpm2_changeauth`, without one trailing newline.
public enum SecretFiles {
    /// A secret longer than this is refused before it is read whole.
    public static let readLimit = 1024

    /// The secret in `path`: a regular file, not a symbolic link, owned by root or the
    /// user slotctl runs as, with no permission at all for group or others (0600, 0400).
    public static func read(path: String) throws(TrustError) -> [UInt8] {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK) } catch {
            if error.code == ELOOP { throw TrustError("\(path): refused: a symbolic link (spec/rollback.md)") }
            throw TrustError("\(path): cannot open: \(error)")
        }
        return try read(fd, shownAs: path, requireFile: true)
    }

    /// The secret on descriptor `number`, inherited from the caller: a pipe, or a file
    /// under the same rule as `read(path:)`.
    public static func read(descriptor number: Int32) throws(TrustError) -> [UInt8] {
        guard number >= 0, slotctl_fcntl(number, F_GETFD) >= 0 else {
            throw TrustError("descriptor \(number): not open (pass the secret as, say, --owner-auth-fd 3 3<FILE)")
        }
        // A duplicate, so that closing ours leaves the caller's descriptor alone.
        let copy = dup(number)
        guard copy >= 0 else { throw TrustError("descriptor \(number): cannot duplicate: \(Errno.current)") }
        return try read(FileDescriptor(adopting: copy), shownAs: "descriptor \(number)", requireFile: false)
    }

    static func read(_ fd: FileDescriptor, shownAs shown: String, requireFile: Bool) throws(TrustError) -> [UInt8] {
        let info: stat
        do { info = try fd.status() } catch { throw TrustError("\(shown): cannot stat: \(error)") }
        let type = info.st_mode & mode_t(S_IFMT)
        if type == mode_t(S_IFREG) {
            if let reason = judge(mode: info.st_mode, owner: info.st_uid, device: info.st_rdev, user: geteuid()) {
                throw TrustError("\(shown): refused: \(reason) (spec/rollback.md)")
            }
        } else if requireFile || (type != mode_t(S_IFIFO) && type != mode_t(S_IFSOCK)) {
            throw TrustError("\(shown): refused: not a regular file or a pipe")
        }
        fd.blockFromNowOn()
        let bytes: [UInt8]?
        do { bytes = try fd.readToEnd(limit: readLimit) } catch { throw TrustError("\(shown): cannot read: \(error)") }
        guard var secret = bytes else { throw TrustError("\(shown): refused: longer than \(readLimit) bytes") }
        if secret.last == UInt8(ascii: "\n") { secret.removeLast() }
        guard !secret.isEmpty else { throw TrustError("\(shown): empty; it must hold the password") }
        return secret
    }

    /// Why a secret file with this mode and owner may not be used, or nil: the rule for
    /// trusted files (owner, type, not writable by others), and no access at all for
    /// group or others, since here reading is what matters.
    public static func judge(mode: mode_t, owner: uid_t, device: dev_t, user: uid_t) -> String? {
        if let reason = TrustedFiles.judge(mode: mode, owner: owner, device: device, kind: .file, user: user) { return reason }
        guard mode & 0o077 == 0 else {
            return "readable or writable by group or others (mode 0\(String(mode & 0o7777, radix: 8)); chmod 600 it)"
        }
        return nil
    }
}
