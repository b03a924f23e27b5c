/// The signed slot image (spec/image-format.md): payload at offset 0 of the partition,
/// then (optionally) a dm-verity hash tree, then the signed descriptor, and a 64-byte
/// footer in the last 64 bytes of the partition that locates the descriptor.
/// Parsing here checks every length and offset against the partition with
/// overflow-checked arithmetic before anyone reads a byte more.

public enum ImageError: Error, Equatable, Sendable {
    case noFooter
    case badFooterVersion
    case descriptorOutOfRange
    case descriptorTooLarge
    case badDescriptorMagic
    case badDescriptorVersion
    case badDescriptorSize
    case unknownHashAlgorithm
    case unknownSignatureAlgorithm
    case badSignatureSize
    case unknownFlags
    case payloadOutOfRange
    case badVersionString
    case badRollbackLocation
    case badVerityParameters
    case nonZeroReserved

    public var reason: StaticString {
        switch self {
        case .noFooter: "no slotctl footer at the end of the partition (not a signed image)"
        case .badFooterVersion: "unsupported footer version"
        case .descriptorOutOfRange: "footer points the descriptor outside the partition"
        case .descriptorTooLarge: "descriptor size over the limit"
        case .badDescriptorMagic: "descriptor magic is not SLOTDESC"
        case .badDescriptorVersion: "unsupported descriptor version"
        case .badDescriptorSize: "descriptor size fields disagree"
        case .unknownHashAlgorithm: "unknown hash algorithm"
        case .unknownSignatureAlgorithm: "unknown signature algorithm"
        case .badSignatureSize: "signature size does not match the algorithm"
        case .unknownFlags: "unknown descriptor flags"
        case .payloadOutOfRange: "payload overlaps the descriptor or leaves the partition"
        case .badVersionString: "version string is not NUL-terminated UTF-8 text"
        case .badRollbackLocation: "rollback location out of range"
        case .badVerityParameters: "dm-verity parameters out of range"
        case .nonZeroReserved: "reserved bytes are not zero"
        }
    }

    /// The status code a refusal for this reason carries.
    public var statusCode: StatusCode { self == .noFooter ? .unsigned : .malformedDescriptor }
}

public enum HashAlgorithm: UInt32, Sendable {
    case sha256 = 1
}

public enum SignatureAlgorithm: UInt32, Sendable {
    case ed25519 = 1
    case ecdsaP256SHA256 = 2
    case rsa3072PSSSHA256 = 3
    case rsa4096PSSSHA256 = 4

    /// Fixed signature sizes: ECDSA is stored as raw r||s (32 + 32 bytes, IEEE P1363),
    /// so every field of the descriptor is known before signing.
    public var signatureSize: Int {
        switch self {
        case .ed25519, .ecdsaP256SHA256: 64
        case .rsa3072PSSSHA256: 384
        case .rsa4096PSSSHA256: 512
        }
    }

    public var name: StaticString {
        switch self {
        case .ed25519: "ed25519"
        case .ecdsaP256SHA256: "ecdsa-p256-sha256"
        case .rsa3072PSSSHA256: "rsa3072-pss-sha256"
        case .rsa4096PSSSHA256: "rsa4096-pss-sha256"
        }
    }
}
