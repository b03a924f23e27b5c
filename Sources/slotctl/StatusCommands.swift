import SlotCore
import SlotCounters
import SlotCrypto
import SlotFlows
import SlotStorage

/// The reading commands: `status` and `verify`.
extension Commands {
    /// Image findings with the rollback verdict, for status and verify.
    func imageReport(_ store: BlockStore, offset: UInt64, size: UInt64, device: String, keys: KeyDirectory,
                     counters: RollbackCounters?, hasher: PayloadHasher,
                     depth: VerificationDepth = .full) -> (ImageReport, JSONObject, String) {
        var report = ImageVerification.verify(store, offset: offset, size: size, keys: keys, hasher: hasher, depth: depth)
        ImageVerification.judgeRollback(&report, counters)
        var json = Render.imageJSON(report, device: device)
        let note = Render.rollback(report, into: &json)
        return (report, json, note)
    }

    /// `status`: reads only. Images are checked to `VerificationDepth.signature` (no
    /// payload read, a verity tree's top block) unless `--full` re-hashes every payload.
    func status() throws(CLIError) -> Outcome {
        let depth: VerificationDepth = line.switches.contains("--full") ? .full : .signature
        let store = try openDisk(writable: false)
        let report = try flow { () throws(FlowError) in try BootControl.status(store) }
        let booted = try? bootedSlot()
        var json = Render.tableJSON(report.table, store: store)
        var text = Render.tableText(report.table, store: store)
        let counters = try counters()
        var keys: KeyDirectory? = nil
        // The pin the keys were judged by, read from the TPM once.
        var pin: KeyPin? = nil
        var pinFailure: String? = nil
        if verifies {
            // status reports a pin it cannot read instead of failing: every key refused.
            do { (keys, pin) = try pinnedKeys(counters) } catch {
                var refused = KeyDirectory(path: settings.keys)
                refused.refuseAll(error.message)
                keys = refused
                pinFailure = error.message
            }
        }
        let hasher = PayloadHasher()
        // Why slots stopped being bootable: advisory, so a state partition that cannot be
        // read is reported, never an error of status.
        var history: StopHistory? = nil
        var historyProblem: String? = nil
        do { history = try StopHistory.load(store, report.table) } catch { historyProblem = error.message }
        var slots: [JSONObject] = []
        text += "slot  part  label             prio  tries  successful  bootable  first_lba..last_lba\n"
        for i in 0..<report.slots.count {
            let slot = report.slots[i]
            var item = Render.slotJSON(slot, report.table)
            var notes: [String] = []
            if report.normalization.clearedTries >> UInt32(i) & 1 == 1 { notes.append("successful with tries: tries cleared") }
            if report.normalization.exhausted >> UInt32(i) & 1 == 1 { notes.append("no tries left: priority set to 0") }
            item.set("normalized", strings: notes)
            text += Render.slotRow(slot, report.table)
            for note in notes { text += "      normalized at next write: \(note)\n" }
            let stored = report.table.slots[i]
            if let history, !slot.state.isBootable {
                let why = Render.why(history.explanation(stored), exhaustedNow: report.normalization.exhausted >> UInt32(i) & 1 == 1,
                                     running: booted == slot.letter)
                item.set("why", why.json)
                text += "      why not bootable: \(why.text)\n"
            } else {
                item.setNull("why")
            }
            if let keys {
                let device = Render.partitionDevice(store, report.table.partitionNumber(slot))
                let (image, imageJSON, note) = imageReport(store, offset: report.table.byteOffset(slot),
                                                           size: report.table.byteSize(slot), device: device, keys: keys,
                                                           counters: counters, hasher: hasher, depth: depth)
                item.set("image", imageJSON)
                text += "      image: " + Render.imageSummary(image) + (note.isEmpty ? "" : "; \(note)") + "\n"
            }
            slots.append(item)
        }
        json.set("slots", slots)
        if let next = report.nextBoot {
            json.set("next_boot", BootControl.letterText(report.slots[next].letter))
            text += "next boot: slot \(BootControl.letterText(report.slots[next].letter))" + (verifies ? " (if its image verifies)\n" : "\n")
        } else {
            json.setNull("next_boot")
            text += "next boot: none (no bootable slot)\n"
        }
        if let booted {
            json.set("booted", BootControl.letterText(booted))
            text += "booted: slot \(BootControl.letterText(booted))\n"
        } else {
            json.setNull("booted")
        }
        json.set("verification", settings.verification.rawValue)
        if let keys {
            json.set("keys", keys.path)
            json.set("key_count", keys.keys.count)
            json.set("key_problems", strings: keys.problems)
            text += "verification: signature, \(keys.keys.count) trusted key(s) in \(keys.path)\n"
            for problem in keys.problems { text += "  key problem: \(problem)\n" }
            // Whether the TPM pins the key set (keys.md); null without TPM counters.
            if let pinFailure {
                json.setNull("keys_pinned")
                text += "keys: the TPM's pin cannot be read (\(pinFailure)): every key refused\n"
            } else if counters is TPMCounters {
                json.set("keys_pinned", pin != nil)
                text += pin.map { "keys: pinned in the TPM (\($0.count) key(s); keys shows them)\n" }
                    ?? "keys: not pinned (keys pin records them in the TPM)\n"
            } else {
                json.setNull("keys_pinned")
            }
        } else {
            text += "verification: NONE (verification = none: slots are booted without signature checks)\n"
        }
        if let history {
            var state = JSONObject()
            state.set("partition", history.partition)
            state.set("sequence", history.history.sequence)
            state.set("problems", strings: history.problems)
            json.set("state", state)
            text += "state partition: \(history.partition) (record \(history.history.sequence))"
                + (history.problems.isEmpty ? "" : "; " + history.problems.joined(separator: "; ")) + "\n"
        } else {
            json.setNull("state")
            text += historyProblem.map { "state partition: unreadable (\($0))\n" }
                ?? "state partition: none (why slots stop being bootable is not kept; format --state makes one)\n"
        }
        let (countersJSON, countersText, _) = countersSummary(counters)
        json.set("counters", countersJSON)
        text += countersText
        let (measured, measuredText) = measurementSummary()
        if let measured { json.set("measurement", measured) } else { json.setNull("measurement") }
        text += measuredText
        return (.ok, text, json)
    }

