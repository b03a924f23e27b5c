import Testing
import SlotFlows

/// Reading measurement-log records (spec/measured-boot.md): slotctl's own, and systemd's
/// as systemd-pcrextend writes them (any bank order, whitespace), replayed per PCR.
@Suite struct MeasurementLogTests {
    let sha1 = String(repeating: "11", count: 20), sha256 = String(repeating: "22", count: 32)
    let sha384 = String(repeating: "33", count: 48)

    @Test func theSHA256BankIsFoundWhereverItStands() {
        for order in [[("sha1", sha1), ("sha256", sha256), ("sha384", sha384)], [("sha256", sha256)],
                      [("sha384", sha384), ("sha1", sha1), ("sha256", sha256)]] {
            let digests = order.map { "{\"hashAlg\":\"\($0.0)\",\"digest\":\"\($0.1)\"}" }.joined(separator: ",")
            let record = MeasuredBoot.parseRecord("{\"pcr\":8,\"digests\":[\(digests)],\"content_type\":\"slotctl\",\"content\":{\"string\":\"slotctl boot slot=b\"}}")
            #expect(record.pcr == 8 && record.sha256 == [UInt8](repeating: 0x22, count: 32), "\(order.map { $0.0 })")
            #expect(record.contentType == "slotctl" && record.string == "slotctl boot slot=b")
        }
        // systemd's own, pretty-printed, without a SHA-256 bank: a gap in the replay.
        let spaced = "{ \"pcr\" : 11 ,\n \"digests\" : [ { \"hashAlg\" : \"sha1\" , \"digest\" : \"\(sha1)\" } ],\n"
            + " \"content_type\" : \"systemd\" , \"content\" : { \"string\" : \"enter-initrd\" , \"eventType\" : \"phase\" } }"
        let record = MeasuredBoot.parseRecord(spaced)
        #expect(record.pcr == 11 && record.sha256 == nil && record.contentType == "systemd" && record.string == "enter-initrd")
        let replay = MeasuredBoot.replay([spaced], pcr: 11)
        #expect(replay.count == 0 && replay.gaps == 1)
    }

    @Test func replayExtendsOnlyItsPCR() {
        let record = { (pcr: Int, byte: String) in
            "{\"pcr\":\(pcr),\"digests\":[{\"hashAlg\":\"sha256\",\"digest\":\"\(String(repeating: byte, count: 32))\"}]}"
        }
        let log = [record(8, "aa"), record(11, "bb"), record(8, "cc")]
        let replay = MeasuredBoot.replay(log, pcr: 8)
        #expect(replay.count == 2 && replay.gaps == 0)
        // By hand: PCR = SHA-256(PCR || digest), from zeros, for aa then cc.
        let first = MeasuredBoot.extendedByDigest([UInt8](repeating: 0, count: 32), [UInt8](repeating: 0xAA, count: 32))
        #expect(replay.value == MeasuredBoot.extendedByDigest(first, [UInt8](repeating: 0xCC, count: 32)))
        #expect(MeasuredBoot.replay(log, pcr: 9).value == [UInt8](repeating: 0, count: 32))
    }
}
