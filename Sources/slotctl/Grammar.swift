import SlotCore
import SlotFlows

/// One option: its spelling, the placeholder of its value (nil for a switch), whether
/// the command needs it, and one line of help.
struct OptionSpec: Sendable {
    let name: String
    let value: String?
    let required: Bool
    let help: String

    @inline(__always)
    init(_ name: String, _ value: String? = nil, required: Bool = false, help: String) {
        self.name = name
        self.value = value
        self.required = required
        self.help = help
    }

    /// `--tries N`, `--dry-run`.
    var spelled: String { value.map { "\(name) \($0)" } ?? name }
}

/// One command, declared once: the parser, the validation of its options and arguments,
/// `--help` and the usage summary are all made from this (spec/cli.md is its prose).
struct CommandSpec: Sendable {
    let name: String
    /// The positional arguments as usage shows them, e.g. "[SLOT]" or "IMAGE|-".
    let arguments: String
    let positional: ClosedRange<Int>
    let options: [OptionSpec]
    /// One line: what the command does.
    let summary: String
    /// A few lines for `--help`: defaults, exit status, an example.
    let details: String
    let run: @Sendable (inout Commands) throws(CLIError) -> Commands.Outcome

    /// `set-active SLOT [--tries N]`.
    var usage: String {
        var words = [name]
        if !arguments.isEmpty { words.append(arguments) }
        for option in options { words.append(option.required ? option.spelled : "[\(option.spelled)]") }
        return words.joined(separator: " ")
    }
}

/// A global option: accepted before or after the command, applied to the invocation.
struct GlobalOptionSpec: Sendable {
    let option: OptionSpec
    let apply: @Sendable (inout Invocation, String) throws(CLIError) -> Void
}

/// slotctl's command line, declared once (spec/cli.md).
enum Grammar {
    static let globalOptions: [GlobalOptionSpec] = [
        .init(option: OptionSpec("--disk", "PATH", help: "the slot disk: a block device or an image file (config: disk)")) { $0.overrides.disk = $1 },
        .init(option: OptionSpec("--keys", "DIR", help: "trusted public keys, *.pem (default /etc/slotctl/keys; config: keys)")) {
            $0.overrides.keys = $1
        },
        .init(option: OptionSpec("--counters", "SPEC", help: """
            rollback counters: file:PATH, tpm:/dev/tpmrm0 or tpm:tcp:HOST:PORT \
            (default none: rollback not enforced; config: counters)
            """)) { $0.overrides.counters = $1 },
        .init(option: OptionSpec("--config", "FILE", help: "the config file (default /etc/slotctl.conf; flags win over it)")) {
            $0.configPath = $1
            $0.configGiven = true
        },
        .init(option: OptionSpec("--json", help: "one JSON object on stdout, with the exit code and its name")) { line, _ in
            line.overrides.json = true
        },
        .init(option: OptionSpec("--booted-file", "PATH", help: "where boot records the booted slot (default /run/slotctl/booted)")) {
            $0.overrides.bootedFile = $1
        },
        .init(option: OptionSpec("--cmdline-file", "PATH", help: "the kernel command line, for slotctl.slot= (default /proc/cmdline)")) {
            $0.overrides.cmdlineFile = $1
        },
        .init(option: OptionSpec("--sector-size", "512|4096", help: "an image file's sector size (default: probed)")) { (line, value) throws(CLIError) in
            line.overrides.sectorSize = try parseSectorSize(value, source: "--sector-size")
        },
        .init(option: OptionSpec("--verification", "signature|none", help: "check slot images at boot (default signature)")) {
            (line, value) throws(CLIError) in line.overrides.verification = try parseVerification(value, source: "--verification")
        },
        .init(option: OptionSpec("--lock-timeout", "SECONDS", help: "how long to wait for the disk's lock (default 10)")) {
            (line, value) throws(CLIError) in line.overrides.lockTimeout = try parseLockTimeout(value, source: "--lock-timeout")
        },
        .init(option: OptionSpec("--io-timeout", "SECONDS", help: """
            how long one disk operation may take, plus 1 s per MiB \
            (default 120; 0: unbounded)
            """)) {
            (line, value) throws(CLIError) in line.overrides.ioTimeout = try parseIOTimeout(value, source: "--io-timeout")
        },
        .init(option: OptionSpec("--measure", "pcr:N|none", help: "the PCR boot measures the verified slot into (default none)")) {
            (line, value) throws(CLIError) in line.overrides.measurePCR = try parseMeasure(value, source: "--measure")
        },
        .init(option: OptionSpec("--measure-tpm", "SPEC", help: "the TPM for measuring (default: the counters' TPM, else /dev/tpmrm0)")) {
            $0.overrides.measureTPM = $1
        },
        .init(option: OptionSpec("--measure-log", "PATH", help: "the measurement log (default /run/log/systemd/tpm2-measure.log)")) {
            $0.overrides.measureLog = $1
        },
    ]

