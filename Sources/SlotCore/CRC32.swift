// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) as UEFI uses for GPT headers and
// entry arrays. A 16-entry table keeps it allocation-free and Embedded-friendly; two
// nibble steps per byte.

public struct CRC32: Sendable {
    public private(set) var state: UInt32 = 0xFFFF_FFFF

    public init() {}

    public mutating func update(_ bytes: Span<UInt8>) {
        let table: InlineArray<16, UInt32> = [
            0x0000_0000, 0x1DB7_1064, 0x3B6E_20C8, 0x26D9_30AC, 0x76DC_4190, 0x6B6B_51F4,
            0x4DB2_6158, 0x5005_713C, 0xEDB8_8320, 0xF00F_9344, 0xD6D6_A3E8, 0xCB61_B38C,
            0x9B64_C2B0, 0x86D3_D2D4, 0xA00A_E278, 0xBDBD_F21C,
        ]
        var crc = state
        for i in 0..<bytes.count {
            crc ^= UInt32(bytes[i])
            crc = (crc >> 4) ^ table[Int(crc & 0xF)]
            crc = (crc >> 4) ^ table[Int(crc & 0xF)]
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
