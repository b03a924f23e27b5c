import SlotCore
import SlotCounters
import SlotStorage

/// Result of `status`: the table as read and the state the policy sees after normalization.
public struct StatusReport {
    public let table: LoadedTable
    public let slots: SlotTable
    public let normalization: Normalization
    /// The slot `boot` would try first (verification aside), if any.
    public let nextBoot: Int?
}

public struct BootReport {
    public let table: LoadedTable
    /// Slots after the boot decision (what was, or in a dry run would be, written).
    public let slots: SlotTable
    public let chosen: Int
    public let consumedTry: Bool
    /// Candidates refused by the verifier before `chosen`, with why (marked unbootable).
    public let rejected: [(letter: UInt8, code: StatusCode, reason: String)]
    /// Candidates passed over because their image could not be read, twice: an I/O
    /// error proves nothing about the image, so they are left as they are and tried
    /// again at the next boot (spec/policy.md).
    public let unreadable: [(letter: UInt8, code: StatusCode, reason: String)]
    /// What the chosen slot's verified image claims; recorded with the booted slot so
    /// that mark-successful raises exactly what booted.
    public let claim: RollbackClaim?
    /// The chosen slot's descriptor as verified (nil without signature checks).
    public let descriptor: SlotDescriptor?
    public let wrote: Bool
    /// Things that went wrong without changing the outcome (a repair that could not be written).
    public let warnings: [String]
    /// Slots this boot found with no tries left and not confirmed, and made unbootable
    /// (normalization): a trial that never reached mark-successful. The fallback.
    public let exhausted: [UInt8]
}

public struct ChangeReport {
    public let table: LoadedTable
    public let slots: SlotTable
    public let index: Int
    public let wrote: Bool
    public var warnings: [String]
    /// mark-successful with counters: the location raised and its value before and after.
    public var raised: (location: UInt32, from: UInt64, to: UInt64)? = nil
}

/// The operations of the command line, each one load, normalize, mutate, save-if-changed
/// (spec/policy.md). None of them knows about files or processes: they see a BlockStore.
public enum BootControl {
    /// `status`: reads, never writes, even when a copy needs repair or a state needs
    /// normalization; both are reported.
    public static func status(_ store: BlockStore) throws(FlowError) -> StatusReport {
        let table = try TableStore.load(store)
        var slots = table.slots
        let normalization = Policy.normalize(&slots)
        return StatusReport(table: table, slots: slots, normalization: normalization, nextBoot: Policy.choose(slots))
    }

