import Foundation
import SlotCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A real software TPM (swtpm) on free loopback ports, stopped by its pid.
final class SoftwareTPM {
    let dir: URL
    let port: UInt16
    private(set) var process = Process()
    var spec: String { "tpm:tcp:127.0.0.1:\(port)" }
    var tcti: String { "swtpm:host=127.0.0.1,port=\(port)" }

    static func portIsFree(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    init() throws {
        dir = try Tools.scratch()
        var chosen: UInt16 = 0
        for _ in 0..<100 {
            let candidate = UInt16.random(in: 20_000...60_000)
            if Self.portIsFree(candidate) && Self.portIsFree(candidate + 1) { chosen = candidate; break }
        }
        port = chosen
        try FileManager.default.createDirectory(atPath: dir.appendingPathComponent("state").path, withIntermediateDirectories: true)
        try start()
    }

    /// Starts swtpm on the state directory: NV indices persist, PCRs start at zero (a
    /// TPM2_Startup(CLEAR), as at a power-on).
    private func start() throws {
        process = Process()
        // A child of the test, not a daemon: a daemon would inherit Process's pipes.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/swtpm")
        process.arguments = ["socket", "--tpm2",
                             "--server", "type=tcp,port=\(port),bindaddr=127.0.0.1",
                             "--ctrl", "type=tcp,port=\(port + 1),bindaddr=127.0.0.1",
                             "--tpmstate", "dir=\(dir.appendingPathComponent("state").path)",
                             "--flags", "not-need-init,startup-clear"]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Ready once the server port accepts connections.
        for _ in 0..<200 where Self.portIsFree(port) { usleep(10_000) }
        #expect(!Self.portIsFree(port), "swtpm listens on \(port)")
    }

    /// A power cycle of the TPM: stopped, then started again on the same state.
    func restart() throws {
        stop()
        for _ in 0..<200 where !Self.portIsFree(port) { usleep(10_000) }
        try start()
    }

    /// The TPM's whole state (NV, owner password), kept aside while it is stopped.
    func snapshot(_ name: String) throws {
        stop()
        let copy = dir.appendingPathComponent("snapshot-\(name)")
        try? FileManager.default.removeItem(at: copy)
        try FileManager.default.copyItem(at: dir.appendingPathComponent("state"), to: copy)
        try start()
    }

    /// Back to a snapshot's state: as if everything since had never happened.
    func restore(_ name: String) throws {
        stop()
        for _ in 0..<200 where !Self.portIsFree(port) { usleep(10_000) }
        let state = dir.appendingPathComponent("state")
        try FileManager.default.removeItem(at: state)
        try FileManager.default.copyItem(at: dir.appendingPathComponent("snapshot-\(name)"), to: state)
        try start()
    }

    /// Stops the TPM by its pid and waits for it.
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL) // swtpm in socket mode does not stop on SIGTERM
        process.waitUntilExit()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: dir)
    }

    /// True when tpm2_nvreadpublic finds no index at `index`.
    func nvreadFails(_ index: UInt32) throws -> Bool {
        try Tools.run("env", ["TPM2TOOLS_TCTI=\(tcti)", "tpm2_nvreadpublic", "0x" + String(index, radix: 16)]).status != 0
    }

    /// The raw 8-byte value tpm2_nvread reads from an index.
    func nvread(_ index: UInt32, size: Int = 8) throws -> [UInt64] {
        let handle = "0x" + String(index, radix: 16)
        let out = dir.appendingPathComponent("nvread.bin").path
        let run = try Tools.run("env", ["TPM2TOOLS_TCTI=\(tcti)", "tpm2_nvread", handle, "-C", handle, "-s", "\(size)", "-o", out])
        #expect(run.status == 0, "tpm2_nvread \(handle): \(run.stderr)")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
        return stride(from: 0, to: bytes.count, by: 8).map { i in bytes[i..<i + 8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
    }
}

@Suite(.serialized) struct RollbackTPMTests {
    let keys = KeySet.shared
    static let counterBase: UInt32 = 0x0150_5C00
    static let baseRecord: UInt32 = 0x0150_5CFF

    struct Device {
        let dir: URL
        let counters: String
        let keys: String
        var disk: String { dir.appendingPathComponent("disk.img").path }

        func slotctl(_ args: [String]) throws -> Run {
            try Tools.slotctl(["--disk", disk, "--keys", keys, "--counters", counters, "--config", "/dev/null",
                               "--booted-file", dir.appendingPathComponent("booted").path] + args)
        }

        /// Signs a payload at `index` for a 4 MiB slot and copies it into the slot.
        func install(_ slot: String, index: Int, key: String) throws {
            let payload = dir.appendingPathComponent("payload-\(index)").path
            try Data("root file system at index \(index)\n".utf8).write(to: URL(fileURLWithPath: payload))
            let image = dir.appendingPathComponent("image-\(index)").path
            let sign = try Tools.slotctl(["sign", "--key", key, "--rollback-index", "\(index)", "--partition-size", "4M", payload, "-o", image])
            #expect(sign.status == 0, "\(sign.stderr)")
            let lba = slot == "a" ? 2048 : 10240
            try Tools.must("dd", ["if=\(image)", "of=\(disk)", "bs=512", "seek=\(lba)", "conv=notrunc", "status=none"])
            #expect(try slotctl(["set-active", slot]).status == 0)
        }
    }

    func device(counters: String) throws -> Device {
        let device = Device(dir: try Tools.scratch(), counters: counters, keys: keys.keys)
        #expect(try device.slotctl(["format", "--size", "12M", "--slot-size", "4M"]).status == 0)
        return device
    }

    @Test func countersFollowTheUpdateStoryAndMatchTpm2Nvread() throws {
        let tpm = try SoftwareTPM()
        let device = try device(counters: tpm.spec)
        defer { try? FileManager.default.removeItem(at: device.dir) }
        var run = try device.slotctl(["counters"])
        #expect(run.status == 0 && run.stdout.contains("not provisioned"))
        run = try device.slotctl(["counters", "provision", "--locations", "8"])
        #expect(run.status == 0, "\(run.stderr)")
        let bases = try tpm.nvread(Self.baseRecord, size: 64)
        #expect(bases.count == 8)
        for location in 0..<8 { #expect(try tpm.nvread(Self.counterBase + UInt32(location)) == [bases[location]]) }
        #expect(try device.slotctl(["counters", "provision"]).stdout.contains("already provisioned"))

        let key = keys.privatePath("ed25519")
        try device.install("a", index: 1, key: key)
        #expect(try device.slotctl(["boot"]).stdout == "a\n")
        run = try device.slotctl(["--json", "mark-successful"])
        let counter = (try Tools.json(run.stdout)["result"] as! [String: Any])["counter"] as! [String: Any]
        #expect(run.status == 0 && counter["from"] as? Int == 0 && counter["to"] as? Int == 1, "\(run.stdout) \(run.stderr)")
        #expect(try tpm.nvread(Self.counterBase) == [bases[0] + 1])

        try device.install("b", index: 3, key: key)
        #expect(try device.slotctl(["boot"]).stdout == "b\n")
        #expect(try tpm.nvread(Self.counterBase) == [bases[0] + 1], "boot never raises")
        #expect(try device.slotctl(["mark-successful"]).stdout.contains("raised from 1 to 3"))
        #expect(try tpm.nvread(Self.counterBase) == [bases[0] + 3])
        let shown = try Tools.json(try device.slotctl(["--json", "counters"]).stdout)
        let locations = ((shown["result"] as! [String: Any])["counters"] as! [String: Any])["locations"] as! [[String: Any]]
        #expect(locations[0]["value"] as? Int == 3 && locations[1]["value"] as? Int == 0)

        // a holds index 1 < 3: a downgrade. With b gone, nothing may boot.
        #expect(try device.slotctl(["mark-failed", "b"]).status == 40)
        run = try device.slotctl(["boot"])
        #expect(run.status == 50 && run.stderr.contains("slot a refused: rollback index 1 is below the counter 3"), "\(run.stderr)")
        #expect(try Tools.cgptState(device.disk, 1) == [0, 0, 0])
        run = try device.slotctl(["verify", "a"])
        #expect(run.status == 22)
        // Counters never go down: a re-signed v1 cannot lower them.
        #expect(try tpm.nvread(Self.counterBase) == [bases[0] + 3])
        // Status names the weakness of an empty owner password.
        #expect(try device.slotctl(["counters"]).stdout.contains("owner authorization is empty"))
        // Removing the base record (owner auth is empty here) does not let provisioning
        // start the counters over.
        let undefine = try Tools.run("env", ["TPM2TOOLS_TCTI=\(tpm.tcti)", "tpm2_nvundefine", "-C", "o", "0x1505cff"])
        #expect(undefine.status == 0, "\(undefine.stderr)")
        run = try device.slotctl(["counters", "provision"])
        #expect(run.status == 28 && run.stderr.contains("exists without its base record"), "\(run.stderr)")
        run = try device.slotctl(["counters"])
        #expect(run.status == 28)
    }

    /// A TPM whose owner has a password (`tpm2_changeauth -c owner`), as the README tells
    /// users to set: provisioning fails with the response code named and a hint, takes
    /// the password from a 0600 file or an inherited descriptor (never an argument), and
    /// boot and mark-successful still need no secret.
    @Test func ownerAuthorizationFromAFileOrADescriptor() throws {
        for way in ["file", "descriptor"] {
            let tpm = try SoftwareTPM()
            let device = try device(counters: tpm.spec)
            defer { try? FileManager.default.removeItem(at: device.dir) }
            try Tools.must("env", ["TPM2TOOLS_TCTI=\(tpm.tcti)", "tpm2_changeauth", "-c", "owner", "s3cret"])

            var run = try device.slotctl(["counters", "provision", "--locations", "4"])
            #expect(run.status == 28 && run.stderr.contains("TPM_RC_BAD_AUTH (0x9a2, session 1)")
                    && run.stderr.contains("--owner-auth-file"), "\(run.stderr)")
            let secret = device.dir.appendingPathComponent("owner-auth").path
            let wrong = device.dir.appendingPathComponent("wrong-auth").path
            try Data("s3cret\n".utf8).write(to: URL(fileURLWithPath: secret))
            try Data("not-it".utf8).write(to: URL(fileURLWithPath: wrong))
            chmod(wrong, 0o600)
            // A secret others can read is refused before the TPM sees it.
            chmod(secret, 0o640)
            run = try device.slotctl(["counters", "provision", "--owner-auth-file", secret])
            #expect(run.status == 64 && run.stderr.contains("mode 0640"), "\(run.stderr)")
            chmod(secret, 0o600)
            run = try device.slotctl(["counters", "provision", "--owner-auth-file", wrong])
            #expect(run.status == 28 && run.stderr.contains("TPM_RC_BAD_AUTH"), "\(run.stderr)")
            #expect(try tpm.nvreadFails(Self.baseRecord), "nothing was defined")

            if way == "file" {
                run = try device.slotctl(["counters", "provision", "--locations", "4", "--owner-auth-file", secret])
            } else {
                let command = ["'\(Tools.slotctl)'", "--disk", device.disk, "--keys", keys.keys, "--counters", tpm.spec,
                               "--config", "/dev/null", "counters", "provision", "--locations", "4", "--owner-auth-fd", "3"]
                run = try Tools.run("bash", ["-c", command.joined(separator: " ") + " 3< <(printf s3cret)"])
            }
            #expect(run.status == 0 && run.stdout.contains("provisioned 4 counters"), "\(way): \(run.stderr)")
            #expect(try tpm.nvread(Self.baseRecord, size: 32).count == 4)

            // The device's own path needs no secret: boot, confirm, raise the counter.
            try device.install("a", index: 2, key: keys.privatePath("ed25519"))
            #expect(try device.slotctl(["boot"]).stdout == "a\n")
            run = try device.slotctl(["mark-successful"])
            #expect(run.status == 0 && run.stdout.contains("raised from 0 to 2"), "\(run.stdout) \(run.stderr)")
        }
    }

    /// A provisioning cut short after the base record was defined finishes on the next run.
    @Test func anInterruptedProvisioningCompletes() throws {
        let tpm = try SoftwareTPM()
        let define = try Tools.run("env", ["TPM2TOOLS_TCTI=\(tpm.tcti)", "tpm2_nvdefine", "0x1505cff", "-C", "o", "-s", "16",
                                           "-a", "0x2062004"]) // slotctl's base record attributes
        #expect(define.status == 0, "\(define.stderr)")
        let device = try device(counters: tpm.spec)
        defer { try? FileManager.default.removeItem(at: device.dir) }
        let run = try device.slotctl(["counters", "provision"])
        #expect(run.status == 0 && run.stdout.contains("provisioned 2 counters"), "\(run.stdout) \(run.stderr)")
        #expect(try tpm.nvread(Self.baseRecord, size: 16).count == 2)
    }

    @Test func anIndexThatIsNotACounterIsRefused() throws {
        let tpm = try SoftwareTPM()
        let handle = "0x" + String(Self.counterBase, radix: 16)
        let define = try Tools.run("env", ["TPM2TOOLS_TCTI=\(tpm.tcti)", "tpm2_nvdefine", handle, "-C", "o", "-s", "8",
                                           "-a", "ownerread|ownerwrite|authread|authwrite"])
        #expect(define.status == 0, "\(define.stderr)")
        let device = try device(counters: tpm.spec)
        defer { try? FileManager.default.removeItem(at: device.dir) }
        let run = try device.slotctl(["counters", "provision"])
        #expect(run.status == 28 && run.stderr.contains("is not a slotctl counter"), "\(run.stderr)")
    }

    @Test func aStoppedTPMFailsClosed() throws {
        let tpm = try SoftwareTPM()
        let device = try device(counters: tpm.spec)
        defer { try? FileManager.default.removeItem(at: device.dir) }
        #expect(try device.slotctl(["counters", "provision"]).status == 0)
        try device.install("a", index: 2, key: keys.privatePath("p256"))
        #expect(try device.slotctl(["boot"]).stdout == "a\n")
        tpm.stop()
        let before = try Data(contentsOf: URL(fileURLWithPath: device.disk))
        var run = try device.slotctl(["boot"])
        #expect(run.status == 28 && run.stderr.contains("no slot was judged or changed"), "\(run.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: device.disk)) == before)
        run = try device.slotctl(["mark-successful"])
        #expect(run.status == 28, "\(run.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: device.disk)) == before, "nothing confirmed without the counter check")
        run = try device.slotctl(["--counters", "file:/nonexistent/dir/c", "boot"])
        #expect(run.status == 28, "never a silent fall-back to another store")
    }

    @Test func fileStoreIsPlainAboutWhatItIs() throws {
        let device = try device(counters: "file:" + FileManager.default.temporaryDirectory
            .appendingPathComponent("slotctl-counters-\(UUID().uuidString)").path)
        defer { try? FileManager.default.removeItem(at: device.dir) }
        let path = String(device.counters.dropFirst(5))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(try device.slotctl(["counters", "provision", "--locations", "2"]).status == 0)
        try device.install("a", index: 4, key: keys.privatePath("ed25519"))
        #expect(try device.slotctl(["boot"]).status == 0)
        #expect(try device.slotctl(["mark-successful"]).status == 0)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "slotctl-counters 1\n0 4\n1 0\n")
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
        let status = try device.slotctl(["status"])
        #expect(status.stdout.contains("NOT hardware-backed"))
        #expect(try device.slotctl(["counters"]).stdout.contains("location 0: 4"))
    }
}

/// TPMResponseCode against tpm2-tools' own decoder (tpm2_rc_decode): for format-one codes
/// of handle, parameter and session numbers 1...7, and TPM 2.0 errors
/// and warning number, the subject and the family agree; names the specification gives
/// are checked for the codes slotctl meets most.
@Suite struct TPMResponseCodeTests {
    func decoded(_ code: UInt32) throws -> String {
        try Tools.must("tpm2_rc_decode", ["0x" + String(code, radix: 16)]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func namesAndSubjectsAgreeWithTpm2RcDecode() throws {
        #expect(TPMResponseCode(0x9A2).name.description == "TPM_RC_BAD_AUTH" && TPMResponseCode(0x9A2).subject == .session(1))
        #expect(TPMResponseCode(0x98E).name.description == "TPM_RC_AUTH_FAIL")
        #expect(TPMResponseCode(0x1C4).name.description == "TPM_RC_VALUE" && TPMResponseCode(0x1C4).subject == .parameter(1))
        #expect(TPMResponseCode(0x28B).name.description == "TPM_RC_HANDLE" && TPMResponseCode(0x28B).subject == .handle(2))
        #expect(TPMResponseCode(0x14C).name.description == "TPM_RC_NV_DEFINED")
        #expect(TPMResponseCode(0x921).name.description == "TPM_RC_LOCKOUT" && TPMResponseCode(0x921).isWarning)
        #expect(TPMResponseCode(0x101).name.description == "TPM_RC_FAILURE" && !TPMResponseCode(0x101).hint.description.isEmpty)
        #expect(TPMResponseCode(0x9C4).subject == .parameter(9), "Part 2, table 16: P set, N is bits 11:8")
        var codes: [UInt32] = []
        for number: UInt32 in [0x04, 0x0B, 0x0E, 0x22] {
            // Handles and sessions 1...7; parameters too: tpm2_rc_decode reads only three
            // bits of a parameter number, where the specification gives four (below).
            for position: UInt32 in 1...7 { codes += [0x80 | number | position << 8, 0x880 | number | position << 8] }
            for position: UInt32 in 1...7 { codes.append(0xC0 | number | position << 8) }
        }
        codes += [0x100, 0x101, 0x143, 0x148, 0x14B, 0x14C, 0x908, 0x90A, 0x920, 0x921, 0x922, 0x923, 0x501, 0x003]
        for code in codes {
            let ours = TPMResponseCode(code), theirs = try decoded(code)
            switch ours.subject {
            case .handle(let n): #expect(theirs.hasPrefix("tpm:handle(\(n))"), "0x\(String(code, radix: 16)): \(theirs)")
            case .parameter(let n): #expect(theirs.hasPrefix("tpm:parameter(\(n))"), "0x\(String(code, radix: 16)): \(theirs)")
            case .session(let n): #expect(theirs.hasPrefix("tpm:session(\(n))"), "0x\(String(code, radix: 16)): \(theirs)")
            case .none:
                let family = ours.name.description == "TPM 1.2 code" ? "tpm:error(1.2)"
                    : ours.isWarning ? "tpm:warn(2.0)" : "tpm:error(2.0)"
                #expect(theirs.hasPrefix(family), "0x\(String(code, radix: 16)): \(theirs)")
            }
        }
    }
}
