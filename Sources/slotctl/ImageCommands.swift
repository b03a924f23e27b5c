import SlotCore
import SlotCounters
import SlotCrypto
import SlotFlows
import SlotStorage

/// The commands that make and write signed images: `sign` and `install`.
extension Commands {
    /// `sign PAYLOAD -o IMAGE`: a signed image (or its stream form) of a payload.
    func sign() throws(CLIError) -> Outcome {
        let payloadPath = line.positional[0]
        // --key, -o and --rollback-index are required: run() has checked they are given.
        let keyPath = line.flags["--key"] ?? "", output = line.flags["-o"] ?? ""
        guard let rollbackIndex = UInt64(line.flags["--rollback-index"] ?? "") else {
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
                                       rollbackLocation: location, version: line.flags["--image-version"] ?? "", veritySalt: salt)
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
    mutating func install() throws(CLIError) -> Outcome {
        let imagePath = line.positional[0]
        let tries = try triesOption()
        let booted = try bootedRecordIfAny()?.letter
        let disk = try openDisk(writable: true)
        let target: UInt8
        if let named = line.flags["--slot"] {
            target = try slotArgument(named)
        } else {
            target = try flow { () throws(FlowError) in try InstallFlow.defaultTarget(try TableStore.load(disk), booted: booted) }
        }
        let counters = try counters()
        let keys = try trustedKeys(counters)
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
        var mode = ProgressMode.auto
        if let text = line.flags["--progress"] {
            guard let chosen = ProgressMode(rawValue: text) else {
                throw CLIError(.usage, "--progress must be auto, text, json or none, not '\(text)'")
            }
            mode = chosen
        }
        if mode == .auto { mode = stderrIsTerminal && !settings.json ? .text : .none }
        let display = ProgressDisplay(mode: mode, slot: BootControl.letterText(target))
        let progress: InstallProgress? = mode == .none ? nil : { display.report($0, done: $1, total: $2, finished: $3) }
        defer { display.close() }
        let report = try flow { () throws(FlowError) in
            if let stream {
                return try InstallFlow.installStream(stream, disk: disk, target: target, booted: booted, keys: keys,
                                                     counters: counters, hasher: PayloadHasher(), tries: tries, progress: progress)
            }
            return try InstallFlow.install(source: source!, disk: disk, target: target, booted: booted, keys: keys,
                                           counters: counters, hasher: PayloadHasher(), tries: tries, progress: progress)
        }
        warnings += report.warnings
        let name = BootControl.letterText(report.slot)
        let version = report.descriptor.versionText
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
}
