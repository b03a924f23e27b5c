import Glibc
import Testing
@testable import SlotStorage

/// How the kexec step opens a slot's kernel files (spec/kexec.md): with the slot's root as
/// "/", so a symlink cannot lead to a file the slot's signature does not cover. The root
/// checks (a read-only dm-verity mount) need device-mapper and run in the QEMU kexec boot;
/// these call the file step directly on a directory.
@Suite struct SlotKernelTests {
    let root: String

    init() throws {
        var template = Array("/tmp/slotctl-kernel-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        root = String(cString: try #require(made))
        for dir in ["/boot", "/boot/slotctl", "/boot/real"] { mkdir(root + dir, 0o755) }
        try write(root + "/boot/real/vmlinuz-1", String(repeating: "k", count: 3 << 20))
    }

    func write(_ path: String, _ text: String) throws {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        try #require(fd >= 0)
        _ = Array(text.utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    func open(_ path: String, required: Bool = true) throws(SlotKernel.Failure) -> UInt64? {
        let rootFD = try! FileDescriptor.open(root, O_RDONLY | O_DIRECTORY)
        return try SlotKernel.openFile(rootFD, root, path, limit: SlotKernel.kernelLimit, required: required)?.1
    }

    func failure(_ path: String) -> SlotKernel.Failure? {
        do { _ = try open(path); return nil } catch { return error }
    }

    @Test func symlinksResolveInsideTheSlot() throws {
        defer { system("rm -rf '\(root)'") }
        // A relative and an absolute link to the slot's own kernel: both read it, in full.
        symlink("../real/vmlinuz-1", root + "/boot/slotctl/vmlinuz")
        #expect(try open("/boot/slotctl/vmlinuz") == 3 << 20)
        unlink(root + "/boot/slotctl/vmlinuz")
        symlink("/boot/real/vmlinuz-1", root + "/boot/slotctl/vmlinuz")
        #expect(try open("/boot/slotctl/vmlinuz") == 3 << 20)
        // An absolute link to a file of the machine's own: resolved in the slot, where
        // there is none; the host's file is never read.
        unlink(root + "/boot/slotctl/vmlinuz")
        symlink("/etc/hostname", root + "/boot/slotctl/vmlinuz")
        #expect(failure("/boot/slotctl/vmlinuz")?.kind == .missing)
        // ".." cannot climb out of the slot's root either.
        unlink(root + "/boot/slotctl/vmlinuz")
        symlink("../../../../../../etc/hostname", root + "/boot/slotctl/vmlinuz")
        #expect(failure("/boot/slotctl/vmlinuz")?.kind == .missing)
        // /proc's magic links lead anywhere: refused.
        unlink(root + "/boot/slotctl/vmlinuz")
        symlink("/proc/self/root/etc/hostname", root + "/boot/slotctl/vmlinuz")
        let magic = failure("/boot/slotctl/vmlinuz")
        #expect(magic?.kind == .missing || magic?.kind == .notAFile, "\(String(describing: magic?.message))")
    }

    @Test func whatIsNotAKernelFileIsRefused() throws {
        defer { system("rm -rf '\(root)'") }
        #expect(failure("/boot/slotctl/vmlinuz")?.kind == .missing)
        #expect(try open("/boot/slotctl/initrd.img", required: false) == nil)
        mkdir(root + "/boot/slotctl/vmlinuz", 0o755)
        #expect(failure("/boot/slotctl/vmlinuz")?.kind == .notAFile)
        rmdir(root + "/boot/slotctl/vmlinuz")
        try write(root + "/boot/slotctl/vmlinuz", "")
        #expect(failure("/boot/slotctl/vmlinuz")?.message.contains("is empty") == true)
        mkfifo(root + "/boot/slotctl/fifo", 0o644)
        #expect(failure("/boot/slotctl/fifo")?.kind == .notAFile)
    }

    @Test func theCommandLineIsOnePrintableLine() throws {
        defer { system("rm -rf '\(root)'") }
        let rootFD = try FileDescriptor.open(root, O_RDONLY | O_DIRECTORY)
        #expect(try SlotKernel.readCommandLine(rootFD, root) == "")
        try write(root + SlotKernel.commandLinePath, "root=slotctl console=ttyS0\n")
        #expect(try SlotKernel.readCommandLine(rootFD, root) == "root=slotctl console=ttyS0")
        try write(root + SlotKernel.commandLinePath, "root=slotctl\ninit=/bin/sh\n")
        #expect(throws: SlotKernel.Failure.self) { try SlotKernel.readCommandLine(rootFD, root) }
        try write(root + SlotKernel.commandLinePath, String(repeating: "x", count: 1025))
        #expect(throws: SlotKernel.Failure.self) { try SlotKernel.readCommandLine(rootFD, root) }
    }
}
