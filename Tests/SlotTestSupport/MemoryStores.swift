import SlotCore
import SlotCounters
import SlotFlows
import SlotStorage

/// An in-memory disk that counts every read, write and flush. Test-only.
public final class MemoryStore: BlockStore {
    public var bytes: [UInt8]
    public let sectorSize: Int
    public private(set) var reads = 0
    public private(set) var writes = 0
    public private(set) var flushes = 0
    /// When set, reads of this byte range fail like a bad sector.
    public var failingReadRange: Range<UInt64>?
    /// With `failingReadRange`: how many reads fail before the range reads again (a
    /// transient error); nil fails every time.
    public var failingReadsLeft: Int?
    /// When set, every flush fails (fsync reporting EIO) after the writes landed.
    public var failingFlush = false
    /// When set, writes touching this byte range fail (a bad sector, a read-only area).
    public var failingWriteRange: Range<UInt64>?

    public init(bytes: [UInt8], sectorSize: Int) {
        self.bytes = bytes
        self.sectorSize = sectorSize
    }

    public var byteCount: UInt64 { UInt64(bytes.count) }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(StorageError) {
        reads += 1
        if let bad = failingReadRange, offset < bad.upperBound, offset + UInt64(buffer.count) > bad.lowerBound {
            if let left = failingReadsLeft {
                if left <= 1 { failingReadRange = nil; failingReadsLeft = nil } else { failingReadsLeft = left - 1 }
            }
            throw StorageError(.read, path: "memory", detail: "injected read error at \(offset)")
        }
        guard offset <= UInt64(bytes.count), UInt64(buffer.count) <= UInt64(bytes.count) - offset else {
            throw StorageError(.shortRead, path: "memory", detail: "read past the end at \(offset)")
        }
        bytes.withUnsafeBytes { source in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[Int(offset)..<Int(offset) + buffer.count]))
        }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64) throws(StorageError) {
        writes += 1
        if let bad = failingWriteRange, offset < bad.upperBound, offset + UInt64(data.count) > bad.lowerBound {
            throw StorageError(.write, path: "memory", detail: "injected write error at \(offset)")
        }
        guard offset <= UInt64(bytes.count), UInt64(data.count) <= UInt64(bytes.count) - offset else {
            throw StorageError(.write, path: "memory", detail: "write past the end at \(offset)")
        }
        bytes.withUnsafeMutableBytes { target in
            UnsafeMutableRawBufferPointer(rebasing: target[Int(offset)..<Int(offset) + data.count]).copyMemory(from: data)
        }
    }

    public func flush() throws(StorageError) {
        flushes += 1
        if failingFlush { throw StorageError(.flush, path: "memory", detail: "fsync failed: injected I/O error") }
    }
}

/// A disk that loses power after the N-th write (0-based `cutAt`): that write is torn
/// (only its first `tornBytes` bytes land, which tears the sector being written), and
/// every later read, write or flush fails. The writes since the last flush then meet
/// `cache`: all kept, all lost, or each kept or lost at random (a drive that reorders
/// its volatile cache). After the cut, `surviving` is what a fresh boot finds.
public final class PowerCutStore: BlockStore {
    public enum Cache: Sendable { case keep, lose, randomSubset(seed: UInt64) }

    public private(set) var bytes: [UInt8]
    public let sectorSize: Int
    public let cutAt: Int
    public let tornBytes: Int
    public let cache: Cache
    public private(set) var writes = 0
    public private(set) var didCut = false
    /// Writes since the last flush, with the bytes they replaced, oldest first.
    private var unflushed: [(offset: Int, previous: [UInt8])] = []

    public init(bytes: [UInt8], sectorSize: Int, cutAt: Int, tornBytes: Int, cache: Cache) {
        self.bytes = bytes
        self.sectorSize = sectorSize
        self.cutAt = cutAt
        self.tornBytes = tornBytes
        self.cache = cache
    }

    public var byteCount: UInt64 { UInt64(bytes.count) }
    public var surviving: [UInt8] { bytes }

    private func dead() -> StorageError { StorageError(.write, path: "powercut", detail: "power lost") }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(StorageError) {
        guard !didCut else { throw dead() }
        guard offset + UInt64(buffer.count) <= UInt64(bytes.count) else {
            throw StorageError(.shortRead, path: "powercut", detail: "read past the end")
        }
        bytes.withUnsafeBytes { source in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[Int(offset)..<Int(offset) + buffer.count]))
        }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64) throws(StorageError) {
        guard !didCut else { throw dead() }
        let index = writes
        writes += 1
        let start = Int(offset)
        let landing = index == cutAt ? min(tornBytes, data.count) : data.count
        unflushed.append((start, Array(bytes[start..<start + data.count])))
        for i in 0..<landing { bytes[start + i] = data[i] }
        if index == cutAt {
            didCut = true
            loseCache()
            throw dead()
        }
    }

    public func flush() throws(StorageError) {
        guard !didCut else { throw dead() }
        unflushed.removeAll()
    }

    private func loseCache() {
        var random = SeededRandom(seed: 0)
        switch cache {
        case .keep: return
        case .lose: break
        case .randomSubset(let seed): random = SeededRandom(seed: seed)
        }
        // Undo newest first, so an older write's bytes come back under a newer one.
        for write in unflushed.reversed() {
            if case .randomSubset = cache, Bool.random(using: &random) { continue }
            bytes.replaceSubrange(write.offset..<write.offset + write.previous.count, with: write.previous)
        }
    }
}

