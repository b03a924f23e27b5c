import SlotCore
import SlotCounters
import SlotCrypto
import SlotFlows
import SlotStorage

/// Measured boot on the command line (spec/measured-boot.md): `boot`'s measurement,
/// `measure` (the PCR, the log's replay, the last slotctl record), `measure predict`
/// (the PCR value after booting an image, computed on a build host), and `status`'s line.
extension Commands {
    /// `boot`'s measurement, once the chosen slot verified and its try is on disk. Adds a
    /// warning instead of failing the boot (a boot without the measurement, never a wrong
    /// one). Returns the `measurement` object for --json (null when nothing was measured).
    /// With `stageZero` (boot --chosen) nothing is extended: stage-0's measurement is
    /// recorded in this system's log when the PCR shows it (MeasuredBoot.adopt).
    mutating func measureBoot(slot: UInt8, descriptor: SlotDescriptor?, stageZero: Bool = false) -> JSONObject? {
        guard let pcr = settings.measurePCR else { return nil }
        guard let descriptor else {
            warnings.append("not measured into PCR \(pcr): verification is off, so nothing was proven to measure")
            return nil
        }
        let tpm: TPMTransport
        do { tpm = try openTPM(settings.measuringTPM, what: "measure_tpm") } catch {
            warnings.append("not measured into PCR \(pcr): \(error.message)")
            return nil
        }
        let target = MeasuredBoot.Target(pcr: pcr, tpm: TPMPCRs(transport: tpm), logPath: settings.measureLog,
                                         lockTimeout: settings.lockTimeout)
        let (measurement, warning) = stageZero ? MeasuredBoot.adopt(slot: slot, descriptor: descriptor, target: target)
            : MeasuredBoot.measure(slot: slot, descriptor: descriptor, target: target)
        if let warning { warnings.append(warning) }
        return measurement.map(measurementJSON)
    }

    func measurementJSON(_ m: MeasuredBoot.Measurement) -> JSONObject {
        var json = JSONObject()
        json.set("pcr", Int(m.pcr))
        json.set("event", m.event)
        json.set("digests", m.digests.map { d in
            var o = JSONObject()
            o.set("hash_alg", d.algorithmName)
            o.set("digest", d.digest.hexText)
            return o
        })
        json.set("log", settings.measureLog)
        return json
    }

    /// The last record slotctl appended to the log, if any: (pcr, event, slot).
    func lastSlotctlMeasurement(_ records: [String]) -> (pcr: UInt32, event: String, slot: String)? {
        for text in records.reversed() {
            let record = MeasuredBoot.parseRecord(text)
            guard record.contentType == "slotctl", let pcr = record.pcr, let event = record.string else { continue }
            // "slotctl boot slot=X ...": the letter follows the first "slot=".
            let words = event.split(separator: " ")
            let slot = words.first { $0.hasPrefix("slot=") }.map { String($0.dropFirst(5)) } ?? "?"
            return (pcr, event, slot)
        }
        return nil
    }

    /// `status`'s and `measure`'s measurement line and object (null when slotctl never
    /// measured this boot); `records`: the log's, nil to read them here (an unreadable log
    /// is no measurement for `status`).
    func measurementSummary(_ records: [String]? = nil) -> (JSONObject?, String) {
        let all = records ?? ((try? MeasurementLog.records(settings.measureLog)).flatMap { $0 } ?? [])
        guard let last = lastSlotctlMeasurement(all) else {
            let text = settings.measurePCR.map { "measured: nothing in \(settings.measureLog) yet (measure = pcr:\($0))\n" } ?? ""
            return (nil, text)
        }
        var json = JSONObject()
        json.set("pcr", Int(last.pcr))
        json.set("slot", last.slot)
        json.set("event", last.event)
        json.set("log", settings.measureLog)
        return (json, "measured: slot \(last.slot) into PCR \(last.pcr) (\(settings.measureLog))\n")
    }

    /// `measure [--pcr N]` and `measure predict IMAGE --slot S [--pcr N] [--from HEX]`.
    func measureCommand() throws(CLIError) -> Outcome {
        let pcrFlag = try line.flags["--pcr"].map { (text: String) throws(CLIError) -> UInt32 in
            guard let value = UInt32(text), MeasurementEvent.acceptsPCR(value) else {
                throw CLIError(.usage, "--pcr must be 8...16 or 23, not '\(text)'")
            }
            return value
        }
        switch line.positional.first {
        case nil:
            guard line.flags["--slot"] == nil, line.flags["--from"] == nil else {
                throw CLIError(.usage, "measure: --slot and --from go with measure predict IMAGE")
            }
            return try measureShow(pcrFlag ?? settings.measurePCR)
        case "predict":
            guard line.positional.count == 2 else { throw CLIError(.usage, "measure predict needs IMAGE (usage: slotctl measure predict IMAGE --slot S)") }
            return try measurePredict(line.positional[1], pcr: pcrFlag ?? settings.measurePCR)
        case let other?:
            throw CLIError(.usage, "measure: unknown action '\(other)' (measure, or measure predict IMAGE)")
        }
    }

