import SlotCore
import SlotCounters
import SlotCrypto
import SlotFlows
import SlotStorage

/// The commands: each checks its arguments, opens what it needs, calls one flow and
/// renders the result. No policy lives here.
struct Commands {
    let line: Invocation
    let settings: Settings
    /// Warnings for stderr: things that went wrong without changing the outcome.
    var warnings: [String] = []

    typealias Outcome = (StatusCode, text: String, json: JSONObject)

    /// Per command: the options it takes and how many positional arguments.
    static let grammar: [String: (flags: Set<String>, switches: Set<String>, positional: ClosedRange<Int>)] = [
        "status": ([], [], 0...0),
        "boot": ([], ["--dry-run", "--shell"], 0...0),
        "mark-successful": ([], [], 0...1),
        "mark-failed": ([], [], 0...1),
        "set-active": (["--tries"], [], 1...1),
        "format": (["--size", "--slots", "--slot-size", "--name"], ["--force"], 0...0),
        "verify": (["--image"], [], 0...1),
        "sign": (["--key", "--rollback-index", "--rollback-location", "--version", "-o", "--partition-size", "--salt"],
                 ["--stream", "--verity"], 1...1),
        "counters": (["--locations"], [], 0...1),
        "install": (["--slot", "--tries", "--stream-timeout"], [], 1...1),
    ]

    mutating func run() throws(CLIError) -> Outcome {
        guard let command = line.command else { throw CLIError(.usage, "no command given (see slotctl --help)") }
        guard let grammar = Commands.grammar[command] else {
            throw CLIError(.usage, "unknown command '\(command)' (see slotctl --help)")
        }
        for flag in line.flags.keys.sorted() where !grammar.flags.contains(flag) {
            throw CLIError(.usage, "\(command) does not take \(flag)")
        }
        for flag in line.switches.sorted() where !grammar.switches.contains(flag) {
            throw CLIError(.usage, "\(command) does not take \(flag)")
        }
        guard grammar.positional.contains(line.positional.count) else {
            throw CLIError(.usage, "\(command): unexpected arguments: \(line.positional.joined(separator: " "))")
        }
        switch command {
        case "status": return try status()
        case "boot": return try boot()
        case "mark-successful": return try mark(successful: true)
        case "mark-failed": return try mark(successful: false)
        case "set-active": return try setActive()
        case "format": return try format()
        case "verify": return try verify()
        case "counters": return try countersCommand()
        case "install": return try install()
        default: return try sign()
        }
    }

    private func diskPath() throws(CLIError) -> String {
        guard let disk = settings.disk else {
            throw CLIError(.usage, "no disk: pass --disk PATH or set 'disk =' in \(line.configPath)")
        }
        return disk
    }

    /// Opens the disk and locks it for the rest of the command (spec/locking.md):
    /// exclusive when the command may write, so that no other slotctl (nor udev's probe)
    /// sees or makes a change between its load and its save; shared when it only reads.
    private func openDisk(writable: Bool) throws(CLIError) -> FileBlockStore {
        let path = try diskPath()
        do {
            return try FileBlockStore(path: path, writable: writable, sectorSize: settings.sectorSize,
                                      lock: (writable ? .exclusive : .shared, settings.lockTimeout))
        } catch {
            throw CLIError(Commands.code(opening: error), error.description)
        }
    }

    /// The status for a disk or image that cannot be opened: a path that is not a disk
    /// at all (a FIFO, a directory) is a usage error, unusable geometry is 60, else 61.
    static func code(opening error: StorageError) -> StatusCode {
        switch error.kind {
        case .geometry: .tableUnusable
        case .notADisk: .usage
        case .locked: .diskLocked
        default: .ioError
        }
    }