    /// `boot`: picks the highest-priority bootable slot, asks `verifier` about it (a
    /// refused slot is made unbootable and the next is tried), consumes one try of an
    /// unconfirmed slot and persists all of it before returning. With `dryRun` nothing
    /// is written. No bootable slot: `noBootableSlot`, and the table is written only if
    /// the verifier refused a slot (so it is not tried again). A slot whose image cannot
    /// be read (an I/O error, once more after a retry) is neither refused nor marked: it
    /// is passed over for this boot only, and if nothing else boots the result is
    /// `ioError`, not `noBootableSlot`, since a good slot may be behind the bad read.
    public static func boot(_ store: BlockStore, verifier: SlotVerifier, dryRun: Bool) throws(FlowError) -> BootReport {
        let table = try TableStore.load(store)
        var slots = table.slots
        let normalization = Policy.normalize(&slots)
        let exhausted = (0..<slots.count).filter { normalization.exhausted >> UInt32($0) & 1 == 1 }.map { slots[$0].letter }
        var excluded: UInt32 = 0
        var rejected: [(letter: UInt8, code: StatusCode, reason: String)] = []
        var unreadable: [(letter: UInt8, code: StatusCode, reason: String)] = []
        while let index = Policy.choose(slots, excluding: excluded) {
            var verdict = verifier.verify(slot: slots[index], in: table, store: store)
            // One retry: a read error is often transient (a bus reset, a slow USB disk).
            if case .rejected(.ioError, _) = verdict { verdict = verifier.verify(slot: slots[index], in: table, store: store) }
            switch verdict {
            case .fatal(let code, let reason):
                throw FlowError(code, "boot: \(reason); no slot was judged or changed")
            case .accepted(let claim, let descriptor):
                // Only a spent try must reach the disk before the boot goes on; repairs,
                // normalization and refusals are written when they can be.
                let consumed = Policy.consumeTry(&slots, index)
                var (wrote, warnings) = try saveIfChanged(store, table, slots, dryRun: dryRun, required: consumed)
                if wrote, let warning = StopHistory.recordStops(store, stopNotes(exhausted: exhausted, rejected: rejected)) {
                    warnings.append(warning)
                }
                return BootReport(table: table, slots: slots, chosen: index, consumedTry: consumed,
                                  rejected: rejected, unreadable: unreadable, claim: claim, descriptor: descriptor, wrote: wrote, warnings: warnings,
                                  exhausted: exhausted)
            case .rejected(.ioError, let reason):
                excluded |= 1 << UInt32(index)
                unreadable.append((slots[index].letter, .ioError, reason))
            case .rejected(let code, let reason):
                Policy.markUnbootable(&slots, index)
                excluded |= 1 << UInt32(index)
                rejected.append((slots[index].letter, code, reason))
            }
        }
        var wroteRefusals = false
        if !rejected.isEmpty { wroteRefusals = try saveIfChanged(store, table, slots, dryRun: dryRun, required: false).0 }
        // Explaining the refusals is all that is left to do; a failure to record joins the
        // error's message, the one line this boot prints.
        var unrecorded = ""
        if wroteRefusals, let warning = StopHistory.recordStops(store, stopNotes(exhausted: exhausted, rejected: rejected)) {
            unrecorded = "; warning: \(warning)"
        }
        if !unreadable.isEmpty {
            var message = "no slot can be booted this time"
            for item in unreadable {
                message += "; slot \(letterText(item.letter)) could not be read (\(item.reason)), left as it is for the next boot"
            }
            for item in rejected { message += "; slot \(letterText(item.letter)) refused: \(item.reason)" }
            if !rejected.isEmpty {
                message += wroteRefusals ? "; the refused slots were marked unbootable"
                    : "; the refused slots could not be marked (they are refused again at the next boot)"
            } else {
                message += "; nothing was written"
            }
            throw FlowError(.ioError, "boot: " + message)
        }
        var message = "no bootable slot"
        for letter in exhausted { message += "; slot \(letterText(letter)) ran out of tries without being confirmed" }
        for item in rejected { message += "; slot \(letterText(item.letter)) refused: \(item.reason)" }
        if rejected.isEmpty { message += ": every slot has priority 0 or no tries left and is not successful" }
        throw FlowError(.noBootableSlot, message + unrecorded)
    }

    /// `boot --chosen SLOT`: the second stage of a kexec boot (spec/kexec.md). A stage-0
    /// initramfs ran `boot`, which chose `letter`, spent its try and verified it, then
    /// started the slot's own kernel; that kernel's initramfs calls this to verify the same
    /// slot again before it mounts it. Nothing is chosen, no try is spent and nothing is
    /// written: the table is read as stage-0 left it, without normalization (the boot that
    /// spent a slot's last try must still run it). Refused when the slot has priority 0
    /// (made unbootable since: `noBootableSlot`) or when the verifier refuses it now (its
    /// code); an unreadable image is retried once, as boot does.
    public static func bootChosen(_ store: BlockStore, slot letter: UInt8, verifier: SlotVerifier) throws(FlowError) -> BootReport {
        let table = try TableStore.load(store)
        guard let index = table.slots.index(ofLetter: letter) else {
            throw FlowError(.usage, "boot --chosen: no slot \(letterText(letter)) in the slot table (slots: \(slotList(table.slots)))")
        }
        guard table.slots[index].state.priority > 0 else {
            throw FlowError(.noBootableSlot, "boot --chosen: slot \(letterText(letter)) has priority 0 (made unbootable after "
                + "stage-0 chose it); not booting it")
        }
        var verdict = verifier.verify(slot: table.slots[index], in: table, store: store)
        if case .rejected(.ioError, _) = verdict { verdict = verifier.verify(slot: table.slots[index], in: table, store: store) }
        switch verdict {
        case .accepted(let claim, let descriptor):
            return BootReport(table: table, slots: table.slots, chosen: index, consumedTry: false, rejected: [], unreadable: [],
                              claim: claim, descriptor: descriptor, wrote: false, warnings: [], exhausted: [])
        case .rejected(let code, let reason), .fatal(let code, let reason):
            throw FlowError(code, "boot --chosen: slot \(letterText(letter)) refused: \(reason); nothing was written")
        }
    }

