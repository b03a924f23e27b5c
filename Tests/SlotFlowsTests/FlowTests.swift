import Testing
import SlotCore
import SlotCrypto
import SlotFlows
import SlotStorage
import SlotTestSupport

func S(_ p: UInt8, _ t: UInt8, _ s: Bool) -> SlotState { SlotState(priority: p, tries: t, successful: s) }

/// Byte ranges of the four GPT regions on a fixture disk (128 entries of 128 bytes).
struct Regions {
    let sectorSize: Int
    let byteCount: Int
    var entriesBytes: Int { 128 * 128 }
    var primaryHeader: Range<Int> { sectorSize..<(2 * sectorSize) }
    var primaryEntries: Range<Int> { (2 * sectorSize)..<(2 * sectorSize + entriesBytes) }
    var backupHeader: Range<Int> { (byteCount - sectorSize)..<byteCount }
    var backupEntries: Range<Int> {
        let sectors = (entriesBytes + sectorSize - 1) / sectorSize
        let start = byteCount - sectorSize - sectors * sectorSize
        return start..<(start + entriesBytes)
    }
    init(_ store: MemoryStore) {
        sectorSize = store.sectorSize
        byteCount = store.bytes.count
    }
}

@Suite struct BootFlowTests {
    @Test(arguments: [512, 4096])
    func bootConsumesTryAndPersists(sectorSize: Int) throws {
        let store = TableFixtures.disk(sectorSize: sectorSize, states: [S(15, 2, false), S(14, 0, true)])
        let report = try BootControl.boot(store, verifier: TableOnlyVerifier(), dryRun: false)
        #expect(report.slots[report.chosen].letter == UInt8(ascii: "a"))
        #expect(report.consumedTry && report.wrote)
        #expect(TableFixtures.states(store.bytes, sectorSize: sectorSize) == [S(15, 1, false), S(14, 0, true)])
        _ = try BootControl.boot(store, verifier: TableOnlyVerifier(), dryRun: false)
        #expect(TableFixtures.states(store.bytes, sectorSize: sectorSize) == [S(15, 0, false), S(14, 0, true)])
        // Tries exhausted, never confirmed: falls back to b, and a is normalized to priority 0.
        let third = try BootControl.boot(store, verifier: TableOnlyVerifier(), dryRun: false)
        #expect(third.slots[third.chosen].letter == UInt8(ascii: "b"))
        #expect(TableFixtures.states(store.bytes, sectorSize: sectorSize) == [S(0, 0, false), S(14, 0, true)])
    }

    @Test func dryRunWritesNothing() throws {
        let store = TableFixtures.disk(states: [S(15, 2, false), S(14, 0, true)])
        let before = store.bytes
        let report = try BootControl.boot(store, verifier: TableOnlyVerifier(), dryRun: true)
        #expect(report.consumedTry && !report.wrote)
        #expect(store.writes == 0 && store.bytes == before)
    }

    @Test func successfulSlotBootsWithoutAWrite() throws {
        let store = TableFixtures.disk(states: [S(15, 0, true), S(14, 0, true)])
        let report = try BootControl.boot(store, verifier: TableOnlyVerifier(), dryRun: false)
        #expect(!report.consumedTry && !report.wrote && store.writes == 0)
    }

