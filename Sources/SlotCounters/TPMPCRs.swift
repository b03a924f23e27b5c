import SlotCore

/// The TPM's PCRs, for measured boot (spec/measured-boot.md): `boot` extends one with
/// the event of the slot it verified; `measure` reads it back. Same transports and the
/// same response-code names as the counters; needs no authorization (a PCR's is empty).
public final class TPMPCRs {
    let transport: TPMTransport
    public var name: String { transport.name }

    public init(transport: TPMTransport) { self.transport = transport }

    /// One bank's digest of an event, as the TPM extended it.
    public struct BankDigest: Sendable {
        public let algorithm: UInt16
        public let digest: [UInt8]

        public init(algorithm: UInt16, digest: [UInt8]) {
            self.algorithm = algorithm
            self.digest = digest
        }
        /// "sha256", as systemd's measurement log and tpm2-tools name the bank.
        public var algorithmName: String { TPM2.algorithmName(algorithm).description }
    }

    /// TPM2_PCR_Event: the TPM hashes `event` in every allocated bank and extends `pcr`
    /// with each digest; returns them. An error means the extend may or may not have
    /// happened (a response lost after the TPM ran the command) unless its `commandSent`
    /// is false or the TPM answered with a response code: then it certainly did not.
    public func extend(pcr: UInt32, event: [UInt8]) throws(CounterError) -> [BankDigest] {
        let what = "PCR_Event \(pcr)"
        var buffer = [UInt8](repeating: 0, count: 64 + TPM2.maxEventSize)
        var span = buffer.mutableSpan
        let length: Int
        do { length = try TPM2.Build.pcrEvent(&span, pcr: pcr, event: event.span) } catch {
            throw CounterError(.internalError, "\(what): \(error.reason)")
        }
        let response = try transport.transact(Array(buffer[0..<length]))
        var digests: [BankDigest] = []
        do {
            _ = try TPM2.parseEventDigests(response.span) { algorithm, digest in
                digests.append(BankDigest(algorithm: algorithm, digest: (0..<digest.count).map { digest[$0] }))
            }
        } catch {
            var failure = transport.failure(what, error)
            // A response code: the TPM refused the command, so nothing was extended.
            if case .responseCode = error { failure.commandSent = false }
            throw failure
        }
        return digests
    }

    /// The SHA-256 bank's value of `pcr`, or nil when the TPM has no SHA-256 bank.
    public func readSHA256(pcr: UInt32) throws(CounterError) -> [UInt8]? {
        let what = "PCR_Read \(pcr)"
        var buffer = [UInt8](repeating: 0, count: 64)
        var span = buffer.mutableSpan
        let length: Int
        do { length = try TPM2.Build.pcrReadSHA256(&span, pcr: pcr) } catch {
            throw CounterError(.internalError, "\(what): \(error.reason)")
        }
        let response = try transport.transact(Array(buffer[0..<length]))
        var value = [UInt8](repeating: 0, count: 32)
        var out = value.mutableSpan
        let found: Bool
        do { found = try TPM2.parsePCRReadSHA256(response.span, pcr: pcr, into: &out) } catch { throw transport.failure(what, error) }
        return found ? value : nil
    }
}

/// A TPM named the way `measure_tpm` and the counters name it: `/dev/tpmrm0`,
/// `tcp:HOST:PORT` (a software TPM), each optionally with a `tpm:` prefix.
public func openTPM(_ spec: String, what: String) throws(CounterError) -> TPMTransport {
    let name = spec.hasPrefix("tpm:") ? String(spec.dropFirst(4)) : spec
    if name.hasPrefix("tcp:") {
        let rest = name.dropFirst(4)
        guard let colon = rest.lastIndex(of: ":"), let port = UInt16(rest[rest.index(after: colon)...]), colon > rest.startIndex else {
            throw CounterError(.usage, "\(what): expected tcp:HOST:PORT, not '\(spec)'")
        }
        return TPMSocketTransport(host: String(rest[..<colon]), port: port)
    }
    guard name.hasPrefix("/") else {
        throw CounterError(.usage, "\(what): expected a TPM device (/dev/tpmrm0) or tcp:HOST:PORT, not '\(spec)'")
    }
    return TPMDeviceTransport(path: name)
}
