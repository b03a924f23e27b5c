import Foundation
import Testing

/// Why a slot stopped being bootable (spec/state.md), on an image made by `format
/// --state` and read and changed with the real sgdisk and cgpt: each kind of stop is
/// recorded with who and why, an activation clears it, and a change made by another
/// tool is never explained by an old record.
@Suite struct StateTests {
    let keys = KeySet.shared

    @Test func whyEachSlotStoppedBeingBootable() throws {
        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = dir.appendingPathComponent("disk.img").path
        func slotctl(_ args: [String]) throws -> Run {
            try Tools.slotctl(["--disk", disk, "--keys", keys.keys, "--config", "/dev/null", "--cmdline-file", "/dev/null",
                               "--booted-file", dir.appendingPathComponent("booted").path] + args)
        }
        func why(_ slot: Int) throws -> [String: Any]? {
            let result = try #require(try Tools.json(try slotctl(["--json", "status"]).stdout)["result"] as? [String: Any])
            return (result["slots"] as! [[String: Any]])[slot]["why"] as? [String: Any]
        }
        #expect(try slotctl(["format", "--size", "12M", "--slot-size", "4M", "--state"]).status == 0)
        // The real tools see a clean table with a third partition of slotctl's state type.
        try Tools.expectSgdiskClean(disk)
        #expect(try Tools.must("sgdisk", ["-i", "3", disk]).contains("E65ECED9-1A0F-4E49-BE85-1340FC8E77DF"))
        #expect(try Tools.must("cgpt", ["show", "-i", "3", "-l", disk]).contains("slotctl_state"))
        let fresh = try #require(try why(0))
        #expect(fresh["kind"] as? String == "never_activated" && fresh["by"] as? String == "format", "\(fresh)")

        let image = try signedRandomPayload(dir, keys: keys, bytes: 300_000, index: 1, name: "v1", key: "ed25519", stream: false)
        #expect(try slotctl(["install", image, "--slot", "a"]).status == 0)
        #expect(try slotctl(["boot"]).stdout == "a\n")
        #expect(try slotctl(["mark-successful"]).status == 0)

        #expect(try slotctl(["install", image, "--slot", "b", "--tries", "1"]).status == 0)
        #expect(try why(1) == nil) // bootable: nothing to explain
        // b's one try is spent; the next boot falls back and records it.
        #expect(try slotctl(["boot"]).stdout == "b\n")
        #expect(try slotctl(["boot"]).stdout == "a\n")
        var w = try #require(try why(1))
        #expect(w["kind"] as? String == "tries_exhausted" && w["by"] as? String == "boot", "\(w)")
        #expect(try slotctl(["status"]).stdout.contains("why not bootable: its tries ran out before it was confirmed"))

        // Activated again, then marked failed by the confirm script's spelling.
        #expect(try slotctl(["set-active", "b"]).status == 0)
        #expect(try slotctl(["mark-failed", "b", "--by", "confirm", "--reason", "health check 10-service failed (exit 1)"]).status == 40)
        w = try #require(try why(1))
        #expect(w["kind"] as? String == "marked_failed" && w["by"] as? String == "confirm"
                && w["reason"] as? String == "health check 10-service failed (exit 1)", "\(w)")

        // The boot that spent b's last try: b still runs and can be confirmed, so status
        // says so; marked failed then (as the hook does when it cannot mount b), recorded.
        #expect(try slotctl(["set-active", "b", "--tries", "1"]).status == 0)
        #expect(try slotctl(["boot"]).stdout == "b\n")
        w = try #require(try why(1))
        #expect(w["kind"] as? String == "awaiting_confirmation", "\(w)")
        #expect(try slotctl(["mark-failed", "--by", "initramfs", "--reason", "cannot mount /dev/mapper/slotctl-root"]).status == 40)
        w = try #require(try why(1))
        #expect(w["kind"] as? String == "marked_failed" && w["by"] as? String == "initramfs", "\(w)")
        #expect(try slotctl(["mark-failed", "b", "--by", "two words"]).status == 64)
        #expect(try slotctl(["boot"]).stdout == "a\n")

