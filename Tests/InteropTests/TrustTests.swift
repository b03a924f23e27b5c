import Foundation
import Testing

/// The files slotctl takes trust or defaults from (spec/security.md, "Files slotctl
/// trusts"): the key directory and its keys, the config, the booted record. Each is
/// refused when it is a symbolic link, not a regular file, owned by someone else, or
/// writable by group or others; and `boot --shell`, whose output the hook evals.
@Suite struct TrustTests {
    let fm = FileManager.default

    func chmod(_ path: String, _ mode: Int) throws {
        try fm.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
    }

    /// A signed image and a directory holding the one key that verifies it.
    func signedImage(in dir: URL) throws -> (image: String, keys: String) {
        let keys = dir.appendingPathComponent("keys").path
        try fm.createDirectory(atPath: keys, withIntermediateDirectories: true)
        try chmod(keys, 0o755)
        try fm.copyItem(atPath: KeySet.shared.publicPath("ed25519"), toPath: keys + "/release.pem")
        try chmod(keys + "/release.pem", 0o644)
        let payload = dir.appendingPathComponent("payload").path
        try Data(repeating: 0x5A, count: 10_000).write(to: URL(fileURLWithPath: payload))
        let image = dir.appendingPathComponent("image").path
        let run = try Tools.slotctl(["sign", "--key", KeySet.shared.privatePath("ed25519"), "--rollback-index", "1", payload, "-o", image])
        #expect(run.status == 0, "\(run.stderr)")
        return (image, keys)
    }

    func verify(_ image: String, keys: String) throws -> Run {
        try Tools.slotctl(["--config", "/dev/null", "--keys", keys, "verify", "--image", image])
    }

    @Test func keyDirectoryAndKeysMustBeTrustworthy() throws {
        let dir = try Tools.scratch()
        defer { try? fm.removeItem(at: dir) }
        let (image, keys) = try signedImage(in: dir)
        #expect(try verify(image, keys: keys).status == 0)

        // The directory itself: a symbolic link, then group-writable, then world-writable.
        let link = dir.appendingPathComponent("keys-link").path
        try fm.createSymbolicLink(atPath: link, withDestinationPath: keys)
        var run = try verify(image, keys: link)
        #expect(run.status == 21 && (run.stdout + run.stderr).contains("symbolic link"), "\(run.stdout) \(run.stderr)")
        for mode in [0o775, 0o757] {
            try chmod(keys, mode)
            run = try verify(image, keys: keys)
            #expect(run.status == 21 && (run.stdout + run.stderr).contains("writable by group or others"), "\(run.stdout) \(run.stderr)")
        }
        try chmod(keys, 0o755)

        // The one key: group-writable, owned by another user, a symbolic link. Each time it
        // is skipped (and said so), so the image is signed by an untrusted key.
        let key = keys + "/release.pem"
        try chmod(key, 0o664)
        run = try verify(image, keys: keys)
        #expect(run.status == 21 && (run.stdout + run.stderr).contains("writable by group or others"), "\(run.stdout) \(run.stderr)")
        try chmod(key, 0o644)
        if geteuid() == 0 {
            #expect(chown(key, 4321, 4321) == 0)
            run = try verify(image, keys: keys)
            #expect(run.status == 21 && (run.stdout + run.stderr).contains("owned by uid 4321"), "\(run.stdout) \(run.stderr)")
            #expect(chown(key, 0, 0) == 0)
        }
        let moved = dir.appendingPathComponent("release.pem").path
        try fm.moveItem(atPath: key, toPath: moved)
        try fm.createSymbolicLink(atPath: key, withDestinationPath: moved)
        run = try verify(image, keys: keys)
        #expect(run.status == 21 && (run.stdout + run.stderr).contains("symbolic link"), "\(run.stdout) \(run.stderr)")
        // Put back as a plain file: trusted again.
        try fm.removeItem(atPath: key)
        try fm.moveItem(atPath: moved, toPath: key)
        #expect(try verify(image, keys: keys).status == 0)
    }

