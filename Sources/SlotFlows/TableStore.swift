import SlotCore
import SlotStorage

/// One copy's outcome, for status and for the repair decision.
public struct CopyReport: Sendable {
    public var status: CopyStatus
    /// Where its header was looked for.
    public var headerLBA: UInt64
    /// Why it was not used, when it was not; nil when valid.
    public var reason: String?
}

/// A table as loaded from disk: the winning copy's header and entry bytes, how each
/// copy fared, and the slot view. Flows mutate `slots` and hand it back to `save`.
public struct LoadedTable {
    public let geometry: DiskGeometry
    public let header: GPTHeader
    public let sourceRole: GPTHeader.Role
    public let entries: [UInt8]
    public let primary: CopyReport
    public let backup: CopyReport
    /// The slots as stored on disk, before normalization.
    public let slots: SlotTable
    /// What sector 0 holds; a save adds a protective MBR only when it is `missing`.
    public var mbr: MBRKind = .unreadable

    /// A copy is bad or out of date: the next save rewrites it from the winner.
    public var needsRepair: Bool { !primary.status.isValid || !backup.status.isValid }

    /// 1-based partition number of a slot.
    public func partitionNumber(_ slot: Slot) -> Int { slot.entryIndex + 1 }

    public func uniqueGUID(_ slot: Slot) -> GUID {
        PartitionEntries.uniqueGUID(entries.span, header, slot.entryIndex)
    }

    public func typeGUID(_ slot: Slot) -> GUID {
        PartitionEntries.typeGUID(entries.span, header, slot.entryIndex)
    }

    /// The partition name (UTF-16LE, up to 36 units) as a String.
    public func label(_ slot: Slot) -> String {
        let span = entries.span
        let length = PartitionEntries.nameLength(span, header, slot.entryIndex)
        var units: [UInt16] = []
        units.reserveCapacity(length)
        for i in 0..<length { units.append(PartitionEntries.nameUnit(span, header, slot.entryIndex, i)) }
        return String(decoding: units, as: UTF16.self)
    }
}

/// Reading and writing the slot table on a `BlockStore` (spec/table.md). The only place
/// that turns GPT bytes into I/O: flows call `load` once and `save` at most once.
public enum TableStore {
    /// Reads both copies, checks each in full, picks the winner (a valid primary, else a
    /// valid backup) and builds the slot view. Both copies bad: `tableUnusable` (or
    /// `ioError` when a read failed); a valid table without usable slots: `noSlots` or
    /// `duplicateSlot`. Called first by every flow; never writes.
    public static func load(_ store: BlockStore) throws(FlowError) -> LoadedTable {
        let geometry = DiskGeometry(sectorSize: store.sectorSize,
                                    sectorCount: store.byteCount / UInt64(store.sectorSize))
        guard geometry.sectorCount >= 6 else {
            throw FlowError(.tableUnusable, "slot table unusable: disk of \(store.byteCount) bytes is too small for a GPT")
        }
        let primary = readCopy(store, role: .primary, at: 1, geometry: geometry)
        let backupLBA = TableCopies.backupLBA(primary: primary.header, geometry: geometry)
        var backup = readCopy(store, role: .backup, at: backupLBA, geometry: geometry)

        let header: GPTHeader, entries: [UInt8], role: GPTHeader.Role
        if let primaryHeader = primary.header, let primaryEntries = primary.entries {
            header = primaryHeader
            entries = primaryEntries
            role = .primary
            if let backupHeader = backup.header,
               !(TableCopies.sameTable(primaryHeader, backupHeader) && backup.entries == primaryEntries) {
                backup.report = CopyReport(status: .stale, headerLBA: backupLBA,
                                           reason: "backup copy differs from the primary")
            }
        } else if let backupHeader = backup.header, let backupEntries = backup.entries {
            header = backupHeader
            entries = backupEntries
            role = .backup
        } else {
            let code: StatusCode = primary.report.status == .unreadable || backup.report.status == .unreadable
                ? .ioError : .tableUnusable
            throw FlowError(code, "slot table unusable: primary GPT: \(primary.report.reason ?? "?"); "
                + "backup GPT (LBA \(backupLBA)): \(backup.report.reason ?? "?")")
        }
        let slots = try buildSlots(entries, header)
        var loaded = LoadedTable(geometry: geometry, header: header, sourceRole: role, entries: entries,
                                 primary: primary.report, backup: backup.report, slots: slots)
        if let mbr = try? withBytes(of: store, count: geometry.sectorSize, at: 0, { ProtectiveMBR.classify($0) }) { loaded.mbr = mbr }
        return loaded
    }

