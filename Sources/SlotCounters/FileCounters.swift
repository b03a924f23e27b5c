import CSystem
import SlotCore
import SlotStorage

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
        let contents: [UInt8]?
        do { contents = try SmallFiles.read(path, limit: 4095) } catch { throw CounterError(error.description) }
        guard let contents else { return nil }
        return try FileCounters.parse(contents, path: path)
    }

    /// The file's values, read byte by byte (boot reads this file at every decision, so no
    /// line or field becomes a String). Lines end in LF or CRLF; empty lines are skipped;
    /// fields are decimal digits separated by spaces.
    static func parse(_ bytes: [UInt8], path: String) throws(CounterError) -> [UInt64] {
        var values: [UInt64] = []
        values.reserveCapacity(16)
        var nonEmptyLines = 0
        for line in ByteLines(bytes) {
            defer { nonEmptyLines += 1 }
            if nonEmptyLines == 0 {
                guard line.elementsEqual("slotctl-counters 1".utf8) else { throw CounterError("\(path): not a slotctl counter file") }
                continue
            }
            let n = nonEmptyLines - 1
            guard let (location, value) = locationAndValue(line), location == UInt64(n), n < RollbackLimits.maxLocations else {
                throw CounterError("\(path): line \(n + 2) is not 'LOCATION VALUE' in order")
            }
            values.append(value)
        }
        guard nonEmptyLines > 0 else { throw CounterError("\(path): not a slotctl counter file") }
        return values
    }

    /// `L V`: exactly two space-separated decimal numbers, each fitting in 64 bits.
    private static func locationAndValue(_ line: ArraySlice<UInt8>) -> (UInt64, UInt64)? {
        var numbers: (UInt64, UInt64) = (0, 0)
        var count = 0, i = line.startIndex
        while i < line.endIndex {
            if line[i] == 0x20 { i += 1; continue }
            var value: UInt64 = 0
            while i < line.endIndex && line[i] != 0x20 {
                let digit = line[i] &- 0x30
                guard digit < 10 else { return nil }
                let (tens, over) = value.multipliedReportingOverflow(by: 10)
                let (sum, carry) = tens.addingReportingOverflow(UInt64(digit))
                guard !over && !carry else { return nil }
                value = sum
                i += 1
            }
            count += 1
            switch count {
            case 1: numbers.0 = value
            case 2: numbers.1 = value
            default: return nil
            }
        }
        return count == 2 ? numbers : nil
    }

    func store(_ values: [UInt64]) throws(CounterError) {
        var text = "slotctl-counters 1\n"
        for (n, value) in values.enumerated() { text += "\(n) \(value)\n" }
        do { try SmallFiles.replace(path, with: Array(text.utf8), mode: 0o600) } catch {
            throw CounterError(error.description)
        }
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
        try exclusively { () throws(CounterError) in
            guard var values = try load(), Int(location) < values.count else {
                throw CounterError("\(path): location \(location) not provisioned")
            }
            guard value > values[Int(location)] else { return }
            values[Int(location)] = value
            try store(values)
        }
    }

    /// How long a raise or a provisioning waits for another one on the same file.
    static let lockTimeout: Double = 10

    /// Runs a read-modify-write of the file under an exclusive lock of `PATH.lock` (the
    /// file itself is replaced by rename, so it cannot carry the lock): two processes
    /// raising or provisioning at once never lose one's write (spec/locking.md).
    func exclusively<T>(_ body: () throws(CounterError) -> T) throws(CounterError) -> T {
        let lockPath = path + ".lock"
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, mode: 0o600) } catch {
            throw CounterError("\(lockPath): cannot open: \(error)")
        }
        do { try FileLock.acquire(fd, .exclusive, timeout: FileCounters.lockTimeout, path: lockPath) } catch {
            throw CounterError(error.description)
        }
        // The lock lives as long as its descriptor: held until the body is done.
        return try withExtendedLifetime(fd) { () throws(CounterError) in try body() }
    }

    public func useOwnerAuthorization(_ secret: [UInt8]) throws(CounterError) {
        throw CounterError(.usage, "\(path): file counters have no owner authorization (it is for tpm: stores)")
    }

    public func provision(locations: Int) throws(CounterError) -> String {
        guard locations >= 1, locations <= RollbackLimits.maxLocations else {
            throw CounterError(.usage, "--locations must be 1...\(RollbackLimits.maxLocations)")
        }
        return try exclusively { () throws(CounterError) in
            var values = try load() ?? []
            let before = values.count
            guard locations > before else { return "\(path): \(before) locations already provisioned" }
            values += [UInt64](repeating: 0, count: locations - before)
            try store(values)
            return "\(path): provisioned locations \(before)..<\(locations), starting at 0"
        }
    }
}