    /// The default is written out (Policy.defaultTries; CLITests.versionHelpAndSchema checks
    /// they agree): an interpolated or concatenated string anywhere in these tables makes
    /// the compiler build them on the heap at every start instead of emitting them as data.
    static let tries = OptionSpec("--tries", "N", help: "boots on trial before it falls back (1...15, default 6)")

    static let commands: [CommandSpec] = [
        CommandSpec(name: "status", arguments: "", positional: 0...0,
                    options: [OptionSpec("--full", help: """
                        re-hash every payload and verity tree (default: signatures and \
                        verity tree tops only)
                        """)],
                    summary: "the table copies, each slot's state and image, the counters",
                    details: """
                        Reads only: a copy needing repair or a state needing normalization is reported, not written.\n\
                        Each image's footer, key and signature are checked; its payload only with --full.
                        """,
                    run: { (c) throws(CLIError) in try c.status() }),
        CommandSpec(name: "current", arguments: "", positional: 0...0, options: [],
                    summary: "the booted slot and its image's version, cheaply (no hashing)",
                    details: """
                        From the booted record (or slotctl.slot=), the table and the image's descriptor; \
                        boot verified the image. Exit 64: no booted slot is known.
                        """,
                    run: { (c) throws(CLIError) in try c.current() }),
        CommandSpec(name: "boot", arguments: "", positional: 0...0,
                    options: [OptionSpec("--dry-run", help: "choose and verify, write nothing"),
                              OptionSpec("--shell", help: "print NAME='value' lines for the initramfs hook"),
                              OptionSpec("--chosen", "SLOT", help: """
                                  the second stage of a kexec boot: verify SLOT, which stage-0 chose, \
                                  spend no try, write no table (spec/kexec.md)
                                  """)],
                    summary: "choose a slot, spend one try, verify it; print its name",
                    details: """
                        A slot that fails verification is marked unbootable and the next is tried.\n\
                        Exit 50: no slot is bootable (the hook goes to recovery).
                        """,
                    run: { (c) throws(CLIError) in try c.boot() }),
        CommandSpec(name: "kexec", arguments: "ROOT", positional: 1...1,
                    options: [OptionSpec("--dry-run", help: "check and read everything, load nothing")],
                    summary: "start the booted slot's own kernel from its verified root mounted at ROOT",
                    details: """
                        Stage-0 only (spec/kexec.md): after boot, with the slot's dm-verity mapping mounted read-only at ROOT.\n\
                        Loads /boot/slotctl/vmlinuz (initrd.img, cmdline) with kexec_file_load, adds slotctl.slot=X, jumps.\n\
                        Exit 52: no kernel it can load (the hook marks the slot failed); 23: a block altered after signing.
                        """,
                    run: { (c) throws(CLIError) in try c.kexec() }),
        CommandSpec(name: "mark-successful", arguments: "[SLOT]", positional: 0...1, options: [],
                    summary: "confirm a slot (default: the booted one) and raise its rollback counter",
                    details: "Run after the post-boot health checks passed. Exit 51: the slot is not bootable.",
                    run: { (c) throws(CLIError) in try c.mark(successful: true) }),
        CommandSpec(name: "mark-failed", arguments: "[SLOT]", positional: 0...1,
                    options: [OptionSpec("--by", "WHO", help: """
                        who marks it, for status's why (default operator; \
                        the confirm script says confirm, the RAUC backend rauc)
                        """),
                              OptionSpec("--reason", "TEXT", help: "why, for status (default none)")],
                    summary: "make a slot unbootable (default: the booted one); exits 40",
                    details: "Run when the post-boot health checks failed: the next boot falls back.",
                    run: { (c) throws(CLIError) in try c.mark(successful: false) }),
        CommandSpec(name: "set-active", arguments: "SLOT", positional: 1...1, options: [tries],
                    summary: "make a slot boot next (priority 15), on trial",
                    details: "Example: slotctl set-active b --tries 3",
                    run: { (c) throws(CLIError) in try c.setActive() }),
        CommandSpec(name: "format", arguments: "", positional: 0...0,
                    options: [OptionSpec("--size", "BYTES", help: "create an image file this large first (e.g. 64M)"),
                              OptionSpec("--slots", "N", help: "number of slots (default 2)"),
                              OptionSpec("--slot-size", "BYTES", help: "size of each slot (default 16M)"),
                              OptionSpec("--name", "PREFIX", help: "partition names PREFIX_a, PREFIX_b, ... (default root)"),
                              OptionSpec("--force", help: "replace a table, file system or signature the disk holds"),
                              OptionSpec("--state", help: """
                                  add a 1 MiB state partition after the slots, where slotctl records \
                                  why each slot stopped being bootable
                                  """)],
                    summary: "write a fresh GPT with unbootable slots",
                    details: "Refuses (65) a disk that holds anything, naming what it found, unless --force.",
                    run: { (c) throws(CLIError) in try c.format() }),
        CommandSpec(name: "verify", arguments: "[SLOT]", positional: 0...1,
                    options: [OptionSpec("--image", "FILE", help: "verify an image file instead of a slot")],
                    summary: "check a slot's (or an image file's) signature, key, digest and rollback index",
                    details: "Always checks signatures, whatever --verification says. Default slot: the booted one.",
                    run: { (c) throws(CLIError) in try c.verify() }),
        CommandSpec(name: "install", arguments: "IMAGE|-", positional: 1...1,
                    options: [OptionSpec("--slot", "SLOT", help: "the target (default: the slot not running, of two)"), tries,
                              OptionSpec("--stream-timeout", "SECONDS", help: "give up on a stream silent this long (default 30)"),
                              OptionSpec("--progress", "auto|text|json|none", help: """
                                  progress on stderr (default auto: text \
                                  on a terminal, else none; json: a line per step and per tenth)
                                  """)],
                    summary: "verify an image, write it to the inactive slot, read it back, activate it",
                    details: """
                        IMAGE - (or a FIFO or pipe) is read as a stream made by sign --stream.\n\
                        Example: curl -s URL | slotctl install -
                        """,
                    run: { (c) throws(CLIError) in try c.install() }),
        CommandSpec(name: "counters", arguments: "[provision]", positional: 0...1,
                    options: [OptionSpec("--locations", "N", help: "with provision: how many locations (default 8)"),
                              OptionSpec("--owner-auth-file", "FILE", help: """
                                  with provision: the TPM owner password, \
                                  from a file only its owner can read (mode 0600)
                                  """),
                              OptionSpec("--owner-auth-fd", "N", help: """
                                  with provision: the TPM owner password, \
                                  read from descriptor N (a pipe, or a 0600 file: 3<FILE)
                                  """)],
                    summary: "show the rollback counters (provision: create them)",
                    details: """
                        Needs --counters or 'counters =' in the config. The owner password is never taken \
                        from the command line; boot and mark-successful never need it.
                        """,
                    run: { (c) throws(CLIError) in try c.countersCommand() }),
        CommandSpec(name: "keys", arguments: "[pin]", positional: 0...1,
                    options: [OptionSpec("--add", "PEM", help: "with pin: pin a new public key, then copy it into the key directory"),
                              OptionSpec("--remove", "PEM|KEYID", help: """
                                  with pin: take a key out of the key directory, then \
                                  out of the pin (refused while a slot that may boot needs it)
                                  """),
                              OptionSpec("--owner-auth-file", "FILE", help: "with pin: the TPM owner password, from a 0600 file"),
                              OptionSpec("--owner-auth-fd", "N", help: "with pin: the TPM owner password, from descriptor N")],
                    summary: "show the trusted keys and the TPM's pin (pin: pin them; --add, --remove: rotate)",
                    details: """
                        The pin lives in the counters' TPM (counters = tpm:...). Once pinned, a key file the pin \
                        does not name is refused by boot, verify, install and status.\n\
                        Rotation: keys pin --add new.pem; install images signed by it; keys pin --remove old.pem \
                        (spec/keys.md).
                        """,
                    run: { (c) throws(CLIError) in try c.keysCommand() }),
        CommandSpec(name: "measure", arguments: "[predict IMAGE]", positional: 0...2,
                    options: [OptionSpec("--pcr", "N", help: "the PCR (default: measure = pcr:N from the config)"),
                              OptionSpec("--slot", "SLOT", help: "with predict: the slot the image boots from"),
                              OptionSpec("--from", "HEX", help: """
                                  with predict: the PCR's value before slotctl's \
                                  measurement (default zeros: no one else extends it)
                                  """)],
                    summary: "show the measured-boot PCR and its log (predict: the PCR after booting IMAGE)",
                    details: """
                        Without predict: the PCR's SHA-256 value from the TPM, the measurement log replayed \
                        against it, and slotctl's last measurement.\n\
                        predict verifies IMAGE with the trusted keys (--keys) and prints the value the PCR \
                        holds after boot chooses it in slot SLOT (spec/measured-boot.md).\n\
                        Example: slotctl --keys keys/ measure predict image.img --slot b --pcr 8
                        """,
                    run: { (c) throws(CLIError) in try c.measureCommand() }),
        CommandSpec(name: "sign", arguments: "PAYLOAD", positional: 1...1,
                    options: [OptionSpec("--key", "PEM", required: true, help: "the private key (ed25519, EC P-256, RSA 3072/4096)"),
                              OptionSpec("--rollback-index", "N", required: true, help: "the image's security version (0...65535)"),
                              OptionSpec("--rollback-location", "L", help: "its counter location (default 0)"),
                              OptionSpec("--image-version", "S", help: "the image's version string, for people (up to 63 bytes)"),
                              OptionSpec("--partition-size", "BYTES", help: "size the image to the slot partition"),
                              OptionSpec("--verity", help: "add a dm-verity hash tree"),
                              OptionSpec("--salt", "HEX", help: "with --verity: the salt (default random)"),
                              OptionSpec("--stream", help: "write the stream form, for install -"),
                              OptionSpec("-o", "IMAGE", required: true, help: "the output file")],
                    summary: "make a signed image of PAYLOAD",
                    details: "Example: slotctl sign --key release.pem --rollback-index 4 --image-version 2.1.0 --verity rootfs.img -o rootfs.signed",
                    run: { (c) throws(CLIError) in try c.sign() }),
        CommandSpec(name: "version", arguments: "", positional: 0...0, options: [],
                    summary: "slotctl's version, how it was built, its libcrypto and the formats it reads",
                    details: "The same as slotctl --version; with --json one object.",
                    run: { (c) throws(CLIError) in (.ok, BuildInfo.text, BuildInfo.json) }),
    ]

