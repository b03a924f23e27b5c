// Little-endian field access on byte spans. Every on-disk integer in GPT is little-endian.
// Callers check bounds before they call: these trap on an out-of-range offset, which in
// the core means a validation step was skipped (a bug), never a reaction to input.

extension Span where Element == UInt8 {
    @inline(__always)
    public func loadLE16(at offset: Int) -> UInt16 {
        UInt16(self[offset]) | UInt16(self[offset + 1]) << 8
    }

    @inline(__always)
    public func loadLE32(at offset: Int) -> UInt32 {
        var value: UInt32 = 0
        for i in 0..<4 { value |= UInt32(self[offset + i]) << UInt32(8 * i) }
        return value
    }

    @inline(__always)
    public func loadLE64(at offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<8 { value |= UInt64(self[offset + i]) << UInt64(8 * i) }
        return value
    }
}

extension MutableSpan where Element == UInt8 {
    @inline(__always)
    public mutating func storeLE16(_ value: UInt16, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: value)
        self[offset + 1] = UInt8(truncatingIfNeeded: value >> 8)
    }

    @inline(__always)
    public mutating func storeLE32(_ value: UInt32, at offset: Int) {
        for i in 0..<4 { self[offset + i] = UInt8(truncatingIfNeeded: value >> UInt32(8 * i)) }
    }

    @inline(__always)
    public mutating func storeLE64(_ value: UInt64, at offset: Int) {
        for i in 0..<8 { self[offset + i] = UInt8(truncatingIfNeeded: value >> UInt64(8 * i)) }
    }

    public mutating func fill(_ byte: UInt8, from start: Int, to end: Int) {
        var i = start
        while i < end { self[i] = byte; i += 1 }
    }
}
