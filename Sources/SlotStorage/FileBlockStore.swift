#if canImport(Glibc)
import Glibc
#endif

/// An image file or a raw block device. Sizes of block devices come from the kernel
/// (BLKGETSIZE64, BLKSSZGET); an image file's sector size is given, or probed from
/// where a GPT header's "EFI PART" sits (512 first, then 4096; 512 when neither).
public final class FileBlockStore: BlockStore {
    public let path: String
    public let sectorSize: Int
    public let byteCount: UInt64
    public let isBlockDevice: Bool
    private let fd: Int32
    private let writable: Bool

    /// Opens `path` read-only unless `writable`. Used by the CLI for `--disk`.
    public init(path: String, writable: Bool, sectorSize requested: Int? = nil) throws(StorageError) {
        self.path = path
        self.writable = writable
        let descriptor = Glibc.open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        guard descriptor >= 0 else { throw StorageError(.open, path: path, detail: "cannot open: \(errnoText())") }
        fd = descriptor
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let text = errnoText()
            Glibc.close(fd)
            throw StorageError(.open, path: path, detail: "cannot stat: \(text)")
        }
        isBlockDevice = (info.st_mode & S_IFMT) == S_IFBLK
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

    deinit { Glibc.close(fd) }

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
        guard writable else { throw StorageError(.readOnly, path: path, detail: "opened read-only") }
        var done = 0
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
        guard fsync(fd) == 0 else { throw StorageError(.flush, path: path, detail: "fsync failed: \(errnoText())") }
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }

/// A stream on a file descriptor (standard input for `install -`, or an opened file).
public final class FileByteStream: ByteStream {
    public let name: String
    private let fd: Int32
    private let owned: Bool

    /// Standard input.
    public init() {
        name = "standard input"
        fd = 0
        owned = false
    }

    public init(path: String) throws(StorageError) {
        let descriptor = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw StorageError(.open, path: path, detail: "cannot open: \(errnoText())") }
        name = path
        fd = descriptor
        owned = true
    }

    deinit { if owned { Glibc.close(fd) } }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(StorageError) -> Int {
        while true {
            let got = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if got >= 0 { return got }
            if errno == EINTR { continue }
            throw StorageError(.read, path: name, detail: "read failed: \(errnoText())")
        }
    }
}