    static func command(_ name: String) -> CommandSpec? { commands.first { $0.name == name } }

    static func global(_ name: String) -> GlobalOptionSpec? { globalOptions.first { $0.option.name == name } }

    /// Whether `name` is some command's option that takes a value (true) or a switch
    /// (false); nil if no command has it. The parser accepts command options anywhere and
    /// the command then checks they are its own. A scan, not a set built at start-up: the
    /// boot path parses a handful of words.
    static func commandOptionTakesValue(_ name: String) -> Bool? {
        for command in commands {
            for option in command.options where option.name == name { return option.value != nil }
        }
        return nil
    }

    static let exitCodes = "exit codes: 0 ok; 10-11 download failed; 20-29 verification failed; 30-34 install failed; "
        + "40 marked failed; 50-52 no bootable slot or kernel; 60-63 slot table unusable; 64 usage; 65 write refused; "
        + "66 disk locked; 70 internal"

    /// `slotctl --help`.
    static var usage: String {
        var text = "usage: slotctl [OPTIONS] COMMAND [ARGUMENTS]\ncommands:\n"
        for command in commands { text += row(command.usage, command.summary) }
        text += "options (before or after the command):\n"
        for global in globalOptions { text += row(global.option.spelled, global.option.help) }
        text += "`slotctl COMMAND --help` describes one command.\n" + exitCodes
        return text
    }