    /// What the TPM's PCR holds, what the log replays to, and whether they agree.
    func measureShow(_ pcr: UInt32?) throws(CLIError) -> Outcome {
        var json = JSONObject()
        var text = ""
        let records: [String]?
        do { records = try MeasurementLog.records(settings.measureLog) } catch { throw CLIError(.usage, error.description) }
        let incomplete = MeasurementLog.isIncomplete(settings.measureLog) ?? false
        json.set("log", settings.measureLog)
        json.set("log_incomplete", incomplete)
        guard let pcr else {
            json.setNull("pcr")
            text += "measure: none (set measure = pcr:N, or give --pcr N)\n"
            let (last, line) = measurementSummary(records ?? [])
            if let last { json.set("last", last) } else { json.setNull("last") }
            return (.ok, text + line, json)
        }
        json.set("pcr", Int(pcr))
        let spec = settings.measuringTPM
        json.set("tpm", spec)
        let value: [UInt8]?
        do { value = try TPMPCRs(transport: try openTPM(spec, what: "measure_tpm")).readSHA256(pcr: pcr) } catch {
            throw CLIError(error.code, "measure: \(error.message)")
        }
        guard let value else { throw CLIError(.countersUnavailable, "measure: TPM \(spec) has no SHA-256 PCR bank") }
        json.set("value", value.hexText)
        text += "PCR \(pcr) sha256: \(value.hexText) (TPM \(spec))\n"
        let replay = MeasuredBoot.replay(records ?? [], pcr: pcr)
        let matches = replay.value == value && replay.gaps == 0
        json.set("log_records", replay.count)
        json.set("log_replay", replay.value.hexText)
        json.set("log_matches", matches)
        text += "log \(settings.measureLog): \(replay.count) record(s) for PCR \(pcr), replaying to \(replay.value.hexText): "
            + (matches ? "matches the TPM" : "does NOT match the TPM (something was measured without a record, or a record lacks sha256)")
            + (incomplete ? "; the log is marked incomplete (sticky bit)" : "") + "\n"
        let (last, line) = measurementSummary(records ?? [])
        if let last { json.set("last", last) } else { json.setNull("last") }
        return (.ok, text + line, json)
    }

    /// The value PCR `pcr` holds after slot S boots IMAGE, from `--from` (zeros: a PCR no
    /// one else extends). The image must verify with the trusted keys: no value is
    /// predicted for an image `boot` would refuse.
    func measurePredict(_ image: String, pcr: UInt32?) throws(CLIError) -> Outcome {
        guard let pcr else { throw CLIError(.usage, "measure predict needs --pcr N (or measure = pcr:N in the config)") }
        guard let slotText = line.flags["--slot"] else { throw CLIError(.usage, "measure predict needs --slot S: the slot is part of the event") }
        let slot = try slotArgument(slotText)
        var from = [UInt8](repeating: 0, count: 32)
        if let text = line.flags["--from"] {
            from = try parseHex(text, flag: "--from")
            guard from.count == 32 else { throw CLIError(.usage, "--from: a SHA-256 PCR value is 32 bytes (64 hex digits)") }
        }
        let store: FileBlockStore
        do { store = try FileBlockStore(path: image, writable: false, sectorSize: 512) } catch {
            throw CLIError(Commands.code(opening: error), "measure predict: \(error.description)")
        }
        let report = ImageVerification.verify(store, offset: 0, size: store.byteCount, keys: KeyDirectory(path: settings.keys),
                                              hasher: PayloadHasher())
        guard report.verified, let descriptor = report.descriptor else {
            throw CLIError(report.code, "measure predict: \(image) does not verify with \(settings.keys): \(report.reason ?? report.code.name.description)")
        }
        let event = MeasuredBoot.event(slot: slot, descriptor: descriptor)
        let value = MeasuredBoot.extended(from, event: event)
        var json = JSONObject()
        json.set("pcr", Int(pcr))
        json.set("bank", "sha256")
        json.set("slot", BootControl.letterText(slot))
        json.set("from", from.hexText)
        json.set("event", String(decoding: event, as: UTF8.self))
        json.set("event_digest", SHA256Stream.digest(event).hexText)
        json.set("value", value.hexText)
        let text = "PCR \(pcr) sha256 after slot \(BootControl.letterText(slot)) boots \(image): \(value.hexText)\n"
            + "event: \(String(decoding: event, as: UTF8.self))\n"
        return (.ok, text, json)
    }
}
