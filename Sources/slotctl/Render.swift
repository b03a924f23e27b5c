import CSystem
import SlotCore
import SlotCrypto
import SlotFlows
import SlotStorage

/// Text and JSON shapes shared by the commands (spec/cli.md documents the text, spec/json.md the JSON).
enum Render {
    static func copyJSON(_ copy: CopyReport) -> JSONObject {
        var o = JSONObject()
        o.set("status", statusWord(copy.status))
        o.set("header_lba", copy.headerLBA)
        if let reason = copy.reason { o.set("reason", reason) }
        return o
    }

    static func statusWord(_ status: CopyStatus) -> String {
        switch status {
        case .valid: "valid"
        case .stale: "stale"
        case .invalid: "invalid"
        case .unreadable: "unreadable"
        }
    }

    static func tableJSON(_ table: LoadedTable, store: FileBlockStore) -> JSONObject {
        var o = JSONObject()
        o.set("disk", store.path)
        o.set("block_device", store.isBlockDevice)
        o.set("sector_size", store.sectorSize)
        o.set("sectors", table.geometry.sectorCount)
        o.set("disk_guid", table.header.diskGUID.text)
        o.set("source", table.sourceRole == .primary ? "primary" : "backup")
        o.set("primary", copyJSON(table.primary))
        o.set("backup", copyJSON(table.backup))
        o.set("repair_needed", table.needsRepair)
        o.set("mbr", table.mbr.name.description)
        return o
    }

    static func mbrText(_ kind: MBRKind) -> String {
        switch kind {
        case .protective: "sector 0: protective MBR\n"
        case .hybrid: "sector 0: hybrid MBR (MBR partitions beside the GPT; kept as it is)\n"
        case .missing: "sector 0: empty, no protective MBR (one is added at the next table write)\n"
        case .foreign: "sector 0: not a protective MBR (foreign MBR or boot code; never written by slotctl)\n"
        case .unreadable: "sector 0: unreadable\n"
        }
    }

    static func tableText(_ table: LoadedTable, store: FileBlockStore) -> String {
        func line(_ name: String, _ copy: CopyReport) -> String {
            "\(name) GPT (LBA \(copy.headerLBA)): \(statusWord(copy.status))" + (copy.reason.map { " - \($0)" } ?? "") + "\n"
        }
        var text = "disk: \(store.path) (\(store.isBlockDevice ? "block device" : "image file"), "
            + "\(store.sectorSize)-byte sectors, \(table.geometry.sectorCount) sectors)\n"
        text += line("primary", table.primary) + line("backup", table.backup)
        text += "table read from the \(table.sourceRole == .primary ? "primary" : "backup") copy"
        text += table.needsRepair ? "; the other copy is repaired at the next write\n" : "\n"
        text += mbrText(table.mbr)
        return text
    }

    static func slotJSON(_ slot: Slot, _ table: LoadedTable) -> JSONObject {
        var o = JSONObject()
        o.set("name", BootControl.letterText(slot.letter))
        o.set("partition", table.partitionNumber(slot))
        o.set("label", table.label(slot))
        o.set("type_guid", table.typeGUID(slot).text)
        o.set("unique_guid", table.uniqueGUID(slot).text)
        o.set("first_lba", slot.firstLBA)
        o.set("last_lba", slot.lastLBA)
        o.set("priority", Int(slot.state.priority))
        o.set("tries", Int(slot.state.tries))
        o.set("successful", slot.state.successful)
        o.set("bootable", slot.state.isBootable)
        o.set("attributes", hex64(slot.attributes))
        return o
    }

    static func slotRow(_ slot: Slot, _ table: LoadedTable) -> String {
        let s = slot.state
        return pad(BootControl.letterText(slot.letter), 6) + pad("\(table.partitionNumber(slot))", 6)
            + pad(printable(table.label(slot)), 18) + pad("\(s.priority)", 6) + pad("\(s.tries)", 7)
            + pad(s.successful ? "yes" : "no", 12) + pad(s.isBootable ? "yes" : "no", 10)
            + "\(slot.firstLBA)..\(slot.lastLBA)\n"
    }

