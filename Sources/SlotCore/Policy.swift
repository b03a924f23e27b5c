/// The selection policy and its state transitions (spec/policy.md), as pure functions
/// on a `SlotTable`. The flows call them between one load and one save: load,
/// normalize, mutate, save-if-changed.

/// What `normalize` changed, per slot, so `status` can say so.
public struct Normalization: Equatable, Sendable {
    /// Bit i set: slot i was successful with tries > 0; tries were cleared.
    public var clearedTries: UInt32 = 0
    /// Bit i set: slot i had priority > 0, no tries left and was not successful; priority set to 0.
    public var exhausted: UInt32 = 0

    public init() {}
    public var isEmpty: Bool { clearedTries == 0 && exhausted == 0 }
    public func touched(_ index: Int) -> Bool { (clearedTries | exhausted) >> UInt32(index) & 1 == 1 }
}

public enum PolicyError: Error, Equatable, Sendable {
    case noBootableSlot
    case slotNotBootable
    case badTries
}

public enum Policy {
    /// Tries a `set-active` gives when none are named.
    public static let defaultTries: UInt8 = 6

    /// Puts impossible or dead states into their canonical form:
    /// successful with tries > 0 keeps successful and drops the tries (mark-successful
    /// always writes tries 0, and cgpt treats successful as bootable whatever the tries);
    /// priority > 0 with no tries and not successful becomes priority 0 (it can never
    /// boot again; vboot and libavb do the same). Called by every flow right after load.
    public static func normalize(_ table: inout SlotTable) -> Normalization {
        var report = Normalization()
        for i in 0..<table.count {
            var state = table[i].state
            if state.successful && state.tries > 0 {
                state.tries = 0
                report.clearedTries |= 1 << UInt32(i)
            }
            if state.priority > 0 && !state.successful && state.tries == 0 {
                state.priority = 0
                report.exhausted |= 1 << UInt32(i)
            }
            table[i].state = state
        }
        return report
    }

    /// The slot `boot` takes: the highest priority among bootable slots not in
    /// `excluding` (bit i = table index i), ties to the lower partition index.
    public static func choose(_ table: SlotTable, excluding: UInt32 = 0) -> Int? {
        var best: Int? = nil
        for i in 0..<table.count where excluding >> UInt32(i) & 1 == 0 && table[i].state.isBootable {
            guard let current = best else { best = i; continue }
            let candidate = table[i], chosen = table[current]
            if candidate.state.priority > chosen.state.priority
                || (candidate.state.priority == chosen.state.priority && candidate.entryIndex < chosen.entryIndex) {
                best = i
            }
        }
        return best
    }

    /// Consumes one try of a slot about to boot, if it is not yet successful.
    /// Returns whether a try was consumed. The caller persists before booting.
    public static func consumeTry(_ table: inout SlotTable, _ index: Int) -> Bool {
        var state = table[index].state
        guard !state.successful, state.tries > 0 else { return false }
        state.tries -= 1
        table[index].state = state
        return true
    }

    /// mark-successful: successful = 1, tries = 0. Refused on a slot with priority 0:
    /// one that failed, was never activated, or ran out of tries and was already retired
    /// by a later boot. A slot whose last try was spent by the boot now running still has
    /// its priority (normalization retires it only at the next load that is not a
    /// mark-successful), so the boot that used the last try can still be confirmed.
    /// Flows call this before `normalize`.
    public static func markSuccessful(_ table: inout SlotTable, _ index: Int) throws(PolicyError) {
        var state = table[index].state
        guard state.priority > 0 else { throw .slotNotBootable }
        state.successful = true
        state.tries = 0
        table[index].state = state
    }

    /// mark-failed, and a slot that fails verification at boot: priority 0, tries 0, not successful.
    public static func markUnbootable(_ table: inout SlotTable, _ index: Int) {
        table[index].state = .unbootable
    }

    /// set-active: priority 15, `tries` (1...15), not successful. If another slot is at 15,
    /// the other slots with priority > 0 are re-ranked below it, keeping their order and
    /// their ties: the highest remaining priority level becomes 14, the next 13, and so
    /// on (levels past the 14th share priority 1). Slots at priority 0 stay at 0.
    public static func setActive(_ table: inout SlotTable, _ index: Int, tries: UInt8) throws(PolicyError) {
        guard tries >= 1, tries <= SlotState.maxTries else { throw .badTries }
        var levels: UInt16 = 0 // bit p set: some other slot has priority p
        for i in 0..<table.count where i != index { levels |= 1 << UInt16(table[i].state.priority) }
        if levels & (1 << 15) != 0 {
            for i in 0..<table.count where i != index && table[i].state.priority > 0 {
                // Rank = number of distinct levels above this slot's level.
                let priority = table[i].state.priority
                var rank: UInt8 = 0
                var level: UInt8 = 15
                while level > priority {
                    if levels >> UInt16(level) & 1 == 1 { rank += 1 }
                    level -= 1
                }
                table[i].state.priority = rank < 14 ? 14 - rank : 1
            }
        }
        table[index].state = SlotState(priority: SlotState.maxPriority, tries: tries, successful: false)
    }
}
