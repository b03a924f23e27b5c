import CSystem
import SlotCore
import SlotStorage

/// slotctl's entry point: parse, run one command, print, exit with its status code.
/// Errors are one line on stderr; with --json the same code and message also go to
/// stdout as one object.

/// Writes all of `text` to standard output (1) or standard error (2); a closed stream
/// loses the text, nothing else.
func emit(_ text: String, to fd: Int32) {
    try? (fd == 1 ? FileDescriptor.standardOutput : FileDescriptor.standardError).writeAll(Array(text.utf8))
}

/// Runs the command `arguments` (argv, the program name first) names and exits with its
/// status code.
func runCommand(_ arguments: [String]) -> Never {
    // A standard stream the caller closed is opened on /dev/null, so that no file slotctl
    // opens (the disk) lands on descriptor 0, 1 or 2 and is read or written as one.
    for stream: Int32 in 0...2 where slotctl_fcntl(stream, F_GETFD) < 0 {
        _ = slotctl_open("/dev/null", O_RDWR)
    }

    var json = arguments.contains("--json")
    var exitCode: StatusCode = .ok
    do throws(CLIError) {
        var line = try Invocation.parse(arguments.dropFirst())
        if line.versionRequested {
            guard line.command == nil || line.command == "version" else {
                throw CLIError(.usage, "--version goes alone: slotctl --version (or slotctl version --json)")
            }
            line.command = "version"
        }
        // Files made from the command grammar, for `make install`.
        if line.command == "help", line.positional.first == "man-page" { emit(Grammar.manPage, to: 1); exit(0) }
        if line.command == "help", line.positional.first == "conf-page" { emit(Grammar.confPage, to: 1); exit(0) }
        if line.command == "help", line.positional.first == "bash-completion" { emit(Grammar.bashCompletion, to: 1); exit(0) }
        // `slotctl --help`, `slotctl help [COMMAND]`, `slotctl COMMAND --help`.
        if line.command == "help" || line.helpRequested {
            let named = line.command == "help" ? line.positional.first : line.command
            if let named, let command = Grammar.command(named) {
                emit(Grammar.help(command) + "\n", to: 1)
            } else {
                emit(Grammar.usage + "\n", to: 1)
            }
            exit(0)
        }
        if line.command == nil { emit(Grammar.usage + "\n", to: 2) }
        let settings = try line.settings()
        json = settings.json
        JSONObject.assembling = json
        // The disk commands run under the I/O watchdog (spec/locking.md); sign and version
        // touch no slot disk. A stream install's input is relayed, so a stalled worker
        // never holds the OTA client's pipe.
        let touchesDisk = line.command != "sign" && line.command != "version"
        let streamInput = line.command == "install"
            && (line.positional.first == "-" || line.positional.first.flatMap(FileByteStream.isStreamOnly(path:)) == true)
        let stderrIsTerminal = isatty(2) == 1
        switch IOWatchdog.supervise(timeout: touchesDisk ? settings.ioTimeout : 0, relayInput: streamInput,
                                    warning: { emit("slotctl: warning: \($0)\n", to: 2) }) {
        case .worker: break
        case .finished(let status): exit(status)
        case .stalled(let reason): throw CLIError(.ioError, reason)
        case .failed(let reason): throw CLIError(.internalError, reason)
        }
        var commands = Commands(line: line, settings: settings)
        commands.stderrIsTerminal = stderrIsTerminal
        commands.warnings += line.notices
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
            out.set("schema_version", BuildInfo.schemaVersion)
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
            out.set("schema_version", BuildInfo.schemaVersion)
            out.set("code", Int(error.code.rawValue))
            out.set("status", error.code.name.description)
            out.set("error", error.message)
            emit(out.text + "\n", to: 1)
        }
    }
    exit(Int32(exitCode.rawValue))
}

#if hasFeature(Embedded)
// Embedded Swift has no CommandLine: the C entry point hands argv over. The Embedded
// build compiles this module without main.swift (scripts/build-embedded.sh).
@_cdecl("main")
func embeddedMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    runCommand((0..<Int(argc)).map { String(cString: argv[$0]!) })
}
#endif
