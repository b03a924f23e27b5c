extension Array where Element == UInt8 {
    /// Lower-case hex, two digits a byte: how key ids, digests, salts and root hashes are
    /// shown in messages and output (as `openssl dgst` and `veritysetup` print them).
    public var hexText: String {
        let digits = [Character]("0123456789abcdef")
        var out = ""
        out.reserveCapacity(count * 2)
        for byte in self {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return out
    }
}
