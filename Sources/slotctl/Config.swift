// The config file's grammar and the settings it feeds, apart from the command line so
// that `make fuzz` can compile the parser on its own (Fuzz/FuzzConfig.swift): this file
// needs nothing but SlotCore's status codes.
import SlotCore

struct CLIError: Error {
    var code: StatusCode
    var message: String
    /// Text for stdout that still belongs to a failed command (verify's findings).
    var details: String?
    init(_ code: StatusCode, _ message: String, details: String? = nil) {
        self.code = code
        self.message = message
        self.details = details
    }
}

enum VerificationMode: String {
    case signature
    case none
}

/// Settings after the config file and the flags are merged (flags win).
struct Settings {
    var disk: String?
    var keys = "/etc/slotctl/keys"
    var counters: String?
    var bootedFile = "/run/slotctl/booted"
    var cmdlineFile = "/proc/cmdline"
    var sectorSize: Int?
    var verification = VerificationMode.signature
    var json = false
    /// How long a command waits for the disk's lock (spec/locking.md).
    var lockTimeout: Double = 10
    /// How long one disk operation may take before slotctl gives up on the disk
    /// (spec/locking.md); 0 turns the bound off.
    var ioTimeout: Double = 120
    /// The PCR `boot` measures the verified slot into; nil: no measurement
    /// (spec/measured-boot.md says why that is the default).
    var measurePCR: UInt32?
    /// The TPM for measuring; nil: the counters' TPM, else /dev/tpmrm0.
    var measureTPM: String?
    var measureLog = "/run/log/systemd/tpm2-measure.log"

    /// The TPM `measure` names: measure_tpm, else the counters' TPM, else /dev/tpmrm0.
    var measuringTPM: String {
        if let measureTPM { return measureTPM }
        if let counters, counters.hasPrefix("tpm:") { return counters }
        return "/dev/tpmrm0"
    }
}

/// `pcr:N` for N in 8...16 or 23, or `none` (spec/measured-boot.md): 0...7 are the
/// firmware's, 17...22 DRTM's.
func parseMeasure(_ text: String, source: String) throws(CLIError) -> UInt32? {
    if text == "none" { return nil }
    guard text.hasPrefix("pcr:"), let pcr = UInt32(text.dropFirst(4)), MeasurementEvent.acceptsPCR(pcr) else {
        throw CLIError(.usage, "\(source): measure must be pcr:N with N in 8...16 or 23, or none, not '\(text)'")
    }
    return pcr
}

/// A plain decimal number of seconds ("10", "0.5"); no sign, exponent or spaces. Ours,
/// because the Embedded stdlib has no Double(String).
func parseSeconds(_ text: String) -> Double? {
    var whole = 0.0, scale = 0.0, digits = 0
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"):
            guard digits < 12 else { return nil }
            digits += 1
            if scale == 0 { whole = whole * 10 + Double(byte - UInt8(ascii: "0")) } else {
                scale /= 10
                whole += Double(byte - UInt8(ascii: "0")) * scale
            }
        case UInt8(ascii: ".") where scale == 0 && digits > 0:
            scale = 1
        default:
            return nil
        }
    }
    return digits > 0 && scale != 1 ? whole : nil
}

func parseLockTimeout(_ text: String, source: String) throws(CLIError) -> Double {
    guard let value = parseSeconds(text), value >= 0, value <= 3600 else {
        throw CLIError(.usage, "\(source): lock timeout must be 0...3600 seconds, not '\(text)'")
    }
    return value
}

func parseIOTimeout(_ text: String, source: String) throws(CLIError) -> Double {
    guard let value = parseSeconds(text), value == 0 || (value >= 1 && value <= 3600) else {
        throw CLIError(.usage, "\(source): I/O timeout must be 1...3600 seconds, or 0 for unbounded, not '\(text)'")
    }
    return value
}

func parseVerification(_ text: String, source: String) throws(CLIError) -> VerificationMode {
    guard let value = VerificationMode(rawValue: text) else {
        throw CLIError(.usage, "\(source): verification must be 'signature' or 'none', not '\(text)'")
    }
    return value
}

func parseSectorSize(_ text: String, source: String) throws(CLIError) -> Int {
    guard let value = Int(text), value == 512 || value == 4096 else {
        throw CLIError(.usage, "\(source): sector size must be 512 or 4096, not '\(text)'")
    }
    return value
}

/// One key of /etc/slotctl.conf: its name, the form of its value, its default, one line
/// of help, and how a value lands in the settings (`source` is `path:line` for errors).
struct ConfigKey: Sendable {
    let name: String
    let value: String
    let defaultText: String
    let help: String
    let apply: @Sendable (inout Settings, String, String) throws(CLIError) -> Void

    init(_ name: String, _ value: String, default defaultText: String, help: String,
         apply: @escaping @Sendable (inout Settings, String, String) throws(CLIError) -> Void) {
        self.name = name
        self.value = value
        self.defaultText = defaultText
        self.help = help
        self.apply = apply
    }
}