    private static func buildSlots(_ entries: [UInt8], _ header: GPTHeader) throws(FlowError) -> SlotTable {
        do {
            return try SlotTable.build(entries: entries.span, header: header)
        } catch {
            throw FlowError(error == .duplicateSlotName ? .duplicateSlot : .noSlots, "slot table: \(error.reason)")
        }
    }

    private struct CopyRead {
        var report: CopyReport
        var header: GPTHeader?
        var entries: [UInt8]?
    }

    private static func readCopy(_ store: BlockStore, role: GPTHeader.Role, at lba: UInt64,
                                 geometry: DiskGeometry) -> CopyRead {
        func invalid(_ error: TableError) -> CopyRead {
            CopyRead(report: CopyReport(status: .invalid(error), headerLBA: lba, reason: error.reason.description))
        }
        let sectorSize = UInt64(geometry.sectorSize)
        do {
            let parsed = try withBytes(of: store, count: geometry.sectorSize, at: lba * sectorSize) { sector -> Result<GPTHeader, TableError> in
                do throws(TableError) {
                    let header = try GPTHeader.parse(sector)
                    try header.validate(role: role, readAt: lba, geometry: geometry)
                    return .success(header)
                } catch { return .failure(error) }
            }
            let header: GPTHeader
            switch parsed {
            case .success(let valid): header = valid
            case .failure(let error): return invalid(error)
            }
            // Bounded by validate: at most GPTLimits.maxEntriesBytes, inside the disk.
            let entries = try store.readBytes(count: Int(header.entriesByteCount), at: header.entriesLBA * sectorSize)
            do { try PartitionEntries.validate(entries.span, header) } catch { return invalid(error) }
            return CopyRead(report: CopyReport(status: .valid, headerLBA: lba, reason: nil), header: header, entries: entries)
        } catch {
            return CopyRead(report: CopyReport(status: .unreadable, headerLBA: lba, reason: error.description))
        }
    }