    /// Runs a flow; errors about the table name the disk they are about.
    private func flow<T>(_ body: () throws(FlowError) -> T) throws(CLIError) -> T {
        do { return try body() } catch {
            let aboutTable = (60...69).contains(Int(error.code.rawValue)) && error.code != .usage
            throw CLIError(error.code, aboutTable ? "\(settings.disk ?? "disk"): \(error.message)" : error.message)
        }
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
    private func bootedSlot() throws(CLIError) -> UInt8 { try bootedRecord().letter }

    /// The booted record (cli.md): the slot letter, and the rollback claim of the image
    /// that booted (`rollback LOCATION INDEX`) when it was verified.
    private func bootedRecord() throws(CLIError) -> (letter: UInt8, claim: RollbackClaim?) {
        guard let record = try bootedRecordIfAny() else {
            throw CLIError(.usage, "no booted slot recorded in \(settings.bootedFile) nor slotctl.slot= in \(settings.cmdlineFile); name the slot")
        }
        return record
    }

    /// The booted record, nil when nothing says which slot booted; a malformed record is
    /// an error, never "unknown".
    private func bootedRecordIfAny() throws(CLIError) -> (letter: UInt8, claim: RollbackClaim?)? {
        if let recorded = try SystemFiles.readText(settings.bootedFile) {
            let lines = Config.lines(recorded).filter { !$0.isEmpty }.map(String.init)
            let letter = try slotArgument(Config.trim(lines.first ?? ""))
            var claim: RollbackClaim? = nil
            if lines.count > 1 {
                let fields = lines[1].split(separator: " ")
                guard fields.count == 3, fields[0] == "rollback", let location = UInt32(fields[1]), let index = UInt64(fields[2]) else {
                    throw CLIError(.usage, "\(settings.bootedFile): second line is not 'rollback LOCATION INDEX'")
                }
                claim = RollbackClaim(location: location, index: index)
            }
            return (letter, claim)
        }
        if let cmdline = try SystemFiles.readText(settings.cmdlineFile) {
            for word in cmdline.split(whereSeparator: { $0.isWhitespace }) where word.hasPrefix("slotctl.slot=") {
                return (try slotArgument(String(word.dropFirst("slotctl.slot=".count))), nil)
            }
        }
        return nil
    }

    private var verifies: Bool { settings.verification == .signature }

    /// The configured rollback counters, or nil when none are configured.
    private func counters() throws(CLIError) -> RollbackCounters? {
        guard let spec = settings.counters else { return nil }
        do { return try openCounters(spec) } catch { throw CLIError(error.code, error.message) }
    }

    /// The boot verifier. With signatures on, a key directory without a single usable key
    /// is a configuration error: refuse before judging (and marking) any slot.
    private func verifier(_ counters: RollbackCounters?) throws(CLIError) -> SlotVerifier {
        guard verifies else { return TableOnlyVerifier() }
        let keys = KeyDirectory(path: settings.keys)
        guard !keys.keys.isEmpty else {
            let why = keys.problems.isEmpty ? "it holds no *.pem public key" : keys.problems.joined(separator: "; ")
            throw CLIError(.untrustedKey, "no trusted key in \(settings.keys) (\(why)); no slot was judged or changed")
        }
        return SignedSlotVerifier(keys: keys, counters: counters)
    }

    /// Image findings with the rollback verdict, for status and verify.
    private func imageReport(_ store: BlockStore, offset: UInt64, size: UInt64, keys: KeyDirectory,
                             counters: RollbackCounters?, hasher: PayloadHasher) -> (ImageReport, JSONObject, String) {
        var report = ImageVerification.verify(store, offset: offset, size: size, keys: keys, hasher: hasher)
        ImageVerification.judgeRollback(&report, counters)
        var json = Render.imageJSON(report)
        let note = Render.rollback(report, into: &json)
        return (report, json, note)
    }

    private func status() throws(CLIError) -> Outcome {
        let store = try openDisk(writable: false)
        let report = try flow { () throws(FlowError) in try BootControl.status(store) }
        let booted = try? bootedSlot()
        var json = Render.tableJSON(report.table, store: store)
        var text = Render.tableText(report.table, store: store)
        let keys = verifies ? KeyDirectory(path: settings.keys) : nil
        let counters = try counters()
        let hasher = PayloadHasher()
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
            if let keys {
                let (image, imageJSON, note) = imageReport(store, offset: report.table.byteOffset(slot),
                                                           size: report.table.byteSize(slot), keys: keys,
                                                           counters: counters, hasher: hasher)
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
        } else {
            text += "verification: NONE (verification = none: slots are booted without signature checks)\n"
        }
        let (countersJSON, countersText, _) = countersSummary(counters)
        json.set("counters", countersJSON)
        text += countersText
        return (.ok, text, json)
    }

    private mutating func boot() throws(CLIError) -> Outcome {
        let dryRun = line.switches.contains("--dry-run")
        let store = try openDisk(writable: !dryRun)
        let verifier = try verifier(try counters())
        let report = try flow { () throws(FlowError) in try BootControl.boot(store, verifier: verifier, dryRun: dryRun) }
        let slot = report.slots[report.chosen]
        let name = BootControl.letterText(slot.letter)
        warnings += report.warnings
        for item in report.rejected {
            warnings.append("slot \(BootControl.letterText(item.letter)) refused (\(item.code.name)): \(item.reason); marked unbootable")
        }
        for item in report.unreadable {
            warnings.append("slot \(BootControl.letterText(item.letter)) skipped this boot (\(item.code.name)): \(item.reason); "
                + "not marked, it is tried again at the next boot")
        }
        if !dryRun {
            // The decision is on disk already; a missing record only costs mark-* its default.
            let record = name + "\n" + (report.claim.map { "rollback \($0.location) \($0.index)\n" } ?? "")
            do { try SystemFiles.writeAtomically(settings.bootedFile, record) } catch {
                warnings.append("booted slot not recorded: \(error.message)")
            }
        }
        let device = Render.partitionDevice(store, report.table.partitionNumber(slot))
        var json = Render.slotJSON(slot, report.table)
        json.set("slot", name)
        json.set("dry_run", dryRun)
        json.set("consumed_try", report.consumedTry)
        json.set("wrote", report.wrote)
        json.set("device", device)
        json.set("offset", report.table.byteOffset(slot))
        json.set("size", report.table.byteSize(slot))
        json.set("verification", settings.verification.rawValue)
        var verity: SlotDescriptor?
        // The descriptor the verifier proved, never a second read of the disk (spec/security.md).
        if verifies, let descriptor = report.descriptor, descriptor.hasVerity {
            verity = descriptor
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
        json.set("rejected", verdicts(report.rejected))
        json.set("unreadable", verdicts(report.unreadable))
        json.set("warnings", strings: warnings)
        guard line.switches.contains("--shell") else { return (.ok, name + "\n", json) }
        return (.ok, Render.bootShell(slot, report.table, device: device, verity: verity,
                                      verification: settings.verification.rawValue), json)
    }

    private mutating func mark(successful: Bool) throws(CLIError) -> Outcome {
        let letter: UInt8
        if let named = line.positional.first { letter = try slotArgument(named) } else { letter = try bootedSlot() }
        let store = try openDisk(writable: true)
        let counters = successful && verifies ? try counters() : nil
        let verifier: SlotVerifier = successful ? try verifier(counters) : TableOnlyVerifier()
        let booted = try bootedRecordIfAny()
        let report = try flow { () throws(FlowError) in
            successful ? try BootControl.markSuccessful(store, slot: letter, verifier: verifier, counters: counters,
                                                      booted: booted)
                       : try BootControl.markFailed(store, slot: letter)
        }
        warnings += report.warnings
        let name = BootControl.letterText(letter)
        var json = Render.slotJSON(report.slots[report.index], report.table)
        json.set("slot", name)
        json.set("wrote", report.wrote)
        json.set("warnings", strings: warnings)
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

    private mutating func setActive() throws(CLIError) -> Outcome {
        let letter = try slotArgument(line.positional[0])
        var tries = Policy.defaultTries
        if let text = line.flags["--tries"] {
            guard let value = UInt8(text), value >= 1, value <= SlotState.maxTries else {
                throw CLIError(.usage, "--tries must be 1...\(SlotState.maxTries), not '\(text)'")
            }
            tries = value
        }
        let store = try openDisk(writable: true)
        let report = try flow { () throws(FlowError) in try BootControl.setActive(store, slot: letter, tries: tries) }
        warnings += report.warnings
        let name = BootControl.letterText(letter)
        var json = Render.slotJSON(report.slots[report.index], report.table)
        json.set("slot", name)
        json.set("wrote", report.wrote)
        json.set("warnings", strings: warnings)
        return (.ok, "slot \(name) active: priority 15, \(tries) tries\n", json)
    }

    private func format() throws(CLIError) -> Outcome {
        let path = try diskPath()
        if let size = line.flags["--size"] {
            let bytes = try parseSize(size, flag: "--size")
            if let kind = SystemFiles.fileKind(path), kind != .regular {
                throw CLIError(.usage, "\(path): format --size creates an image file, but this is "
                    + (kind == .blockDevice ? "a block device; format it without --size (its size is the device's)" : "not a regular file"))
            }
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
        let force = line.switches.contains("--force")
        var existing: [String] = []
        if !force {
            do { existing = try DiskSignatures.probe(path: path).map(\.description) } catch {
                throw CLIError(.ioError, "format: \(error.description); nothing was written")
            }
        }
        let options = FormatFlow.Options(slotCount: slotCount, slotBytes: slotBytes, prefix: line.flags["--name"] ?? "root",
                                         force: force, existing: existing)
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

    /// `verify SLOT` or `verify --image FILE`: always checks signatures, whatever
    /// `verification` says, since that is what was asked.
    private func verify() throws(CLIError) -> Outcome {
        let keys = KeyDirectory(path: settings.keys)
        let hasher = PayloadHasher()
        let report: ImageReport
        var subject: String
        var json = JSONObject()
        if let image = line.flags["--image"] {
            guard line.positional.isEmpty else { throw CLIError(.usage, "verify: give a SLOT or --image FILE, not both") }
            let store: FileBlockStore
            do { store = try FileBlockStore(path: image, writable: false, sectorSize: 512) } catch {
                throw CLIError(Commands.code(opening: error), "verify: \(error.description)")
            }
            report = imageReport(store, offset: 0, size: store.byteCount, keys: keys, counters: try counters(), hasher: hasher).0
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
            report = imageReport(store, offset: table.byteOffset(slot), size: table.byteSize(slot), keys: keys,
                                 counters: try counters(), hasher: hasher).0
            subject = "slot \(BootControl.letterText(letter)) (partition \(table.partitionNumber(slot)) of \(store.path))"
            json.set("slot", BootControl.letterText(letter))
            json.set("partition", table.partitionNumber(slot))
        }
        json.set("verified", report.verified)
        json.set("image_report", Render.imageJSON(report))
        var text = "\(subject)\n" + Render.imageDetails(report)
        for problem in keys.problems { text += "key problem: \(problem)\n" }
        if report.verified { return (.ok, text, json) }
        throw CLIError(report.code, "verify: \(subject): \(report.reason ?? "refused")", details: text)
    }

    private func sign() throws(CLIError) -> Outcome {
        let payloadPath = line.positional[0]
        guard let keyPath = line.flags["--key"] else { throw CLIError(.usage, "sign needs --key PEM") }
        guard let output = line.flags["-o"] else { throw CLIError(.usage, "sign needs -o IMAGE") }
        guard let indexText = line.flags["--rollback-index"], let rollbackIndex = UInt64(indexText) else {
            throw CLIError(.usage, "sign needs --rollback-index N (a number)")
        }
        guard rollbackIndex <= RollbackLimits.maxIndex else {
            throw CLIError(.raiseTooLarge, "sign: rollback index \(rollbackIndex) is over \(RollbackLimits.maxIndex): rollback indexes are "
                + "small, dense security versions (a TPM counter moves one increment at a time)")
        }
        var location: UInt32 = 0
        if let text = line.flags["--rollback-location"] {
            guard let value = UInt32(text) else { throw CLIError(.usage, "--rollback-location: '\(text)' is not a number") }
            location = value
        }
        let partitionSize = try line.flags["--partition-size"].map { (s: String) throws(CLIError) in try parseSize(s, flag: "--partition-size") }
        let key: PrivateKey
        do { key = try PrivateKey(pemPath: keyPath) } catch {
            throw CLIError(error.wrongKeyHalf ? .keyAlgorithmMismatch : .usage, "sign: \(error.message)")
        }
        guard let algorithm = key.kind.algorithm else {
            throw CLIError(.keyAlgorithmMismatch, "sign: \(keyPath) is a \(key.kind) key; use ed25519, EC P-256, or RSA 3072/4096")
        }
        let payload: FileBlockStore
        do { payload = try FileBlockStore(path: payloadPath, writable: false, sectorSize: 512) } catch {
            throw CLIError(Commands.code(opening: error), "sign: \(error.description)")
        }
        // The payload is compared with every file sign writes by what they are (device
        // and inode, after opening), not by their names: a link to it is refused.
        let payloadFile = (payload.identity, "the payload \(payloadPath)")
        var salt: [UInt8]? = nil
        if let text = line.flags["--salt"] {
            guard line.switches.contains("--verity") else { throw CLIError(.usage, "sign: --salt goes with --verity") }
            salt = try parseHex(text, flag: "--salt")
        } else if line.switches.contains("--verity") {
            do { salt = try randomBytes(32) } catch { throw CLIError(.cryptoError, "sign: \(error.message)") }
        }
        let request = SignFlow.Request(payloadSize: payload.byteCount, partitionSize: partitionSize, rollbackIndex: rollbackIndex,
                                       rollbackLocation: location, version: line.flags["--version"] ?? "", veritySalt: salt)
        let layout = try flow { () throws(FlowError) in try SignFlow.layout(request, algorithm: algorithm) }
        // With --stream the image is made beside the output, turned into the stream form
        // (descriptor first, for `install -`), and removed.
        let streamed = line.switches.contains("--stream")
        let imagePath = streamed ? output + ".image.tmp" : output
        try SystemFiles.createImage(imagePath, size: layout.partitionSize, truncate: true, notSameAs: payloadFile)
        let target: FileBlockStore
        do { target = try FileBlockStore(path: imagePath, writable: true, sectorSize: 512) } catch {
            throw CLIError(.ioError, error.description)
        }
        var writtenSize = layout.partitionSize
        let descriptor = try flow { () throws(FlowError) in
            try SignFlow.sign(payload: payload, output: target, key: key, request: request, hasher: PayloadHasher())
        }
        if streamed {
            defer { SystemFiles.remove(imagePath) }
            try SystemFiles.createImage(output, size: 0, truncate: true, notSameAs: payloadFile)
            let streamFile: FileBlockStore
            do { streamFile = try FileBlockStore(path: output, writable: true, sectorSize: 512) } catch {
                throw CLIError(.ioError, error.description)
            }
            try flow { () throws(FlowError) in try SignFlow.writeStream(image: target, to: streamFile) }
            writtenSize = SystemFiles.fileSize(output) ?? 0
        }
        var json = JSONObject()
        json.set("image", output)
        json.set("stream", streamed)
        // The size of the file written: the image (a partition's worth), or the stream.
        json.set("size", writtenSize)
        json.set("partition_size", layout.partitionSize)
        json.set("payload_size", descriptor.payloadSize)
        json.set("descriptor_offset", layout.descriptorOffset)
        json.set("key_id", key.keyID.hexText)
        json.set("algorithm", algorithm.name.description)
        json.set("rollback_index", descriptor.rollbackIndex)
        json.set("rollback_location", Int(descriptor.rollbackLocation))
        json.set("version", request.version)
        if descriptor.hasVerity {
            json.set("verity", Render.verityJSON(descriptor, device: output))
        } else {
            json.setNull("verity")
        }
        let text = "signed \(payloadPath) -> \(output)\(streamed ? " (stream form)" : ""): \(writtenSize) bytes, \(algorithm.name), key \(key.keyID.hexText), "
            + "rollback index \(rollbackIndex) at location \(location)\n"
        return (.ok, text, json)
    }

    /// `install IMAGE [--slot SLOT] [--tries N]`: always verifies, whatever `verification`
    /// says. The default target is the slot that is not running (with two slots).
    private mutating func install() throws(CLIError) -> Outcome {
        let imagePath = line.positional[0]
        var tries = Policy.defaultTries
        if let text = line.flags["--tries"] {
            guard let value = UInt8(text), value >= 1, value <= SlotState.maxTries else {
                throw CLIError(.usage, "--tries must be 1...\(SlotState.maxTries), not '\(text)'")
            }
            tries = value
        }
        let booted = try bootedRecordIfAny()?.letter
        let disk = try openDisk(writable: true)
        let target: UInt8
        if let named = line.flags["--slot"] {
            target = try slotArgument(named)
        } else {
            let table = try flow { () throws(FlowError) in try TableStore.load(disk) }
            guard let booted else {
                throw CLIError(.usage, "install: no booted slot recorded, so the inactive slot is unknown; name it with --slot")
            }
            let others = (0..<table.slots.count).map { table.slots[$0].letter }.filter { $0 != booted }
            guard others.count == 1 else {
                throw CLIError(.usage, "install: \(others.count) slots besides the running one; name the target with --slot")
            }
            target = others[0]
        }
        let keys = KeyDirectory(path: settings.keys)
        let counters = try counters()
        var idleTimeout = InstallLimits.defaultStreamTimeout
        if let text = line.flags["--stream-timeout"] {
            guard let value = Int(text), value >= 1, value <= 86400 else {
                throw CLIError(.usage, "--stream-timeout must be 1...86400 seconds, not '\(text)'")
            }
            idleTimeout = value
        }
        // `-`, FIFOs and pipes (`/dev/stdin`) and files in the stream form are read front
        // to back; image files and block devices from the end.
        var stream: ByteStream? = nil
        var source: FileBlockStore? = nil
        do {
            if imagePath == "-" {
                stream = FileByteStream(idleTimeout: idleTimeout)
            } else if FileByteStream.isStreamOnly(path: imagePath) == true {
                stream = try FileByteStream(path: imagePath, idleTimeout: idleTimeout)
            } else {
                let file = try FileBlockStore(path: imagePath, writable: false, sectorSize: 512)
                let head = file.byteCount >= 8 ? try file.readBytes(count: 8, at: 0) : []
                if StreamHeader.isStream(head.span) {
                    stream = try FileByteStream(path: imagePath, idleTimeout: idleTimeout)
                } else {
                    source = file
                }
            }
        } catch {
            throw CLIError(error.kind == .notADisk ? .usage : .ioError, "install: \(error.description)")
        }
        let report = try flow { () throws(FlowError) in
            if let stream {
                return try InstallFlow.installStream(stream, disk: disk, target: target, booted: booted, keys: keys,
                                                     counters: counters, hasher: PayloadHasher(), tries: tries)
            }
            return try InstallFlow.install(source: source!, disk: disk, target: target, booted: booted, keys: keys,
                                           counters: counters, hasher: PayloadHasher(), tries: tries)
        }
        warnings += report.warnings
        let name = BootControl.letterText(report.slot)
        let version = String(decoding: (0..<report.descriptor.versionLength).map { report.descriptor.versionString[$0] }, as: UTF8.self)
        var json = JSONObject()
        json.set("slot", name)
        json.set("partition", report.partition)
        json.set("image", imagePath)
        json.set("bytes_written", report.bytesWritten)
        json.set("version", version)
        json.set("rollback_index", report.descriptor.rollbackIndex)
        json.set("rollback_location", Int(report.descriptor.rollbackLocation))
        json.set("tries", Int(report.tries))
        json.set("warnings", strings: warnings)
        let text = "installed \(imagePath) (version '\(Render.printable(version))', rollback index \(report.descriptor.rollbackIndex)) into slot \(name); "
            + "verified after writing; slot \(name) is active with \(report.tries) tries\n"
        return (.ok, text, json)
    }

    /// The counters part of status and of `counters`.
    private func countersSummary(_ counters: RollbackCounters?) -> (JSONObject, String, CounterError?) {
        var json = JSONObject()
        guard let counters else {
            json.setNull("spec")
            return (json, "rollback counters: none configured (rollback is not enforced; set counters = ...)\n", nil)
        }
        json.set("spec", counters.spec)
        json.set("hardware_backed", counters.hardwareBacked)
        var text = "rollback counters: \(counters.spec)"
            + (counters.hardwareBacked ? " (hardware-backed)\n" : " (NOT hardware-backed: development only)\n")
        let caveats = counters.caveats()
        json.set("caveats", strings: caveats)
        for caveat in caveats { text += "  caveat: \(caveat)\n" }
        var failure: CounterError? = nil
        do {
            let count = try counters.provisionedLocations()
            var values: [JSONObject] = []
            if count == 0 { text += "  not provisioned (run slotctl counters provision)\n" }
            for location in 0..<UInt32(count) {
                let value = try counters.read(location: location)
                var item = JSONObject()
                item.set("location", Int(location))
                item.set("value", value)
                values.append(item)
                text += "  location \(location): \(value)\n"
            }
            json.set("provisioned", count)
            json.set("locations", values)
        } catch {
            json.set("error", error.message)
            text += "  unavailable: \(error.message)\n"
            failure = error
        }
        return (json, text, failure)
    }

    /// `counters` shows the rollback counters; `counters provision [--locations N]`
    /// creates them (default 8 locations).
    private func countersCommand() throws(CLIError) -> Outcome {
        guard let counters = try counters() else {
            throw CLIError(.usage, "counters: no counter store configured: pass --counters SPEC or set 'counters =' in \(line.configPath)")
        }
        var json = JSONObject()
        var text = ""
        if let action = line.positional.first {
            guard action == "provision" else { throw CLIError(.usage, "counters: unknown action '\(action)' (provision)") }
            var locations = 8
            if let value = line.flags["--locations"] {
                guard let n = Int(value) else { throw CLIError(.usage, "--locations: '\(value)' is not a number") }
                locations = n
            } else if let provisioned = try? counters.provisionedLocations(), provisioned > 0 {
                // Provisioning again without --locations keeps what is there: only an
                // explicit --locations asks a store to grow (and one that cannot says so).
                locations = provisioned
            }
            do { text = try counters.provision(locations: locations) + "\n" } catch {
                throw CLIError(error.code, "counters provision: \(error.message)")
            }
            json.set("provisioned", text.trimmingNewline)
        } else if line.flags["--locations"] != nil {
            throw CLIError(.usage, "counters: --locations goes with 'provision'")
        }
        let (summary, summaryText, failure) = countersSummary(counters)
        json.set("counters", summary)
        text += summaryText
        if let failure { throw CLIError(failure.code, failure.message, details: text) }
        return (.ok, text, json)
    }
}

extension String {
    var trimmingNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
}
