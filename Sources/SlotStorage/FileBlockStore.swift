#if canImport(Glibc)
import Glibc
#endif

/// Which file an open descriptor is: device and inode (and, for a device node, the
/// device it stands for), so two paths, a symbolic link or a hard link to one file are
/// seen to be the same file.
public struct FileIdentity: Equatable, Sendable {
    public var device: UInt64
    public var inode: UInt64
    public var special: UInt64

    public init(_ info: stat) {
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        special = (info.st_mode & S_IFMT) == S_IFBLK || (info.st_mode & S_IFMT) == S_IFCHR ? UInt64(info.st_rdev) : 0
    }

    /// Same file, or the same device reached through two device nodes.
    public func sameFile(as other: FileIdentity) -> Bool {
        (device == other.device && inode == other.inode) || (special != 0 && special == other.special)
    }
}

/// An image file or a raw block device. Sizes of block devices come from the kernel
/// (BLKGETSIZE64, BLKSSZGET); an image file's sector size is given, or probed from
/// where a GPT header's "EFI PART" sits (512 first, then 4096; 512 when neither).
/// Anything else (a FIFO, a socket, a character device, a directory) is refused before
/// a byte is read, so a FIFO named as a disk never hangs a boot.
public final class FileBlockStore: BlockStore {
    public let path: String
    public let sectorSize: Int
    public let byteCount: UInt64
    public let isBlockDevice: Bool
    public let identity: FileIdentity
    private let fd: Int32
    private let mayWrite: Bool
    /// The read-write descriptor, opened at the first write: a command that turns out to
    /// write nothing (boot of a confirmed slot, a no-op mark) works on read-only media.
    private var writeFD: Int32 = -1
    /// Bytes written since the last flush: a flush's deadline grows with them (IOWatchdog).
    private var unflushed: UInt64 = 0

    /// Opens `path` for reading; with `writable` the first write reopens it read-write
    /// (the same file, checked by identity). Used by the CLI for `--disk` and images.
    /// With `lock`, the file is flocked right after it is opened, before any byte of it
    /// (or its size) is read (spec/locking.md).
    public init(path: String, writable: Bool, sectorSize requested: Int? = nil,
                lock: (mode: FileLock.Mode, timeout: Double)? = nil) throws(StorageError) {
        self.path = path
        self.mayWrite = writable
        // O_NONBLOCK only for the open: a FIFO must not block it; the type check follows.
        let descriptor = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else { throw StorageError(.open, path: path, detail: "cannot open: \(errnoText())") }
        fd = descriptor
        if let lock {
            do { try FileLock.acquire(fd, lock.mode, timeout: lock.timeout, path: path) } catch {
                Glibc.close(fd)
                throw error
            }
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let text = errnoText()
            Glibc.close(fd)
            throw StorageError(.open, path: path, detail: "cannot stat: \(text)")
        }
        let type = info.st_mode & S_IFMT
        guard type == S_IFREG || type == S_IFBLK else {
            Glibc.close(fd)
            throw StorageError(.notADisk, path: path, detail: "is \(FileBlockStore.typeName(type)), not an image file or a block device")
        }
        SmallFiles.blockingFromNowOn(fd)
        identity = FileIdentity(info)
        isBlockDevice = type == S_IFBLK
        if isBlockDevice {
            var size: UInt64 = 0
            var logical: Int32 = 0
            guard ioctl(fd, FileBlockStore.blkGetSize64, &size) == 0,
                  ioctl(fd, FileBlockStore.blkSSZGet, &logical) == 0 else {
                let text = errnoText()
                Glibc.close(fd)
                throw StorageError(.geometry, path: path, detail: "cannot read device geometry: \(text)")
            }
            byteCount = size
            sectorSize = Int(logical)
            if let requested, requested != sectorSize {
                Glibc.close(fd)
                throw StorageError(.geometry, path: path,
                                   detail: "device has \(sectorSize)-byte sectors, not \(requested)")
            }
        } else {
            byteCount = UInt64(info.st_size)
            sectorSize = requested ?? FileBlockStore.probeSectorSize(fd: fd, byteCount: UInt64(info.st_size))
        }
        guard sectorSize == 512 || sectorSize == 4096 else {
            Glibc.close(fd)
            throw StorageError(.geometry, path: path, detail: "unsupported sector size \(sectorSize)")
        }
    }

    deinit {
        // The write descriptor first: udev sees the close after a write while the lock on
        // `fd` still holds, and probes once it is released.
        if writeFD >= 0 { Glibc.close(writeFD) }
        Glibc.close(fd)
    }


    static func typeName(_ type: mode_t) -> String {
        switch type {
        case S_IFIFO: "a FIFO"
        case S_IFSOCK: "a socket"
        case S_IFCHR: "a character device"
        case S_IFDIR: "a directory"
        case S_IFLNK: "a symbolic link"
        default: "not a regular file"
        }
    }