    /// `verify SLOT` or `verify --image FILE`: always checks signatures, whatever
    /// `verification` says, since that is what was asked.
    func verify() throws(CLIError) -> Outcome {
        let counters = try counters()
        let keys = try trustedKeys(counters)
        let hasher = PayloadHasher()
        let report: ImageReport
        var subject: String
        let device: String
        var json = JSONObject()
        if let image = line.flags["--image"] {
            guard line.positional.isEmpty else { throw CLIError(.usage, "verify: give a SLOT or --image FILE, not both") }
            let store: FileBlockStore
            do { store = try FileBlockStore(path: image, writable: false, sectorSize: 512) } catch {
                throw CLIError(Commands.code(opening: error), "verify: \(error.description)")
            }
            device = image
            report = imageReport(store, offset: 0, size: store.byteCount, device: device, keys: keys, counters: counters,
                                 hasher: hasher).0
            subject = "image \(image)"
            json.set("image", image)
        } else {
            let letter: UInt8
            if let named = line.positional.first { letter = try slotArgument(named) } else { letter = try bootedSlot() }
            let store = try openDisk(writable: false)
            let table = try flow { () throws(FlowError) in try TableStore.load(store) }
            guard let index = table.slots.index(ofLetter: letter) else {
                throw CLIError(.usage, "no slot \(BootControl.letterText(letter)) in the slot table")
            }
            let slot = table.slots[index]
            device = Render.partitionDevice(store, table.partitionNumber(slot))
            report = imageReport(store, offset: table.byteOffset(slot), size: table.byteSize(slot), device: device, keys: keys,
                                 counters: counters, hasher: hasher).0
            subject = "slot \(BootControl.letterText(letter)) (partition \(table.partitionNumber(slot)) of \(store.path))"
            json.set("slot", BootControl.letterText(letter))
            json.set("partition", table.partitionNumber(slot))
        }
        json.set("verified", report.verified)
        json.set("image_report", Render.imageJSON(report, device: device))
        var text = "\(subject)\n" + Render.imageDetails(report)
        for problem in keys.problems { text += "key problem: \(problem)\n" }
        if report.verified { return (.ok, text, json) }
        throw CLIError(report.code, "verify: \(subject): \(report.reason ?? "refused")", details: text)
    }

    /// `current`: the booted slot and its image's version, cheaply (the booted record, the
    /// table, the footer and the descriptor: no hashing, no signature check; boot did
    /// those). For scripts and people who ask "which slot am I on".
    func current() throws(CLIError) -> Outcome {
        let record = try bootedRecord()
        let store = try openDisk(writable: false)
        let table = try flow { () throws(FlowError) in try TableStore.load(store) }
        let name = BootControl.letterText(record.letter)
        guard let index = table.slots.index(ofLetter: record.letter) else {
            throw CLIError(.usage, "the booted slot \(name) is not in the slot table")
        }
        let slot = table.slots[index]
        let image = ImageVerification.peek(store, offset: table.byteOffset(slot), size: table.byteSize(slot))
        var json = Render.slotJSON(slot, table)
        json.set("slot", name)
        json.set("device", Render.partitionDevice(store, table.partitionNumber(slot)))
        json.set("verified_at_boot", record.claim != nil)
        var text = name
        if let d = image.descriptor {
            json.set("version", image.version ?? "")
            json.set("rollback_index", d.rollbackIndex)
            json.set("rollback_location", Int(d.rollbackLocation))
            text += " (version '\(Render.printable(image.version ?? ""))', rollback index \(d.rollbackIndex))"
        } else {
            json.setNull("version")
            json.set("image", image.reason ?? "no image")
            text += " (no signed image: \(image.reason ?? "unknown"))"
        }
        return (.ok, text + "\n", json)
    }
}

