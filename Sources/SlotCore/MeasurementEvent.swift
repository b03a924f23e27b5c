/// The event `boot` measures into a PCR once the chosen slot has verified
/// (spec/measured-boot.md). One line of ASCII, so that the record in the measurement log
/// carries it as it is and anyone can check a record's digest by hashing its string:
///
///     slotctl boot slot=b location=0 index=5 key=<64 hex> descriptor=<64 hex>
///
/// `key` is the descriptor's key id (the SHA-256 of the signing key's public key, which
/// verified it), `descriptor` the SHA-256 of the descriptor's signed bytes (which hold the
/// payload digest or the dm-verity root hash, the version and the rollback claim).
/// Written into a caller's fixed buffer: the core allocates nothing.
public enum MeasurementEvent {
    /// PCRs `measure` accepts (spec/measured-boot.md): the OS's range 8...15 (TCG PC
    /// Client), and 16 and 23, which anyone may reset (tests and debugging only). 0...7
    /// belong to the firmware, 17...22 to DRTM (not extendable from locality 0).
    public static func acceptsPCR(_ pcr: UInt32) -> Bool { (8...16).contains(pcr) || pcr == 23 }

    /// The longest event: "slotctl boot slot=X location=4294967295
    /// index=18446744073709551615 key=<64> descriptor=<64>" is 211 bytes.
    public static let maxSize = 211

    /// Writes the event into `out`, which must hold `maxSize` bytes; returns its length.
    /// `keyID` and `descriptorDigest` are 32 bytes each.
    public static func write(into out: inout MutableSpan<UInt8>, slot: UInt8, location: UInt32, index: UInt64,
                             keyID: Span<UInt8>, descriptorDigest: Span<UInt8>) -> Int {
        precondition(out.count >= maxSize && keyID.count == 32 && descriptorDigest.count == 32)
        var w = TextWriter()
        w.text(&out, "slotctl boot slot=")
        w.put(&out, slot)
        w.text(&out, " location=")
        w.decimal(&out, UInt64(location))
        w.text(&out, " index=")
        w.decimal(&out, index)
        w.text(&out, " key=")
        w.hex(&out, keyID)
        w.text(&out, " descriptor=")
        w.hex(&out, descriptorDigest)
        return w.length
    }
}

/// Appends ASCII to a fixed buffer (the caller sized it: `MeasurementEvent.maxSize`).
struct TextWriter {
    var length = 0

    mutating func put(_ out: inout MutableSpan<UInt8>, _ byte: UInt8) {
        out[length] = byte
        length += 1
    }

    mutating func text(_ out: inout MutableSpan<UInt8>, _ s: StaticString) {
        for i in 0..<s.utf8CodeUnitCount { put(&out, s.utf8Start[i]) }
    }

    mutating func decimal(_ out: inout MutableSpan<UInt8>, _ value: UInt64) {
        var digits = InlineArray<20, UInt8>(repeating: 0)
        var count = 0, v = value
        repeat { digits[count] = UInt8(ascii: "0") + UInt8(v % 10); v /= 10; count += 1 } while v > 0
        while count > 0 { count -= 1; put(&out, digits[count]) }
    }

    mutating func hex(_ out: inout MutableSpan<UInt8>, _ bytes: Span<UInt8>) {
        let digits: StaticString = "0123456789abcdef"
        for i in bytes.indices {
            put(&out, digits.utf8Start[Int(bytes[i] >> 4)])
            put(&out, digits.utf8Start[Int(bytes[i] & 0xF)])
        }
    }
}
