import CSystem

/// The kernel a slot carries, read from the slot's own verified root for the kexec step
/// (spec/kexec.md): `/boot/slotctl/vmlinuz`, and if present `/boot/slotctl/initrd.img` and
/// `/boot/slotctl/cmdline`. The root is the slot's dm-verity mapping, mounted read-only by
/// the stage-0 hook; every file is opened with that root as "/" (a symlink resolves inside
/// it, no other mount is entered), so nothing the signature does not cover is loaded.
public final class SlotKernel {
    public static let kernelPath = "/boot/slotctl/vmlinuz"
    public static let initrdPath = "/boot/slotctl/initrd.img"
    public static let commandLinePath = "/boot/slotctl/cmdline"
    /// Bounds, so a slot cannot make stage-0 read without end: a kernel over 256 MiB or an
    /// initramfs over 1 GiB is refused, and a command line over 1024 bytes.
    public static let kernelLimit: UInt64 = 256 << 20, initrdLimit: UInt64 = 1 << 30, commandLineLimit = 1024

    public let root: String
    public let kernel: FileDescriptor
    public let kernelSize: UInt64
    public let initrd: FileDescriptor?
    public let initrdSize: UInt64
    /// The slot's own command line (one line, printable ASCII), without slotctl's addition.
    public let commandLine: String

    /// Why the kernel cannot be used. `corrupt`: a read failed with EIO, which through a
    /// dm-verity mapping means a block that does not match its signed tree.
    public struct Failure: Error {
        public enum Kind: Sendable { case rootUnusable, missing, notAFile, corrupt, unreadable, commandLine, loadRefused }
        public let kind: Kind
        public let message: String
        init(_ kind: Kind, _ message: String) {
            self.kind = kind
            self.message = message
        }
    }

