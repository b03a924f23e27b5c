import SlotCore
import SlotStorage

/// The state partition (spec/state.md): where slotctl keeps, for each slot, why it last
/// stopped being bootable. It is on the slot disk itself, the one place the initramfs can
/// write at early boot and that survives the reboot, and it is written under the same
/// disk lock as the table. Advisory only: nothing in it ever changes a boot decision,
/// and a missing, damaged or unwritable area costs the explanation, never a boot.
public struct StopHistory {
    /// 1-based partition number of the state partition.
    public let partition: Int
    /// Its first byte on the disk.
    public let offset: UInt64
    /// The current history (empty when neither copy is valid).
    public private(set) var history: SlotHistory
    /// Which copy is current (nil: none valid yet), so a save writes the other one.
    public private(set) var current: Int?
    /// Why a copy did not parse, for status ("copy 1: checksum mismatch").
    public let problems: [String]

    /// The state partition of `table`, if it has exactly one of slotctl's state type and
    /// it can hold both copies. Called by status and by every writer below.
    public static func locate(_ table: LoadedTable) -> (partition: Int, offset: UInt64)? {
        let span = table.entries.span
        var found: (Int, UInt64)? = nil
        for i in 0..<Int(table.header.entryCount)
        where PartitionEntries.typeGUID(span, table.header, i) == GUID.slotctlState {
            guard found == nil else { return nil } // two: ambiguous, use neither
            let first = PartitionEntries.firstLBA(span, table.header, i), last = PartitionEntries.lastLBA(span, table.header, i)
            let bytes = (last &- first &+ 1) &* UInt64(table.geometry.sectorSize)
            guard last >= first, bytes >= UInt64(2 * HistoryLayout.copySize) else { return nil }
            found = (i + 1, first * UInt64(table.geometry.sectorSize))
        }
        return found
    }

    /// Reads both copies. nil when the disk has no state partition. A read error is
    /// thrown (61): the caller decides whether that matters (it never does for a boot).
    public static func load(_ store: BlockStore, _ table: LoadedTable) throws(FlowError) -> StopHistory? {
        guard let (partition, offset) = locate(table) else { return nil }
        var copies: [Result<SlotHistory, HistoryError>] = []
        var problems: [String] = []
        for copy in 0..<2 {
            let bytes: [UInt8]
            do { bytes = try store.readBytes(count: HistoryLayout.copySize, at: offset + UInt64(copy * HistoryLayout.copySize)) } catch {
                throw FlowError(.ioError, "reading the state partition (\(partition)): \(error.description)")
            }
            let parsed: Result<SlotHistory, HistoryError>
            do { parsed = .success(try SlotHistory.parse(bytes.span)) } catch { parsed = .failure(error) }
            if case .failure(let error) = parsed, bytes.contains(where: { $0 != 0 }) {
                problems.append("copy \(copy): \(error.reason)")
            }
            copies.append(parsed)
        }
        let current = SlotHistory.choose(copies[0], copies[1])
        var history = SlotHistory()
        if let current, case .success(let chosen) = copies[current] { history = chosen }
        return StopHistory(partition: partition, offset: offset, history: history, current: current, problems: problems)
    }

    /// Writes `change` applied to the current history into the copy that is not current,
    /// with the next sequence number, and flushes: a cut leaves the old copy current.
    /// Called under the disk's exclusive lock, after (for a stop) or before (for a
    /// clear, spec/state.md) the table write it belongs to.
    public mutating func save(_ store: BlockStore, _ change: (inout SlotHistory) -> Void) throws(FlowError) {
        var next = history
        change(&next)
        next.sequence = history.sequence &+ 1
        var bytes = [UInt8](repeating: 0, count: HistoryLayout.copySize)
        var span = bytes.mutableSpan
        next.serialize(into: &span)
        let target = current == 0 ? 1 : 0
        do {
            try store.writeBytes(bytes, at: offset + UInt64(target * HistoryLayout.copySize))
            try store.flush()
        } catch {
            throw FlowError(.writeFailed, "writing the state partition (\(partition)): \(error.description)")
        }
        history = next
        current = target
    }

    /// The record that explains `slot` as the table holds it now, if any.
    public func explanation(_ slot: Slot) -> StopRecord? {
        guard let record = history.record(for: slot.letter), record.explains(slot) else { return nil }
        return record
    }
}

/// What a writer wants recorded about one slot (SlotFlows' own writers only).
struct StopNote {
    let letter: UInt8
    let kind: StopKind
    var code: UInt8 = 0
    let actor: String
    let reason: String
}

extension StopHistory {
    /// After a table write that made slots unbootable: one record each, tied to the
    /// entries as they are now. A failure is returned as a warning: the table write
    /// already happened, and the history only explains it. Nothing happens without a
    /// state partition.
    static func recordStops(_ store: BlockStore, _ notes: [StopNote]) -> String? {
        guard !notes.isEmpty else { return nil }
        do {
            let table = try TableStore.load(store)
            guard var area = try load(store, table) else { return nil }
            try area.save(store) { history in
                for note in notes {
                    guard let index = table.slots.index(ofLetter: note.letter) else { continue }
                    let slot = table.slots[index]
                    var record = StopRecord(letter: slot.letter, kind: note.kind, code: note.code,
                                            attributesAfter: slot.attributes, firstLBA: slot.firstLBA)
                    record.setActor(Array(note.actor.utf8).span)
                    record.setReason(Array(note.reason.utf8).span)
                    history.set(record)
                }
            }
            return nil
        } catch {
            return "why the slot stopped being bootable was not recorded: \(error.message)"
        }
    }

    /// Before a table write that makes `letter` bootable: its old record goes first, so
    /// that no later stop of the same slot can be explained by it if that stop's own
    /// record is lost to a cut. A failure is a warning, not an error: the history is
    /// advisory and must never block an activation (the warning says the old record may
    /// be shown for a later stop).
    public static func clearBeforeActivation(_ store: BlockStore, _ table: LoadedTable, _ letter: UInt8) -> String? {
        do {
            guard var area = try load(store, table), area.history.record(for: letter) != nil else { return nil }
            try area.save(store) { history in history.clear(letter) }
            return nil
        } catch {
            return "slot \(BootControl.letterText(letter))'s old stop record could not be cleared (\(error.message)); "
                + "status may show it for a later stop"
        }
    }
}