    @Test func nothingBootableIsCode50AndNoWrite() throws {
        let store = TableFixtures.disk(states: [S(0, 0, true), S(3, 0, false)])
        #expect { try BootControl.boot(store, verifier: TableOnlyVerifier(), dryRun: false) } throws: {
            ($0 as? FlowError)?.code == .noBootableSlot
        }
        #expect(store.writes == 0)
    }

    final class RefuseA: SlotVerifier {
        var name: String { "test" }
        func verify(slot: Slot, in table: LoadedTable, store: BlockStore) -> SlotVerdict {
            slot.letter == UInt8(ascii: "a") ? .rejected(code: .signatureInvalid, reason: "test refusal") : .accepted(nil)
        }
    }

    @Test func refusedSlotIsMarkedUnbootableAndNextTried() throws {
        let store = TableFixtures.disk(states: [S(15, 3, false), S(14, 0, true)])
        let report = try BootControl.boot(store, verifier: RefuseA(), dryRun: false)
        #expect(report.slots[report.chosen].letter == UInt8(ascii: "b"))
        #expect(report.rejected.count == 1 && report.rejected[0].reason == "test refusal")
        #expect(TableFixtures.states(store.bytes, sectorSize: 512) == [S(0, 0, false), S(14, 0, true)])
    }

    @Test func markCommands() throws {
        let store = TableFixtures.disk(states: [S(15, 3, false), S(14, 0, true)])
        _ = try BootControl.markSuccessful(store, slot: UInt8(ascii: "a"))
        #expect(TableFixtures.states(store.bytes, sectorSize: 512) == [S(15, 0, true), S(14, 0, true)])
        _ = try BootControl.markFailed(store, slot: UInt8(ascii: "A"))
        #expect(TableFixtures.states(store.bytes, sectorSize: 512) == [S(0, 0, false), S(14, 0, true)])
        #expect { try BootControl.markSuccessful(store, slot: UInt8(ascii: "a")) } throws: {
            ($0 as? FlowError)?.code == .slotNotBootable
        }
        #expect { try BootControl.markSuccessful(store, slot: UInt8(ascii: "q")) } throws: {
            ($0 as? FlowError)?.code == .usage
        }
        _ = try BootControl.setActive(store, slot: UInt8(ascii: "a"), tries: 4)
        #expect(TableFixtures.states(store.bytes, sectorSize: 512) == [S(15, 4, false), S(14, 0, true)])
    }

    /// The boot that spends a slot's last try can still be confirmed; only a later boot
    /// retires an unconfirmed slot.
    @Test func markSuccessfulAfterTheLastTry() throws {
        let store = TableFixtures.disk(states: [S(15, 1, false), S(14, 0, true)])
        let boot = try BootControl.boot(store, verifier: TableOnlyVerifier(), dryRun: false)
        #expect(boot.chosen == 0 && boot.consumedTry)
        #expect(TableFixtures.states(store.bytes, sectorSize: 512) == [S(15, 0, false), S(14, 0, true)])
        _ = try BootControl.markSuccessful(store, slot: UInt8(ascii: "a"))
        #expect(TableFixtures.states(store.bytes, sectorSize: 512) == [S(15, 0, true), S(14, 0, true)])
        // Not confirmed in time: the next boot retires it and falls back.
        let other = TableFixtures.disk(states: [S(15, 1, false), S(14, 0, true)])
        _ = try BootControl.boot(other, verifier: TableOnlyVerifier(), dryRun: false)
        let next = try BootControl.boot(other, verifier: TableOnlyVerifier(), dryRun: false)
        #expect(next.chosen == 1)
        #expect { try BootControl.markSuccessful(other, slot: UInt8(ascii: "a")) } throws: {
            ($0 as? FlowError)?.code == .slotNotBootable
        }
    }

    /// A repair that cannot be written does not stop a confirmed slot from booting; a
    /// try that cannot be persisted does stop the boot (fail closed).
    @Test func unwritableRepairIsAWarningButUnwritableTryIsAnError() throws {
        let confirmed = TableFixtures.disk(states: [S(15, 0, true), S(14, 0, true)])
        let regions = Regions(confirmed)
        for i in regions.backupHeader { confirmed.bytes[i] = 0 }
        confirmed.failingWriteRange = 0..<UInt64(confirmed.bytes.count)
        let boot = try BootControl.boot(confirmed, verifier: TableOnlyVerifier(), dryRun: false)
        #expect(boot.chosen == 0 && !boot.wrote && boot.warnings.count == 1)

        let trying = TableFixtures.disk(states: [S(15, 3, false), S(14, 0, true)])
        trying.failingWriteRange = 0..<UInt64(trying.bytes.count)
        #expect { try BootControl.boot(trying, verifier: TableOnlyVerifier(), dryRun: false) } throws: {
            ($0 as? FlowError)?.code == .ioError
        }
        // The backup failing after the primary is flushed: committed, with a warning.
        let late = TableFixtures.disk(states: [S(15, 3, false), S(14, 0, true)])
        late.failingWriteRange = UInt64(Regions(late).backupEntries.lowerBound)..<UInt64(late.bytes.count)
        let report = try BootControl.boot(late, verifier: TableOnlyVerifier(), dryRun: false)
        #expect(report.consumedTry && report.warnings.count == 1)
        #expect(TableFixtures.states(late.bytes, sectorSize: 512) == [S(15, 2, false), S(14, 0, true)])
    }

    @Test func normalizationIsReportedNotWrittenByStatus() throws {
        let store = TableFixtures.disk(states: [S(15, 4, true), S(9, 0, false)])
        let report = try BootControl.status(store)
        #expect(report.normalization.clearedTries == 1 && report.normalization.exhausted == 2)
        #expect(store.writes == 0)
    }
}

@Suite struct RepairTests {
    static func damage(_ store: MemoryStore, _ range: Range<Int>) {
        for i in range { store.bytes[i] ^= 0x5A }
    }

    @Test(arguments: [512, 4096], ["primaryHeader", "primaryEntries", "backupHeader", "backupEntries"])
    func oneDamagedCopyIsReadAndRepaired(sectorSize: Int, region: String) throws {
        let store = TableFixtures.disk(sectorSize: sectorSize, states: [S(15, 0, true), S(10, 2, false)])
        let good = store.bytes
        let regions = Regions(store)
        let range = [
            "primaryHeader": regions.primaryHeader, "primaryEntries": regions.primaryEntries,
            "backupHeader": regions.backupHeader, "backupEntries": regions.backupEntries,
        ][region]!
        Self.damage(store, range)
        let status = try BootControl.status(store)
        #expect(status.table.needsRepair)
        #expect(status.table.sourceRole == (region.hasPrefix("primary") ? .backup : .primary))
        #expect((0..<status.slots.count).map { status.slots[$0].state } == [S(15, 0, true), S(10, 2, false)])
        #expect(store.writes == 0)
        // A successful slot boots without a state change; the repair still happens.
        let boot = try BootControl.boot(store, verifier: TableOnlyVerifier(), dryRun: false)
        #expect(boot.wrote)
        #expect(store.bytes == good, "the repaired disk equals the undamaged one byte for byte")
    }