    /// Writes `slots` back in the order that keeps every cut safe: primary entries,
    /// primary header, flush; backup entries, backup header, flush. A cut before the
    /// first flush leaves a primary that fails its CRCs, so the old backup wins; a cut
    /// after it leaves the new primary, which wins. When the backup is bad or stale and
    /// the primary is the only good copy, the backup goes first, then the primary. Called by flows only when the slots
    /// changed or a copy needs repair. Refuses (`writeRefused`) rather than write a
    /// header it would itself reject. Once the primary is flushed the new state is
    /// committed: a failure on the backup is returned as a warning, not thrown (when
    /// the backup went first, the primary's flush is the commit, and its failure throws).
    @discardableResult
    public static func save(_ store: BlockStore, _ loaded: LoadedTable, slots: SlotTable) throws(FlowError) -> String? {
        var entries = loaded.entries
        var span = entries.mutableSpan
        slots.store(into: &span, header: loaded.header)
        let crc = CRC32.checksum(entries.span)
        var headers: (primary: GPTHeader, backup: GPTHeader)
        do {
            headers = try TableCopies.headersForSave(source: loaded.header, sourceRole: loaded.sourceRole,
                                                     entriesCRC: crc, geometry: loaded.geometry)
        } catch {
            throw FlowError(.writeRefused, "slot table not written: the new headers would be invalid: \(error.reason)")
        }
        let sectorSize = UInt64(loaded.geometry.sectorSize)
        var primarySector = [UInt8](repeating: 0, count: loaded.geometry.sectorSize)
        var backupSector = primarySector
        var primarySpan = primarySector.mutableSpan
        headers.primary.serialize(into: &primarySpan)
        var backupSpan = backupSector.mutableSpan
        headers.backup.serialize(into: &backupSpan)
        // The copy a reader falls back to is written last: normally the primary first
        // (a torn primary loses to the old backup); but when the primary is the only good
        // copy (the backup is bad, or stale from an earlier save whose backup write
        // failed) the backup is written first, or a torn primary would leave nothing, or
        // an older state than the one committed last (spec/table.md).
        let backupFirst = loaded.sourceRole == .primary && !loaded.backup.status.isValid
        // What a failure leaves is said exactly: until a copy's header is written whole,
        // that copy fails its CRCs and the other copy's old state is what the next read
        // finds; once written but not flushed, the disk holds the whole old or the whole
        // new state, and which is not known.
        let committed = "so the next read finds either the whole old or the whole new state"
        var backupFailure: StorageError? = nil
        if backupFirst {
            do {
                try store.writeBytes(entries, at: headers.backup.entriesLBA * sectorSize)
                try store.writeBytes(backupSector, at: headers.backup.myLBA * sectorSize)
                try store.flush()
            } catch {
                // A backup that cannot be written (bad sectors at the end of a worn card)
                // must not stop every save: the primary is written as before and the
                // failure is a warning. (A power cut fails the primary's writes as well.)
                backupFailure = error
            }
        }
        // With a backup that failed, only the primary can hold a good state: a torn primary
        // then leaves the stale backup's older state, or no valid table at all.
        let afterFailedBackup = "the backup copy could not be written (\(backupFailure?.description ?? "")), so the next read "
            + "finds the old state, the older state of the stale backup, or no valid table if the primary is torn"
        let backupState = backupFirst ? "the backup already holds the new state" : "the backup was not touched"
        do {
            try store.writeBytes(entries, at: headers.primary.entriesLBA * sectorSize)
            try store.writeBytes(primarySector, at: sectorSize)
        } catch {
            // Opening for writing (read-only media) fails before any byte is written.
            let left: String
            if error.kind == .open && (backupFailure?.kind == .open || !backupFirst) {
                left = "nothing was written"
            } else if backupFailure != nil {
                left = "the primary GPT copy may be partly written and " + afterFailedBackup
            } else {
                left = "the primary GPT copy may be partly written and \(backupState), "
                    + (backupFirst ? committed : "so the next read finds the old state")
            }
            throw FlowError(.ioError, "writing the slot table: \(error.description); \(left)")
        }
        do { try store.flush() } catch {
            throw FlowError(.ioError, "writing the slot table: \(error.description); the primary GPT copy was written but "
                + "not confirmed on disk and " + (backupFailure != nil ? afterFailedBackup : "\(backupState), \(committed)"))
        }
        if let backupFailure {
            return "the new state is written to the primary GPT, but the backup copy could not be written "
                + "(\(backupFailure.description)); it is tried again at the next write"
        }
        if !backupFirst {
            do {
                try store.writeBytes(entries, at: headers.backup.entriesLBA * sectorSize)
                try store.writeBytes(backupSector, at: headers.backup.myLBA * sectorSize)
                try store.flush()
            } catch {
                return "the new state is written to the primary GPT, but the backup copy was not (\(error.description)); it is repaired at the next write"
            }
        }
        return addProtectiveMBR(store, loaded)
    }

    /// After the table is committed: a disk whose sector 0 is all zeros (made by
    /// `cgpt create` alone) gets a protective MBR, so MBR-only tools keep off it and
    /// `sgdisk -v` stops warning. A sector 0 that holds anything (a protective, hybrid
    /// or foreign MBR, boot code) is never written. Sector 0 plays no part in reading the
    /// table, so a cut here costs nothing; a failure is a warning.
    static func addProtectiveMBR(_ store: BlockStore, _ loaded: LoadedTable) -> String? {
        guard loaded.mbr == .missing else { return nil }
        var sector = [UInt8](repeating: 0, count: loaded.geometry.sectorSize)
        var span = sector.mutableSpan
        ProtectiveMBR.build(into: &span, sectorCount: loaded.geometry.sectorCount)
        do {
            // Read again under the lock just before writing: only zeros are replaced.
            let now = try store.readBytes(count: loaded.geometry.sectorSize, at: 0)
            guard ProtectiveMBR.classify(now.span) == .missing else { return nil }
            try store.writeBytes(sector, at: 0)
            try store.flush()
        } catch {
            return "the protective MBR could not be added to sector 0 (\(error.description)); it is tried again at the next write"
        }
        return nil
    }
}

/// Where a slot's bytes lie on the disk.
extension LoadedTable {
    public func byteOffset(_ slot: Slot) -> UInt64 { slot.firstLBA * UInt64(geometry.sectorSize) }
    public func byteSize(_ slot: Slot) -> UInt64 { (slot.lastLBA - slot.firstLBA + 1) * UInt64(geometry.sectorSize) }
}
