import CSystem

/// BSD `flock(2)` locks with a bounded wait: the convention Linux partitioning tools and
/// udev share for a whole disk (exclusive while writing, so udev does not probe a
/// half-written table; shared for readers), and what slotctl takes on every disk it opens
/// and on its file counter store (spec/locking.md). A lock belongs to the open file and
/// is released when it is closed, so a process that dies never leaves one behind.
public enum FileLock {
    public enum Mode: Sendable {
        case shared, exclusive
        var word: String { self == .shared ? "shared" : "exclusive" }
    }

    /// Takes the lock on `fd`, retrying every 20 ms for up to `timeout` seconds (0: one
    /// try). On timeout throws `locked`, naming the processes that hold a lock on the file
    /// when /proc/locks tells. `path` names the file in messages.
    public static func acquire(_ fd: FileDescriptor, _ mode: Mode, timeout: Double, path: String) throws(StorageError) {
        let deadline = now() + max(0, timeout)
        while true {
            do { if try fd.tryLock(exclusive: mode == .exclusive) { return } } catch {
                throw StorageError(.open, path: path, detail: "cannot lock: \(error)")
            }
            if now() >= deadline { break }
            usleep(20_000)
        }
        let info = try? fd.status()
        let names = info.map { holders(device: UInt64($0.st_dev), inode: UInt64($0.st_ino)) } ?? []
        let who = names.isEmpty ? "another process" : names.joined(separator: ", ")
        throw StorageError(.locked, path: path, detail: "is locked by \(who); no \(mode.word) lock within "
            + "\(seconds(timeout)) s (--lock-timeout), nothing was done")
    }

    /// "PID (command)" of every other process holding a lock on the file, from
    /// /proc/locks (`N: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE START END`, the device in
    /// hex). Best effort: empty when /proc is not there.
    static func holders(device: UInt64, inode: UInt64) -> [String] {
        guard let bytes = try? SmallFiles.read("/proc/locks", limit: 1 << 20) else { return [] }
        let major = (device >> 8) & 0xFFF | (device >> 32) & ~0xFFF
        let minor = device & 0xFF | (device >> 12) & ~0xFF
        let me = getpid()
        var found: [String] = []
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ")
            // "->" marks a waiter, not a holder.
            guard fields.count >= 6, !fields.contains("->"), let pid = Int32(fields[4]) else { continue }
            let id = fields[5].split(separator: ":")
            guard id.count == 3, UInt64(id[0], radix: 16) == major, UInt64(id[1], radix: 16) == minor,
                  UInt64(id[2]) == inode, pid != me else { continue }
            let comm = (try? SmallFiles.read("/proc/\(pid)/comm", limit: 256)).flatMap { $0 }
                .map { String(decoding: $0, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? "" } ?? ""
            let holder = comm.isEmpty ? "pid \(pid)" : "pid \(pid) (\(comm))"
            if !found.contains(holder) { found.append(holder) }
        }
        return found
    }

    static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    static func seconds(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }
}