    /// The read-write descriptor, opened on first use: the path again, read-write, and
    /// refused unless it is still the file read so far.
    private func writer() throws(StorageError) -> Int32 {
        if writeFD >= 0 { return writeFD }
        guard mayWrite else { throw StorageError(.readOnly, path: path, detail: "opened read-only") }
        let descriptor = Glibc.open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else {
            throw StorageError(.open, path: path, detail: "cannot open for writing: \(errnoText())")
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0, FileIdentity(info) == identity else {
            Glibc.close(descriptor)
            throw StorageError(.open, path: path, detail: "changed while slotctl was reading it; nothing was written")
        }
        SmallFiles.blockingFromNowOn(descriptor)
        writeFD = descriptor
        return descriptor
    }

    // _IOR(0x12, 114, size_t) and _IO(0x12, 104) from linux/fs.h.
    static let blkGetSize64: UInt = 0x8008_1272
    static let blkSSZGet: UInt = 0x1268

    private static func probeSectorSize(fd: Int32, byteCount: UInt64) -> Int {
        func hasSignature(at offset: UInt64) -> Bool {
            guard offset + 8 <= byteCount else { return false }
            var word: UInt64 = 0
            let got = withUnsafeMutableBytes(of: &word) { pread(fd, $0.baseAddress, 8, off_t(offset)) }
            return got == 8 && UInt64(littleEndian: word) == 0x5452_4150_2049_4645
        }
        for size: UInt64 in [512, 4096] where hasSignature(at: size) { return Int(size) }
        for size: UInt64 in [512, 4096] where byteCount >= size && hasSignature(at: byteCount - size) { return Int(size) }
        return 512
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(StorageError) {
        var done = 0
        IOWatchdog.begin(.read, path: path, offset: offset, bytes: UInt64(buffer.count))
        defer { IOWatchdog.end() }
        while done < buffer.count {
            let got = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if got < 0 {
                if errno == EINTR { continue }
                throw StorageError(.read, path: path, detail: "read of \(buffer.count) bytes at \(offset) failed: \(errnoText())")
            }
            if got == 0 {
                throw StorageError(.shortRead, path: path, detail: "read at \(offset) ends at the end of the disk")
            }
            done += got
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(StorageError) {
        let fd = try writer()
        var done = 0
        IOWatchdog.begin(.write, path: path, offset: offset, bytes: UInt64(bytes.count))
        defer { IOWatchdog.end() }
        unflushed += UInt64(bytes.count)
        while done < bytes.count {
            let put = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if put < 0 {
                if errno == EINTR { continue }
                throw StorageError(.write, path: path, detail: "write of \(bytes.count) bytes at \(offset) failed: \(errnoText())")
            }
            done += put
        }
    }

    public func flush() throws(StorageError) {
        // Nothing written, nothing to make durable (and a read-only medium stays usable).
        guard writeFD >= 0 else { return }
        IOWatchdog.begin(.flush, path: path, offset: 0, bytes: unflushed)
        defer { IOWatchdog.end() }
        unflushed = 0
        // Then the cached pages are dropped, so that what is read next (install's
        // read-back, a verification, the next command) comes from the medium, not from a
        // cache that was just written, nor from pages a failed fsync left behind.
        defer { _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) }
        guard fsync(writeFD) == 0 else { throw StorageError(.flush, path: path, detail: "fsync failed: \(errnoText())") }
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }

/// A stream on a file descriptor: standard input for `install -`, or a FIFO, pipe,
/// socket or character device named as the image (`install /dev/stdin`). Every read
/// waits at most `idleTimeout` seconds for data, so a FIFO nobody writes to, or a
/// stalled sender, ends the install (download failed) instead of hanging it.
public final class FileByteStream: ByteStream {
    public let name: String
    public let idleTimeout: Int
    private let fd: Int32
    private let owned: Bool

    /// Standard input.
    public init(idleTimeout: Int) {
        name = "standard input"
        fd = 0
        owned = false
        self.idleTimeout = idleTimeout
    }

    /// Opens `path` without blocking (a FIFO with no writer would block open(2)).
    public init(path: String, idleTimeout: Int) throws(StorageError) {
        let descriptor = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else { throw StorageError(.open, path: path, detail: "cannot open: \(errnoText())") }
        var info = stat()
        let type = fstat(descriptor, &info) == 0 ? info.st_mode & S_IFMT : 0
        guard type == S_IFIFO || type == S_IFSOCK || type == S_IFCHR || type == S_IFREG else {
            Glibc.close(descriptor)
            throw StorageError(.notADisk, path: path, detail: "is \(FileBlockStore.typeName(type)), not a stream")
        }
        name = path
        fd = descriptor
        owned = true
        self.idleTimeout = idleTimeout
    }

    /// Whether `path` names something that can only be read front to back (a FIFO, a
    /// pipe such as /dev/stdin, a socket or a character device): `install` reads those
    /// as streams. Nil when it cannot be examined.
    public static func isStreamOnly(path: String) -> Bool? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        let type = info.st_mode & S_IFMT
        return type == S_IFIFO || type == S_IFSOCK || type == S_IFCHR
    }

    deinit { if owned { Glibc.close(fd) } }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(StorageError) -> Int {
        while true {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(idleTimeout * 1000))
            if ready < 0 {
                if errno == EINTR { continue }
                throw StorageError(.read, path: name, detail: "poll failed: \(errnoText())")
            }
            if ready == 0 {
                throw StorageError(.timedOut, path: name, detail: "no data for \(idleTimeout) s (nothing is writing to it)")
            }
            let got = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if got >= 0 { return got }
            if errno == EINTR || errno == EAGAIN { continue }
            throw StorageError(.read, path: name, detail: "read failed: \(errnoText())")
        }
    }
}
