import SlotCore
import SlotFlows
import SlotStorage

/// The commands: each opens the disk, calls one flow and renders the result. No policy
/// lives here.
struct Commands {
    let line: Invocation
    let settings: Settings

    func run() throws(CLIError) -> (StatusCode, text: String, json: JSONObject) {
        switch line.command {
        case "status": return try status()
        case "boot": return try boot()
        case "mark-successful": return try mark(successful: true)
        case "mark-failed": return try mark(successful: false)
        case "set-active": return try setActive()
        case "format": return try format()
        case "verify", "sign", "install", "counters":
            throw CLIError(.usage, "\(line.command!): not available in this build of slotctl yet")
        case nil: throw CLIError(.usage, "no command given (see slotctl --help)")
        case let other?: throw CLIError(.usage, "unknown command '\(other)' (see slotctl --help)")
        }
    }

    private func diskPath() throws(CLIError) -> String {
        guard let disk = settings.disk else {
            throw CLIError(.usage, "no disk: pass --disk PATH or set 'disk =' in \(line.configPath)")
        }
        return disk
    }

    private func openDisk(writable: Bool) throws(CLIError) -> FileBlockStore {
        let path = try diskPath()
        do { return try FileBlockStore(path: path, writable: writable, sectorSize: settings.sectorSize) } catch {
            throw CLIError(error.kind == .geometry ? .tableUnusable : .ioError, error.description)
        }
    }

    private func flow<T>(_ body: () throws(FlowError) -> T) throws(CLIError) -> T {
        do { return try body() } catch { throw CLIError(error.code, error.message) }
    }

    private func slotArgument(_ text: String) throws(CLIError) -> UInt8 {
        let bytes = Array(text.utf8)
        guard bytes.count == 1, let letter = bytes.first,
              (letter >= 0x61 && letter <= 0x7A) || (letter >= 0x41 && letter <= 0x5A) else {
            throw CLIError(.usage, "'\(text)' is not a slot name (a letter: a, b, ...)")
        }
        return letter | 0x20
    }

    /// The slot `mark-*` act on by default: the booted-slot record, else `slotctl.slot=`
    /// on the kernel command line.
    private func bootedSlot() throws(CLIError) -> UInt8 {
        if let recorded = try SystemFiles.readText(settings.bootedFile) {
            return try slotArgument(Config.trim(recorded.split(separator: "\n").first.map(String.init) ?? ""))
        }
        if let cmdline = try SystemFiles.readText(settings.cmdlineFile) {
            for word in cmdline.split(whereSeparator: { $0 == " " || $0 == "\n" }) where word.hasPrefix("slotctl.slot=") {
                return try slotArgument(String(word.dropFirst("slotctl.slot=".count)))
            }
        }
        throw CLIError(.usage, "no booted slot recorded in \(settings.bootedFile) nor slotctl.slot= in \(settings.cmdlineFile); name the slot")
    }

    private func status() throws(CLIError) -> (StatusCode, text: String, json: JSONObject) {
        let store = try openDisk(writable: false)
        let report = try flow { () throws(FlowError) in try SlotFlows.status(store) }
        let booted = try? bootedSlot()
        var json = Render.tableJSON(report.table, store: store)
        var text = Render.tableText(report.table, store: store)
        var slots: [JSONObject] = []
        text += "slot  part  label             prio  tries  successful  bootable  first_lba..last_lba\n"
        for i in 0..<report.slots.count {
            let slot = report.slots[i]
            var item = Render.slotJSON(slot, report.table)
            var notes: [String] = []
            if report.normalization.clearedTries >> UInt32(i) & 1 == 1 { notes.append("successful with tries: tries cleared") }
            if report.normalization.exhausted >> UInt32(i) & 1 == 1 { notes.append("no tries left: priority set to 0") }
            item.set("normalized", strings: notes)
            slots.append(item)
            text += Render.slotRow(slot, report.table)
            for note in notes { text += "      normalized at next write: \(note)\n" }
        }
        json.set("slots", slots)
        if let next = report.nextBoot {
            json.set("next_boot", SlotFlows.letterText(report.slots[next].letter))
            text += "next boot: slot \(SlotFlows.letterText(report.slots[next].letter))\n"
        } else {
            json.setNull("next_boot")
            text += "next boot: none (no bootable slot)\n"
        }
        if let booted {
            json.set("booted", SlotFlows.letterText(booted))
            text += "booted: slot \(SlotFlows.letterText(booted))\n"
        } else {
            json.setNull("booted")
        }
        json.set("verification", "none")
        text += "verification: none (signed slots are not yet supported)\n"
        return (.ok, text, json)
    }

