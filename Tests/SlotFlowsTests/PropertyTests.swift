#if canImport(Glibc)
import Glibc
#endif
import Testing
import SlotCore
import SlotFlows
import SlotStorage
import SlotTestSupport

/// Property tests over corrupted slot tables (spec/testing.md). Each case starts from a
/// valid table with random slot states, applies 1-3 random corruptions, then runs status
/// and boot. Properties:
///  1. nothing crashes or hangs; errors carry a table code and nothing is written;
///  2. any table that loads shows exactly the original states (no corruption can
///     produce a state a valid copy did not hold);
///  3. boot chooses what an independent reading of the policy chooses on those states;
///  4. whatever boot writes is two valid, equal copies holding the expected new state.
/// A failure prints its seed; SLOTCTL_SEED=<seed> SLOTCTL_CASES=1 reproduces it.
@Suite struct PropertyTests {
    static var baseSeed: UInt64 {
        if let text = getenvString("SLOTCTL_SEED"), let seed = UInt64(text) { return seed }
        return 0x5107_C7A1
    }
    static var caseCount: Int {
        if let text = getenvString("SLOTCTL_CASES"), let count = Int(text) { return count }
        return 4000
    }

    @Test func corruptedTables() throws {
        var outcomes: [String: Int] = [:]
        for n in 0..<Self.caseCount {
            let seed = Self.baseSeed &+ UInt64(n)
            outcomes[try Self.runCase(seed: seed), default: 0] += 1
        }
        // The generator must reach every outcome, or it tests less than it claims.
        #expect(outcomes["unusable", default: 0] > 0 && outcomes["repaired", default: 0] > 0
                && outcomes["intact", default: 0] > 0, "outcomes: \(outcomes)")
    }

    /// Independent statement of the policy (spec/policy.md), on plain values.
    static func oracleChoice(_ states: [SlotState]) -> Int? {
        var best: Int? = nil
        for (i, s) in states.enumerated() {
            let effective = normalized(s)
            guard effective.priority > 0 && (effective.successful || effective.tries > 0) else { continue }
            if best == nil || effective.priority > normalized(states[best!]).priority { best = i }
        }
        return best
    }

    static func normalized(_ s: SlotState) -> SlotState {
        var t = s
        if t.successful { t.tries = 0 }
        if t.priority > 0 && !t.successful && t.tries == 0 { t.priority = 0 }
        return t
    }

    static func randomStates(_ count: Int, _ random: inout SeededRandom) -> [SlotState] {
        (0..<count).map { _ in
            SlotState(priority: UInt8.random(in: 0...15, using: &random), tries: UInt8.random(in: 0...15, using: &random),
                      successful: Bool.random(using: &random))
        }
    }

    static func runCase(seed: UInt64) throws -> String {
        var random = SeededRandom(seed: seed)
        let sectorSize = Bool.random(using: &random) ? 512 : 4096
        let slotCount = Int.random(in: 2...4, using: &random)
        let backupStates = randomStates(slotCount, &random)
        let original = TableFixtures.disk(sectorSize: sectorSize, slots: slotCount, states: backupStates, seed: seed, small: true)
        let pristineBackup = try TableStore.load(original)
        // A third of the cases start with two valid copies that disagree: a newer primary
        // (written, flushed, then power lost before the backup), the state a cut leaves.
        var image = original.bytes
        var primaryStates = backupStates
        if Int.random(in: 0..<3, using: &random) == 0 {
            primaryStates = randomStates(slotCount, &random)
            var slots = pristineBackup.slots
            for i in 0..<slotCount { slots[i].state = primaryStates[i] }
            let cut = PowerCutStore(bytes: image, sectorSize: sectorSize, cutAt: 2, tornBytes: 0, cache: .keep)
            _ = try? TableStore.save(cut, pristineBackup, slots: slots)
            image = cut.surviving
        }
        let pristinePrimary = try TableStore.load(MemoryStore(bytes: image, sectorSize: sectorSize))
        var corrupter = Corrupter(bytes: image, sectorSize: sectorSize, random: random)
        let corruptions = Int.random(in: 1...3, using: &corrupter.random)
        var applied: [String] = []
        for _ in 0..<corruptions { applied.append(corrupter.corruptOnce()) }
        let store = MemoryStore(bytes: corrupter.bytes, sectorSize: sectorSize)
        let context = "seed \(seed) (\(applied.joined(separator: ", ")))"

        let loaded: LoadedTable
        do {
            loaded = try TableStore.load(store)
        } catch {
            #expect([.tableUnusable, .ioError].contains(error.code), "\(context): \(error.message)")
            #expect(corrupter.touchedPrimary, "\(context): an intact primary was not used")
            #expect { try BootControl.boot(store, verifier: TableOnlyVerifier(), dryRun: false) } throws: { _ in true }
            #expect(store.writes == 0, "\(context): wrote to an unusable table")
            return "unusable"
        }
        let seen = (0..<loaded.slots.count).map { loaded.slots[$0].state }
        // The newest copy wins whenever it is intact; otherwise the table that loads is one
        // of the two valid copies, byte for byte.
        if !corrupter.touchedPrimary {
            #expect(loaded.sourceRole == .primary, "\(context): an intact primary lost")
        }
        let pristine = loaded.sourceRole == .primary ? pristinePrimary : pristineBackup
        #expect(seen == (loaded.sourceRole == .primary ? primaryStates : backupStates), "\(context): loaded states no valid copy held")
        let sameEntries = loaded.entries == pristine.entries
        #expect(sameEntries, "\(context): loaded entries no valid copy held")
        let (h, p) = (loaded.header, pristine.header)
        #expect(h.firstUsableLBA == p.firstUsableLBA && h.lastUsableLBA == p.lastUsableLBA && h.diskGUID == p.diskGUID
                && h.entryCount == p.entryCount && h.entrySize == p.entrySize && h.entriesCRC == p.entriesCRC,
                "\(context): loaded a header no valid copy held")
        let repaired = loaded.needsRepair

        let expectedChoice = oracleChoice(seen)
        do {
            let boot = try BootControl.boot(store, verifier: TableOnlyVerifier(), dryRun: false)
            #expect(boot.chosen == expectedChoice, "\(context)")
            var expected = seen.map(normalized)
            if let choice = expectedChoice, !expected[choice].successful { expected[choice].tries -= 1 }
            if store.writes > 0 {
                let after = try TableStore.load(store)
                #expect(after.primary.status == .valid && after.backup.status == .valid, "\(context): wrote an invalid copy")
                #expect((0..<after.slots.count).map { after.slots[$0].state } == expected, "\(context)")
            }
        } catch {
            #expect(expectedChoice == nil && error.code == .noBootableSlot, "\(context): \(error.message)")
        }
        return repaired ? "repaired" : "intact"
    }
}

