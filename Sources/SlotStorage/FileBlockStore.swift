import CSystem

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
        special = (info.st_mode & mode_t(S_IFMT)) == mode_t(S_IFBLK) || (info.st_mode & mode_t(S_IFMT)) == mode_t(S_IFCHR) ? UInt64(info.st_rdev) : 0
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
    private let fd: FileDescriptor
    private let mayWrite: Bool
    /// The read-write descriptor, opened at the first write: a command that turns out to
    /// write nothing (boot of a confirmed slot, a no-op mark) works on read-only media.
    private var writeFD: FileDescriptor?
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
        // The open, its size and the sector-size probe are one watched operation.
        IOWatchdog.begin(.open, path: path, offset: 0, bytes: 0)
        defer { IOWatchdog.end() }
        // O_NONBLOCK only for the open: a FIFO must not block it; the type check follows.
        do { fd = try FileDescriptor.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) } catch {
            throw StorageError(.open, path: path, detail: "cannot open: \(error)")
        }
        if let lock {
            // Waiting for the lock is not disk I/O: its own bound applies (--lock-timeout).
            IOWatchdog.end()
            try FileLock.acquire(fd, lock.mode, timeout: lock.timeout, path: path)
            IOWatchdog.begin(.open, path: path, offset: 0, bytes: 0)
        }
        let info: stat
        do { info = try fd.status() } catch { throw StorageError(.open, path: path, detail: "cannot stat: \(error)") }
        let type = info.st_mode & mode_t(S_IFMT)
        guard type == mode_t(S_IFREG) || type == mode_t(S_IFBLK) else {
            throw StorageError(.notADisk, path: path, detail: "is \(FileBlockStore.typeName(type)), not an image file or a block device")
        }
        fd.blockFromNowOn()
        identity = FileIdentity(info)
        isBlockDevice = type == mode_t(S_IFBLK)
        if isBlockDevice {
            var size: UInt64 = 0
            var logical: Int32 = 0
            guard slotctl_ioctl_pointer(fd.raw, FileBlockStore.blkGetSize64, &size) == 0,
                  slotctl_ioctl_pointer(fd.raw, FileBlockStore.blkSSZGet, &logical) == 0 else {
                throw StorageError(.geometry, path: path, detail: "cannot read device geometry: \(Errno.current)")
            }
            byteCount = size
            sectorSize = Int(logical)
            // The whole disk's page cache is its own: bytes written through a partition
            // node (RAUC, dd into /dev/sda2) do not reach it, and it outlives this process
            // while anything holds the disk open. Dropped first, so what slotctl judges is
            // what the medium holds now.
            _ = posix_fadvise(fd.raw, 0, 0, POSIX_FADV_DONTNEED)
            if let requested, requested != sectorSize {
                throw StorageError(.geometry, path: path,
                                   detail: "device has \(sectorSize)-byte sectors, not \(requested)")
            }
        } else {
            byteCount = UInt64(info.st_size)
            sectorSize = requested ?? FileBlockStore.probeSectorSize(fd: fd, byteCount: UInt64(info.st_size))
        }
        guard sectorSize == 512 || sectorSize == 4096 else {
            throw StorageError(.geometry, path: path, detail: "unsupported sector size \(sectorSize)")
        }
    }

    deinit {
        // The write descriptor first: udev sees the close after a write while the lock on
        // `fd` still holds, and probes once it is released. The last close of a block
        // device may write back what is cached: watched like any other operation.
        IOWatchdog.begin(.close, path: path, offset: 0, bytes: unflushed)
        writeFD = nil
        IOWatchdog.end()
    }


    static func typeName(_ type: mode_t) -> String {
        switch type {
        case mode_t(S_IFIFO): "a FIFO"
        case mode_t(S_IFSOCK): "a socket"
        case mode_t(S_IFCHR): "a character device"
        case mode_t(S_IFDIR): "a directory"
        case mode_t(S_IFLNK): "a symbolic link"
        default: "not a regular file"
        }
    }

    /// The read-write descriptor, opened on first use: the path again, read-write, and
    /// refused unless it is still the file read so far.
    private func writer() throws(StorageError) -> FileDescriptor {
        if let writeFD { return writeFD }
        guard mayWrite else { throw StorageError(.readOnly, path: path, detail: "opened read-only") }
        let descriptor: FileDescriptor
        do { descriptor = try FileDescriptor.open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK) } catch {
            throw StorageError(.open, path: path, detail: "cannot open for writing: \(error)")
        }
        guard let info = try? descriptor.status(), FileIdentity(info) == identity else {
            throw StorageError(.open, path: path, detail: "changed while slotctl was reading it; nothing was written")
        }
        descriptor.blockFromNowOn()
        writeFD = descriptor
        return descriptor
    }

    // _IOR(0x12, 114, size_t) and _IO(0x12, 104) from linux/fs.h.
    static let blkGetSize64: UInt = 0x8008_1272
    static let blkSSZGet: UInt = 0x1268

    private static func probeSectorSize(fd: FileDescriptor, byteCount: UInt64) -> Int {
        func hasSignature(at offset: UInt64) -> Bool {
            guard offset + 8 <= byteCount else { return false }
            var word: UInt64 = 0
            let got = withUnsafeMutableBytes(of: &word) { try? fd.read(into: $0, at: offset) }
            return got == 8 && UInt64(littleEndian: word) == 0x5452_4150_2049_4645
        }
        for size: UInt64 in [512, 4096] where hasSignature(at: size) { return Int(size) }
        for size: UInt64 in [512, 4096] where byteCount >= size && hasSignature(at: byteCount - size) { return Int(size) }
        return 512
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(StorageError) {
        IOWatchdog.begin(.read, path: path, offset: offset, bytes: UInt64(buffer.count))
        defer { IOWatchdog.end() }
        let got: Int
        do { got = try fd.read(into: buffer, at: offset) } catch {
            throw StorageError(.read, path: path, detail: "read of \(buffer.count) bytes at \(offset) failed: \(error)")
        }
        guard got == buffer.count else {
            throw StorageError(.shortRead, path: path, detail: "read at \(offset) ends at the end of the disk")
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(StorageError) {
        let output = try writer()
        IOWatchdog.begin(.write, path: path, offset: offset, bytes: UInt64(bytes.count))
        defer { IOWatchdog.end() }
        unflushed += UInt64(bytes.count)
        do { try output.writeAll(bytes, at: offset) } catch {
            throw StorageError(.write, path: path, detail: "write of \(bytes.count) bytes at \(offset) failed: \(error)")
        }
    }

    public func flush() throws(StorageError) {
        // Nothing written, nothing to make durable (and a read-only medium stays usable).
        guard let writeFD else { return }
        IOWatchdog.begin(.flush, path: path, offset: 0, bytes: unflushed)
        defer { IOWatchdog.end() }
        unflushed = 0
        // Then the cached pages are dropped, so that what is read next (install's
        // read-back, a verification, the next command) comes from the medium, not from a
        // cache that was just written, nor from pages a failed fsync left behind.
        defer { _ = posix_fadvise(fd.raw, 0, 0, POSIX_FADV_DONTNEED) }
        do { try writeFD.sync() } catch { throw StorageError(.flush, path: path, detail: "fsync failed: \(error)") }
    }
}


/// A stream on a file descriptor: standard input for `install -`, or a FIFO, pipe,
/// socket or character device named as the image (`install /dev/stdin`). Every read
/// waits at most `idleTimeout` seconds for data, so a FIFO nobody writes to, or a
/// stalled sender, ends the install (download failed) instead of hanging it.
public final class FileByteStream: ByteStream {
    public let name: String
    public let idleTimeout: Int
    private let fd: FileDescriptor

    /// Standard input.
    public init(idleTimeout: Int) {
        name = "standard input"
        fd = .standardInput
        self.idleTimeout = idleTimeout
    }

    /// Opens `path` without blocking (a FIFO with no writer would block open(2)).
    public init(path: String, idleTimeout: Int) throws(StorageError) {
        do { fd = try FileDescriptor.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) } catch {
            throw StorageError(.open, path: path, detail: "cannot open: \(error)")
        }
        let type = (try? fd.status()).map { $0.st_mode & mode_t(S_IFMT) } ?? 0
        guard type == mode_t(S_IFIFO) || type == mode_t(S_IFSOCK) || type == mode_t(S_IFCHR) || type == mode_t(S_IFREG) else {
            throw StorageError(.notADisk, path: path, detail: "is \(FileBlockStore.typeName(type)), not a stream")
        }
        name = path
        self.idleTimeout = idleTimeout
    }

    /// Whether `path` names something that can only be read front to back (a FIFO, a
    /// pipe such as /dev/stdin, a socket or a character device): `install` reads those
    /// as streams. Nil when it cannot be examined.
    public static func isStreamOnly(path: String) -> Bool? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        let type = info.st_mode & mode_t(S_IFMT)
        return type == mode_t(S_IFIFO) || type == mode_t(S_IFSOCK) || type == mode_t(S_IFCHR)
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(StorageError) -> Int {
        while true {
            let ready: Bool
            do { ready = try fd.waitForInput(milliseconds: Int32(idleTimeout * 1000)) } catch {
                throw StorageError(.read, path: name, detail: "poll failed: \(error)")
            }
            guard ready else {
                throw StorageError(.timedOut, path: name, detail: "no data for \(idleTimeout) s (nothing is writing to it)")
            }
            do { return try fd.read(into: buffer) } catch {
                if error.code == EAGAIN { continue }
                throw StorageError(.read, path: name, detail: "read failed: \(error)")
            }
        }
    }
}
