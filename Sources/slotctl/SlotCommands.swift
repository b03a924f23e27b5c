import SlotCore
import SlotCounters
import SlotCrypto
import SlotFlows
import SlotStorage

/// The commands that move a slot's state: `boot`, `mark-successful`, `mark-failed`,
/// `set-active`.
extension Commands {
    mutating func boot() throws(CLIError) -> Outcome {
        let dryRun = line.switches.contains("--dry-run")
        let chosen = try line.flags["--chosen"].map(slotArgument)
        let store = try openDisk(writable: !dryRun && chosen == nil)
        let verifier = try verifier(try counters())
        let report = try flow { () throws(FlowError) in
            if let chosen { return try BootControl.bootChosen(store, slot: chosen, verifier: verifier) }
            return try BootControl.boot(store, verifier: verifier, dryRun: dryRun)
        }
        let slot = report.slots[report.chosen]
        let name = BootControl.letterText(slot.letter)
        warnings += report.warnings
        for letter in report.exhausted {
            warnings.append("slot \(BootControl.letterText(letter)) ran out of tries without being confirmed (mark-successful); "
                + (dryRun ? "it would be made unbootable (dry run: nothing was written)" : "made unbootable") + ", falling back")
        }
        for item in report.rejected {
            warnings.append("slot \(BootControl.letterText(item.letter)) refused (\(item.code.name)): \(item.reason); "
                + (dryRun ? "would be marked unbootable (dry run: nothing was written)" : "marked unbootable"))
        }
        for item in report.unreadable {
            warnings.append("slot \(BootControl.letterText(item.letter)) skipped this boot (\(item.code.name)): \(item.reason); "
                + "not marked, it is tried again at the next boot")
        }
        if !dryRun {
            // The decision is on disk already; a missing record only costs mark-* its default.
            let record = BootedRecord(letter: slot.letter, claim: report.claim)
            do { try SystemFiles.writeAtomically(settings.bootedFile, record.text) } catch {
                warnings.append("booted slot not recorded: \(error.message)")
            }
        }
        // Measured once the decision is on disk and the slot proven. The second stage of a
        // kexec boot extends nothing (stage-0 measured this slot; PCRs survive kexec): it
        // records stage-0's measurement in this system's log when the PCR shows it.
        let measurement = dryRun ? nil : measureBoot(slot: slot.letter, descriptor: report.descriptor, stageZero: chosen != nil)
        let device = Render.partitionDevice(store, report.table.partitionNumber(slot))
        // The descriptor the verifier proved, never a second read of the disk (spec/security.md).
        let verified = verifies ? report.descriptor : nil
        // The --json result; not assembled at all otherwise (the boot path prints one word).
        func result() -> JSONObject {
            var json = Render.slotJSON(slot, report.table)
            json.set("slot", name)
            json.set("dry_run", dryRun)
            json.set("consumed_try", report.consumedTry)
            json.set("wrote", report.wrote)
            json.set("device", device)
            json.set("offset", report.table.byteOffset(slot))
            json.set("size", report.table.byteSize(slot))
            json.set("verification", settings.verification.rawValue)
            // What booted, as the verifier proved it (null without signature checks).
            if let d = report.descriptor {
                json.set("version", d.versionText)
                json.set("key_id", (0..<32).map { d.keyID[$0] }.hexText)
                json.set("rollback_index", d.rollbackIndex)
            } else {
                json.setNull("version")
                json.setNull("key_id")
                json.setNull("rollback_index")
            }
            if let descriptor = verified, descriptor.hasVerity {
                json.set("verity", Render.verityJSON(descriptor, device: device))
            } else {
                json.setNull("verity")
            }
            func verdicts(_ items: [(letter: UInt8, code: StatusCode, reason: String)]) -> [JSONObject] {
                items.map { item in
                    var o = JSONObject()
                    o.set("slot", BootControl.letterText(item.letter))
                    o.set("code", Int(item.code.rawValue))
                    o.set("status", item.code.name.description)
                    o.set("reason", item.reason)
                    return o
                }
            }
            if let measurement { json.set("measurement", measurement) } else { json.setNull("measurement") }
            json.set("rejected", verdicts(report.rejected))
            json.set("exhausted", strings: report.exhausted.map(BootControl.letterText))
            json.set("unreadable", verdicts(report.unreadable))
            json.set("warnings", strings: warnings)
            return json
        }
        let json = JSONObject.assembling ? result() : JSONObject()
        guard line.switches.contains("--shell") else { return (.ok, name + "\n", json) }
        return (.ok, Render.bootShell(slot, report.table, device: device, verified: verified,
                                      verification: settings.verification.rawValue), json)
    }