/// Random damage to a disk image, biased toward the GPT structures.
struct Corrupter {
    var bytes: [UInt8]
    let sectorSize: Int
    var random: SeededRandom

    init(bytes: [UInt8], sectorSize: Int, random: SeededRandom) {
        self.bytes = bytes
        self.sectorSize = sectorSize
        self.random = random
    }

    var entriesSectors: Int { (128 * 128 + sectorSize - 1) / sectorSize }
    var lastSector: Int { bytes.count / sectorSize - 1 }

    /// The offset of a random byte in one of the four GPT regions.
    mutating func gptOffset() -> Int {
        switch Int.random(in: 0..<4, using: &random) {
        case 0: return sectorSize + Int.random(in: 0..<92, using: &random)
        case 1: return 2 * sectorSize + Int.random(in: 0..<(128 * 128), using: &random)
        case 2: return lastSector * sectorSize + Int.random(in: 0..<92, using: &random)
        default: return (lastSector - entriesSectors) * sectorSize + Int.random(in: 0..<(128 * 128), using: &random)
        }
    }

    var truncated = false
    /// Whether any damage reached the primary copy (its header, its entries, or, through
    /// truncation, the backup location it names).
    var touchedPrimary = false

    mutating func note(_ offset: Int) {
        if offset >= sectorSize && offset < 2 * sectorSize + 128 * 128 { touchedPrimary = true }
    }