    /// `mark-successful SLOT`: successful = 1, tries = 0, then (with counters) the
    /// counter at the slot's rollback location is raised to its rollback index.
    /// Refused (`slotNotBootable`) on a slot with priority 0; works on the boot that spent
    /// a slot's last try. With a verifier, the slot's image is verified again first (its
    /// rollback claim must come from a proven descriptor); a refusal changes nothing.
    /// Order (spec/rollback.md): the table first, then the counter. A cut between them
    /// leaves a confirmed slot and a counter not yet raised, which the next
    /// mark-successful (idempotent: it raises even for a slot already confirmed) fixes.
    /// With counters, only the slot that booted can be confirmed (`booted`, from the
    /// booted record), its image must be the one that booted (same rollback claim), and
    /// the raise must be within `RollbackLimits.maxRaise`; all checked before any write.
    public static func markSuccessful(_ store: BlockStore, slot letter: UInt8, verifier: SlotVerifier = TableOnlyVerifier(),
                                      counters: RollbackCounters? = nil,
                                      booted: (letter: UInt8, claim: RollbackClaim?)? = nil) throws(FlowError) -> ChangeReport {
        var claim: RollbackClaim? = nil
        let name = letterText(letter)
        var report = try change(store, letter) { (slots, index, table) throws(FlowError) in
            do throws(PolicyError) { try Policy.markSuccessful(&slots, index) } catch {
                throw FlowError(.slotNotBootable,
                                "mark-successful: slot \(name) has priority 0 (failed, retired or never activated); it cannot be confirmed")
            }
            switch verifier.verify(slot: table.slots[index], in: table, store: store) {
            case .accepted(let proven, _): claim = proven
            case .rejected(let code, let reason), .fatal(let code, let reason):
                throw FlowError(code, "mark-successful: slot \(name): \(reason); nothing was changed")
            }
            guard let counters, let claim else { return }
            guard let booted, booted.letter == letter else {
                let which = booted.map { "the booted slot is \(letterText($0.letter))" } ?? "no booted slot is recorded"
                throw FlowError(.usage, "mark-successful: slot \(name) did not boot (\(which)); counters are raised only "
                    + "for the slot that booted; nothing was changed")
            }
            if let bootedClaim = booted.claim, bootedClaim != claim {
                throw FlowError(.digestMismatch, "mark-successful: the image in slot \(name) is not the one that booted "
                    + "(rollback \(bootedClaim.index)@\(bootedClaim.location) then, \(claim.index)@\(claim.location) now); nothing was changed")
            }
            let current: UInt64
            do throws(CounterError) { current = try counters.read(location: claim.location) } catch {
                throw FlowError(error.code, "mark-successful: rollback counters: \(error.message); nothing was changed")
            }
            if claim.index > current && claim.index - current > RollbackLimits.maxRaise {
                throw FlowError(.raiseTooLarge, "mark-successful: raising location \(claim.location) from \(current) to "
                    + "\(claim.index) is over \(RollbackLimits.maxRaise) steps; nothing was changed")
            }
        }
        guard let counters, let claim else { return report }
        do {
            let before = try counters.read(location: claim.location)
            try counters.raise(location: claim.location, to: claim.index)
            report.raised = (claim.location, before, max(before, claim.index))
        } catch {
            throw FlowError(error.code, "mark-successful: slot \(letterText(letter)) is marked successful, but the rollback "
                + "counter at location \(claim.location) was not raised to \(claim.index): \(error.message); run mark-successful again")
        }
        return report
    }

