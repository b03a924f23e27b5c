/// The geometry a table is checked against: sizes come from the device, never the table.
public struct DiskGeometry: Equatable, Sendable {
    public var sectorSize: Int
    public var sectorCount: UInt64

    public init(sectorSize: Int, sectorCount: UInt64) {
        self.sectorSize = sectorSize
        self.sectorCount = sectorCount
    }

    public var lastLBA: UInt64 { sectorCount &- 1 }

    /// Sectors needed for `bytes`, rounded up.
    public func sectors(forBytes bytes: UInt64) -> UInt64 {
        let size = UInt64(sectorSize)
        return bytes / size + (bytes % size == 0 ? 0 : 1)
    }
}

/// Bounds slotctl puts on header fields before using them for any size or loop
/// (spec/table.md, "Limits").
public enum GPTLimits {
    public static let headerMinSize = 92
    public static let maxEntrySize: UInt32 = 4096
    public static let maxEntryCount: UInt32 = 4096
    public static let maxEntriesBytes: UInt64 = 512 * 1024
    public static let revision: UInt32 = 0x0001_0000
    public static let signature: UInt64 = 0x5452_4150_2049_4645 // "EFI PART"
}

/// A GPT header as the UEFI spec (5.3.2) lays it out, 92 bytes.
public struct GPTHeader: Equatable, Sendable {
    public var revision: UInt32 = GPTLimits.revision
    public var headerSize: UInt32 = 92
    public var headerCRC: UInt32 = 0
    public var myLBA: UInt64
    public var alternateLBA: UInt64
    public var firstUsableLBA: UInt64
    public var lastUsableLBA: UInt64
    public var diskGUID: GUID
    public var entriesLBA: UInt64
    public var entryCount: UInt32
    public var entrySize: UInt32
    public var entriesCRC: UInt32

    public init(myLBA: UInt64, alternateLBA: UInt64, firstUsableLBA: UInt64, lastUsableLBA: UInt64,
                diskGUID: GUID, entriesLBA: UInt64, entryCount: UInt32, entrySize: UInt32, entriesCRC: UInt32) {
        self.myLBA = myLBA
        self.alternateLBA = alternateLBA
        self.firstUsableLBA = firstUsableLBA
        self.lastUsableLBA = lastUsableLBA
        self.diskGUID = diskGUID
        self.entriesLBA = entriesLBA
        self.entryCount = entryCount
        self.entrySize = entrySize
        self.entriesCRC = entriesCRC
    }

    /// Byte length of the entry array. Bounded by validation before anyone sizes a buffer with it.
    public var entriesByteCount: UInt64 { UInt64(entryCount) * UInt64(entrySize) }

    /// Parses one header sector and checks what needs no geometry: signature, revision,
    /// header size and header CRC. Called by the table loader for each copy.
    public static func parse(_ sector: Span<UInt8>) throws(TableError) -> GPTHeader {
        guard sector.count >= GPTLimits.headerMinSize else { throw .tooShort }
        guard sector.loadLE64(at: 0) == GPTLimits.signature else { throw .badSignature }
        guard sector.loadLE32(at: 8) == GPTLimits.revision else { throw .badRevision }
        let size = sector.loadLE32(at: 12)
        guard size >= UInt32(GPTLimits.headerMinSize), UInt64(size) <= UInt64(sector.count) else { throw .badHeaderSize }
        let stored = sector.loadLE32(at: 16)
        var crc = CRC32()
        crc.update(sector.extracting(0..<16))
        crc.updateZeros(count: 4)
        crc.update(sector.extracting(20..<Int(size)))
        guard crc.value == stored else { throw .badHeaderCRC }
        var header = GPTHeader(
            myLBA: sector.loadLE64(at: 24), alternateLBA: sector.loadLE64(at: 32),
            firstUsableLBA: sector.loadLE64(at: 40), lastUsableLBA: sector.loadLE64(at: 48),
            diskGUID: GUID(loadingFrom: sector, at: 56), entriesLBA: sector.loadLE64(at: 72),
            entryCount: sector.loadLE32(at: 80), entrySize: sector.loadLE32(at: 84),
            entriesCRC: sector.loadLE32(at: 88))
        header.headerSize = size
        header.headerCRC = stored
        return header
    }