    /// `slotctl COMMAND --help`.
    static func help(_ command: CommandSpec) -> String {
        var text = "usage: slotctl [OPTIONS] \(command.usage)\n\(command.summary)\n"
        for option in command.options { text += row(option.spelled, option.help) }
        text += command.details + "\n`slotctl --help` lists the options every command takes.\n" + exitCodes
        return text
    }

    /// slotctl(8), in man(7) roff, made from the same declarations as --help
    /// (`slotctl help man-page`; `make install` installs it).
    /// Text escaped for roff: backslashes, and hyphens (which man would take as breakable).
    static func roff(_ text: String) -> String {
        text.replacingAll("\\", with: "\\e").replacingAll("-", with: "\\-")
    }

    static var manPage: String {
        func item(_ option: OptionSpec) -> String {
            ".TP\n.B \(roff(option.name))" + (option.value.map { " \\fI\(roff($0))\\fR" } ?? "") + "\n\(roff(option.help))\n"
        }
        var text = ".TH SLOTCTL 8 \"\" \"slotctl \(BuildInfo.version)\" \"System Administration\"\n"
        text += ".SH NAME\nslotctl \\- choose, verify and confirm the A/B slot a device boots\n"
        text += ".SH SYNOPSIS\n.B slotctl\n[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGUMENTS\\fR]\n"
        text += ".SH DESCRIPTION\nslotctl reads the slot table from a GPT, picks the highest-priority bootable slot, "
            + "spends one of its tries before the boot goes on, verifies the slot's signed image, key and rollback index, "
            + "and lets the booted system confirm itself (\\fBmark\\-successful\\fR) or give up "
            + "(\\fBmark\\-failed\\fR) so that the next boot falls back on its own.\n"
        text += ".SH COMMANDS\n"
        for command in commands {
            text += ".SS \(roff(command.usage))\n\(roff(command.summary)).\n"
            for line in command.details.split(separator: "\n") { text += ".br\n\(roff(String(line)))\n" }
            if !command.options.isEmpty { text += ".RS\n" + command.options.map(item).joined() + ".RE\n" }
        }
        text += ".SH OPTIONS\nThese go before or after the command.\n" + globalOptions.map { item($0.option) }.joined()
        text += ".TP\n.B \\-\\-version\nslotctl's version and build, as \\fBslotctl version\\fR.\n"
        text += ".TP\n.BR \\-\\-help \", \" \\-h\nThe usage; after a command, that command's help.\n"
        text += ".SH EXIT STATUS\n\(roff(String(exitCodes.dropFirst("exit codes: ".count)))).\n"
        text += ".SH FILES\n.TP\n.I /etc/slotctl.conf\ndefaults for the options: key = value lines "
            + "(\(Config.keys.map { $0.name }.joined(separator: ", ")); see \\fBslotctl.conf\\fR(5))\n"
            + ".TP\n.I /etc/slotctl/keys/*.pem\nthe trusted public keys\n"
            + ".TP\n.I /run/slotctl/booted\nthe slot boot chose, for mark\\-successful and mark\\-failed\n"
        text += ".SH SEE ALSO\n.BR slotctl.conf (5),\n.BR cgpt (1),\n.BR sgdisk (8),\n.BR veritysetup (8),\n.BR rauc (1)\n"
        return text
    }

