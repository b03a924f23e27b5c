// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) as UEFI uses for GPT headers and
// entry arrays. One 256-entry table (1 KiB, an InlineArray built once, no heap), one step
// per byte: every boot checks two 16 KiB entry arrays, and a nibble table took a quarter
// of the table load's time.

public struct CRC32: Sendable {
    public private(set) var state: UInt32 = 0xFFFF_FFFF

    public init() {}

    static let table: InlineArray<256, UInt32> = InlineArray { index in
        var crc = UInt32(truncatingIfNeeded: index)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        return crc
    }

    public mutating func update(_ bytes: Span<UInt8>) {
        let table = CRC32.table
        // Through a span: indexing the InlineArray itself in the loop had -Osize copy
        // the whole table for every byte.
        let lookup = table.span
        var crc = state
        for i in bytes.indices {
            crc = (crc >> 8) ^ lookup[unchecked: Int((crc ^ UInt32(bytes[unchecked: i])) & 0xFF)]
        }
        state = crc
    }

    /// Feeds `count` zero bytes; used for the header CRC, computed with its CRC field zeroed.
    public mutating func updateZeros(count: Int) {
        let zeros: InlineArray<8, UInt8> = [0, 0, 0, 0, 0, 0, 0, 0]
        var left = count
        while left > 0 {
            let n = left < 8 ? left : 8
            update(zeros.span.extracting(0..<n))
            left -= n
        }
    }

    public var value: UInt32 { ~state }

    public static func checksum(_ bytes: Span<UInt8>) -> UInt32 {
        var crc = CRC32()
        crc.update(bytes)
        return crc.value
    }
}