    /// Writes this header as a whole sector: 92 bytes, a fresh header CRC, zeros after.
    /// slotctl always writes a 92-byte header (spec/table.md); `headerSize`/`headerCRC`
    /// are updated to what was written.
    public mutating func serialize(into sector: inout MutableSpan<UInt8>) {
        sector.fill(0, from: 0, to: sector.count)
        headerSize = 92
        sector.storeLE64(GPTLimits.signature, at: 0)
        sector.storeLE32(revision, at: 8)
        sector.storeLE32(headerSize, at: 12)
        sector.storeLE32(0, at: 16)
        sector.storeLE32(0, at: 20)
        sector.storeLE64(myLBA, at: 24)
        sector.storeLE64(alternateLBA, at: 32)
        sector.storeLE64(firstUsableLBA, at: 40)
        sector.storeLE64(lastUsableLBA, at: 48)
        diskGUID.store(into: &sector, at: 56)
        sector.storeLE64(entriesLBA, at: 72)
        sector.storeLE32(entryCount, at: 80)
        sector.storeLE32(entrySize, at: 84)
        sector.storeLE32(entriesCRC, at: 88)
        headerCRC = CRC32.checksum(sector.span.extracting(0..<92))
        sector.storeLE32(headerCRC, at: 16)
    }

    public enum Role: Sendable { case primary, backup }

    /// Checks the header against the disk it was read from (UEFI 5.3.2 plus the bounds
    /// in `GPTLimits`). `readAt` is the LBA the header was read from. All arithmetic is
    /// overflow-checked: a hostile field yields an error, never a trap or a huge buffer.
    public func validate(role: Role, readAt: UInt64, geometry: DiskGeometry) throws(TableError) {
        guard geometry.sectorCount >= 6 else { throw .tooShort }
        let last = geometry.lastLBA
        guard myLBA == readAt else { throw .badMyLBA }
        switch role {
        case .primary: guard myLBA == 1, alternateLBA > 2, alternateLBA <= last else { throw .badAlternateLBA }
        case .backup: guard alternateLBA == 1, myLBA > 2, myLBA <= last else { throw .badAlternateLBA }
        }
        guard entrySize >= 128, entrySize <= GPTLimits.maxEntrySize, entrySize & (entrySize - 1) == 0
        else { throw .badEntrySize }
        guard entryCount >= 1, entryCount <= GPTLimits.maxEntryCount,
              entriesByteCount <= GPTLimits.maxEntriesBytes else { throw .badEntryCount }
        let entrySectors = geometry.sectors(forBytes: entriesByteCount)
        let (entriesEndPlusOne, overflow) = entriesLBA.addingReportingOverflow(entrySectors)
        guard !overflow, entriesLBA >= 2 else { throw .entriesOutOfRange }
        let entriesEnd = entriesEndPlusOne - 1
        // The usable range lies strictly between the primary's structures and the backup's.
        let backupHeaderLBA = role == .primary ? alternateLBA : myLBA
        guard firstUsableLBA >= 2, firstUsableLBA <= lastUsableLBA, lastUsableLBA < backupHeaderLBA
        else { throw .badUsableRange }
        switch role {
        case .primary:
            guard entriesEnd < firstUsableLBA else { throw .entriesOutOfRange }
        case .backup:
            guard entriesLBA > lastUsableLBA, entriesEnd < myLBA else { throw .entriesOutOfRange }
        }
        // Room for the other copy's entry array, so that a table that loads can always be
        // written back whole: LBA 2 ... first usable - 1, and last usable + 1 ... backup - 1.
        guard entrySectors < backupHeaderLBA, firstUsableLBA > 1 + entrySectors,
              lastUsableLBA < backupHeaderLBA - entrySectors
        else { throw .badUsableRange }
    }
}
