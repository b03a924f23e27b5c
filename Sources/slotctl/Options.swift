import SlotCore
import SlotCrypto

/// The parsed command line: global options (accepted before or after the command),
/// the command word, its own options and positional arguments.
struct Invocation {
    var command: String?
    var positional: [String] = []
    var flags: [String: String] = [:]
    var switches: [String] = []
    var configPath = "/etc/slotctl.conf"
    var configGiven = false
    var overrides = Settings()
    /// The global options given on the command line (they win over the config file).
    var given: [String] = []

    /// Whether --help (or -h) was given: help for the command, or the usage.
    var helpRequested = false
    /// Whether --version was given (slotctl's own; `sign` names the image's version with
    /// --image-version).
    var versionRequested = false
    /// Warnings about how the command line was written (an old spelling).
    var notices: [String] = []

    /// Splits the words of the command line by the grammar (Grammar.swift): global options
    /// anywhere, the command word, its options and positional arguments. Which options a
    /// command takes is checked when it runs.
    /// `args` is the command line after argv[0], as a slice of it (not copied).
    static func parse(_ args: ArraySlice<String>) throws(CLIError) -> Invocation {
        var line = Invocation()
        // One allocation for the global options given, not one per growth.
        line.given.reserveCapacity(Grammar.globalOptions.count)
        var i = args.startIndex
        func value(_ flag: String) throws(CLIError) -> String {
            i += 1
            guard i < args.endIndex else { throw CLIError(.usage, "\(flag) needs a value") }
            return args[i]
        }
        while i < args.endIndex {
            let arg = args[i]
            var name = arg, inline: String? = nil
            if arg.hasPrefix("--"), let eq = arg.firstIndex(of: "=") {
                name = String(arg[..<eq])
                inline = String(arg[arg.index(after: eq)...])
            }
            if let global = Grammar.global(name) {
                var v = ""
                if global.option.value != nil {
                    if let inline { v = inline } else { v = try value(name) }
                }
                if !line.given.contains(name) { line.given.append(name) }
                try global.apply(&line, v)
            } else if name == "--help" || name == "-h" {
                line.helpRequested = true
            } else if name == "--version" && line.command == "sign" {
                // sign's old spelling (BRIEF's contract): still read as the image's version,
                // with a notice naming the unambiguous one.
                if let inline { line.flags["--image-version"] = inline } else { line.flags["--image-version"] = try value(name) }
                line.notices.append("sign --version S is spelled --image-version S now (slotctl --version alone prints "
                    + "slotctl's own version); --version S still works after sign")
            } else if name == "--version" {
                line.versionRequested = true
            } else if let takesValue = Grammar.commandOptionTakesValue(name) {
                if !takesValue {
                    if !line.switches.contains(name) { line.switches.append(name) }
                } else if let inline {
                    line.flags[name] = inline
                } else {
                    line.flags[name] = try value(name)
                }
            } else if arg.hasPrefix("-") && arg != "-" {
                throw CLIError(.usage, "unknown option \(arg) (see slotctl --help)")
            } else if line.command == nil {
                line.command = arg
            } else {
                line.positional.append(arg)
            }
            i += 1
        }
        return line
    }

    /// Loads the config file (missing is fine unless named with --config) under the flags.
    func settings() throws(CLIError) -> Settings {
        var settings = Settings()
        if let text = try SystemFiles.readText(configPath) {
            try Config.apply(text, path: configPath, to: &settings)
        } else if configGiven {
            throw CLIError(.usage, "\(configPath): config file not found")
        }
        if given.contains("--disk") { settings.disk = overrides.disk }
        if given.contains("--keys") { settings.keys = overrides.keys }
        if given.contains("--counters") { settings.counters = overrides.counters }
        if given.contains("--booted-file") { settings.bootedFile = overrides.bootedFile }
        if given.contains("--cmdline-file") { settings.cmdlineFile = overrides.cmdlineFile }
        if given.contains("--sector-size") { settings.sectorSize = overrides.sectorSize }
        if given.contains("--verification") { settings.verification = overrides.verification }
        if given.contains("--lock-timeout") { settings.lockTimeout = overrides.lockTimeout }
        if given.contains("--io-timeout") { settings.ioTimeout = overrides.ioTimeout }
        if given.contains("--json") { settings.json = true }
        if given.contains("--measure") { settings.measurePCR = overrides.measurePCR }
        if given.contains("--measure-tpm") { settings.measureTPM = overrides.measureTPM }
        if given.contains("--measure-log") { settings.measureLog = overrides.measureLog }
        return settings
    }
}

/// Parses an even number of hex digits (at most 64 bytes).
func parseHex(_ text: String, flag: String) throws(CLIError) -> [UInt8] {
    guard text.utf8.count <= 128 else { throw CLIError(.usage, "\(flag): '\(text)' is not up to 64 bytes of hex") }
    guard let bytes = [UInt8](hexText: text) else { throw CLIError(.usage, "\(flag): '\(text)' is not hex") }
    return bytes
}

/// Parses a byte count: digits with an optional K, M, G (or KiB, MiB, GiB) binary suffix.
func parseSize(_ text: String, flag: String) throws(CLIError) -> UInt64 {
    let units: [(String, UInt64)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30),
                                     ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30)]
    var digits = text, scale: UInt64 = 1
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        digits = String(text.dropLast(suffix.count))
        scale = factor
        break
    }
    guard let number = UInt64(digits) else { throw CLIError(.usage, "\(flag): '\(text)' is not a size (e.g. 16M, 4096)") }
    let (bytes, overflow) = number.multipliedReportingOverflow(by: scale)
    guard !overflow else { throw CLIError(.usage, "\(flag): '\(text)' is too large") }
    return bytes
}
