import Foundation
import Testing

/// Runs real programs for the interop and CLI tests: slotctl as built, sgdisk, cgpt, losetup.
struct Run {
    let status: Int32
    let stdout: String
    let stderr: String
}

enum Tools {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The slotctl under test: $SLOTCTL_BIN, else the debug build `make test` just made.
    static var slotctl: String {
        if let path = ProcessInfo.processInfo.environment["SLOTCTL_BIN"] { return path }
        return packageRoot.appendingPathComponent(".build/debug/slotctl").path
    }

    @discardableResult
    static func run(_ program: String, _ arguments: [String], stdinFile: String? = nil) throws -> Run {
        let process = Process()
        if program.hasPrefix("/") {
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [program] + arguments
        }
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = (environment["PATH"] ?? "") + ":/usr/sbin:/sbin"
        process.environment = environment
        // Output goes to files, so a chatty tool can never block on a full pipe.
        let dir = FileManager.default.temporaryDirectory
        let outURL = dir.appendingPathComponent("slotctl-run-\(UUID().uuidString).out")
        let errURL = dir.appendingPathComponent("slotctl-run-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: outURL)
            try? FileManager.default.removeItem(at: errURL)
        }
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        process.standardOutput = out
        process.standardError = err
        if let stdinFile {
            process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: stdinFile))
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        try process.run()
        process.waitUntilExit()
        try out.close()
        try err.close()
        return Run(status: process.terminationStatus, stdout: try String(contentsOf: outURL, encoding: .utf8),
                   stderr: try String(contentsOf: errURL, encoding: .utf8))
    }

    /// Runs a tool that must succeed.
    @discardableResult
    static func must(_ program: String, _ arguments: [String]) throws -> String {
        let result = try run(program, arguments)
        guard result.status == 0 else {
            throw ToolFailure(description: "\(program) \(arguments.joined(separator: " ")) exited \(result.status): \(result.stderr)")
        }
        return result.stdout
    }

    static func slotctl(_ arguments: [String], stdinFile: String? = nil) throws -> Run {
        try run(slotctl, arguments, stdinFile: stdinFile)
    }

    /// A fresh scratch directory, removed by the caller's `defer`. Sets the umask to 022
    /// first: slotctl refuses group- or world-writable keys and configs (spec/security.md),
    /// so the files these tests make must not depend on the umask of whoever runs them.
    static func scratch() throws -> URL {
        umask(0o022)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("slotctl-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func json(_ text: String) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        return try #require(object as? [String: Any], "not a JSON object: \(text)")
    }

    /// The image object of slot `index` (0-based) in `status --json` output.
    static func statusImage(_ stdout: String, slot index: Int) throws -> [String: Any] {
        let result = try #require(try json(stdout)["result"] as? [String: Any])
        let slots = try #require(result["slots"] as? [[String: Any]])
        return try #require(slots[index]["image"] as? [String: Any])
    }

    /// One value `cgpt show -i N -P|-T|-S` prints.
    static func cgptField(_ disk: String, _ partition: Int, _ flag: String) throws -> Int {
        let text = try must("cgpt", ["show", "-i", "\(partition)", flag, disk]).trimmingCharacters(in: .whitespacesAndNewlines)
        return try #require(Int(text), "cgpt printed '\(text)'")
    }

    /// (priority, tries, successful) as cgpt reads them.
    static func cgptState(_ disk: String, _ partition: Int) throws -> [Int] {
        [try cgptField(disk, partition, "-P"), try cgptField(disk, partition, "-T"), try cgptField(disk, partition, "-S")]
    }

    /// sgdisk -v must find no problem and warn about nothing (MBR, header placement, size).
    static func expectSgdiskClean(_ disk: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let result = try run("sgdisk", ["-v", disk])
        let all = (result.stdout + result.stderr).lowercased()
        let complaint = ["warning", "problem:", "caution", "corrupt", "invalid"].first { all.contains($0) }
        #expect(result.status == 0 && result.stdout.contains("No problems found") && complaint == nil,
                "sgdisk -v \(disk): \(result.stdout) \(result.stderr)", sourceLocation: sourceLocation)
    }

    /// The attribute flags `sgdisk -i N` prints, as a number.
    static func sgdiskAttributes(_ disk: String, _ partition: Int) throws -> UInt64 {
        let text = try must("sgdisk", ["-i", "\(partition)", disk])
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("Attribute flags:") })
        let hex = line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)
        return try #require(UInt64(hex, radix: 16))
    }
}

struct ToolFailure: Error, CustomStringConvertible {
    let description: String
}