    /// `kexec ROOT`: the stage-0 hook's last step (spec/kexec.md). Verifies the booted slot
    /// again, reads its kernel from ROOT and, unless --dry-run, loads it and jumps.
    mutating func kexec() throws(CLIError) -> Outcome {
        let root = line.positional[0]
        let dryRun = line.switches.contains("--dry-run")
        let letter = try bootedSlot()
        let store = try openDisk(writable: false)
        let verifier = try verifier(try counters())
        let plan = try flow { () throws(FlowError) in try KexecFlow.plan(store, slot: letter, verifier: verifier, root: root) }
        let name = BootControl.letterText(letter)
        let initrd = plan.kernel.initrd == nil ? "no initramfs" : "initramfs \(plan.kernel.initrdSize) bytes"
        let text = "slot \(name): kernel \(plan.kernel.kernelSize) bytes, \(initrd), command line '\(plan.commandLine)'"
        var json = JSONObject()
        json.set("slot", name)
        json.set("root", root)
        json.set("kernel_bytes", plan.kernel.kernelSize)
        json.set("initrd_bytes", plan.kernel.initrdSize)
        json.set("cmdline", plan.commandLine)
        json.set("dry_run", dryRun)
        if dryRun { return (.ok, text + " (dry run: not loaded)\n", json) }
        // The jump ends this process with the machine: say what starts first.
        emit(text + ": starting it\n", to: 1)
        try flow { () throws(FlowError) in try KexecFlow.start(plan) }
    }

    mutating func mark(successful: Bool) throws(CLIError) -> Outcome {
        if let by = line.flags["--by"] {
            guard (1...StopRecord.actorSize).contains(by.utf8.count), by.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw CLIError(.usage, "--by must be 1...\(StopRecord.actorSize) printable ASCII characters without spaces, not '\(by)'")
            }
        }
        let letter: UInt8
        if let named = line.positional.first { letter = try slotArgument(named) } else { letter = try bootedSlot() }
        let store = try openDisk(writable: true)
        let counters = successful && verifies ? try counters() : nil
        let verifier: SlotVerifier = successful ? try verifier(counters) : TableOnlyVerifier()
        let booted = try bootedRecordIfAny().map { (letter: $0.letter, claim: $0.claim) }
        let report = try flow { () throws(FlowError) in
            successful ? try BootControl.markSuccessful(store, slot: letter, verifier: verifier, counters: counters,
                                                      booted: booted)
                       : try BootControl.markFailed(store, slot: letter, actor: line.flags["--by"] ?? "operator",
                                                    reason: line.flags["--reason"] ?? "")
        }
        warnings += report.warnings
        let name = BootControl.letterText(letter)
        var json = Render.changedSlotJSON(report, warnings: warnings)
        if let raised = report.raised {
            var r = JSONObject()
            r.set("location", Int(raised.location))
            r.set("from", raised.from)
            r.set("to", raised.to)
            json.set("counter", r)
        } else {
            json.setNull("counter")
        }
        if successful {
            var text = "slot \(name) marked successful\n"
            if let raised = report.raised {
                text += raised.to > raised.from
                    ? "rollback counter at location \(raised.location) raised from \(raised.from) to \(raised.to)\n"
                    : "rollback counter at location \(raised.location) already at \(raised.from)\n"
            }
            return (.ok, text, json)
        }
        return (.postcheckFailed, "slot \(name) marked failed: unbootable until set-active or a new install\n", json)
    }

    mutating func setActive() throws(CLIError) -> Outcome {
        let letter = try slotArgument(line.positional[0])
        let tries = try triesOption()
        let store = try openDisk(writable: true)
        let report = try flow { () throws(FlowError) in try BootControl.setActive(store, slot: letter, tries: tries) }
        warnings += report.warnings
        let name = BootControl.letterText(letter)
        return (.ok, "slot \(name) active: priority 15, \(tries) tries\n", Render.changedSlotJSON(report, warnings: warnings))
    }
}
