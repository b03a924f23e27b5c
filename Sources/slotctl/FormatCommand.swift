import SlotCore
import SlotCounters
import SlotCrypto
import SlotFlows
import SlotStorage

extension Commands {
    /// `format`: a fresh GPT with unbootable slots, on a disk that holds nothing else
    /// (or with --force).
    mutating func format() throws(CLIError) -> Outcome {
        let path = try diskPath()
        if let size = line.flags["--size"] {
            let bytes = try parseSize(size, flag: "--size")
            if let kind = SystemFiles.fileKind(path), kind != .regular {
                throw CLIError(.usage, "\(path): format --size creates an image file, but this is "
                    + (kind == .blockDevice ? "a block device; format it without --size (its size is the device's)" : "not a regular file"))
            }
            if SystemFiles.exists(path), line.switches.contains("--force") == false {
                throw CLIError(.writeRefused, "\(path): exists; format --size creates a new image (add --force to resize and replace)")
            }
            try SystemFiles.createImage(path, size: bytes)
        }
        var slotCount = 2
        if let text = line.flags["--slots"] {
            guard let n = Int(text) else { throw CLIError(.usage, "--slots: '\(text)' is not a number") }
            slotCount = n
        }
        let slotBytes = try parseSize(line.flags["--slot-size"] ?? "16M", flag: "--slot-size")
        let store = try openDisk(writable: true)
        let force = line.switches.contains("--force")
        var existing: [String] = []
        if !force {
            do { existing = try DiskSignatures.probe(path: path).map { $0.description } } catch {
                throw CLIError(.ioError, "format: \(error.description); nothing was written")
            }
        }
        var options = FormatFlow.Options(slotCount: slotCount, slotBytes: slotBytes, prefix: line.flags["--name"] ?? "root",
                                         force: force, existing: existing)
        options.statePartition = line.switches.contains("--state")
        let table = try flow { () throws(FlowError) in try FormatFlow.format(store, options, newGUID: GUID.random) }
        if let warning = FormatFlow.recordFresh(store, table) { warnings.append(warning) }
        var json = Render.tableJSON(table, store: store)
        var slots: [JSONObject] = []
        var text = "formatted \(path): \(table.slots.count) slots, \(store.sectorSize)-byte sectors"
            + (StopHistory.locate(table).map { ", state partition \($0.partition)" } ?? "") + "\n"
        for i in 0..<table.slots.count {
            slots.append(Render.slotJSON(table.slots[i], table))
            text += Render.slotRow(table.slots[i], table)
        }
        json.set("slots", slots)
        return (.ok, text, json)
    }
}
