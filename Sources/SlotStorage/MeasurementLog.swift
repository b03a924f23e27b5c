import CSystem

/// The userspace TPM measurement log systemd keeps (`/run/log/systemd/tpm2-measure.log`):
/// JSON-SEQ, one CEL-JSON record per extend (spec/measured-boot.md). slotctl appends the
/// way systemd does, so systemd-pcrlock and anyone replaying the log see one history:
/// an exclusive flock(2) held from before the extend until the record is written, and the
/// file's sticky bit set while the log is behind the PCR (a writer that dies between the
/// extend and the record leaves the bit set: "this log is incomplete").
public final class MeasurementLog {
    public let path: String
    let fd: FileDescriptor
    let mode: mode_t
    static let sticky: mode_t = 0o1000

    /// Opens (creating, mode 0600, and its directory 0755) and locks the log, waiting at
    /// most `timeout` seconds for a reader's lock. A symbolic link or anything but a
    /// regular file is refused: the log is never written through someone else's name.
    public init(path: String, timeout: Double) throws(StorageError) {
        self.path = path
        SmallFiles.makeDirectories(SmallFiles.parentDirectory(path))
        do { fd = try FileDescriptor.open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, mode: 0o600) } catch {
            throw StorageError(.open, path: path, detail: "cannot open the measurement log: \(error)")
        }
        let info: stat
        do { info = try fd.status() } catch { throw StorageError(.open, path: path, detail: "cannot stat: \(error)") }
        guard info.st_mode & mode_t(S_IFMT) == mode_t(S_IFREG) else {
            throw StorageError(.notADisk, path: path, detail: "the measurement log is \(FileBlockStore.typeName(info.st_mode & mode_t(S_IFMT))), not a regular file")
        }
        mode = info.st_mode & 0o7777
        fd.blockFromNowOn()
        try FileLock.acquire(fd, .exclusive, timeout: timeout, path: path)
    }

    /// True when the sticky bit was set before slotctl opened it: a writer before us died
    /// between an extend and its record.
    public var wasIncomplete: Bool { mode & MeasurementLog.sticky != 0 }

    /// Marks the log as behind the PCR: called just before the extend.
    public func markExtending() throws(StorageError) {
        guard fchmod(fd.raw, (mode & 0o7777) | MeasurementLog.sticky) == 0 else {
            throw StorageError(.write, path: path, detail: "cannot set the sticky bit: \(Errno.current)")
        }
    }

    /// Appends one record (RS, the JSON text, LF) and clears the sticky bit, unless the log
    /// was incomplete before: then it stays incomplete.
    public func append(_ json: String) throws(StorageError) {
        var bytes: [UInt8] = [0x1E]
        bytes += Array(json.utf8)
        bytes.append(0x0A)
        do { try fd.writeAll(bytes) } catch { throw StorageError(.write, path: path, detail: "cannot append: \(error)") }
        settled()
    }

    /// The extend certainly did not happen (the TPM refused it): the log is as complete as
    /// it was.
    public func settled() {
        if !wasIncomplete { _ = fchmod(fd.raw, mode & ~MeasurementLog.sticky) }
    }

    /// The log's records: the text between RS separators, each without its LF. Nil when
    /// the log does not exist; bounded, regular files only.
    public static func records(_ path: String, limit: Int = 4 << 20) throws(StorageError) -> [String]? {
        guard let bytes = try SmallFiles.read(path, limit: limit) else { return nil }
        var records: [String] = []
        for part in bytes.split(separator: 0x1E) {
            var end = part.endIndex
            while end > part.startIndex, part[end - 1] == 0x0A || part[end - 1] == 0x20 { end -= 1 }
            if end > part.startIndex { records.append(String(decoding: part[part.startIndex..<end], as: UTF8.self)) }
        }
        return records
    }

    /// Whether the log's sticky bit is set (incomplete), nil when there is no log.
    public static func isIncomplete(_ path: String) -> Bool? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return info.st_mode & sticky != 0
    }
}
