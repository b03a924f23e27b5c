import SlotCore
import SlotCounters
import SlotCrypto
import SlotStorage

/// Measured boot (spec/measured-boot.md): `boot` extends a PCR with the event of the slot
/// it verified and appends the record to systemd's measurement log; `measure predict`
/// computes on a build host the value that PCR holds after such a boot.
public enum MeasuredBoot {
    /// Where the measurement goes: the PCR, the TPM, the log.
    public struct Target {
        public let pcr: UInt32
        public let tpm: TPMPCRs
        public let logPath: String
        public let lockTimeout: Double

        public init(pcr: UInt32, tpm: TPMPCRs, logPath: String, lockTimeout: Double) {
            self.pcr = pcr
            self.tpm = tpm
            self.logPath = logPath
            self.lockTimeout = lockTimeout
        }
    }

    /// What was extended.
    public struct Measurement {
        public let pcr: UInt32
        public let event: String
        public let digests: [TPMPCRs.BankDigest]
    }

    /// The event of `slot` booting the image `descriptor` describes (MeasurementEvent).
    public static func event(slot: UInt8, descriptor: SlotDescriptor) -> [UInt8] {
        var signed = [UInt8](repeating: 0, count: SlotDescriptor.signedSize)
        var signedSpan = signed.mutableSpan
        descriptor.serializeSigned(into: &signedSpan)
        let descriptorDigest = SHA256Stream.digest(signed)
        let keyID = (0..<32).map { descriptor.keyID[$0] }
        var out = [UInt8](repeating: 0, count: MeasurementEvent.maxSize)
        var span = out.mutableSpan
        let length = MeasurementEvent.write(into: &span, slot: slot, location: descriptor.rollbackLocation,
                                            index: descriptor.rollbackIndex, keyID: keyID.span, descriptorDigest: descriptorDigest.span)
        return Array(out[0..<length])
    }

    /// A SHA-256 PCR after extending `from` with the digest of `event`: what PCR_Event does
    /// in the SHA-256 bank.
    public static func extended(_ from: [UInt8], event: [UInt8]) -> [UInt8] {
        extendedByDigest(from, SHA256Stream.digest(event))
    }

    /// A SHA-256 PCR after extending `from` with `digest`.
    public static func extendedByDigest(_ from: [UInt8], _ digest: [UInt8]) -> [UInt8] {
        SHA256Stream.digest(from + digest)
    }

    /// `boot`'s measurement, after the chosen slot verified and its try is on disk. Never
    /// throws: a boot goes on without the measurement rather than not at all, and the
    /// reason comes back as a warning. Locks the log, sets its sticky bit, extends, appends
    /// the record and clears the bit; a TPM that refused the extend leaves the log as it
    /// was, a transport failure (the extend may have happened) leaves the bit set.
    public static func measure(slot: UInt8, descriptor: SlotDescriptor, target: Target) -> (Measurement?, String?) {
        let event = event(slot: slot, descriptor: descriptor)
        let text = String(decoding: event, as: UTF8.self)
        let log: MeasurementLog
        do { log = try MeasurementLog(path: target.logPath, timeout: target.lockTimeout) } catch {
            return (nil, "not measured into PCR \(target.pcr): \(error.description)")
        }
        do { try log.markExtending() } catch { return (nil, "not measured into PCR \(target.pcr): \(error.description)") }
        let digests: [TPMPCRs.BankDigest]
        do { digests = try target.tpm.extend(pcr: target.pcr, event: event) } catch {
            if !error.commandSent { log.settled() }
            return (nil, "not measured into PCR \(target.pcr): \(error.message)")
        }
        let measurement = Measurement(pcr: target.pcr, event: text, digests: digests)
        do { try log.append(record(measurement)) } catch {
            return (measurement, "measured into PCR \(target.pcr), but the measurement log \(target.logPath) has no record of it "
                + "(its sticky bit says it is incomplete): \(error.description)")
        }
        return (measurement, nil)
    }

    /// `boot --chosen`'s part (spec/kexec.md): stage-0 measured this slot before kexec, and
    /// the PCR kept it (the TPM is not reset), but stage-0's log stayed in its own /run.
    /// Records the measurement in this system's log when, and only when, the PCR equals
    /// the log's replay extended with this slot's event: the log then replays to the PCR
    /// again. No extend happens here. The record carries the SHA-256 bank only (the one
    /// slotctl can compute); already recorded: nothing to do.
    public static func adopt(slot: UInt8, descriptor: SlotDescriptor, target: Target) -> (Measurement?, String?) {
        let event = event(slot: slot, descriptor: descriptor)
        let text = String(decoding: event, as: UTF8.self)
        let log: MeasurementLog
        do { log = try MeasurementLog(path: target.logPath, timeout: target.lockTimeout) } catch {
            return (nil, "stage-0's measurement not recorded: \(error.description)")
        }
        let records: [String]
        do { records = try MeasurementLog.records(target.logPath) ?? [] } catch {
            return (nil, "stage-0's measurement not recorded: \(error.description)")
        }
        if records.contains(where: { parseRecord($0).string == text }) { return (nil, nil) }
        let value: [UInt8]?
        do { value = try target.tpm.readSHA256(pcr: target.pcr) } catch {
            return (nil, "stage-0's measurement not recorded: \(error.message)")
        }
        let expected = extended(replay(records, pcr: target.pcr).value, event: event)
        guard let value, value == expected else {
            return (nil, "PCR \(target.pcr) does not hold stage-0's measurement of slot \(String(UnicodeScalar(slot))) on top of "
                + "\(target.logPath); not recorded (measure shows the PCR and the log)")
        }
        let measurement = Measurement(pcr: target.pcr, event: text,
                                      digests: [TPMPCRs.BankDigest(algorithm: TPM2.algSHA256, digest: SHA256Stream.digest(event))])
        do { try log.append(record(measurement)) } catch {
            return (nil, "stage-0's measurement not recorded: \(error.description)")
        }
        return (measurement, nil)
    }

