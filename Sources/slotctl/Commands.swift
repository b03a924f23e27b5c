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
    /// Whether the caller's stderr is a terminal (decided before the watchdog's fork,
    /// whose worker writes to a pipe): `install --progress auto` draws only then.
    var stderrIsTerminal = false

    typealias Outcome = (StatusCode, text: String, json: JSONObject)

    /// Checks the invocation against the command's declaration (Grammar.swift) and runs
    /// it: unknown options, missing required ones and a wrong number of arguments are 64,
    /// each saying what was expected.
    mutating func run() throws(CLIError) -> Outcome {
        guard let name = line.command else { throw CLIError(.usage, "no command given (see slotctl --help)") }
        guard let command = Grammar.command(name) else {
            throw CLIError(.usage, "unknown command '\(name)' (see slotctl --help)")
        }
        func own(_ flag: String) -> Bool { command.options.contains { $0.name == flag } }
        if !line.flags.keys.allSatisfy(own) || !line.switches.allSatisfy(own) {
            let flag = (line.flags.keys.sorted() + line.switches.sorted()).first { !own($0) } ?? ""
            throw CLIError(.usage, "\(name) does not take \(flag) (usage: slotctl \(command.usage))")
        }
        guard command.positional.contains(line.positional.count) else {
            let what = line.positional.isEmpty ? "missing \(command.arguments)"
                : "unexpected arguments: \(line.positional.joined(separator: " "))"
            throw CLIError(.usage, "\(name): \(what) (usage: slotctl \(command.usage))")
        }
        for option in command.options where option.required && line.flags[option.name] == nil {
            throw CLIError(.usage, "\(name) needs \(option.spelled) (usage: slotctl \(command.usage))")
        }
        return try command.run(&self)
    }

    func diskPath() throws(CLIError) -> String {
        guard let disk = settings.disk else {
            throw CLIError(.usage, "no disk: pass --disk PATH or set 'disk =' in \(line.configPath)")
        }
        return disk
    }

    /// Opens the disk and locks it for the rest of the command (spec/locking.md):
    /// exclusive when the command may write, so that no other slotctl (nor udev's probe)
    /// sees or makes a change between its load and its save; shared when it only reads.
    func openDisk(writable: Bool) throws(CLIError) -> FileBlockStore {
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
    func flow<T>(_ body: () throws(FlowError) -> T) throws(CLIError) -> T {
        do { return try body() } catch {
            let aboutTable = (60...69).contains(Int(error.code.rawValue)) && error.code != .usage
            throw CLIError(error.code, aboutTable ? "\(settings.disk ?? "disk"): \(error.message)" : error.message)
        }
    }

    func slotArgument(_ text: String) throws(CLIError) -> UInt8 {
        guard let letter = SlotName.letter(text) else { throw CLIError(.usage, SlotName.notASlot(text).message) }
        return letter
    }

    /// `--tries N` of set-active and install (the policy's default without it).
    func triesOption() throws(CLIError) -> UInt8 {
        guard let text = line.flags["--tries"] else { return Policy.defaultTries }
        guard let value = UInt8(text), value >= 1, value <= SlotState.maxTries else {
            throw CLIError(.usage, "--tries must be 1...\(SlotState.maxTries), not '\(text)'")
        }
        return value
    }

    /// The slot `mark-*` act on by default: the booted-slot record, else `slotctl.slot=`
    /// on the kernel command line.
    func bootedSlot() throws(CLIError) -> UInt8 { try bootedRecord().letter }

    /// The booted record (cli.md); a command that needs it and finds none is 64.
    func bootedRecord() throws(CLIError) -> BootedRecord {
        guard let record = try bootedRecordIfAny() else {
            throw CLIError(.usage, "no booted slot recorded in \(settings.bootedFile) nor slotctl.slot= in \(settings.cmdlineFile); name the slot")
        }
        return record
    }

    /// The booted record, else `slotctl.slot=` on the kernel command line, else nil. The
    /// files are read under the trusted-file rule (SystemFiles); parsing is the flows'.
    func bootedRecordIfAny() throws(CLIError) -> BootedRecord? {
        if let recorded = try SystemFiles.readText(settings.bootedFile) {
            return try flow { () throws(FlowError) in try BootedRecord.parse(recorded, source: settings.bootedFile) }
        }
        if let cmdline = try SystemFiles.readText(settings.cmdlineFile) {
            return try flow { () throws(FlowError) in try BootedRecord.fromCommandLine(cmdline) }
        }
        return nil
    }

    var verifies: Bool { settings.verification == .signature }

    /// The configured rollback counters, or nil when none are configured.
    func counters() throws(CLIError) -> RollbackCounters? {
        guard let spec = settings.counters else { return nil }
        do { return try openCounters(spec) } catch { throw CLIError(error.code, error.message) }
    }

    /// The trusted keys: the key directory less every key the TPM's pin does not name
    /// (spec/keys.md). The pin is read whenever the counters are in a TPM, so a key file
    /// added or swapped by someone without the TPM owner's password is never trusted; a
    /// pin that cannot be read or is not slotctl's refuses the command (28).
    func trustedKeys(_ counters: RollbackCounters?) throws(CLIError) -> KeyDirectory {
        try pinnedKeys(counters).keys
    }

    /// The trusted keys and the pin they were judged by (nil: no TPM counters, or no pin
    /// in force), for `status`, which shows both.
    func pinnedKeys(_ counters: RollbackCounters?) throws(CLIError) -> (keys: KeyDirectory, pin: KeyPin?) {
        var keys = KeyDirectory(path: settings.keys)
        guard let tpm = counters as? TPMCounters else { return (keys, nil) }
        let pin: KeyPin?
        do { pin = try tpm.readKeyPin() } catch { throw CLIError(error.code, "key pin: \(error.message); no slot was judged or changed") }
        if let pin { keys.keepPinned(pin, source: "TPM \(tpm.spec)") }
        return (keys, pin)
    }

    /// The boot verifier: signatures (and rollback, with counters) unless verification
    /// is off; a key directory without a usable key is refused by the flows.
    func verifier(_ counters: RollbackCounters?) throws(CLIError) -> SlotVerifier {
        guard verifies else { return TableOnlyVerifier() }
        let keys = try trustedKeys(counters)
        return try flow { () throws(FlowError) in try SignedSlotVerifier.requiringKeys(keys, counters: counters) }
    }
}
