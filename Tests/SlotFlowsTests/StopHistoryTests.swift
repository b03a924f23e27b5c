import Testing
import SlotCore
import SlotFlows
import SlotStorage
import SlotTestSupport

/// The state partition's history (spec/state.md): the layout round-trips and refuses
/// damage, the copy choice survives a torn write, and a cut at any write of a flow that
/// records a stop leaves the table and the history each old or new, never a record that
/// explains a state the table does not hold.
@Suite struct StopHistoryTests {
    func record(_ letter: Character, _ kind: StopKind, reason: String = "why") -> StopRecord {
        var r = StopRecord(letter: letter.asciiValue!, kind: kind, code: kind == .refused ? 21 : 0, attributesAfter: 0x1234,
                           firstLBA: 2048)
        r.setActor(Array("confirm".utf8).span)
        r.setReason(Array(reason.utf8).span)
        return r
    }

    func bytes(_ history: SlotHistory) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: HistoryLayout.copySize)
        var span = bytes.mutableSpan
        history.serialize(into: &span)
        return bytes
    }

    @Test func roundTripAndEveryDamagedByteRefused() throws {
        var history = SlotHistory()
        history.sequence = 7
        history.set(record("a", .refused))
        history.set(record("b", .markedFailed, reason: "health check 10-service failed (exit 1)"))
        history.set(record("a", .triesExhausted)) // replaces a's
        let copy = bytes(history)
        let parsed = try SlotHistory.parse(copy.span)
        #expect(parsed.sequence == 7 && parsed.count == 2)
        #expect(parsed.record(for: 0x61)?.kind == .triesExhausted && parsed.record(for: 0x62)?.kind == .markedFailed)
        let b = try #require(parsed.record(for: 0x62))
        #expect(String(decoding: (0..<Int(b.reasonLength)).map { b.reason[$0] }, as: UTF8.self)
                == "health check 10-service failed (exit 1)")
        // Any changed byte of the used part is refused (CRC, magic or a field check).
        let used = HistoryLayout.records + 2 * HistoryLayout.recordSize
        for i in stride(from: 0, to: used, by: 3) {
            var damaged = copy
            damaged[i] ^= 0x40
            #expect(throws: HistoryError.self) { try SlotHistory.parse(damaged.span) }
        }
        var cleared = parsed
        #expect(cleared.clear(0x61) && !cleared.clear(0x61) && cleared.count == 1 && cleared.record(for: 0x62) != nil)
    }

    @Test func reasonIsCutAtACharacterBoundary() {
        var r = StopRecord(letter: 0x61, kind: .markedFailed, code: 0, attributesAfter: 0, firstLBA: 0)
        let text = String(repeating: "ä", count: 200) // 400 bytes of two-byte characters
        r.setReason(Array(text.utf8).span)
        #expect(r.reasonLength == 250)
        #expect(String(validating: (0..<Int(r.reasonLength)).map { r.reason[$0] }, as: UTF8.self) != nil)
    }

    @Test func theNewerValidCopyWins() throws {
        var older = SlotHistory(), newer = SlotHistory()
        older.sequence = 4
        newer.sequence = 5
        let olderBytes = bytes(older), newerBytes = bytes(newer)
        let a = Result { () throws(HistoryError) in try SlotHistory.parse(olderBytes.span) }
        let b = Result { () throws(HistoryError) in try SlotHistory.parse(newerBytes.span) }
        #expect(SlotHistory.choose(a, b) == 1 && SlotHistory.choose(b, a) == 0)
        #expect(SlotHistory.choose(a, .failure(.badChecksum)) == 0 && SlotHistory.choose(.failure(.badMagic), b) == 1)
        #expect(SlotHistory.choose(.failure(.badMagic), .failure(.badMagic)) == nil)
    }

    /// A disk with a state partition, slot a confirmed and booted, b on trial.
    func disk(sectorSize: Int) throws -> MemoryStore {
        let size = 5 << 20
        let store = MemoryStore(bytes: [UInt8](repeating: 0, count: size), sectorSize: sectorSize)
        var random = SeededRandom(seed: 3)
        var options = FormatFlow.Options(slotCount: 2, slotBytes: 1 << 20, prefix: "root", force: false)
        options.statePartition = true
        _ = try FormatFlow.format(store, options) { GUID(low: random.next(), high: random.next()) }
        _ = try BootControl.setActive(store, slot: 0x61, tries: 3)
        _ = try BootControl.markSuccessful(store, slot: 0x61)
        _ = try BootControl.setActive(store, slot: 0x62, tries: 3)
        return MemoryStore(bytes: store.bytes, sectorSize: sectorSize)
    }

    @Test(arguments: [512, 4096])
    func cutAtEveryWriteOfMarkFailedAndSetActive(sectorSize: Int) throws {
        let start = try disk(sectorSize: sectorSize)
        // Without a cut: the record is there and explains b; set-active clears it first.
        let whole = MemoryStore(bytes: start.bytes, sectorSize: sectorSize)
        _ = try BootControl.markFailed(whole, slot: 0x62, actor: "confirm", reason: "check failed")
        let table = try TableStore.load(whole)
        let area = try #require(try StopHistory.load(whole, table))
        #expect(area.explanation(table.slots[1])?.kind == .markedFailed)
        let afterFail = whole.bytes

        for (operation, from) in [("mark-failed", start.bytes), ("set-active", afterFail)] {
            // Which outcomes the cuts produced: each must occur, or the cuts missed a write.
            var outcomes: Set<String> = []
            var cutAt = 0
            while true {
                for cache in [PowerCutStore.Cache.keep, .lose, .randomSubset(seed: UInt64(cutAt))] {
                    for torn in [0, 100, sectorSize + 7] {
                        let store = PowerCutStore(bytes: from, sectorSize: sectorSize, cutAt: cutAt, tornBytes: torn, cache: cache)
                        if operation == "mark-failed" {
                            _ = try? BootControl.markFailed(store, slot: 0x62, actor: "confirm", reason: "check failed")
                        } else {
                            _ = try? BootControl.setActive(store, slot: 0x62, tries: 2)
                        }
                        let after = MemoryStore(bytes: store.surviving, sectorSize: sectorSize)
                        let table = try TableStore.load(after)
                        // The table: old or new, and a boots whatever happened to b.
                        let b = table.slots[1].state
                        #expect(b.priority == 0 || b.priority == 15, "\(operation) cut \(cutAt): b \(b)")
                        #expect(table.slots[0].state.successful)
                        // The history loads (never an error), and whatever record it has
                        // for b explains b only as the table really holds it.
                        let history = try #require(try StopHistory.load(after, table), "\(operation) cut \(cutAt)")
                        if let record = history.explanation(table.slots[1]) {
                            #expect(!table.slots[1].state.isBootable && record.kind == .markedFailed,
                                    "\(operation) cut \(cutAt): a record explains a bootable b")
                        }
                        let recorded = history.explanation(table.slots[1]) != nil
                        outcomes.insert((table.slots[1].state.isBootable ? "bootable" : "unbootable") + (recorded ? "+record" : ""))
                        if operation == "set-active", table.slots[1].state.isBootable {
                            #expect(history.history.record(for: 0x62) == nil, "set-active cut \(cutAt): b bootable with its old record")
                        }
                    }
                }
                let probe = PowerCutStore(bytes: from, sectorSize: sectorSize, cutAt: Int.max, tornBytes: 0, cache: .keep)
                if operation == "mark-failed" { _ = try BootControl.markFailed(probe, slot: 0x62, actor: "confirm", reason: "x") }
                else { _ = try BootControl.setActive(probe, slot: 0x62, tries: 2) }
                cutAt += 1
                if cutAt > probe.writes { break }
            }
            // mark-failed: before, between the table and the record, after. set-active:
            // the record cleared before the table changed, then the change.
            #expect(outcomes == ["bootable", "unbootable", "unbootable+record"], "\(operation): \(outcomes)")
        }
    }
}