    /// The CEL-JSON record, as systemd writes its own (without "recnum"), with slotctl's
    /// content type: the content's "string" is exactly the bytes that were hashed.
    public static func record(_ m: Measurement) -> String {
        var digests: [String] = []
        for d in m.digests { digests.append("{\"hashAlg\":\"\(d.algorithmName)\",\"digest\":\"\(d.digest.hexText)\"}") }
        return "{\"pcr\":\(m.pcr),\"digests\":[\(digests.joined(separator: ","))],\"content_type\":\"slotctl\","
            + "\"content\":{\"string\":\"\(m.event)\"}}"
    }

    /// One record of the log, as far as replay and `status` need it.
    public struct LoggedRecord {
        public var pcr: UInt32?
        public var sha256: [UInt8]?
        public var contentType: String?
        public var string: String?
    }

    /// Reads the fields replay needs from one CEL-JSON record, tolerating whitespace.
    /// Not a JSON parser: it finds `"pcr"`, the SHA-256 entry of `"digests"`,
    /// `"content_type"` and the content's `"string"`, as systemd and slotctl write them.
    public static func parseRecord(_ text: String) -> LoggedRecord {
        let bytes = Array(text.utf8)
        var record = LoggedRecord()
        if let value = valueAfter(key: "pcr", in: bytes, from: 0), let number = UInt32(value) { record.pcr = number }
        // Each bank's entry: "hashAlg" then its "digest", as systemd and slotctl write them.
        var position = 0
        while let at = find(key: "hashAlg", in: bytes, from: position) {
            position = at
            guard let algorithm = value(at: at, in: bytes) else { break }
            if algorithm == "sha256", let digestAt = find(key: "digest", in: bytes, from: at),
               let hex = value(at: digestAt, in: bytes), let digest = [UInt8](hexText: hex), digest.count == 32 {
                record.sha256 = digest
                break
            }
        }
        record.contentType = valueAfter(key: "content_type", in: bytes, from: 0)
        if let content = find(key: "content", in: bytes, from: 0) {
            record.string = valueAfter(key: "string", in: bytes, from: content)
        }
        return record
    }

    /// The SHA-256 value `pcr` would hold after replaying the log's records for it from
    /// zero, how many records it took, and whether a record lacked a SHA-256 digest.
    public static func replay(_ records: [String], pcr: UInt32) -> (value: [UInt8], count: Int, gaps: Int) {
        var value = [UInt8](repeating: 0, count: 32)
        var count = 0, gaps = 0
        for text in records {
            let record = parseRecord(text)
            guard record.pcr == pcr else { continue }
            guard let digest = record.sha256 else { gaps += 1; continue }
            value = extendedByDigest(value, digest)
            count += 1
        }
        return (value, count, gaps)
    }

    // MARK: a small scanner for the records slotctl and systemd write

    /// The offset just after `"key"` followed by optional spaces and a colon.
    static func find(key: String, in bytes: [UInt8], from start: Int) -> Int? {
        let quoted = Array("\"\(key)\"".utf8)
        guard bytes.count >= quoted.count, start <= bytes.count - quoted.count else { return nil }
        var i = start
        while i <= bytes.count - quoted.count {
            if bytes[i] == 0x22 && Array(bytes[i..<i + quoted.count]) == quoted {
                var j = i + quoted.count
                while j < bytes.count, bytes[j] == 0x20 || bytes[j] == 0x09 || bytes[j] == 0x0A || bytes[j] == 0x0D { j += 1 }
                if j < bytes.count, bytes[j] == UInt8(ascii: ":") { return j + 1 }
            }
            i += 1
        }
        return nil
    }

    /// The string or number after `"key":` (found from `start`); nil for other values or
    /// a string with escapes (slotctl's own records have none).
    static func valueAfter(key: String, in bytes: [UInt8], from start: Int) -> String? {
        find(key: key, in: bytes, from: start).flatMap { value(at: $0, in: bytes) }
    }

    /// The string or number starting at `start` (just after a key's colon).
    static func value(at start: Int, in bytes: [UInt8]) -> String? {
        var i = start
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0A || bytes[i] == 0x0D { i += 1 }
        guard i < bytes.count else { return nil }
        if bytes[i] == 0x22 {
            var j = i + 1
            while j < bytes.count, bytes[j] != 0x22 {
                if bytes[j] == UInt8(ascii: "\\") { return nil }
                j += 1
            }
            guard j < bytes.count else { return nil }
            return String(decoding: bytes[(i + 1)..<j], as: UTF8.self)
        }
        var j = i
        while j < bytes.count, bytes[j] >= UInt8(ascii: "0") && bytes[j] <= UInt8(ascii: "9") { j += 1 }
        return j > i ? String(decoding: bytes[i..<j], as: UTF8.self) : nil
    }
}
