/// What sector 0 of a GPT disk holds (UEFI 2.10, 5.2.3): the protective MBR that keeps
/// MBR-only tools off the disk, a hybrid one (other MBR partitions beside the 0xEE
/// record, for old firmware), nothing at all (`cgpt create` alone leaves it zero), or
/// something else. slotctl writes sector 0 only when it is all zeros (spec/table.md).
public enum MBRKind: Equatable, Sendable {
    case protective
    case hybrid
    case missing
    case foreign
    case unreadable

    public var name: StaticString {
        switch self {
        case .protective: "protective"
        case .hybrid: "hybrid"
        case .missing: "missing"
        case .foreign: "foreign"
        case .unreadable: "unreadable"
        }
    }
}

/// Sector 0's bytes as an MBR (UEFI 2.10, 5.2.1 and 5.2.3), little-endian.
public enum MBRLayout {
    /// 446  64  four partition records of 16 bytes
    public static let records = 446
    public static let recordSize = 16
    /// within a record: 1 3 CHS of the first sector
    public static let startCHS = 1
    /// within a record: 4 1 partition type (0xEE: GPT protective)
    public static let type = 4
    /// within a record: 5 3 CHS of the last sector
    public static let endCHS = 5
    /// within a record: 8 4 first LBA
    public static let startingLBA = 8
    /// within a record: 12 4 size in sectors
    public static let sizeInLBA = 12
    /// 510  2   boot signature 0x55 0xAA
    public static let bootSignature = 510
    public static let protectiveType: UInt8 = 0xEE
}

public enum ProtectiveMBR {
    /// Classifies sector 0 (`sector.count` ≥ 512): `missing` only when all of it is zero.
    public static func classify(_ sector: Span<UInt8>) -> MBRKind {
        guard sector.count >= 512 else { return .foreign }
        var empty = true
        for i in 0..<sector.count where sector[i] != 0 { empty = false; break }
        if empty { return .missing }
        guard sector[MBRLayout.bootSignature] == 0x55, sector[MBRLayout.bootSignature + 1] == 0xAA else { return .foreign }
        var protectiveRecords = 0, otherRecords = 0
        for record in 0..<4 {
            let type = sector[MBRLayout.records + record * MBRLayout.recordSize + MBRLayout.type]
            if type == MBRLayout.protectiveType { protectiveRecords += 1 } else if type != 0 { otherRecords += 1 }
        }
        if protectiveRecords == 0 { return .foreign }
        return otherRecords == 0 ? .protective : .hybrid
    }

    /// Writes a protective MBR into `sector` (zeroed first): one record of type 0xEE
    /// from LBA 1 over the rest of the disk (capped at 0xFFFFFFFF sectors), CHS as
    /// UEFI gives them (start 0/0/2, end 0xFFFFFF), the 0x55AA signature. Called by
    /// `format` and by a save onto an all-zero sector 0.
    public static func build(into sector: inout MutableSpan<UInt8>, sectorCount: UInt64) {
        sector.fill(0, from: 0, to: sector.count)
        let base = MBRLayout.records
        sector[base + MBRLayout.startCHS] = 0x00
        sector[base + MBRLayout.startCHS + 1] = 0x02
        sector[base + MBRLayout.startCHS + 2] = 0x00
        sector[base + MBRLayout.type] = MBRLayout.protectiveType
        for i in 0..<3 { sector[base + MBRLayout.endCHS + i] = 0xFF }
        sector.storeLE32(1, at: base + MBRLayout.startingLBA)
        let size = sectorCount > 0 ? sectorCount - 1 : 0
        sector.storeLE32(UInt32(min(size, 0xFFFF_FFFF)), at: base + MBRLayout.sizeInLBA)
        sector[MBRLayout.bootSignature] = 0x55
        sector[MBRLayout.bootSignature + 1] = 0xAA
    }
}
