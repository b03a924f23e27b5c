import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Measured boot against a real software TPM (swtpm) and tpm2-tools (spec/measured-boot.md):
/// the PCR after `boot` equals tpm2_pcrread's value, the log's replay (done here, with
/// openssl) and `measure predict`'s value from the image alone; a secret sealed with
/// tpm2_create to that value unseals after that boot only.
@Suite(.serialized) struct MeasuredBootTests {
    let keys = KeySet.shared
    static let pcr = 8

    struct Rig {
        let dir: URL
        let tpm: SoftwareTPM
        let keys: String
        var disk: String { dir.appendingPathComponent("disk.img").path }
        var log: String { dir.appendingPathComponent("run/log/systemd/tpm2-measure.log").path }
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

        func slotctl(_ args: [String], measureTPM: String? = nil) throws -> Run {
            try Tools.slotctl(["--disk", disk, "--keys", keys, "--config", "/dev/null", "--booted-file", path("booted"),
                               "--measure", "pcr:\(MeasuredBootTests.pcr)", "--measure-tpm", measureTPM ?? "tcp:127.0.0.1:\(tpm.port)",
                               "--measure-log", log] + args)
        }

        /// tpm2-tools against the same swtpm; transient objects and sessions flushed after
        /// (swtpm over TCP has no resource manager).
        func tpm2(_ tool: String, _ args: [String]) throws -> Run {
            let run = try Tools.run("env", ["TPM2TOOLS_TCTI=\(tpm.tcti)", tool] + args)
            _ = try Tools.run("env", ["TPM2TOOLS_TCTI=\(tpm.tcti)", "tpm2_flushcontext", "-t"])
            _ = try Tools.run("env", ["TPM2TOOLS_TCTI=\(tpm.tcti)", "tpm2_flushcontext", "-s"])
            return run
        }

        /// A signed image of a payload at rollback `index`, written into `slot`'s partition.
        func install(_ slot: String, index: Int, key: String) throws -> String {
            let payload = path("payload-\(slot)")
            try Data("root file system of slot \(slot), index \(index)\n".utf8).write(to: URL(fileURLWithPath: payload))
            let image = path("image-\(slot)")
            let sign = try Tools.slotctl(["sign", "--key", key, "--rollback-index", "\(index)", "--partition-size", "4M", payload, "-o", image])
            #expect(sign.status == 0, "\(sign.stderr)")
            try Tools.must("dd", ["if=\(image)", "of=\(disk)", "bs=512", "seek=\(slot == "a" ? 2048 : 10240)", "conv=notrunc", "status=none"])
            #expect(try slotctl(["set-active", slot]).status == 0)
            return image
        }

        func predict(_ image: String, slot: String) throws -> [UInt8] {
            let run = try Tools.slotctl(["--keys", keys, "--json", "measure", "predict", image, "--slot", slot, "--pcr", "\(MeasuredBootTests.pcr)"])
            #expect(run.status == 0, "\(run.stderr)")
            let value = (try Tools.json(run.stdout)["result"] as! [String: Any])["value"] as! String
            return MeasuredBootTests.bytes(hex: value)
        }

