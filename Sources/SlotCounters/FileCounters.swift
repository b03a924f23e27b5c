#if canImport(Glibc)
import Glibc
#endif
import SlotCore

/// The development counter store: a small text file, replaced power-cut safely (temp
/// file, fsync, rename, fsync of the directory). Not hardware-backed: anyone who can
/// write the file can roll it back, and `status` says so.
///
/// Format: a first line `slotctl-counters 1`, then one line per location: `L V`.
public final class FileCounters: RollbackCounters {
    public let path: String
    public let spec: String
    public var hardwareBacked: Bool { false }
    public func caveats() -> [String] { ["anyone who can write \(path) can roll the counters back"] }

    init(path: String, spec: String) {
        self.path = path
        self.spec = spec
    }

    func load() throws(CounterError) -> [UInt64]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw CounterError("\(path): cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let got = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard got >= 0, got < bytes.count else { throw CounterError("\(path): unreadable or too large") }
        let lines = String(decoding: bytes[0..<got], as: UTF8.self).split(separator: "\n")
        guard lines.first == "slotctl-counters 1" else { throw CounterError("\(path): not a slotctl counter file") }
        var values: [UInt64] = []
        for (n, line) in lines.dropFirst().enumerated() {
            let fields = line.split(separator: " ")
            guard fields.count == 2, Int(fields[0]) == n, let value = UInt64(fields[1]),
                  n < RollbackLimits.maxLocations else {
                throw CounterError("\(path): line \(n + 2) is not 'LOCATION VALUE' in order")
            }
            values.append(value)
        }
        return values
    }

    func store(_ values: [UInt64]) throws(CounterError) {
        var text = "slotctl-counters 1\n"
        for (n, value) in values.enumerated() { text += "\(n) \(value)\n" }
        let temp = path + ".tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CounterError("\(temp): cannot create: \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == bytes.count, synced == 0, rename(temp, path) == 0 else {
            unlink(temp)
            throw CounterError("\(path): cannot write: \(String(cString: strerror(errno)))")
        }
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let dirfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd >= 0 { fsync(dirfd); close(dirfd) }
    }

    public func provisionedLocations() throws(CounterError) -> Int { try load()?.count ?? 0 }

    public func read(location: UInt32) throws(CounterError) -> UInt64 {
        guard let values = try load() else {
            throw CounterError("\(path): counters not provisioned (run slotctl counters provision)")
        }
        guard Int(location) < values.count else {
            throw CounterError("\(path): location \(location) not provisioned (\(values.count) locations)")
        }
        return values[Int(location)]
    }

    public func raise(location: UInt32, to value: UInt64) throws(CounterError) {
        guard var values = try load(), Int(location) < values.count else {
            throw CounterError("\(path): location \(location) not provisioned")
        }
        guard value > values[Int(location)] else { return }
        values[Int(location)] = value
        try store(values)
    }

    public func provision(locations: Int) throws(CounterError) -> String {
        guard locations >= 1, locations <= RollbackLimits.maxLocations else {
            throw CounterError(.usage, "counters provision: --locations must be 1...\(RollbackLimits.maxLocations)")
        }
        var values = try load() ?? []
        let before = values.count
        guard locations > before else { return "\(path): \(before) locations already provisioned" }
        values += [UInt64](repeating: 0, count: locations - before)
        try store(values)
        return "\(path): provisioned locations \(before)..<\(locations), starting at 0"
    }
}