/// A small deterministic generator (SplitMix64) so every property case reproduces from its seed.
public struct SeededRandom: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Builds valid slot tables in memory with the same format flow the CLI uses.
public enum TableFixtures {
    /// A formatted disk of `sectors` sectors with `slots` slots of 1 MiB, with the given
    /// states applied (through the public table API, then saved).
    /// `small` packs slots of 64 KiB on 4 KiB boundaries into a disk of a few hundred KiB,
    /// for tests that run thousands of cases.
    public static func disk(sectorSize: Int = 512, slots: Int = 2, states: [SlotState] = [], seed: UInt64 = 1,
                            small: Bool = false) -> MemoryStore {
        let slotBytes: UInt64 = small ? 64 << 10 : 1 << 20
        let alignment: UInt64 = small ? 4096 : 1 << 20
        let size = small ? (slots + 2) * (64 << 10) : (slots + 2) << 20
        let store = MemoryStore(bytes: [UInt8](repeating: 0, count: size), sectorSize: sectorSize)
        var random = SeededRandom(seed: seed)
        do {
            _ = try FormatFlow.format(store, .init(slotCount: slots, slotBytes: slotBytes, prefix: "root", force: false, alignment: alignment)) {
                GUID(low: random.next(), high: random.next())
            }
            if !states.isEmpty {
                let table = try TableStore.load(store)
                var slotTable = table.slots
                for (i, state) in states.enumerated() { slotTable[i].state = state }
                try TableStore.save(store, table, slots: slotTable)
            }
        } catch {
            fatalError("fixture: \(error)")
        }
        return MemoryStore(bytes: store.bytes, sectorSize: sectorSize)
    }

    /// The slot states on `bytes`, or nil if no valid table loads.
    public static func states(_ bytes: [UInt8], sectorSize: Int) -> [SlotState]? {
        guard let table = try? TableStore.load(MemoryStore(bytes: bytes, sectorSize: sectorSize)) else { return nil }
        return (0..<table.slots.count).map { table.slots[$0].state }
    }
}

/// Rollback counters in memory that can fail after a number of increments (a power cut
/// in the middle of a raise), counting every step. Test-only: the real stores are
/// tested against swtpm and the file system.
public final class MemoryCounters: RollbackCounters {
    public func useOwnerAuthorization(_ secret: [UInt8]) throws(CounterError) {
        throw CounterError(.usage, "memory counters have no owner authorization")
    }
    public var values: [UInt64]
    public var failAfterIncrements: Int?
    /// Every read fails, as an unreachable TPM.
    public var unreachable = false
    public private(set) var increments = 0
    public var spec: String { "memory" }
    public var hardwareBacked: Bool { false }
    public func caveats() -> [String] { [] }

    public init(locations: Int) { values = [UInt64](repeating: 0, count: locations) }

    public func provisionedLocations() throws(CounterError) -> Int {
        if unreachable { throw CounterError("unreachable") }
        return values.count
    }

    public func read(location: UInt32) throws(CounterError) -> UInt64 {
        if unreachable { throw CounterError("unreachable") }
        guard Int(location) < values.count else { throw CounterError("location \(location) not provisioned") }
        return values[Int(location)]
    }

    public func raise(location: UInt32, to value: UInt64) throws(CounterError) {
        while try read(location: location) < value {
            if let limit = failAfterIncrements, increments >= limit { throw CounterError("power lost during the raise") }
            values[Int(location)] += 1
            increments += 1
        }
    }

    public func provision(locations: Int) throws(CounterError) -> String { "memory" }
}

/// Stands in for signed images in memory: each slot claims a rollback location and
/// index, and is refused below the counter as SignedSlotVerifier refuses it.
public final class ClaimVerifier: SlotVerifier {
    public var claims: [UInt8: RollbackClaim]
    public let counters: RollbackCounters

    public init(claims: [UInt8: RollbackClaim], counters: RollbackCounters) {
        self.claims = claims
        self.counters = counters
    }

    public var name: String { "claims" }

    public func verify(slot: Slot, in table: LoadedTable, store: BlockStore) -> SlotVerdict {
        guard let claim = claims[slot.letter] else { return .rejected(code: .unsigned, reason: "no image") }
        do {
            guard Int(claim.location) < (try counters.provisionedLocations()) else {
                return .rejected(code: .countersUnavailable, reason: "location \(claim.location) not provisioned")
            }
            let stored = try counters.read(location: claim.location)
            return claim.index >= stored ? .accepted(claim) : .rejected(code: .rollback, reason: "below counter \(stored)")
        } catch {
            return .fatal(code: error.code, reason: error.message)
        }
    }
}