    /// The partition's device node for a block device (`/dev/sda` -> `/dev/sda2`,
    /// `/dev/nvme0n1` -> `/dev/nvme0n1p2`); for an image file, the file itself. A disk
    /// named by a udev link (`/dev/disk/by-id/…`, `by-path/…`) is resolved to its kernel
    /// node first: the partition links there are named differently (`…-part2`), and the
    /// hook finds the partition's range under /sys by the kernel name.
    static func partitionDevice(_ store: FileBlockStore, _ number: Int) -> String {
        guard store.isBlockDevice else { return store.path }
        var disk = store.path
        if let resolved = realpath(store.path, nil) {
            disk = String(cString: resolved)
            free(resolved)
        }
        let endsInDigit = disk.utf8.last.map { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") } ?? false
        return disk + (endsInDigit ? "p" : "") + "\(number)"
    }

    /// Text from the disk (GPT labels, version strings) made safe for a terminal:
    /// control characters (C0, DEL, C1), line and paragraph separators and bidirectional
    /// overrides become `\u{…}`, and a backslash `\\`, so a label can neither run
    /// terminal escapes nor forge lines of the table. JSON and `--shell` quote on their own.
    static func printable(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            let v = scalar.value
            if v < 0x20 || (0x7F...0x9F).contains(v) || v == 0x2028 || v == 0x2029 || v == 0x200E || v == 0x200F
                || (0x202A...0x202E).contains(v) || (0x2066...0x2069).contains(v) {
                out += "\\u{" + String(v, radix: 16) + "}"
            } else if scalar == "\\" {
                out += "\\\\"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func hex64(_ value: UInt64) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: 16 - digits.count) + digits
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }

    /// An image's findings; `device` names where its dm-verity data and tree are (the
    /// slot's partition, or the image file), for the same `verity` object boot and sign show.
    static func imageJSON(_ report: ImageReport, device: String) -> JSONObject {
        var o = JSONObject()
        o.set("verified", report.verified)
        o.set("code", Int(report.code.rawValue))
        o.set("status", report.code.name.description)
        if let reason = report.reason { o.set("reason", reason) }
        if let d = report.descriptor {
            o.set("key_id", report.keyID!.hexText)
            o.set("algorithm", d.signatureAlgorithm.name.description)
            o.set("rollback_index", d.rollbackIndex)
            o.set("rollback_location", Int(d.rollbackLocation))
            o.set("version", report.version ?? "")
            o.set("payload_size", d.payloadSize)
            o.set("payload_sha256", report.payloadDigest!.hexText)
        }
        if let signer = report.signer { o.set("signer", signer.path) }
        o.set("payload_check", report.payloadCheck.name)
        if let d = report.descriptor {
            if d.hasVerity { o.set("verity", verityJSON(d, device: device)) } else { o.setNull("verity") }
        }
        return o
    }

    /// The rollback verdict in an image's status JSON, and the note status prints for it
    /// (empty when there is none).
    static func rollback(_ report: ImageReport, into json: inout JSONObject) -> String {
        guard let verdict = report.rollback, let d = report.descriptor else { return "" }
        switch verdict {
        case .notChecked:
            json.set("rollback", "not checked")
            return "rollback: not checked (no counters configured)"
        case .current(let stored):
            json.set("rollback", "current")
            json.set("rollback_counter", stored)
            return "rollback: index \(d.rollbackIndex) >= counter \(stored)"
        case .below(let stored):
            json.set("rollback", "below")
            json.set("rollback_counter", stored)
        case .unavailable:
            json.set("rollback", "unavailable")
        }
        return ""
    }

    /// The result of a command that changed one slot (mark-*, set-active).
    static func changedSlotJSON(_ report: ChangeReport, warnings: [String]) -> JSONObject {
        var json = slotJSON(report.slots[report.index], report.table)
        json.set("slot", BootControl.letterText(report.slots[report.index].letter))
        json.set("wrote", report.wrote)
        json.set("warnings", strings: warnings)
        return json
    }

    /// One line for status.
    static func imageSummary(_ report: ImageReport) -> String {
        guard let d = report.descriptor else { return "refused (\(report.code.name)): \(report.reason ?? "")" }
        let what = "version '\(printable(report.version ?? ""))', rollback index \(d.rollbackIndex) at location \(d.rollbackLocation)"
        if report.verified, let signer = report.signer {
            let payload = switch report.payloadCheck {
            case .full: ""
            case .verityRoot: "; payload: verity tree top checked (status --full re-hashes it)"
            case .none: "; payload not re-hashed (status --full does)"
            }
            return "verified, signed by \(signer.path) (\(d.signatureAlgorithm.name)), \(what)\(payload)"
        }
        return "refused (\(report.code.name)): \(report.reason ?? ""); \(what)"
    }

    /// Why an unbootable slot stopped being bootable (spec/state.md), as status shows it:
    /// the record that explains the slot's entry as it is now, or what is known without one.
    static func why(_ record: StopRecord?, exhaustedNow: Bool, running: Bool) -> (text: String, json: JSONObject) {
        var o = JSONObject()
        if exhaustedNow && running {
            // The boot that spent the last try: still confirmable (policy.md).
            o.set("kind", "awaiting_confirmation")
            o.setNull("by")
            o.set("reason", "the running slot spent its last try; mark-successful confirms it, else it never boots again")
            return ("the running slot is on its last try: confirm it (mark-successful) or it never boots again", o)
        }
        guard let record else {
            if exhaustedNow {
                o.set("kind", StopKind.triesExhausted.name.description)
                o.setNull("by")
                o.set("reason", "no tries left and never confirmed (recorded at the next write)")
                return ("its tries ran out before it was confirmed", o)
            }
            o.set("kind", "not_recorded")
            o.setNull("by")
            o.set("reason", "no record matches the slot's entry: changed by another tool, never activated, or the record was lost to a power cut")
            return ("not recorded (changed by another tool, never activated, or the record was lost to a power cut)", o)
        }
        let actor = String(decoding: (0..<StopRecord.actorSize).map { record.actor[$0] }.prefix { $0 != 0 }, as: UTF8.self)
        let reason = String(decoding: (0..<Int(record.reasonLength)).map { record.reason[$0] }, as: UTF8.self)
        o.set("kind", record.kind.name.description)
        o.set("by", actor)
        o.set("reason", reason)
        var text: String
        switch record.kind {
        case .triesExhausted: text = "its tries ran out before it was confirmed"
        case .markedFailed: text = "marked failed by \(printable(actor))"
        case .refused:
            let code = StatusCode(rawValue: record.code)
            o.set("code", Int(record.code))
            o.set("status", code?.name.description ?? "unknown")
            text = "refused at boot (\(code?.name.description ?? "code \(record.code)"))"
        case .installIncomplete:
            if record.code != 0 {
                o.set("code", Int(record.code))
                o.set("status", StatusCode(rawValue: record.code)?.name.description ?? "unknown")
            }
            text = "an install that did not finish"
        case .neverActivated: text = "never activated since format"
        }
        if !reason.isEmpty { text += ": " + printable(reason) }
        return (text, o)
    }

    /// The full findings of `verify`.
    static func imageDetails(_ report: ImageReport) -> String {
        var text = ""
        if let d = report.descriptor {
            text += "key id: \(report.keyID!.hexText)\n"
            text += "signer: \(report.signer?.path ?? "none")\n"
            text += "algorithm: \(d.signatureAlgorithm.name)\n"
            text += "rollback index: \(d.rollbackIndex) (location \(d.rollbackLocation))\n"
            text += "version: \(printable(report.version ?? ""))\n"
            text += "payload: \(d.payloadSize) bytes, sha256 \(report.payloadDigest!.hexText)\n"
        }
        text += report.verified ? "verdict: verified\n" : "verdict: refused (\(report.code.name)): \(report.reason ?? "")\n"
        return text
    }

    /// `boot --shell`: what the initramfs hook needs, as `NAME='value'` lines it can `eval`
    /// (packaging/ and spec/cli.md). Every value is single-quoted, so a label or path
    /// can never run as shell code.
    static func bootShell(_ slot: Slot, _ table: LoadedTable, device: String, verified: SlotDescriptor?,
                          verification: String) -> String {
        let verity = verified?.hasVerity == true ? verified : nil
        var pairs: [(String, String)] = [
            ("SLOTCTL_SLOT", BootControl.letterText(slot.letter)),
            ("SLOTCTL_PARTITION", "\(table.partitionNumber(slot))"),
            ("SLOTCTL_DEVICE", device),
            ("SLOTCTL_PARTUUID", table.uniqueGUID(slot).lowercaseText),
            // The byte range slotctl verified: the hook checks that the kernel's partition
            // is exactly this range before it mounts anything (spec/security.md).
            ("SLOTCTL_OFFSET", "\(table.byteOffset(slot))"),
            ("SLOTCTL_SIZE", "\(table.byteSize(slot))"),
            ("SLOTCTL_LABEL", table.label(slot)),
            ("SLOTCTL_VERIFICATION", verification),
            ("SLOTCTL_VERITY", verity == nil ? "0" : "1"),
            // For the hook's log line: the state after this boot's try, and what booted.
            ("SLOTCTL_TRIES", "\(slot.state.tries)"),
            ("SLOTCTL_SUCCESSFUL", slot.state.successful ? "1" : "0"),
            ("SLOTCTL_IMAGE_VERSION", verified?.versionText ?? ""),
        ]
        if let d = verity {
            let v = d.verity
            pairs += [
                ("SLOTCTL_VERITY_ROOT_HASH", ((0..<32).map { v.rootHash[$0] }).hexText),
                ("SLOTCTL_VERITY_SALT", ((0..<Int(v.saltSize)).map { v.salt[$0] }).hexText),
                ("SLOTCTL_VERITY_HASH_ALGORITHM", "sha256"),
                ("SLOTCTL_VERITY_DATA_BLOCKS", "\(v.dataBlocks)"),
                ("SLOTCTL_VERITY_DATA_BLOCK_SIZE", "\(v.dataBlockSize)"),
                ("SLOTCTL_VERITY_HASH_BLOCK_SIZE", "\(v.hashBlockSize)"),
                ("SLOTCTL_VERITY_HASH_OFFSET", "\(v.treeOffset)"),
            ]
        }
        return pairs.map { name, value in
            name + "='" + value.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'\n"
        }.joined()
    }

    /// What `veritysetup open --no-superblock` needs (spec/image-format.md).
    static func verityJSON(_ d: SlotDescriptor, device: String) -> JSONObject {
        let v = d.verity
        var o = JSONObject()
        o.set("data_device", device)
        o.set("hash_device", device)
        o.set("hash_offset", v.treeOffset)
        o.set("data_blocks", v.dataBlocks)
        o.set("data_block_size", Int(v.dataBlockSize))
        o.set("hash_block_size", Int(v.hashBlockSize))
        o.set("hash_algorithm", "sha256")
        o.set("salt", ((0..<Int(v.saltSize)).map { v.salt[$0] }).hexText)
        o.set("root_hash", ((0..<32).map { v.rootHash[$0] }).hexText)
        o.set("no_superblock", true)
        return o
    }
}
