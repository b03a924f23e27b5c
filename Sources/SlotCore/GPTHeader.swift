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
    public static let headerMinSize = GPTHeaderLayout.size
    public static let maxEntrySize: UInt32 = 4096
    public static let maxEntryCount: UInt32 = 4096
    public static let maxEntriesBytes: UInt64 = 512 * 1024
    public static let revision: UInt32 = 0x0001_0000
    public static let signature: UInt64 = 0x5452_4150_2049_4645 // "EFI PART"
}

/// A GPT header's bytes (UEFI 2.10, 5.3.2), little-endian; read by `GPTHeader.parse`,
/// written by `serialize`.
public enum GPTHeaderLayout {
    /// 0    8   signature "EFI PART"
    public static let signature = 0
    /// 8    4   revision (1.0: 0x00010000)
    public static let revision = 8
    /// 12   4   header size (92 ... sector size)
    public static let headerSize = 12
    /// 16   4   CRC32 of the header's first header-size bytes, this field zero
    public static let headerCRC = 16
    /// 20   4   reserved, zero
    public static let reserved = 20
    /// 24   8   LBA of this header
    public static let myLBA = 24
    /// 32   8   LBA of the other header
    public static let alternateLBA = 32
    /// 40   8   first usable LBA
    public static let firstUsableLBA = 40
    /// 48   8   last usable LBA
    public static let lastUsableLBA = 48
    /// 56   16  disk GUID (mixed-endian, as GUID stores it)
    public static let diskGUID = 56
    /// 72   8   LBA of this copy's entry array
    public static let entriesLBA = 72
    /// 80   4   number of entries
    public static let entryCount = 80
    /// 84   4   size of one entry
    public static let entrySize = 84
    /// 88   4   CRC32 of the entry array
    public static let entriesCRC = 88
    /// 92       the size slotctl writes
    public static let size = 92
}

/// A GPT header as the UEFI spec (5.3.2) lays it out, 92 bytes.
public struct GPTHeader: Equatable, Sendable {
    public var revision: UInt32 = GPTLimits.revision
    public var headerSize = UInt32(GPTHeaderLayout.size)
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
        guard sector.loadLE64(at: GPTHeaderLayout.signature) == GPTLimits.signature else { throw .badSignature }
        guard sector.loadLE32(at: GPTHeaderLayout.revision) == GPTLimits.revision else { throw .badRevision }
        let size = sector.loadLE32(at: GPTHeaderLayout.headerSize)
        guard size >= UInt32(GPTLimits.headerMinSize), UInt64(size) <= UInt64(sector.count) else { throw .badHeaderSize }
        let stored = sector.loadLE32(at: GPTHeaderLayout.headerCRC)
        var crc = CRC32()
        crc.update(sector.extracting(0..<GPTHeaderLayout.headerCRC))
        crc.updateZeros(count: 4)
        crc.update(sector.extracting(GPTHeaderLayout.reserved..<Int(size)))
        guard crc.value == stored else { throw .badHeaderCRC }
        var header = GPTHeader(
            myLBA: sector.loadLE64(at: GPTHeaderLayout.myLBA), alternateLBA: sector.loadLE64(at: GPTHeaderLayout.alternateLBA),
            firstUsableLBA: sector.loadLE64(at: GPTHeaderLayout.firstUsableLBA), lastUsableLBA: sector.loadLE64(at: GPTHeaderLayout.lastUsableLBA),
            diskGUID: GUID(loadingFrom: sector, at: GPTHeaderLayout.diskGUID), entriesLBA: sector.loadLE64(at: GPTHeaderLayout.entriesLBA),
            entryCount: sector.loadLE32(at: GPTHeaderLayout.entryCount), entrySize: sector.loadLE32(at: GPTHeaderLayout.entrySize),
            entriesCRC: sector.loadLE32(at: GPTHeaderLayout.entriesCRC))
        header.headerSize = size
        header.headerCRC = stored
        return header
    }

    /// Writes this header as a whole sector: 92 bytes, a fresh header CRC, zeros after.
    /// slotctl always writes a 92-byte header (spec/table.md); `headerSize`/`headerCRC`
    /// are updated to what was written.
    public mutating func serialize(into sector: inout MutableSpan<UInt8>) {
        sector.fill(0, from: 0, to: sector.count)
        headerSize = UInt32(GPTHeaderLayout.size)
        sector.storeLE64(GPTLimits.signature, at: GPTHeaderLayout.signature)
        sector.storeLE32(revision, at: GPTHeaderLayout.revision)
        sector.storeLE32(headerSize, at: GPTHeaderLayout.headerSize)
        sector.storeLE32(0, at: GPTHeaderLayout.headerCRC)
        sector.storeLE32(0, at: GPTHeaderLayout.reserved)
        sector.storeLE64(myLBA, at: GPTHeaderLayout.myLBA)
        sector.storeLE64(alternateLBA, at: GPTHeaderLayout.alternateLBA)
        sector.storeLE64(firstUsableLBA, at: GPTHeaderLayout.firstUsableLBA)
        sector.storeLE64(lastUsableLBA, at: GPTHeaderLayout.lastUsableLBA)
        diskGUID.store(into: &sector, at: GPTHeaderLayout.diskGUID)
        sector.storeLE64(entriesLBA, at: GPTHeaderLayout.entriesLBA)
        sector.storeLE32(entryCount, at: GPTHeaderLayout.entryCount)
        sector.storeLE32(entrySize, at: GPTHeaderLayout.entrySize)
        sector.storeLE32(entriesCRC, at: GPTHeaderLayout.entriesCRC)
        headerCRC = CRC32.checksum(sector.span.extracting(0..<GPTHeaderLayout.size))
        sector.storeLE32(headerCRC, at: GPTHeaderLayout.headerCRC)
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
