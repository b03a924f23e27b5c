import SlotCore
import SlotStorage

/// `format`: writes a fresh GPT with a protective MBR and `slotCount` slot partitions
/// named `<prefix>_a`, `<prefix>_b`, ... of slotctl's slot type, each `slotBytes` long and
/// aligned to 1 MiB. All slots start unbootable (priority 0): `set-active` makes one
/// bootable. Refuses to replace a table that loads unless `force`.
public enum FormatFlow {
    public struct Options {
        public var slotCount: Int
        public var slotBytes: UInt64
        public var prefix: String
        public var force: Bool
        /// Where partitions start: multiples of this many bytes (1 MiB, as sgdisk does).
        public var alignment: UInt64
        /// What a probe of the disk found on it (`DiskSignatures.probe`: partition tables,
        /// file systems, RAID, swap, LUKS), named for the message; any one refuses the
        /// format without `force`.
        public var existing: [String]
        /// Also a state partition (`slotctl_state`, 1 MiB, after the slots) where slotctl
        /// records why each slot stopped being bootable (spec/state.md).
        public var statePartition = false

        public init(slotCount: Int, slotBytes: UInt64, prefix: String, force: Bool, alignment: UInt64 = 1 << 20,
                    existing: [String] = []) {
            self.slotCount = slotCount
            self.slotBytes = slotBytes
            self.prefix = prefix
            self.force = force
            self.alignment = alignment
            self.existing = existing
        }
    }

    /// The state partition `format --state` makes: room for both history copies, and
    /// 1 MiB so the partitions after it stay aligned.
    public static let stateBytes: UInt64 = 1 << 20

    static let entryCount: UInt32 = 128
    static let entrySize: UInt32 = 128

    /// `newGUID` supplies random GUIDs (the CLI uses libuuid); tests pass a seeded source.
    public static func format(_ store: BlockStore, _ options: Options, newGUID: () -> GUID) throws(FlowError) -> LoadedTable {
        guard options.slotCount >= 1, options.slotCount <= SlotTable.capacity else {
            throw FlowError(.usage, "format: slot count must be 1...26, not \(options.slotCount)")
        }
        let prefixUnits = Array(options.prefix.utf16)
        guard !prefixUnits.isEmpty, prefixUnits.count + 2 <= PartitionEntryLayout.nameUnits else {
            throw FlowError(.usage, "format: name prefix must be 1...34 UTF-16 units")
        }
        if !options.force {
            // Any valid GPT counts, with or without slots: format must not eat a data disk.
            var existing = true
            do { _ = try TableStore.load(store) } catch { existing = error.code != .tableUnusable && error.code != .ioError }
            if existing {
                throw FlowError(.writeRefused, "format: the disk already holds a GPT; add --force to replace it")
            }
            // Not ours, whatever it is: a DOS label, a file system, a LUKS header.
            guard options.existing.isEmpty else {
                throw FlowError(.writeRefused, "format: the disk holds " + options.existing.joined(separator: ", ")
                    + "; add --force to overwrite it; nothing was written")
            }
        }
        let sectorSize = UInt64(store.sectorSize)
        let geometry = DiskGeometry(sectorSize: store.sectorSize, sectorCount: store.byteCount / sectorSize)
        let entriesBytes = UInt64(entryCount * entrySize)
        let entrySectors = geometry.sectors(forBytes: entriesBytes)
        guard geometry.sectorCount > 2 * (entrySectors + 2) else {
            throw FlowError(.writeRefused, "format: disk of \(store.byteCount) bytes is too small")
        }
        let backupLBA = geometry.lastLBA
        let firstUsable = 2 + entrySectors
        let lastUsable = backupLBA - entrySectors - 1
        let alignSectors = max(1, options.alignment / sectorSize)
        let slotSectors = geometry.sectors(forBytes: options.slotBytes)
        guard slotSectors > 0 else { throw FlowError(.usage, "format: slot size must be positive") }

        var entries = [UInt8](repeating: 0, count: Int(entriesBytes))
        var header = GPTHeader(myLBA: 1, alternateLBA: backupLBA, firstUsableLBA: firstUsable, lastUsableLBA: lastUsable,
                               diskGUID: newGUID(), entriesLBA: 2, entryCount: entryCount, entrySize: entrySize, entriesCRC: 0)
        var start = (firstUsable + alignSectors - 1) / alignSectors * alignSectors
        var span = entries.mutableSpan
        for index in 0..<options.slotCount {
            let (end, overflow) = start.addingReportingOverflow(slotSectors - 1)
            guard !overflow, end <= lastUsable else {
                throw FlowError(.writeRefused, "format: \(options.slotCount) slots of \(options.slotBytes) bytes do not fit on a disk of \(store.byteCount) bytes")
            }
            let name = prefixUnits + [0x5F, UInt16(0x61 + index)]
            PartitionEntries.write(&span, entrySize: Int(entrySize), index, type: .slotctlSlot, unique: newGUID(),
                                   firstLBA: start, lastLBA: end, name: name.span)
            start = (end / alignSectors + 1) * alignSectors
        }
        var stateRange: (UInt64, UInt64)? = nil
        if options.statePartition {
            let stateSectors = geometry.sectors(forBytes: FormatFlow.stateBytes)
            let (end, overflow) = start.addingReportingOverflow(stateSectors - 1)
            guard !overflow, end <= lastUsable else {
                throw FlowError(.writeRefused, "format: \(options.slotCount) slots of \(options.slotBytes) bytes and the 1 MiB "
                    + "state partition do not fit on a disk of \(store.byteCount) bytes")
            }
            let name = Array("slotctl_state".utf16)
            PartitionEntries.write(&span, entrySize: Int(entrySize), options.slotCount, type: .slotctlState, unique: newGUID(),
                                   firstLBA: start, lastLBA: end, name: name.span)
            stateRange = (start, end)
        }
        header.entriesCRC = CRC32.checksum(entries.span)

        var mbr = [UInt8](repeating: 0, count: store.sectorSize)
        var mbrSpan = mbr.mutableSpan
        ProtectiveMBR.build(into: &mbrSpan, sectorCount: geometry.sectorCount)
        do {
            try store.writeBytes(mbr, at: 0)
            // Both history copies zero: no record yet, whatever the disk held there before.
            if let (first, _) = stateRange {
                try store.writeBytes([UInt8](repeating: 0, count: 2 * HistoryLayout.copySize), at: first * sectorSize)
            }
            try store.flush()
        } catch { throw FlowError.io(error, doing: "format: writing the protective MBR") }

        // Both copies are written by the same save path every flow uses.
        let empty = CopyReport(status: .unreadable, headerLBA: 0, reason: "being formatted")
        let fresh = LoadedTable(geometry: geometry, header: header, sourceRole: .primary, entries: entries,
                                primary: empty, backup: empty, slots: SlotTable())
        // A fresh table has nothing to fall back to: a copy that could not be written is an
        // error here, not the warning it is for a save over a working table.
        if let warning = try TableStore.save(store, fresh, slots: SlotTable()) {
            throw FlowError(.ioError, "format: \(warning)")
        }
        return try TableStore.load(store)
    }

    /// After `format` with a state partition: every slot recorded as never activated. A
    /// failure is the returned warning (the history is advisory, spec/state.md).
    public static func recordFresh(_ store: BlockStore, _ table: LoadedTable) -> String? {
        guard StopHistory.locate(table) != nil else { return nil }
        let notes = (0..<table.slots.count).map {
            StopNote(letter: table.slots[$0].letter, kind: .neverActivated, actor: "format", reason: "")
        }
        return StopHistory.recordStops(store, notes)
    }
}
