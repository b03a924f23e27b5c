import SlotStorage

/// The cheap way into a trusted Ed25519 key: the PEM block decoded here and the 32-byte
/// key handed to EVP_PKEY_new_raw_public_key, instead of OpenSSL 3's decoder machinery
/// (PEM_read_bio_PUBKEY looks up and runs a chain of provider decoders, and i2d_PUBKEY an
/// encoder, which cost more than the rest of a boot decision together). Anything this
/// strict reader does not recognise goes the general way, through OpenSSL, so the keys
/// accepted are exactly the keys accepted before.
enum PEMPublicKey {
    /// The DER SubjectPublicKeyInfo of an Ed25519 key is this prefix and the 32-byte key
    /// (RFC 8410, section 4): SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING }.
    static let ed25519Prefix: [UInt8] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]

    /// The DER inside the one `PUBLIC KEY` block of `pem`, or nil for anything else: no
    /// such block, another PEM block before it, a header line, a character that is not
    /// base64, text after the end. (Another block is OpenSSL's to refuse, as more than one
    /// key in a file is.)
    /// Lines as ByteLines reads them; the base64 text and the DER are the only arrays made.
    static func der(_ pem: [UInt8]) -> [UInt8]? {
        enum Place { case before, inside, after }
        var place = Place.before
        var base64: [UInt8] = []
        base64.reserveCapacity(pem.count)
        for line in ByteLines(pem) {
            switch place {
            case .before:
                // OpenSSL skips text before the block; so does this.
                if line.elementsEqual("-----BEGIN PUBLIC KEY-----".utf8) {
                    place = .inside
                } else if line.starts(with: "-----BEGIN ".utf8) {
                    return nil
                }
            case .inside:
                if line.elementsEqual("-----END PUBLIC KEY-----".utf8) { place = .after; continue }
                guard line.allSatisfy(isBase64) else { return nil }
                base64.append(contentsOf: line)
            case .after:
                return nil
            }
        }
        return place == .after ? decodeBase64(base64) : nil
    }

    /// The raw 32-byte key when `der` is an Ed25519 SubjectPublicKeyInfo.
    static func ed25519Key(_ der: [UInt8]) -> ArraySlice<UInt8>? {
        guard der.count == ed25519Prefix.count + 32, der.starts(with: ed25519Prefix) else { return nil }
        return der[ed25519Prefix.count...]
    }

    static func isBase64(_ byte: UInt8) -> Bool { sextet(byte) != nil || byte == UInt8(ascii: "=") }

    static func sextet(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): byte - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): byte - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): 62
        case UInt8(ascii: "/"): 63
        default: nil
        }
    }

    /// Standard base64 with its padding; nil for a length that is not a multiple of four,
    /// padding anywhere but at the end, or bits left over in the last character.
    static func decodeBase64(_ text: [UInt8]) -> [UInt8]? {
        guard !text.isEmpty, text.count % 4 == 0 else { return nil }
        let padding = text.reversed().prefix { $0 == UInt8(ascii: "=") }.count
        guard padding <= 2 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.count / 4 * 3)
        var group: UInt32 = 0
        for (index, byte) in text.enumerated() {
            let value: UInt8
            if index >= text.count - padding { value = 0 } else {
                guard let decoded = sextet(byte) else { return nil }
                value = decoded
            }
            group = group << 6 | UInt32(value)
            if index % 4 == 3 {
                out.append(UInt8(truncatingIfNeeded: group >> 16))
                out.append(UInt8(truncatingIfNeeded: group >> 8))
                out.append(UInt8(truncatingIfNeeded: group))
                group = 0
            }
        }
        // The bits the padding stands for must be zero (canonical base64).
        let last = sextet(text[text.count - padding - 1]) ?? 0
        if padding == 1 && last & 0x03 != 0 || padding == 2 && last & 0x0f != 0 { return nil }
        out.removeLast(padding)
        return out
    }
}
