extension Array where Element == UInt8 {
    /// Lower-case hex, two digits a byte: how key ids, digests, salts and root hashes are
    /// shown in messages and output (as `openssl dgst` and `veritysetup` print them).
    /// Written straight into the string's storage: no other allocation.
    public var hexText: String {
        func digit(_ nibble: UInt8) -> UInt8 { nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") - 10 + nibble }
        return String(unsafeUninitializedCapacity: count * 2) { out in
            for (i, byte) in enumerated() {
                out[2 * i] = digit(byte >> 4)
                out[2 * i + 1] = digit(byte & 15)
            }
            return count * 2
        }
    }
}

extension Array where Element == UInt8 {
    /// The bytes of even-length hex text (either case), nil for anything else.
    public init?(hexText text: String) {
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var i = 0
        while i < digits.count {
            guard let high = nibble(digits[i]), let low = nibble(digits[i + 1]) else { return nil }
            bytes.append(high << 4 | low)
            i += 2
        }
        self = bytes
    }
}