    private func boot() throws(CLIError) -> (StatusCode, text: String, json: JSONObject) {
        let dryRun = line.switches.contains("--dry-run")
        let store = try openDisk(writable: !dryRun)
        let report = try flow { () throws(FlowError) in try SlotFlows.boot(store, verifier: TableOnlyVerifier(), dryRun: dryRun) }
        let slot = report.slots[report.chosen]
        let name = SlotFlows.letterText(slot.letter)
        if !dryRun { try SystemFiles.writeAtomically(settings.bootedFile, name + "\n") }
        var json = Render.slotJSON(slot, report.table)
        json.set("slot", name)
        json.set("dry_run", dryRun)
        json.set("consumed_try", report.consumedTry)
        json.set("wrote", report.wrote)
        json.set("device", Render.partitionDevice(store, report.table.partitionNumber(slot)))
        json.set("offset", slot.firstLBA * UInt64(store.sectorSize))
        json.set("size", (slot.lastLBA - slot.firstLBA + 1) * UInt64(store.sectorSize))
        json.set("rejected", report.rejected.map { item in
            var o = JSONObject()
            o.set("slot", SlotFlows.letterText(item.letter))
            o.set("code", Int(item.code.rawValue))
            o.set("reason", item.reason)
            return o
        })
        return (.ok, name + "\n", json)
    }

    private func mark(successful: Bool) throws(CLIError) -> (StatusCode, text: String, json: JSONObject) {
        guard line.positional.count <= 1 else { throw CLIError(.usage, "mark-*: at most one slot") }
        let letter: UInt8
        if let named = line.positional.first { letter = try slotArgument(named) } else { letter = try bootedSlot() }
        let store = try openDisk(writable: true)
        let report = try flow { () throws(FlowError) in
            successful ? try SlotFlows.markSuccessful(store, slot: letter) : try SlotFlows.markFailed(store, slot: letter)
        }
        let name = SlotFlows.letterText(letter)
        var json = Render.slotJSON(report.slots[report.index], report.table)
        json.set("slot", name)
        json.set("wrote", report.wrote)
        if successful { return (.ok, "slot \(name) marked successful\n", json) }
        return (.postcheckFailed, "slot \(name) marked failed: unbootable until set-active or a new install\n", json)
    }

    private func setActive() throws(CLIError) -> (StatusCode, text: String, json: JSONObject) {
        guard line.positional.count == 1 else { throw CLIError(.usage, "set-active needs exactly one slot") }
        let letter = try slotArgument(line.positional[0])
        var tries = Policy.defaultTries
        if let text = line.flags["--tries"] {
            guard let value = UInt8(text), value >= 1, value <= SlotState.maxTries else {
                throw CLIError(.usage, "--tries must be 1...\(SlotState.maxTries), not '\(text)'")
            }
            tries = value
        }
        let store = try openDisk(writable: true)
        let report = try flow { () throws(FlowError) in try SlotFlows.setActive(store, slot: letter, tries: tries) }
        let name = SlotFlows.letterText(letter)
        var json = Render.slotJSON(report.slots[report.index], report.table)
        json.set("slot", name)
        json.set("wrote", report.wrote)
        return (.ok, "slot \(name) active: priority 15, \(tries) tries\n", json)
    }

    private func format() throws(CLIError) -> (StatusCode, text: String, json: JSONObject) {
        let path = try diskPath()
        if let size = line.flags["--size"] {
            let bytes = try parseSize(size, flag: "--size")
            if SystemFiles.exists(path), line.switches.contains("--force") == false {
                throw CLIError(.writeRefused, "\(path): exists; format --size creates a new image (add --force to resize and replace)")
            }
            try SystemFiles.createImage(path, size: bytes)
        }
        var slotCount = 2
        if let text = line.flags["--slots"] {
            guard let n = Int(text) else { throw CLIError(.usage, "--slots: '\(text)' is not a number") }
            slotCount = n
        }
        let slotBytes = try parseSize(line.flags["--slot-size"] ?? "16M", flag: "--slot-size")
        let store = try openDisk(writable: true)
        let options = FormatFlow.Options(slotCount: slotCount, slotBytes: slotBytes, prefix: line.flags["--name"] ?? "root",
                                         force: line.switches.contains("--force"))
        let table = try flow { () throws(FlowError) in try FormatFlow.format(store, options, newGUID: GUID.random) }
        var json = Render.tableJSON(table, store: store)
        var slots: [JSONObject] = []
        var text = "formatted \(path): \(table.slots.count) slots, \(store.sectorSize)-byte sectors\n"
        for i in 0..<table.slots.count {
            slots.append(Render.slotJSON(table.slots[i], table))
            text += Render.slotRow(table.slots[i], table)
        }
        json.set("slots", slots)
        return (.ok, text, json)
    }
}