    @Test func configAndBootedRecordMustBeTrustworthy() throws {
        let dir = try Tools.scratch()
        defer { try? fm.removeItem(at: dir) }
        let disk = dir.appendingPathComponent("disk.img").path
        let config = dir.appendingPathComponent("slotctl.conf").path
        let booted = dir.appendingPathComponent("booted").path
        try "disk = \(disk)\nverification = none\n".write(toFile: config, atomically: true, encoding: .utf8)
        try chmod(config, 0o644)
        func slotctl(_ args: [String], config path: String = config) throws -> Run {
            try Tools.slotctl(["--config", path, "--booted-file", booted, "--cmdline-file", "/dev/null"] + args)
        }
        #expect(try slotctl(["format", "--size", "12M", "--slot-size", "4M"]).status == 0)
        #expect(try slotctl(["set-active", "a"]).status == 0)
        #expect(try slotctl(["boot"]).stdout == "a\n")

        // The config: world-writable, group-writable, a symbolic link, a FIFO (refused at
        // once, never waited on), too large. Each is a usage error naming the file.
        for mode in [0o646, 0o664] {
            try chmod(config, mode)
            let run = try slotctl(["status"])
            #expect(run.status == 64 && run.stderr.contains(config) && run.stderr.contains("writable by group or others"), "\(run.stderr)")
        }
        try chmod(config, 0o644)
        let link = dir.appendingPathComponent("link.conf").path
        try fm.createSymbolicLink(atPath: link, withDestinationPath: config)
        var run = try slotctl(["status"], config: link)
        #expect(run.status == 64 && run.stderr.contains("symbolic link"), "\(run.stderr)")
        let fifo = dir.appendingPathComponent("fifo.conf").path
        #expect(mkfifo(fifo, 0o644) == 0)
        run = try slotctl(["status"], config: fifo)
        #expect(run.status == 64 && run.stderr.contains("not a regular file"), "\(run.stderr)")
        let huge = dir.appendingPathComponent("huge.conf").path
        try String(repeating: "# padding\n", count: 7000).write(toFile: huge, atomically: true, encoding: .utf8)
        try chmod(huge, 0o644)
        run = try slotctl(["status"], config: huge)
        #expect(run.status == 64 && run.stderr.contains("larger than"), "\(run.stderr)")
        #expect(try slotctl(["status"]).status == 0)

        // The booted record decides which slot mark-successful confirms: a group-writable
        // one is refused and nothing is confirmed.
        try chmod(booted, 0o666)
        run = try slotctl(["mark-successful"])
        #expect(run.status == 64 && run.stderr.contains("writable by group or others"), "\(run.stderr)")
        #expect(try Tools.cgptState(disk, 1)[2] == 0)
        try chmod(booted, 0o644)
        #expect(try slotctl(["mark-successful"]).status == 0)
        #expect(try Tools.cgptState(disk, 1)[2] == 1)
    }

    /// `boot --shell` prints NAME='value' lines the hook evals: hostile labels stay data,
    /// and the byte range is the one slotctl read (and sgdisk agrees with).
    @Test func bootShellOutputIsSafeToEval() throws {
        let dir = try Tools.scratch()
        defer { try? fm.removeItem(at: dir) }
        let disk = dir.appendingPathComponent("disk.img").path
        // GPT names hold 36 characters: short commands, run in the scratch directory.
        let hostile = "x'$(touch P)`touch Q`"
        func slotctl(_ args: [String]) throws -> Run {
            try Tools.slotctl(["--disk", disk, "--config", "/dev/null", "--verification", "none",
                               "--booted-file", dir.appendingPathComponent("booted").path, "--cmdline-file", "/dev/null"] + args)
        }
        // The label is set with sgdisk, as another tool on the device could.
        #expect(try slotctl(["format", "--size", "12M", "--slot-size", "4M"]).status == 0)
        try Tools.must("sgdisk", ["-c", "2:\(hostile)_b", disk])
        #expect(try slotctl(["set-active", "b"]).status == 0)
        let boot = try slotctl(["boot", "--shell"])
        #expect(boot.status == 0, "\(boot.stderr)")
        let script = dir.appendingPathComponent("out.sh").path
        try boot.stdout.write(toFile: script, atomically: true, encoding: .utf8)
        let shown = try Tools.run("sh", ["-c", "cd \"$2\" && eval \"$(cat \"$1\")\"; printf '%s|%s|%s|%s|%s' \"$SLOTCTL_SLOT\" \"$SLOTCTL_LABEL\" \"$SLOTCTL_PARTITION\" \"$SLOTCTL_OFFSET\" \"$SLOTCTL_SIZE\"", "sh", script, dir.path])
        #expect(shown.status == 0, "\(shown.stderr)")
        #expect(!fm.fileExists(atPath: dir.appendingPathComponent("P").path) && !fm.fileExists(atPath: dir.appendingPathComponent("Q").path),
                "eval of boot --shell ran the label")
        let start = Int(try Tools.must("sgdisk", ["-i", "2", disk]).split(separator: "\n")
            .first { $0.hasPrefix("First sector:") }!.split(separator: " ")[2])!
        let sectors = Int(try Tools.must("cgpt", ["show", "-i", "2", "-s", disk]).trimmingCharacters(in: .whitespacesAndNewlines))!
        #expect(shown.stdout == "b|\(hostile)_b|2|\(start * 512)|\(sectors * 512)", "\(shown.stdout)")
        #expect(boot.stdout.contains("SLOTCTL_VERITY='0'\n"))
    }
}
