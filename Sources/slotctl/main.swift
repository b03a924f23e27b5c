#if canImport(Glibc)
import Glibc
#endif
import SlotCore
import SlotStorage

/// slotctl's entry point: parse, run one command, print, exit with its status code.
/// Errors are one line on stderr; with --json the same code and message also go to
/// stdout as one object.
let usage = """
usage: slotctl [--disk PATH] [--keys DIR] [--counters SPEC] [--config FILE] [--json] COMMAND
  status                         slots, state, table copies
  boot [--dry-run] [--shell]     choose, consume a try; print the slot name
                                 (--shell: NAME=value lines for the initramfs hook)
  mark-successful [SLOT]         default: the booted slot
  mark-failed [SLOT]             default: the booted slot (exits 40)
  set-active SLOT [--tries N]    priority 15, N tries (default 6)
  format [--size BYTES] [--slots N] [--slot-size BYTES] [--name PREFIX] [--force]
  verify [SLOT | --image FILE]   check signature, key and payload digest
  install IMAGE|- [--slot SLOT] [--tries N] [--stream-timeout SECONDS]
                                 verify, write to the inactive slot, read back, activate
  counters [provision [--locations N]]     show (and provision) rollback counters
  sign --key PEM --rollback-index N [--rollback-location L] [--version S]
       [--partition-size BYTES] [--verity [--salt HEX]] [--stream] PAYLOAD -o IMAGE
other global options: --booted-file PATH, --cmdline-file PATH, --sector-size 512|4096,
  --verification signature|none (default signature), --lock-timeout SECONDS (default 10),
  --io-timeout SECONDS (one disk operation; default 30, 0: unbounded)
exit codes: spec/status-codes.md
"""

/// Writes all of `text` to a file descriptor (1 or 2).
func emit(_ text: String, to fd: Int32) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let put = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if put < 0 { if errno == EINTR { continue }; return }
        bytes = bytes.dropFirst(put)
    }
}

var json = Swift.CommandLine.arguments.contains("--json")
var exitCode: StatusCode = .ok
do throws(CLIError) {
    let line = try Invocation.parse(Array(Swift.CommandLine.arguments.dropFirst()))
    if line.command == "help" {
        emit(usage + "\n", to: 1)
        exit(0)
    }
    if line.command == nil { emit(usage + "\n", to: 2) }
    let settings = try line.settings()
    json = settings.json
    switch IOWatchdog.supervise(timeout: settings.ioTimeout, warning: { emit("slotctl: warning: \($0)\n", to: 2) }) {
    case .worker: break
    case .finished(let status): exit(status)
    case .stalled(let reason): throw CLIError(.ioError, reason)
    }
    var commands = Commands(line: line, settings: settings)
    let outcome: Commands.Outcome
    do throws(CLIError) { outcome = try commands.run() } catch {
        for warning in commands.warnings { emit("slotctl: warning: \(warning)\n", to: 2) }
        throw error
    }
    for warning in commands.warnings { emit("slotctl: warning: \(warning)\n", to: 2) }
    let (code, text, object) = outcome
    exitCode = code
    if json {
        var out = JSONObject()
        out.set("code", Int(code.rawValue))
        out.set("status", code.name.description)
        out.set("command", line.command ?? "")
        out.set("result", object)
        emit(out.text + "\n", to: 1)
    } else {
        emit(text, to: 1)
    }
} catch {
    exitCode = error.code
    if let details = error.details, !json { emit(details, to: 1) }
    emit("slotctl: \(error.message)\n", to: 2)
    if json {
        var out = JSONObject()
        out.set("code", Int(error.code.rawValue))
        out.set("status", error.code.name.description)
        out.set("error", error.message)
        emit(out.text + "\n", to: 1)
    }
}
exit(Int32(exitCode.rawValue))
