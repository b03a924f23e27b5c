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

public enum ProtectiveMBR {
    static let recordsOffset = 446
    static let recordSize = 16
    static let typeOffset = 4

    /// Classifies sector 0 (`sector.count` ≥ 512): `missing` only when all of it is zero.
    public static func classify(_ sector: Span<UInt8>) -> MBRKind {
        guard sector.count >= 512 else { return .foreign }
        var empty = true
        for i in 0..<sector.count where sector[i] != 0 { empty = false; break }
        if empty { return .missing }
        guard sector[510] == 0x55, sector[511] == 0xAA else { return .foreign }
        var protectiveRecords = 0, otherRecords = 0
        for record in 0..<4 {
            let type = sector[recordsOffset + record * recordSize + typeOffset]
            if type == 0xEE { protectiveRecords += 1 } else if type != 0 { otherRecords += 1 }
        }
        if protectiveRecords == 0 { return .foreign }
        return otherRecords == 0 ? .protective : .hybrid
    }

    /// Writes a protective MBR into `sector` (zeroed first): one record of type 0xEE
    /// from LBA 1 over the rest of the disk (capped at 0xFFFFFFFF sectors), CHS as
    /// UEFI gives them, the 0x55AA signature.
    public static func build(into sector: inout MutableSpan<UInt8>, sectorCount: UInt64) {
        sector.fill(0, from: 0, to: sector.count)
        let base = recordsOffset
        sector[base + 1] = 0x00; sector[base + 2] = 0x02; sector[base + 3] = 0x00
        sector[base + typeOffset] = 0xEE
        sector[base + 5] = 0xFF; sector[base + 6] = 0xFF; sector[base + 7] = 0xFF
        sector.storeLE32(1, at: base + 8)
        let size = sectorCount > 0 ? sectorCount - 1 : 0
        sector.storeLE32(UInt32(min(size, 0xFFFF_FFFF)), at: base + 12)
        sector[510] = 0x55; sector[511] = 0xAA
    }
}