    /// slotctl.conf(5), made from Config.keys, the declaration the parser uses
    /// (`slotctl help conf-page`; `make install` installs it).
    static var confPage: String {
        var text = ".TH SLOTCTL.CONF 5 \"\" \"slotctl \(BuildInfo.version)\" \"File Formats\"\n"
        text += ".SH NAME\nslotctl.conf \\- defaults for slotctl\n"
        text += ".SH SYNOPSIS\n.I /etc/slotctl.conf\n"
        text += ".SH DESCRIPTION\nEach line is \\fIkey\\fR = \\fIvalue\\fR; blanks around both are ignored, and "
            + "\\fB#\\fR starts a comment. Lines end in LF or CRLF. A flag on the command line wins over the file "
            + "(\\fB\\-\\-disk\\fR over \\fBdisk\\fR, \\fB\\-\\-io\\-timeout\\fR over \\fBio_timeout\\fR). "
            + "slotctl refuses the whole file, with exit status 64 and the file and line named, when a key is unknown "
            + "or given twice, a value is empty or out of range, or a line holds a control character: a typo must "
            + "never silently change which disk or keys are used. Since it names the trusted keys, the file must be a "
            + "regular file owned by root (or by the user slotctl runs as) and not writable by group or others; "
            + "otherwise slotctl refuses it (64).\n"
            + ".PP\nThe initramfs hook reads \\fBdisk\\fR from this file to wait for the device; its own "
            + "settings (what to do when no slot boots) are in \\fI/etc/slotctl/boot.conf\\fR.\n"
        text += ".SH KEYS\n"
        for key in Config.keys {
            text += ".TP\n.B \(roff(key.name))\n.I \(roff(key.value))\n.br\n\(roff(key.help)).\n"
                + ".br\nDefault: \(roff(key.defaultText)).\n"
        }
        text += ".SH EXAMPLE\n.nf\ndisk = /dev/mmcblk0\nkeys = /etc/slotctl/keys\ncounters = tpm:/dev/tpmrm0\n.fi\n"
        text += ".SH SEE ALSO\n.BR slotctl (8)\n"
        return text
    }

