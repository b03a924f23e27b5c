import SlotCore
import SlotFlows
import SlotStorage

/// Text and JSON shapes shared by the commands (spec/cli.md documents both).
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
        return o
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
        return text
    }

    static func slotJSON(_ slot: Slot, _ table: LoadedTable) -> JSONObject {
        var o = JSONObject()
        o.set("name", SlotFlows.letterText(slot.letter))
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
        o.set("attributes", hex(slot.attributes))
        return o
    }

    static func slotRow(_ slot: Slot, _ table: LoadedTable) -> String {
        let s = slot.state
        return pad(SlotFlows.letterText(slot.letter), 6) + pad("\(table.partitionNumber(slot))", 6)
            + pad(table.label(slot), 18) + pad("\(s.priority)", 6) + pad("\(s.tries)", 7)
            + pad(s.successful ? "yes" : "no", 12) + pad(s.isBootable ? "yes" : "no", 10)
            + "\(slot.firstLBA)..\(slot.lastLBA)\n"
    }

    /// The partition's device node for a block device (`/dev/sda` -> `/dev/sda2`,
    /// `/dev/nvme0n1` -> `/dev/nvme0n1p2`); for an image file, the file itself.
    static func partitionDevice(_ store: FileBlockStore, _ number: Int) -> String {
        guard store.isBlockDevice else { return store.path }
        let endsInDigit = store.path.last.map { $0.isNumber } ?? false
        return store.path + (endsInDigit ? "p" : "") + "\(number)"
    }

    static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: 16 - digits.count) + digits
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }
}