        // An install that does not finish (its stream ends early): recorded with its code.
        let stream = try signedRandomPayload(dir, keys: keys, bytes: 300_000, index: 1, name: "s1", key: "ed25519", stream: true)
        let cut = dir.appendingPathComponent("cut.stream").path
        try Data(try Data(contentsOf: URL(fileURLWithPath: stream)).prefix(100_000)).write(to: URL(fileURLWithPath: cut))
        let streamed = try Tools.slotctl(["--disk", disk, "--keys", keys.keys, "--config", "/dev/null", "--cmdline-file", "/dev/null",
                                          "--booted-file", dir.appendingPathComponent("booted").path, "install", "-", "--slot", "b"],
                                         stdinFile: cut)
        #expect(streamed.status == 10, "\(streamed.stderr)")
        w = try #require(try why(1))
        #expect(w["kind"] as? String == "install_incomplete" && w["by"] as? String == "install" && w["code"] as? Int == 10, "\(w)")

        // Refused by the verifier: a byte of b's payload changed.
        #expect(try slotctl(["set-active", "b"]).status == 0)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: disk))
        try handle.seek(toOffset: UInt64(10240 * 512 + 100))
        try handle.write(contentsOf: Data(repeating: 0xA5, count: 8))
        try handle.close()
        #expect(try slotctl(["boot"]).stdout == "a\n")
        w = try #require(try why(1))
        #expect(w["kind"] as? String == "refused" && w["status"] as? String == "digest_mismatch" && w["code"] as? Int == 23, "\(w)")

        // Another tool activates b and then takes it out: the old record does not match
        // b's entry any more (set by cgpt), so status says it was not recorded.
        try Tools.must("cgpt", ["add", "-i", "2", "-P", "9", "-T", "2", "-S", "0", disk])
        try Tools.must("cgpt", ["add", "-i", "2", "-P", "0", "-T", "0", "-S", "0", disk])
        #expect(try Tools.cgptState(disk, 2) == [0, 0, 0])
        w = try #require(try why(1))
        #expect(w["kind"] as? String == "refused", "same entry bytes as the refusal left: \(w)")
        try Tools.must("cgpt", ["add", "-i", "2", "-P", "0", "-T", "3", "-S", "0", disk])
        w = try #require(try why(1))
        #expect(w["kind"] as? String == "not_recorded", "\(w)")
        #expect(try slotctl(["status"]).stdout.contains("why not bootable: not recorded"))
        try Tools.expectSgdiskClean(disk)

        // A damaged copy is reported and the other one serves; the next save repairs it.
        let result = try #require(try Tools.json(try slotctl(["--json", "status"]).stdout)["result"] as? [String: Any])
        let state = try #require(result["state"] as? [String: Any])
        let sequence = try #require(state["sequence"] as? Int)
        let stateStart = UInt64(18432 * 512), copy = UInt64(sequence % 2 == 1 ? 0 : 8192) // odd sequences in copy 0
        let damage = try FileHandle(forUpdating: URL(fileURLWithPath: disk))
        try damage.seek(toOffset: stateStart + copy + 40)
        try damage.write(contentsOf: Data([0xFF]))
        try damage.close()
        let after = try #require(try Tools.json(try slotctl(["--json", "status"]).stdout)["result"] as? [String: Any])
        let problems = (after["state"] as? [String: Any])?["problems"] as? [String] ?? []
        #expect(problems.count == 1 && problems[0].contains("checksum"), "\(problems)")
        #expect(((after["state"] as? [String: Any])?["sequence"] as? Int) == sequence - 1, "the older copy serves")

        // A disk without a state partition says so, and nothing else changes.
        let plain = dir.appendingPathComponent("plain.img").path
        #expect(try Tools.slotctl(["--disk", plain, "--config", "/dev/null", "format", "--size", "12M", "--slot-size", "4M"]).status == 0)
        let status = try Tools.slotctl(["--disk", plain, "--config", "/dev/null", "--verification", "none", "status"])
        #expect(status.stdout.contains("state partition: none"), "\(status.stdout)")
    }
}
