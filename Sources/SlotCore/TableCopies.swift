/// The two copies of a GPT and the rule between them (spec/table.md, "Which copy wins").
/// The loader reads and checks each copy; this decides which one is the table and
/// produces the pair of headers a write puts back.

public enum CopyStatus: Equatable, Sendable {
    case valid
    /// Valid on its own but not the same table as the primary (older or foreign);
    /// the primary wins and this copy is rewritten at the next write.
    case stale
    case invalid(TableError)
    /// The copy could not be read (I/O error); the other copy may still serve.
    case unreadable

    public var isValid: Bool { if case .valid = self { return true } else { return false } }
}

public enum TableCopies {
    /// Where to look for the backup header: the primary's alternate LBA when the
    /// primary is valid, else the disk's last LBA.
    public static func backupLBA(primary: GPTHeader?, geometry: DiskGeometry) -> UInt64 {
        primary?.alternateLBA ?? geometry.lastLBA
    }

    /// True when both valid copies describe the same table: every field but the ones
    /// that locate the copy itself, and (checked by the caller) identical entry bytes.
    public static func sameTable(_ primary: GPTHeader, _ backup: GPTHeader) -> Bool {
        primary.firstUsableLBA == backup.firstUsableLBA && primary.lastUsableLBA == backup.lastUsableLBA
            && primary.diskGUID == backup.diskGUID && primary.entryCount == backup.entryCount
            && primary.entrySize == backup.entrySize && primary.entriesCRC == backup.entriesCRC
            && primary.alternateLBA == backup.myLBA
    }

    /// The two headers a save writes, derived from the copy that was read (`source`) and
    /// the new entries CRC. The backup header goes to the last LBA of the disk (moving it
    /// there if the disk grew, as sgdisk expects). The primary's entries stay where they
    /// were when the source is the primary, else LBA 2; the backup's stay where they were
    /// when the source is the backup, else right before the backup header. Both results
    /// are validated: a save never writes a header slotctl would itself reject.
    public static func headersForSave(source: GPTHeader, sourceRole: GPTHeader.Role, entriesCRC: UInt32,
                                      geometry: DiskGeometry) throws(TableError) -> (primary: GPTHeader, backup: GPTHeader) {
        let backupHeaderLBA = geometry.lastLBA
        let entrySectors = geometry.sectors(forBytes: source.entriesByteCount)
        guard backupHeaderLBA > entrySectors else { throw .entriesOutOfRange }
        var primary = source, backup = source
        primary.myLBA = 1
        primary.alternateLBA = backupHeaderLBA
        primary.entriesLBA = sourceRole == .primary ? source.entriesLBA : 2
        backup.myLBA = backupHeaderLBA
        backup.alternateLBA = 1
        backup.entriesLBA = sourceRole == .backup && source.myLBA == backupHeaderLBA
            ? source.entriesLBA : backupHeaderLBA - entrySectors
        primary.entriesCRC = entriesCRC
        backup.entriesCRC = entriesCRC
        try primary.validate(role: .primary, readAt: 1, geometry: geometry)
        try backup.validate(role: .backup, readAt: backupHeaderLBA, geometry: geometry)
        return (primary, backup)
    }
}