    /// A bash completion (`slotctl help bash-completion`; `make install` installs it):
    /// the commands, each one's options, and the global options, from the declarations.
    static var bashCompletion: String {
        let globals = globalOptions.map { $0.option.name }.joined(separator: " ") + " --version --help"
        var cases = ""
        for command in commands {
            cases += "        \(command.name)) opts=\"\(command.options.map { $0.name }.joined(separator: " ")) $globals\" ;;\n"
        }
        return """
        # bash completion for slotctl, made by `slotctl help bash-completion`.
        _slotctl() {
            local cur=${COMP_WORDS[COMP_CWORD]} command="" word opts
            local globals="\(globals)"
            for word in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
                case $word in -*) ;; *) [ -z "$command" ] && command=$word ;; esac
            done
            case $command in
        \(cases)        "") COMPREPLY=($(compgen -W "\(commands.map { $0.name }.joined(separator: " ")) help $globals" -- "$cur")); return ;;
                *) opts=$globals ;;
            esac
            COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        }
        complete -o default -F _slotctl slotctl

        """
    }

    /// "  left   right", the right column at 34; a left too long for it gets its own line.
    private static func row(_ left: String, _ right: String) -> String {
        guard left.count <= 30 else { return "  " + left + "\n" + String(repeating: " ", count: 34) + right + "\n" }
        return "  " + left + String(repeating: " ", count: 32 - left.count) + right + "\n"
    }
}

extension String {
    /// Every `target` character replaced (no Foundation on the CLI's path).
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for character in self { if character == target { out += replacement } else { out.append(character) } }
        return out
    }
}
