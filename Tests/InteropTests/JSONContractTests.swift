import Foundation
import Testing

/// A JSON value with its kind kept: `true` is not the number 1 here.
indirect enum JSONValue: Decodable {
    case null, bool(Bool), int(Int64), double(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null; return }
        if let b = try? c.decode(Bool.self) { self = .bool(b); return }
        if let i = try? c.decode(Int64.self) { self = .int(i); return }
        if let d = try? c.decode(Double.self) { self = .double(d); return }
        if let s = try? c.decode(String.self) { self = .string(s); return }
        if let a = try? c.decode([JSONValue].self) { self = .array(a); return }
        self = .object(try c.decode([String: JSONValue].self))
    }

    static func parse(_ text: String) throws -> JSONValue { try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) }
}

/// spec/json.md, read as the test's contract: each `### name` section's table.
struct JSONContract {
    struct Key {
        let type: String
        let always: Bool
    }
    var sections: [String: [String: Key]] = [:]
    /// "Everything of *slot*": the section whose keys this one adds to.
    var bases: [String: String] = [:]
    /// Every (section, key) seen in real output, to find keys the spec lists but nothing prints.
    var seen: Set<String> = []
    var errors: [String] = []

    init(markdown: String) {
        var current: String? = nil
        for line in markdown.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("### ") {
                current = String(line.dropFirst(4)).trimmingCharacters(in: .whitespaces)
                sections[current!] = [:]
                continue
            }
            guard let section = current else { continue }
            if let range = line.range(of: "verything of *") { // "Everything" or "everything"
                bases[section] = String(line[range.upperBound...].prefix { $0 != "*" })
            }
            // | `key` | type | when | meaning |, with `\|` inside a type.
            guard line.hasPrefix("| `") else { continue }
            let cells = line.replacingOccurrences(of: "\\|", with: "\u{1}").split(separator: "|", omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "\u{1}", with: "|") }
            guard cells.count >= 5 else { continue }
            let key = cells[1].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
            sections[section]![key] = Key(type: cells[2], always: cells[3] == "always")
        }
    }

    func keys(_ section: String) -> [String: Key] {
        var all = sections[section] ?? [:]
        if let base = bases[section] { all.merge(keys(base)) { mine, _ in mine } }
        return all
    }

    /// Checks `value` against `type` (`string`, `int`, `A|B`, `[T]`, a section name).
    mutating func check(_ value: JSONValue, type: String, at path: String) {
        let alternatives = type.split(separator: "|").map(String.init)
        var failures: [String] = []
        for alternative in alternatives {
            var attempt = self
            attempt.errors = []
            attempt.checkOne(value, type: alternative, at: path)
            if attempt.errors.isEmpty {
                seen.formUnion(attempt.seen)
                return
            }
            failures += attempt.errors
        }
        errors.append("\(path): not \(type) (\(failures.joined(separator: "; ")))")
    }

    private mutating func checkOne(_ value: JSONValue, type: String, at path: String) {
        switch (type, value) {
        case ("string", .string), ("int", .int), ("bool", .bool), ("null", .null), ("object", .object): return
        default: break
        }
        if type.hasPrefix("["), type.hasSuffix("]") {
            guard case .array(let items) = value else { errors.append("\(path): not a list"); return }
            for (i, item) in items.enumerated() { check(item, type: String(type.dropFirst().dropLast()), at: "\(path)[\(i)]") }
            return
        }
        guard sections[type] != nil else { errors.append("\(path): \(type) is neither a type nor a section of json.md"); return }
        guard case .object(let object) = value else { errors.append("\(path): not an object (\(type))"); return }
        checkObject(object, section: type, at: path)
    }

    mutating func checkObject(_ object: [String: JSONValue], section: String, at path: String) {
        let documented = keys(section)
        seen.insert(section)
        for (key, value) in object {
            guard let spec = documented[key] else {
                errors.append("\(path).\(key): not in spec/json.md (section \(section))")
                continue
            }
            seen.insert("\(section).\(key)")
            if let base = bases[section], sections[section]?[key] == nil { seen.insert("\(base).\(key)") }
            check(value, type: spec.type, at: "\(path).\(key)")
        }
        for (key, spec) in documented where spec.always && object[key] == nil {
            errors.append("\(path): '\(key)' is missing; spec/json.md says always (section \(section))")
        }
    }
}