/// /etc/slotctl.conf: `key = value` lines, `#` comments. Unknown keys are an error, so a
/// typo never silently changes which disk or keys are used; so are a key given twice and
/// a control character anywhere (a lone carriage return would otherwise hide the line
/// after it). Lines end with LF or CRLF, as the hook's shell reader sees them.
enum Config {
    static func apply(_ text: String, path: String, to settings: inout Settings) throws(CLIError) {
        var number = 0
        var seen: [String: Int] = [:]
        for rawLine in lines(text) {
            number += 1
            if let bad = rawLine.unicodeScalars.first(where: { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7F }) {
                throw CLIError(.usage, "\(path):\(number): control character U+\(hex4(bad.value)) in the line; "
                    + "write plain 'key = value' lines ending in LF or CRLF")
            }
            let trimmed = trim(String(rawLine[..<(rawLine.firstIndex(of: "#") ?? rawLine.endIndex)]))
            if trimmed.isEmpty { continue }
            guard let eq = trimmed.firstIndex(of: "=") else {
                throw CLIError(.usage, "\(path):\(number): expected 'key = value'")
            }
            let key = trim(String(trimmed[..<eq])), value = trim(String(trimmed[trimmed.index(after: eq)...]))
            guard !value.isEmpty else { throw CLIError(.usage, "\(path):\(number): '\(key)' has no value") }
            if let first = seen[key] {
                throw CLIError(.usage, "\(path):\(number): '\(key)' is set again (first on line \(first)); give each key once")
            }
            seen[key] = number
            guard let declared = keys.first(where: { $0.name == key }) else {
                throw CLIError(.usage, "\(path):\(number): unknown key '\(key)'")
            }
            try declared.apply(&settings, value, "\(path):\(number)")
        }
    }

    /// Every key the file may hold, declared once: the parser above and slotctl.conf(5)
    /// (`slotctl help conf-page`) are both made from this list.
    static let keys: [ConfigKey] = [
        ConfigKey("disk", "PATH", default: "none: every disk command needs it",
                  help: "the slot disk: a whole-disk block device (/dev/mmcblk0, /dev/disk/by-path/...) or an image file") {
            settings, value, _ in settings.disk = value
        },
        ConfigKey("keys", "DIR", default: "/etc/slotctl/keys",
                  help: "the directory of trusted public keys (*.pem); owned by root and not writable by others") {
            settings, value, _ in settings.keys = value
        },
        ConfigKey("counters", "SPEC", default: "none: rollback is not enforced",
                  help: "the rollback counters: tpm:/dev/tpmrm0, tpm:tcp:HOST:PORT (a software TPM) or file:PATH") {
            settings, value, _ in settings.counters = value
        },
        ConfigKey("booted_file", "PATH", default: "/run/slotctl/booted",
                  help: "where boot records the slot it chose, for mark-successful and mark-failed after switch_root") {
            settings, value, _ in settings.bootedFile = value
        },
        ConfigKey("cmdline_file", "PATH", default: "/proc/cmdline",
                  help: "the kernel command line, read for slotctl.slot= when there is no booted record") {
            settings, value, _ in settings.cmdlineFile = value
        },
        ConfigKey("sector_size", "512|4096", default: "probed (a block device's logical sector size)",
                  help: "an image file's sector size") { (settings, value, source) throws(CLIError) in
            settings.sectorSize = try parseSectorSize(value, source: source)
        },
        ConfigKey("verification", "signature|none", default: "signature",
                  help: "signature: every slot's image must verify before it boots; none: the table alone decides") {
            (settings, value, source) throws(CLIError) in settings.verification = try parseVerification(value, source: source)
        },
        ConfigKey("lock_timeout", "SECONDS", default: "10",
                  help: "how long a command waits for the disk's lock held by another slotctl (0...3600)") {
            (settings, value, source) throws(CLIError) in settings.lockTimeout = try parseLockTimeout(value, source: source)
        },
        ConfigKey("measure", "pcr:N|none", default: "none: boot measures nothing",
                  help: "the PCR boot extends with the verified slot's event (8...16 or 23; spec/measured-boot.md)") {
            (settings, value, source) throws(CLIError) in settings.measurePCR = try parseMeasure(value, source: source)
        },
        ConfigKey("measure_tpm", "DEVICE|tcp:HOST:PORT", default: "the counters' TPM, else /dev/tpmrm0",
                  help: "the TPM that measure extends") {
            settings, value, _ in settings.measureTPM = value
        },
        ConfigKey("measure_log", "PATH", default: "/run/log/systemd/tpm2-measure.log",
                  help: "the measurement log boot appends to (systemd's, CEL-JSON)") {
            settings, value, _ in settings.measureLog = value
        },
        ConfigKey("io_timeout", "SECONDS", default: "120",
                  help: "how long one disk operation may take, plus 1 s per MiB, before slotctl gives up on the disk "
                    + "(1...3600, or 0 for unbounded)") {
            (settings, value, source) throws(CLIError) in settings.ioTimeout = try parseIOTimeout(value, source: source)
        },
    ]

    /// The lines of a text file, each without its LF or CRLF end. Swift takes "\r\n" as
    /// one Character, so splitting on "\n" alone would see a CRLF file as one line.
    static func lines(_ text: String) -> [Substring] {
        text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
    }

    static func trim(_ text: String) -> String {
        var s = Substring(text)
        while let first = s.first, first == " " || first == "\t" || first == "\r" { s.removeFirst() }
        while let last = s.last, last == " " || last == "\t" || last == "\r" { s.removeLast() }
        return String(s)
    }

    static func hex4(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