    mutating func corruptOnce() -> String {
        // Region offsets are those of the formatted disk: after a truncation, stop.
        guard !truncated else { return "nothing (already truncated)" }
        switch Int.random(in: 0..<7, using: &random) {
        case 0:
            let offset = gptOffset()
            note(offset)
            bytes[offset] ^= 1 << UInt8.random(in: 0...7, using: &random)
            return "bit flip at \(offset)"
        case 1:
            let sector = gptOffset() / sectorSize
            let tear = Int.random(in: 1..<sectorSize, using: &random)
            let fill = UInt8.random(in: 0...255, using: &random)
            for i in (sector * sectorSize + tear)..<((sector + 1) * sectorSize) { note(i); bytes[i] = fill }
            return "torn sector \(sector) at \(tear)"
        case 2:
            let keep = Int.random(in: 0..<bytes.count, using: &random)
            bytes.removeSubrange(keep...)
            truncated = true
            touchedPrimary = true
            return "truncated to \(keep)"
        case 3:
            let sector = gptOffset() / sectorSize
            for i in (sector * sectorSize)..<((sector + 1) * sectorSize) { note(i); bytes[i] = UInt8.random(in: 0...255, using: &random) }
            return "garbage sector \(sector)"
        case 4, 5:
            return hostileHeader(backup: Bool.random(using: &random))
        default:
            return hostileEntries(backup: Bool.random(using: &random))
        }
    }

    /// Sets one header field to a hostile value and fixes the header CRC, so only
    /// validation (not the CRC) can catch it.
    mutating func hostileHeader(backup: Bool) -> String {
        let base = (backup ? lastSector : 1) * sectorSize
        if !backup { touchedPrimary = true }
        let hostile: [(Int, Int, UInt64)] = [
            (12, 4, 0), (12, 4, 91), (12, 4, UInt64(sectorSize) + 1), (12, 4, 0xFFFF_FFFF),
            (24, 8, 0xFFFF_FFFF_FFFF_FFFF), (32, 8, UInt64(lastSector) + 1), (32, 8, 0),
            (40, 8, 0), (40, 8, 0xFFFF_FFFF_FFFF_FFFF), (48, 8, UInt64(lastSector)), (48, 8, 0xFFFF_FFFF_FFFF_FFFF),
            (72, 8, 0), (72, 8, 1), (72, 8, 0xFFFF_FFFF_FFFF_FFFF), (72, 8, UInt64(lastSector)),
            (80, 4, 0), (80, 4, 0xFFFF_FFFF), (80, 4, 4097), (80, 4, 100_000),
            (84, 4, 0), (84, 4, 1), (84, 4, 129), (84, 4, 8192), (84, 4, 0xFFFF_FFFF), (84, 4, 0x8000_0000),
        ]
        let (field, width, value) = hostile[Int.random(in: 0..<hostile.count, using: &random)]
        for i in 0..<width { bytes[base + field + i] = UInt8(truncatingIfNeeded: value >> UInt64(8 * i)) }
        fixHeaderCRC(base)
        return "hostile \(backup ? "backup" : "primary") header field \(field) = \(value)"
    }

    /// Makes partitions overlap or leave the usable range, fixing both CRCs.
    mutating func hostileEntries(backup: Bool) -> String {
        let headerBase = (backup ? lastSector : 1) * sectorSize
        if !backup { touchedPrimary = true }
        let entriesBase = (backup ? lastSector - entriesSectors : 2) * sectorSize
        let firstOfA = load64(entriesBase + 32), lastOfA = load64(entriesBase + 40)
        let choices: [(Int, UInt64, String)] = [
            (128 + 32, lastOfA, "b starts inside a"),
            (32, 0, "a starts at LBA 0"),
            (40, 0xFFFF_FFFF_FFFF_FFFF, "a ends past the disk"),
            (40, firstOfA &- 1, "a ends before it starts"),
            (128 + 40, UInt64(lastSector), "b ends on the backup header"),
        ]
        let (offset, value, what) = choices[Int.random(in: 0..<choices.count, using: &random)]
        store64(entriesBase + offset, value)
        let crc = CRC32.checksum(Array(bytes[entriesBase..<(entriesBase + 128 * 128)]).span)
        for i in 0..<4 { bytes[headerBase + 88 + i] = UInt8(truncatingIfNeeded: crc >> UInt32(8 * i)) }
        fixHeaderCRC(headerBase)
        return "hostile \(backup ? "backup" : "primary") entries: \(what)"
    }

    func load64(_ offset: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(bytes[offset + $1]) << UInt64(8 * $1) } }
    mutating func store64(_ offset: Int, _ value: UInt64) {
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> UInt64(8 * i)) }
    }

    mutating func fixHeaderCRC(_ base: Int) {
        for i in 16..<20 { bytes[base + i] = 0 }
        let crc = CRC32.checksum(Array(bytes[base..<(base + 92)]).span)
        for i in 0..<4 { bytes[base + 16 + i] = UInt8(truncatingIfNeeded: crc >> UInt32(8 * i)) }
    }
}

func getenvString(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
}