    /// `mark-failed SLOT`: priority 0, tries 0, not successful. The caller exits with
    /// `postcheckFailed` when this succeeds. When that made the slot unbootable, the state
    /// partition records who (`actor`: confirm, rauc, operator, ...) and why.
    public static func markFailed(_ store: BlockStore, slot letter: UInt8, actor: String = "operator",
                                  reason: String = "") throws(FlowError) -> ChangeReport {
        var report = try change(store, letter) { (slots, index, _) throws(FlowError) in Policy.markUnbootable(&slots, index) }
        // Priority > 0 before: bootable, or the running slot on the boot that spent its last try.
        if report.wrote, report.table.slots[report.index].state.priority > 0,
           let warning = StopHistory.recordStops(store, [StopNote(letter: letter, kind: .markedFailed, actor: actor, reason: reason)]) {
            report.warnings.append(warning)
        }
        return report
    }

    /// `set-active SLOT --tries N`: priority 15 with N tries, not successful; others keep
    /// their order. The slot's old stop record is cleared first (spec/state.md).
    public static func setActive(_ store: BlockStore, slot letter: UInt8, tries: UInt8) throws(FlowError) -> ChangeReport {
        var cleared: String? = nil
        var report = try change(store, letter) { (slots, index, table) throws(FlowError) in
            do throws(PolicyError) { try Policy.setActive(&slots, index, tries: tries) } catch {
                throw FlowError(.usage, "set-active: tries must be 1...\(SlotState.maxTries), not \(tries)")
            }
            // Before the table write that activates the slot, on the table change() loaded.
            cleared = StopHistory.clearBeforeActivation(store, table, letter)
        }
        if let cleared { report.warnings.append(cleared) }
        return report
    }

    /// The records a boot leaves for the slots it made unbootable.
    static func stopNotes(exhausted: [UInt8], rejected: [(letter: UInt8, code: StatusCode, reason: String)]) -> [StopNote] {
        exhausted.map { StopNote(letter: $0, kind: .triesExhausted, actor: "boot", reason: "") }
            + rejected.map { StopNote(letter: $0.letter, kind: .refused, code: UInt8(truncatingIfNeeded: $0.code.rawValue),
                                      actor: "boot", reason: $0.reason) }
    }

    static func change(_ store: BlockStore, _ letter: UInt8,
                               _ mutate: (inout SlotTable, Int, LoadedTable) throws(FlowError) -> Void) throws(FlowError) -> ChangeReport {
        let table = try TableStore.load(store)
        guard let index = table.slots.index(ofLetter: letter) else {
            throw FlowError(.usage, "no slot \(letterText(letter)) in the slot table (slots: \(slotList(table.slots)))")
        }
        var slots = table.slots
        // The transition sees the state as stored, then normalization follows: so the
        // boot that spent a slot's last try can still be confirmed (spec/policy.md).
        try mutate(&slots, index, table)
        _ = Policy.normalize(&slots)
        let (wrote, warnings) = try saveIfChanged(store, table, slots, dryRun: false, required: true)
        return ChangeReport(table: table, slots: slots, index: index, wrote: wrote, warnings: warnings)
    }

    /// Writes when a slot's attributes changed or a copy needs repair; returns whether it
    /// wrote and any warning. A failed write is an error when `required`, else a warning
    /// (a repair or a normalization that can wait for the next write).
    static func saveIfChanged(_ store: BlockStore, _ table: LoadedTable, _ slots: SlotTable, dryRun: Bool,
                              required: Bool) throws(FlowError) -> (Bool, [String]) {
        var changed = table.needsRepair
        for i in 0..<slots.count where slots[i].attributes != table.slots[i].attributes { changed = true }
        guard changed, !dryRun else { return (false, []) }
        do {
            let warning = try TableStore.save(store, table, slots: slots)
            return (true, warning.map { [$0] } ?? [])
        } catch {
            if required { throw error }
            return (false, ["slot table not updated (\(error.message)); this boot does not depend on it"])
        }
    }

    public static func letterText(_ letter: UInt8) -> String { String(UnicodeScalar(letter)) }

    static func slotList(_ slots: SlotTable) -> String {
        var names: [String] = []
        for i in 0..<slots.count { names.append(letterText(slots[i].letter)) }
        return names.joined(separator: ", ")
    }
}
