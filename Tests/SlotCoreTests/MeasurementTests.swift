import Testing
import SlotCore

/// The PCR commands and the measurement event, byte for byte (TPM 2.0 Library Part 3:
/// PCR_Event 0x13C, PCR_Read 0x17E); the swtpm suite checks them against a real TPM.
@Suite struct MeasurementTests {
    func build(_ body: (inout MutableSpan<UInt8>) throws(TPMError) -> Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 1200)
        var span = buffer.mutableSpan
        let n = try body(&span)
        return Array(buffer[0..<n])
    }

    @Test func pcrEventCommandLayout() throws {
        let event: [UInt8] = Array("ab".utf8)
        let command = try build { (b) throws(TPMError) in try TPM2.Build.pcrEvent(&b, pcr: 8, event: event.span) }
        #expect(command == [0x80, 0x02, 0, 0, 0, 31, 0, 0, 0x01, 0x3C, 0, 0, 0, 8,
                            0, 0, 0, 9, 0x40, 0, 0, 9, 0, 0, 0, 0, 0, 0, 2, 0x61, 0x62])
        let tooLong = [UInt8](repeating: 0, count: TPM2.maxEventSize + 1)
        #expect(throws: TPMError.bufferTooSmall) { _ = try build { (b) throws(TPMError) in try TPM2.Build.pcrEvent(&b, pcr: 8, event: tooLong.span) } }
    }

    @Test func pcrReadSelectsOnePCRInTheSHA256Bank() throws {
        let command = try build { (b) throws(TPMError) in try TPM2.Build.pcrReadSHA256(&b, pcr: 13) }
        #expect(command == [0x80, 0x01, 0, 0, 0, 20, 0, 0, 0x01, 0x7E, 0, 0, 0, 1, 0, 0x0B, 3, 0, 0x20, 0])
    }

    /// A PCR_Event response: sessions tag, parameterSize, TPML_DIGEST_VALUES, auth area.
    func eventResponse(_ banks: [(UInt16, [UInt8])]) -> [UInt8] {
        var body: [UInt8] = [0, 0, 0, UInt8(banks.count)]
        for (algorithm, digest) in banks { body += [UInt8(algorithm >> 8), UInt8(algorithm & 0xFF)] + digest }
        let auth: [UInt8] = [0, 0, 1, 0, 0]
        let size = 10 + 4 + body.count + auth.count
        return [0x80, 0x02, 0, 0, UInt8(size >> 8), UInt8(size & 0xFF), 0, 0, 0, 0, 0, 0, 0, UInt8(body.count)] + body + auth
    }

    @Test func eventDigestsOfEveryBank() throws {
        let sha1 = [UInt8](repeating: 0x11, count: 20), sha256 = [UInt8](repeating: 0x22, count: 32)
        let response = eventResponse([(0x0004, sha1), (0x000B, sha256)])
        var seen: [(UInt16, [UInt8])] = []
        let count = try TPM2.parseEventDigests(response.span) { algorithm, digest in seen.append((algorithm, (0..<digest.count).map { digest[$0] })) }
        #expect(count == 2 && seen.count == 2)
        #expect(seen[0].0 == 0x0004 && seen[0].1 == sha1 && seen[1].0 == 0x000B && seen[1].1 == sha256)
        // An algorithm whose size is unknown cannot be walked; a short digest is malformed.
        #expect(throws: TPMError.malformed) { _ = try TPM2.parseEventDigests(eventResponse([(0x0099, sha256)]).span) { _, _ in } }
        var short = eventResponse([(0x000B, sha256)])
        short.removeLast(6)
        short[5] = UInt8(short.count)
        #expect(throws: TPMError.malformed) { _ = try TPM2.parseEventDigests(short.span) { _, _ in } }
        // A refusal is the TPM's response code.
        let refused: [UInt8] = [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x07]
        #expect(throws: TPMError.responseCode(0x907)) { _ = try TPM2.parseEventDigests(refused.span) { _, _ in } }
    }

    @Test func pcrReadValueOrNoBank() throws {
        let value = [UInt8](repeating: 0xAB, count: 32)
        let selected: [UInt8] = [0, 0, 0, 7, 0, 0, 0, 1, 0, 0x0B, 3, 0, 1, 0] + [0, 0, 0, 1, 0, 32] + value
        let response: [UInt8] = [0x80, 0x01, 0, 0, 0, UInt8(10 + selected.count), 0, 0, 0, 0] + selected
        var out = [UInt8](repeating: 0, count: 32)
        var span = out.mutableSpan
        #expect(try TPM2.parsePCRReadSHA256(response.span, pcr: 8, into: &span))
        #expect(out == value)
        // No SHA-256 bank: an empty selection and no digest.
        let empty: [UInt8] = [0x80, 0x01, 0, 0, 0, 22, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0]
        var other = [UInt8](repeating: 0, count: 32)
        var otherSpan = other.mutableSpan
        #expect(try TPM2.parsePCRReadSHA256(empty.span, pcr: 8, into: &otherSpan) == false)
    }

    @Test func eventTextIsExactAndBounded() {
        var out = [UInt8](repeating: 0, count: MeasurementEvent.maxSize)
        var span = out.mutableSpan
        let key = [UInt8](repeating: 0xAB, count: 32), digest = (0..<32).map { UInt8($0) }
        let n = MeasurementEvent.write(into: &span, slot: UInt8(ascii: "b"), location: 3, index: 42, keyID: key.span, descriptorDigest: digest.span)
        let text = String(decoding: out[0..<n], as: UTF8.self)
        #expect(text == "slotctl boot slot=b location=3 index=42 key=" + String(repeating: "ab", count: 32)
            + " descriptor=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
        // The largest numbers still fit.
        var big = [UInt8](repeating: 0, count: MeasurementEvent.maxSize)
        var bigSpan = big.mutableSpan
        let m = MeasurementEvent.write(into: &bigSpan, slot: UInt8(ascii: "z"), location: .max, index: .max, keyID: key.span, descriptorDigest: digest.span)
        #expect(m <= MeasurementEvent.maxSize && String(decoding: big[0..<m], as: UTF8.self).contains("index=18446744073709551615 "))
    }
}