/// The `--json` output of every command, checked against spec/json.md: no key the spec
/// does not list, every `always` key there, every value of its listed type; and every
/// section and key of the spec printed by some command here, so the spec holds nothing
/// that does not exist.
@Suite struct JSONContractTests {
    let keys = KeySet.shared

    @Test func everyCommandMatchesSpecJSON() throws {
        let markdown = try String(contentsOf: Tools.packageRoot.appendingPathComponent("spec/json.md"), encoding: .utf8)
        var contract = JSONContract(markdown: markdown)
        #expect(contract.sections.count >= 20, "spec/json.md: only \(contract.sections.keys.sorted())")

        let dir = try Tools.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let disk = dir.appendingPathComponent("disk.img").path
        let counters = "file:" + dir.appendingPathComponent("counters").path
        let base = ["--disk", disk, "--keys", keys.keys, "--counters", counters, "--config", "/dev/null",
                    "--booted-file", dir.appendingPathComponent("booted").path, "--cmdline-file", "/dev/null"]
        let sections = ["status": "status", "boot": "boot", "current": "current", "mark-successful": "change",
                        "mark-failed": "change", "set-active": "change", "verify": "verify", "install": "install",
                        "sign": "sign", "version": "version", "counters": "counters-result", "format": "format",
                        "measure": "measure", "keys": "keys"]
        func json(_ args: [String], expect code: Int32 = 0, stdin: String? = nil) throws {
            let run = try Tools.slotctl(["--json"] + args, stdinFile: stdin)
            #expect(run.status == code, "\(args): \(run.status) \(run.stderr)")
            guard case .object(let envelope) = try JSONValue.parse(run.stdout) else {
                Issue.record("\(args): not one JSON object: \(run.stdout)")
                return
            }
            contract.checkObject(envelope, section: "envelope", at: args.filter { !$0.hasPrefix("/") }.joined(separator: " "))
            if case .string(let command) = envelope["command"], let section = sections[command], let result = envelope["result"] {
                contract.check(result, type: section, at: "\(command).result")
            }
        }
        let payload = dir.appendingPathComponent("payload").path
        try Data((0..<1_500_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }).write(to: URL(fileURLWithPath: payload))
        let verityImage = dir.appendingPathComponent("verity.img").path, plain = dir.appendingPathComponent("plain.img").path
        let stream = dir.appendingPathComponent("plain.stream").path
        let sign = ["sign", "--key", keys.privatePath("ed25519"), "--rollback-index", "2", "--image-version", "2.0"]
        try json(sign + ["--verity", payload, "-o", verityImage])
        try json(sign + [payload, "-o", plain])
        try json(sign + ["--stream", payload, "-o", stream])
        try json(["version"])
        try json(base + ["format", "--size", "12M", "--slot-size", "4M", "--state"])
        try json(base + ["counters", "provision"])
        try json(base + ["counters"])
        try json(base + ["--verification", "none", "status"])
        try json(base + ["install", verityImage, "--slot", "a"])
        try json(base + ["status"])
        try json(base + ["boot", "--dry-run"])
        try json(base + ["boot"])
        try json(base + ["current"])
        try json(base + ["mark-successful"])
        try json(base + ["install", "-", "--slot", "b", "--tries", "1"], stdin: stream)
        try json(base + ["status", "--full"])
        try json(base + ["verify", "b"])
        try json(base + ["verify", "--image", plain])
        // b on its one try, then out of tries: the fallback.
        try json(base + ["boot"])
        try json(base + ["boot"])
        try json(base + ["mark-failed", "b"], expect: 40)
        try json(base + ["set-active", "b"])
        // b tampered: refused at boot, and its image refused in status.
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: disk))
        try handle.seek(toOffset: UInt64(10240 * 512 + 4096))
        try handle.write(contentsOf: Data(repeating: 0x5A, count: 16))
        try handle.close()
        try json(base + ["status", "--full"])
        try json(base + ["boot"])
        // An unreadable counter store, a missing argument, an unset counter store.
        try json(base + ["--counters", "tpm:tcp:127.0.0.1:1", "status"])
        try json(base + ["set-active"], expect: 64)
        try json(["--config", "/dev/null", "--disk", disk, "--booted-file", dir.appendingPathComponent("booted").path,
                  "--cmdline-file", "/dev/null", "--keys", keys.keys, "status"])
        // b's footer gone and b named on the command line: `current` has no descriptor to show.
        func overwrite(_ offset: UInt64, _ count: Int) throws {
            let handle = try FileHandle(forUpdating: URL(fileURLWithPath: disk))
            try handle.seek(toOffset: offset)
            try handle.write(contentsOf: Data(repeating: 0, count: count))
            try handle.close()
        }
        try overwrite(UInt64((10240 + 8192) * 512 - 64), 64)
        let cmdline = dir.appendingPathComponent("cmdline").path
        try "slotctl.slot=b\n".write(toFile: cmdline, atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(atPath: dir.appendingPathComponent("booted").path)
        try json(base + ["--cmdline-file", cmdline, "current"])
        // A damaged backup header: its copy's reason.
        let size = try FileManager.default.attributesOfItem(atPath: disk)[.size] as! UInt64
        try overwrite(size - 512, 512)
        try json(base + ["status"])
        // The install progress lines on stderr.
        let progress = try Tools.slotctl(base + ["install", plain, "--slot", "b", "--progress", "json"])
        #expect(progress.status == 0, "\(progress.stderr)")
        for line in progress.stderr.split(separator: "\n") {
            guard case .object(let object) = try JSONValue.parse(String(line)) else { Issue.record("not an object: \(line)"); continue }
            contract.checkObject(object, section: "install-progress", at: "install --progress json")
        }

        // Measured boot, into a software TPM: boot's measurement, status's last record,
        // measure with and without a PCR, measure predict.
        let tpm = try SoftwareTPM()
        let measured = base + ["--measure", "pcr:8", "--measure-tpm", "tcp:127.0.0.1:\(tpm.port)",
                               "--measure-log", dir.appendingPathComponent("measure.log").path]
        try json(measured + ["set-active", "a"])
        try json(measured + ["boot"])
        try json(measured + ["status"])
        try json(measured + ["measure"])
        try json(measured + ["--measure", "none", "measure"])
        try json(["--keys", keys.keys, "measure", "predict", plain, "--slot", "a", "--pcr", "8"])
        // Keys: unpinned with file counters, then pinned in the TPM (its owner password empty).
        try json(base + ["keys"])
        let tpmCounters = measured + ["--counters", tpm.spec]
        try json(tpmCounters + ["counters", "provision"])
        try json(tpmCounters + ["keys"])
        try json(tpmCounters + ["keys", "pin"])
        try json(tpmCounters + ["status"])

        #expect(contract.errors.isEmpty, "\(contract.errors.joined(separator: "\n"))")
        // Everything the spec lists was printed by something above.
        var unseen: [String] = []
        // kexec prints its object only from a read-only dm-verity mount, which the host
        // lacks: the QEMU kexec boot checks it (Tests/qemu/boot-test.sh, step k1).
        for (section, keys) in contract.sections where section != "kexec" {
            if !contract.seen.contains(section) { unseen.append(section) }
            for key in keys.keys where !contract.seen.contains("\(section).\(key)") { unseen.append("\(section).\(key)") }
        }
        #expect(unseen.isEmpty, "spec/json.md lists what no command printed here: \(unseen.sorted())")
    }
}