        /// tpm2_pcrread's SHA-256 value of the PCR.
        func pcrread() throws -> [UInt8] {
            let out = path("pcr.bin")
            let run = try tpm2("tpm2_pcrread", ["sha256:\(MeasuredBootTests.pcr)", "-o", out])
            #expect(run.status == 0, "\(run.stderr)")
            return [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
        }

        /// Seals `secret` under the owner hierarchy to a PCR policy for `value`.
        func seal(_ secret: String, to value: [UInt8]) throws {
            try Data(value).write(to: URL(fileURLWithPath: path("expected.bin")))
            try Data(secret.utf8).write(to: URL(fileURLWithPath: path("secret.txt")))
            for (tool, args) in [("tpm2_createpolicy", ["--policy-pcr", "-l", "sha256:\(MeasuredBootTests.pcr)", "-f", path("expected.bin"), "-L", path("policy.digest")]),
                                 ("tpm2_createprimary", ["-Q", "-C", "o", "-c", path("primary.ctx")]),
                                 ("tpm2_create", ["-Q", "-C", path("primary.ctx"), "-L", path("policy.digest"), "-i", path("secret.txt"),
                                                  "-u", path("sealed.pub"), "-r", path("sealed.priv")])] {
                let run = try tpm2(tool, args)
                #expect(run.status == 0, "\(tool): \(run.stderr)")
            }
        }

        /// The sealed secret, or nil when the TPM refuses to unseal it.
        func unseal() throws -> String? {
            #expect(try tpm2("tpm2_createprimary", ["-Q", "-C", "o", "-c", path("primary.ctx")]).status == 0)
            let load = try tpm2("tpm2_load", ["-Q", "-C", path("primary.ctx"), "-u", path("sealed.pub"), "-r", path("sealed.priv"),
                                              "-c", path("sealed.ctx")])
            #expect(load.status == 0, "\(load.stderr)")
            let run = try tpm2("tpm2_unseal", ["-c", path("sealed.ctx"), "-p", "pcr:sha256:\(MeasuredBootTests.pcr)"])
            return run.status == 0 ? run.stdout : nil
        }

        /// The log's records, parsed as JSON (RS-separated, as systemd reads it).
        func records() throws -> [[String: Any]] {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: log))
            return try bytes.split(separator: 0x1E).map { part in
                try JSONSerialization.jsonObject(with: Data(part)) as! [String: Any]
            }
        }
    }

    static func bytes(hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let next = hex.index(i, offsetBy: 2)
            out.append(UInt8(hex[i..<next], radix: 16)!)
            i = next
        }
        return out
    }

    /// SHA-256 by openssl, not by slotctl: the replay must not trust the code it checks.
    func sha256(_ bytes: [UInt8], in dir: URL) throws -> [UInt8] {
        let file = dir.appendingPathComponent("hash-input.bin").path
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let out = dir.appendingPathComponent("hash-output.bin").path
        try Tools.must("openssl", ["dgst", "-sha256", "-binary", "-out", out, file])
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
    }

    /// The PCR's value replayed from the log's records for it, from zero.
    func replay(_ rig: Rig) throws -> (value: [UInt8], events: [String]) {
        var value = [UInt8](repeating: 0, count: 32)
        var events: [String] = []
        for record in try rig.records() where record["pcr"] as? Int == Self.pcr {
            let digests = record["digests"] as! [[String: Any]]
            let sha256 = digests.first { $0["hashAlg"] as? String == "sha256" }!["digest"] as! String
            let event = (record["content"] as! [String: Any])["string"] as! String
            // Each record's digest is the SHA-256 of its string: anyone can check it.
            #expect(try self.sha256(Array(event.utf8), in: rig.dir) == Self.bytes(hex: sha256), "record digest is the hash of its string")
            #expect(record["content_type"] as? String == "slotctl")
            value = try self.sha256(value + Self.bytes(hex: sha256), in: rig.dir)
            events.append(event)
        }
        return (value, events)
    }

    func rig() throws -> Rig {
        let rig = Rig(dir: try Tools.scratch(), tpm: try SoftwareTPM(), keys: keys.keys)
        #expect(try rig.slotctl(["format", "--size", "12M", "--slot-size", "4M"]).status == 0)
        return rig
    }

    @Test func thePCRFollowsTheVerifiedSlotAndASealedSecretFollowsThePCR() throws {
        let rig = try rig()
        defer { try? FileManager.default.removeItem(at: rig.dir) }
        let key = keys.privatePath("ed25519")
        let imageA = try rig.install("a", index: 1, key: key)
        let imageB = try rig.install("b", index: 2, key: key)
        let expectedB = try rig.predict(imageB, slot: "b")
        let expectedA = try rig.predict(imageA, slot: "a")
        #expect(expectedA != expectedB)
        #expect(try rig.predict(imageB, slot: "a") != expectedB, "the slot is part of the event")
        try rig.seal("the disk key\n", to: expectedB)

        // Boot b: the PCR equals tpm2_pcrread's, the log's replay and the prediction.
        var run = try rig.slotctl(["--json", "boot"])
        #expect(run.status == 0, "\(run.stderr)")
        let result = try Tools.json(run.stdout)["result"] as! [String: Any]
        #expect(result["slot"] as? String == "b")
        let measurement = result["measurement"] as! [String: Any]
        #expect(measurement["pcr"] as? Int == Self.pcr && (measurement["event"] as! String).hasPrefix("slotctl boot slot=b "))
        #expect(try rig.pcrread() == expectedB)
        let replayed = try replay(rig)
        #expect(replayed.value == expectedB && replayed.events.count == 1)
        #expect(try rig.unseal() == "the disk key\n", "the secret unseals after booting the expected image")
        // status and measure show it; the log is complete (no sticky bit).
        run = try rig.slotctl(["--json", "status"])
        let shown = (try Tools.json(run.stdout)["result"] as! [String: Any])["measurement"] as! [String: Any]
        #expect(shown["slot"] as? String == "b" && shown["pcr"] as? Int == Self.pcr)
        run = try rig.slotctl(["--json", "measure"])
        let measured = try Tools.json(run.stdout)["result"] as! [String: Any]
        #expect(run.status == 0 && measured["log_matches"] as? Bool == true && measured["value"] as? String == expectedB.map { String(format: "%02x", $0) }.joined(),
                "\(run.stdout) \(run.stderr)")
        #expect(measured["log_incomplete"] as? Bool == false)
        // A dry run and the second stage of a kexec boot measure nothing more.
        #expect(try rig.slotctl(["boot", "--dry-run"]).status == 0)
        #expect(try rig.slotctl(["boot", "--chosen", "b"]).status == 0)
        #expect(try rig.pcrread() == expectedB)
        // The kexec'd system's log (a fresh /run): --chosen records stage-0's measurement,
        // which the PCR shows, so that log replays to the PCR too; once.
        let slotLog = rig.path("slot-run/tpm2-measure.log")
        run = try rig.slotctl(["--measure-log", slotLog, "--json", "boot", "--chosen", "b"])
        let adopted = (try Tools.json(run.stdout)["result"] as! [String: Any])["measurement"] as? [String: Any]
        #expect(run.status == 0 && (adopted?["event"] as? String)?.hasPrefix("slotctl boot slot=b ") == true, "\(run.stdout) \(run.stderr)")
        #expect(try rig.slotctl(["--measure-log", slotLog, "boot", "--chosen", "b"]).status == 0)
        run = try rig.slotctl(["--measure-log", slotLog, "--json", "measure"])
        let slotView = try Tools.json(run.stdout)["result"] as! [String: Any]
        #expect(slotView["log_matches"] as? Bool == true && slotView["log_records"] as? Int == 1, "\(run.stdout) \(run.stderr)")
        #expect(try rig.pcrread() == expectedB, "--chosen extends nothing")

        // A power cycle and no slotctl measurement at all: the PCR is zero; no unseal.
        try rig.tpm.restart()
        #expect(try rig.pcrread() == [UInt8](repeating: 0, count: 32))
        #expect(try rig.unseal() == nil, "no measurement: no secret")
        // --chosen records nothing the PCR does not show.
        let emptyLog = rig.path("slot-run-2/tpm2-measure.log")
        run = try rig.slotctl(["--measure-log", emptyLog, "boot", "--chosen", "b"])
        #expect(run.status == 0 && run.stderr.contains("does not hold stage-0's measurement"), "\(run.stderr)")
        #expect(((try? Data(contentsOf: URL(fileURLWithPath: emptyLog))) ?? Data()).isEmpty)

        // b refused (its payload altered after signing): a boots, and the PCR says a.
        try rig.tpm.restart()
        try FileManager.default.removeItem(atPath: rig.log)
        try Tools.must("dd", ["if=/dev/urandom", "of=\(rig.disk)", "bs=1", "count=1", "seek=\(10240 * 512 + 7)", "conv=notrunc", "status=none"])
        run = try rig.slotctl(["boot"])
        #expect(run.status == 0 && run.stdout == "a\n" && run.stderr.contains("slot b refused"), "\(run.stdout) \(run.stderr)")
        #expect(try rig.pcrread() == expectedA)
        #expect(try replay(rig).value == expectedA)
        #expect(try rig.unseal() == nil, "another image booted: no secret")
    }

    /// A TPM that cannot be reached while measuring: the boot goes on without the
    /// measurement and says so; the log holds no record and is not marked incomplete.
    @Test func anUnreachableTPMBootsWithoutTheMeasurement() throws {
        let rig = try rig()
        defer { try? FileManager.default.removeItem(at: rig.dir) }
        _ = try rig.install("a", index: 1, key: keys.privatePath("ed25519"))
        rig.tpm.stop()
        let run = try rig.slotctl(["boot"])
        #expect(run.status == 0 && run.stdout == "a\n", "\(run.stderr)")
        #expect(run.stderr.contains("not measured into PCR \(Self.pcr)"), "\(run.stderr)")
        #expect(try rig.records().isEmpty)
        var info = stat()
        #expect(stat(rig.log, &info) == 0 && info.st_mode & 0o1000 == 0, "not marked incomplete: nothing was extended")
        // measure itself needs the TPM: 28.
        #expect(try rig.slotctl(["measure"]).status == 28)
    }

    /// Prediction refuses what boot would refuse; the config refuses firmware and DRTM PCRs.
    @Test func predictAndConfigRefuseWhatCannotBeRight() throws {
        let rig = try rig()
        defer { try? FileManager.default.removeItem(at: rig.dir) }
        let image = try rig.install("a", index: 1, key: keys.privatePath("ed25519"))
        let stranger = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: stranger) }
        var run = try Tools.slotctl(["--keys", stranger.path, "measure", "predict", image, "--slot", "a", "--pcr", "8"])
        #expect(run.status != 0 && run.stdout.isEmpty, "no value for an image that does not verify: \(run.stderr)")
        run = try Tools.slotctl(["--keys", keys.keys, "measure", "predict", image, "--pcr", "8"])
        #expect(run.status == 64 && run.stderr.contains("--slot"))
        for bad in ["pcr:7", "pcr:17", "pcr:24", "8", "pcr:"] {
            run = try Tools.slotctl(["--disk", rig.disk, "--config", "/dev/null", "--measure", bad, "status"])
            #expect(run.status == 64 && run.stderr.contains("measure must be pcr:N"), "\(bad): \(run.stderr)")
        }
    }
}
