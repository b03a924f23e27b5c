/// A GUID as GPT stores it: 16 bytes, the first three fields little-endian ("mixed
/// endian"). `low`/`high` hold bytes 0-7 and 8-15 of the on-disk form, loaded
/// little-endian, so equality is byte equality and no allocation is needed.
public struct GUID: Equatable, Hashable, Sendable {
    public var low: UInt64
    public var high: UInt64

    public init(low: UInt64, high: UInt64) {
        self.low = low
        self.high = high
    }

    /// Builds a GUID from the fields of its canonical text form
    /// `DDDDDDDD-DDDD-DDDD-DDDD-DDDDDDDDDDDD` (data4 is the last 8 bytes, big-endian as written).
    public init(data1: UInt32, data2: UInt16, data3: UInt16, data4: UInt64) {
        low = UInt64(data1) | UInt64(data2) << 32 | UInt64(data3) << 48
        high = data4.byteSwapped
    }

    public init(loadingFrom bytes: Span<UInt8>, at offset: Int) {
        low = bytes.loadLE64(at: offset)
        high = bytes.loadLE64(at: offset + 8)
    }

    public func store(into bytes: inout MutableSpan<UInt8>, at offset: Int) {
        bytes.storeLE64(low, at: offset)
        bytes.storeLE64(high, at: offset + 8)
    }

    /// Byte `index` (0-15) of the on-disk form.
    public func byte(_ index: Int) -> UInt8 {
        index < 8 ? UInt8(truncatingIfNeeded: low >> UInt64(8 * index))
                  : UInt8(truncatingIfNeeded: high >> UInt64(8 * (index - 8)))
    }

    public var isZero: Bool { low == 0 && high == 0 }

    public static let zero = GUID(low: 0, high: 0)
    /// slotctl's own slot partition type, FBDD8489-B026-4652-B35F-A1FEB8CC13DB (spec/table.md).
    public static let slotctlSlot = GUID(data1: 0xFBDD_8489, data2: 0xB026, data3: 0x4652, data4: 0xB35F_A1FE_B8CC_13DB)
    /// slotctl's state partition (why each slot stopped being bootable),
    /// E65ECED9-1A0F-4E49-BE85-1340FC8E77DF (spec/state.md).
    public static let slotctlState = GUID(data1: 0xE65E_CED9, data2: 0x1A0F, data3: 0x4E49, data4: 0xBE85_1340_FC8E_77DF)
    /// ChromeOS kernel, FE3A2A5D-4F32-41A7-B725-ACCC3285A309, as cgpt's `-t kernel` writes it.
    public static let chromeOSKernel = GUID(data1: 0xFE3A_2A5D, data2: 0x4F32, data3: 0x41A7, data4: 0xB725_ACCC_3285_A309)
}