    @Test func bothCopiesBadIsCode60AndNothingWritten() throws {
        let store = TableFixtures.disk(states: [S(15, 0, true), S(10, 2, false)])
        let regions = Regions(store)
        Self.damage(store, regions.primaryHeader)
        Self.damage(store, regions.backupEntries)
        for run in [{ _ = try BootControl.boot(store, verifier: TableOnlyVerifier(), dryRun: false) },
                    { _ = try BootControl.markSuccessful(store, slot: 0x61) },
                    { _ = try BootControl.status(store) }] as [() throws -> Void] {
            #expect { try run() } throws: { ($0 as? FlowError)?.code == .tableUnusable }
        }
        #expect(store.writes == 0)
    }

    @Test func readErrorOnOneCopyFallsBackAndBothIsIOError() throws {
        let store = TableFixtures.disk(states: [S(15, 0, true), S(10, 2, false)])
        let regions = Regions(store)
        store.failingReadRange = UInt64(regions.primaryEntries.lowerBound)..<UInt64(regions.primaryEntries.upperBound)
        let status = try BootControl.status(store)
        #expect(status.table.primary.status == .unreadable && status.table.sourceRole == .backup)
        store.failingReadRange = UInt64(regions.primaryHeader.lowerBound)..<UInt64(regions.backupHeader.upperBound)
        #expect { try BootControl.status(store) } throws: { ($0 as? FlowError)?.code == .ioError }
    }

    @Test func staleBackupLosesToPrimaryAndIsRewritten() throws {
        let old = TableFixtures.disk(states: [S(15, 3, false), S(14, 0, true)])
        let new = MemoryStore(bytes: old.bytes, sectorSize: 512)
        _ = try BootControl.markSuccessful(new, slot: 0x61)
        // The new primary with the old backup: both valid, disagreeing. The primary wins.
        let regions = Regions(old)
        var mixed = new.bytes
        mixed.replaceSubrange(regions.backupEntries, with: old.bytes[regions.backupEntries])
        mixed.replaceSubrange(regions.backupHeader, with: old.bytes[regions.backupHeader])
        let store = MemoryStore(bytes: mixed, sectorSize: 512)
        let status = try BootControl.status(store)
        #expect(status.table.backup.status == .stale)
        #expect(status.slots[0].state == S(15, 0, true))
        _ = try BootControl.boot(store, verifier: TableOnlyVerifier(), dryRun: false)
        #expect(store.bytes == new.bytes)
    }

    @Test func duplicateSlotNamesAreRefused() throws {
        let store = TableFixtures.disk(slots: 2)
        let regions = Regions(store)
        // Rename root_b to root_a in both copies, fixing CRCs the way a foreign tool would.
        for (entries, header) in [(regions.primaryEntries, regions.primaryHeader), (regions.backupEntries, regions.backupHeader)] {
            store.bytes[entries.lowerBound + 128 + 56 + 10] = 0x61
            let crc = CRC32.checksum(Array(store.bytes[entries]).span)
            var sector = Array(store.bytes[header])
            var h = try GPTHeader.parse(sector.span)
            h.entriesCRC = crc
            var span = sector.mutableSpan
            h.serialize(into: &span)
            store.bytes.replaceSubrange(header, with: sector)
        }
        #expect { try BootControl.status(store) } throws: { ($0 as? FlowError)?.code == .duplicateSlot }
    }
}

/// One hasher serves every slot in a boot: a read error part way through one slot must
/// not leak into the next slot's digest.
@Suite struct HasherTests {
    @Test func aReadErrorDoesNotPoisonTheNextDigest() throws {
        var bytes = [UInt8](repeating: 0, count: 6 << 20)
        for i in 0..<bytes.count { bytes[i] = UInt8(truncatingIfNeeded: i &* 31) }
        let store = MemoryStore(bytes: bytes, sectorSize: 512)
        store.failingReadRange = UInt64(1 << 20)..<UInt64((1 << 20) + 10) // the second chunk of "slot A"
        let hasher = PayloadHasher()
        #expect(throws: StorageError.self) { _ = try hasher.digest(store, offset: 0, count: 3 << 20) }
        store.failingReadRange = nil
        let slotB = try hasher.digest(store, offset: 3 << 20, count: 3 << 20)
        #expect(slotB == SHA256Stream.digest(Array(bytes[(3 << 20)...])))
    }
}