    /// Opens and reads through everything the slot's root holds for the kexec step; called
    /// by KexecFlow. Changes nothing.
    public init(root: String) throws(Failure) {
        self.root = root
        let rootFD: FileDescriptor
        do { rootFD = try FileDescriptor.open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC) } catch {
            throw Failure(.rootUnusable, "\(root): cannot open: \(error)")
        }
        try SlotKernel.checkVerifiedMount(root, rootFD)
        (kernel, kernelSize) = try SlotKernel.openFile(rootFD, root, SlotKernel.kernelPath, limit: SlotKernel.kernelLimit,
                                                      required: true)!
        if let (fd, size) = try SlotKernel.openFile(rootFD, root, SlotKernel.initrdPath, limit: SlotKernel.initrdLimit,
                                                   required: false) {
            (initrd, initrdSize) = (fd, size)
        } else {
            (initrd, initrdSize) = (nil, 0)
        }
        commandLine = try SlotKernel.readCommandLine(rootFD, root)
    }

    /// The root must be what the hook made of the verified slot: a mount point, mounted
    /// read-only, of a dm-verity mapping made by veritysetup (its device-mapper uuid starts
    /// CRYPT-VERITY-). Anything else could hold files the signature never covered.
    static func checkVerifiedMount(_ root: String, _ rootFD: FileDescriptor) throws(Failure) {
        var info = stat(), parent = stat(), mount = statvfs()
        guard fstat(rootFD.raw, &info) == 0, fstatat(rootFD.raw, "..", &parent, 0) == 0, fstatvfs(rootFD.raw, &mount) == 0 else {
            throw Failure(.rootUnusable, "\(root): cannot stat: \(Errno.current)")
        }
        guard info.st_dev != parent.st_dev || info.st_ino == parent.st_ino else {
            throw Failure(.rootUnusable, "\(root) is not a mount point (mount the slot's dm-verity mapping there)")
        }
        guard mount.f_flag & UInt(ST_RDONLY) != 0 else {
            throw Failure(.rootUnusable, "\(root) is mounted read-write; the slot's root must be mounted read-only")
        }
        let device = "\(gnu_dev_major(info.st_dev)):\(gnu_dev_minor(info.st_dev))"
        let uuidPath = "/sys/dev/block/\(device)/dm/uuid"
        let uuid: [UInt8]?
        do { uuid = try SmallFiles.read(uuidPath, limit: 256) } catch { uuid = nil }
        guard let uuid, uuid.starts(with: "CRYPT-VERITY-".utf8) else {
            throw Failure(.rootUnusable, "\(root) is not on a dm-verity mapping (device \(device) has no CRYPT-VERITY- "
                + "device-mapper uuid): its files are not covered by the slot's signature")
        }
    }

    /// Opens `path` inside the root and reads it through once, so that a block that does not
    /// match the verity tree is found here, with its file named, and not in the middle of
    /// the load. nil when it does not exist and is not `required`.
    static func openFile(_ rootFD: FileDescriptor, _ root: String, _ path: String, limit: UInt64,
                         required: Bool) throws(Failure) -> (FileDescriptor, UInt64)? {
        let raw = path.withCString { slotctl_open_in_root(rootFD.raw, $0) }
        guard raw >= 0 else {
            let error = Errno.current
            if error.code == ENOENT && !required { return nil }
            if error.code == ENOENT { throw Failure(.missing, "the slot has no \(path) (looked in \(root))") }
            if error.code == EXDEV || error.code == ELOOP {
                throw Failure(.notAFile, "\(path) in the slot leads outside its root file system (\(error)); not loaded")
            }
            throw Failure(.unreadable, "\(path) in the slot: cannot open: \(error)")
        }
        let fd = FileDescriptor(adopting: raw)
        let info: stat
        do { info = try fd.status() } catch { throw Failure(.unreadable, "\(path) in the slot: cannot stat: \(error)") }
        guard info.st_mode & mode_t(S_IFMT) == mode_t(S_IFREG) else {
            throw Failure(.notAFile, "\(path) in the slot is not a regular file")
        }
        let size = UInt64(info.st_size)
        guard size > 0 else { throw Failure(.notAFile, "\(path) in the slot is empty") }
        guard size <= limit else { throw Failure(.notAFile, "\(path) in the slot is \(size) bytes, over the \(limit) allowed") }
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { chunk.deallocate() }
        var offset: UInt64 = 0
        while offset < size {
            let got: Int
            do { got = try fd.read(into: chunk, at: offset) } catch {
                if error.code == EIO {
                    throw Failure(.corrupt, "\(path) in the slot: a block at byte \(offset) does not match the slot's dm-verity "
                        + "tree (EIO): the file was altered after signing")
                }
                throw Failure(.unreadable, "\(path) in the slot: cannot read at byte \(offset): \(error)")
            }
            if got == 0 { throw Failure(.unreadable, "\(path) in the slot: ends at byte \(offset) of \(size)") }
            offset += UInt64(got)
        }
        return (fd, size)
    }

    /// The slot's command line: one line of printable ASCII (a trailing newline allowed).
    static func readCommandLine(_ rootFD: FileDescriptor, _ root: String) throws(Failure) -> String {
        guard let (fd, _) = try openFile(rootFD, root, commandLinePath, limit: UInt64(commandLineLimit), required: false) else {
            return ""
        }
        var bytes: [UInt8]?
        do { bytes = try fd.readToEnd(limit: commandLineLimit) } catch {
            throw Failure(.unreadable, "\(commandLinePath) in the slot: cannot read: \(error)")
        }
        var line = bytes ?? []
        if line.last == 0x0A { line.removeLast() }
        guard line.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            throw Failure(.commandLine, "\(commandLinePath) in the slot is not one line of printable ASCII")
        }
        return String(decoding: line, as: UTF8.self)
    }

    /// kexec_file_load(2) with `commandLine` (the full one, slotctl's addition included).
    /// The running kernel reads the files from the descriptors and, under lockdown, checks
    /// the kernel's signature. Called by KexecFlow.
    public func load(commandLine full: String) throws(Failure) {
        let result = full.withCString { slotctl_kexec_file_load(kernel.raw, initrd?.raw ?? -1, $0, UInt(full.utf8.count + 1)) }
        guard result != 0 else { return }
        let error = Errno.current
        let why = switch error.code {
        case EPERM: "kexec is not allowed here (no CAP_SYS_BOOT, or kernel.kexec_load_disabled is set)"
        case EKEYREJECTED, ENOKEY, EBADMSG:
            "the running kernel requires a signed kernel (lockdown, or KEXEC_SIG_FORCE) and refused this one's signature"
        case ENOEXEC: "not a kernel image the running kernel can start (a bzImage of this architecture)"
        case ENOSYS: "the running kernel has no kexec_file_load (CONFIG_KEXEC_FILE)"
        case EIO: "a block does not match the slot's dm-verity tree (EIO)"
        default: "\(error)"
        }
        throw Failure(.loadRefused, "kexec_file_load of \(SlotKernel.kernelPath): \(why)")
    }

    /// Jumps into the loaded kernel (reboot(LINUX_REBOOT_CMD_KEXEC)) after a sync. Returns
    /// only when the jump failed.
    public static func start() -> Failure {
        sync()
        _ = slotctl_reboot_into_loaded_kernel()
        return Failure(.loadRefused, "reboot into the loaded kernel failed: \(Errno.current)")
    }
}
