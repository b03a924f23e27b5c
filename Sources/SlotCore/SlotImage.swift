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

/// The last 64 bytes of a signed slot partition.
public struct ImageFooter: Equatable, Sendable {
    public static let size = 64
    public static let magic: UInt64 = 0x544F_4F46_544F_4C53 // "SLOTFOOT"
    public static let version: UInt32 = 1
    public var descriptorOffset: UInt64
    public var descriptorSize: UInt32

    public init(descriptorOffset: UInt64, descriptorSize: UInt32) {
        self.descriptorOffset = descriptorOffset
        self.descriptorSize = descriptorSize
    }

    /// Parses the footer of a partition of `partitionSize` bytes and checks that the
    /// descriptor it names lies wholly before the footer and within the size limit.
    public static func parse(_ bytes: Span<UInt8>, partitionSize: UInt64) throws(ImageError) -> ImageFooter {
        guard bytes.count == size, partitionSize >= UInt64(size) else { throw .noFooter }
        guard bytes.loadLE64(at: 0) == magic else { throw .noFooter }
        guard bytes.loadLE32(at: 8) == version else { throw .badFooterVersion }
        let descriptorSize = bytes.loadLE32(at: 12)
        let offset = bytes.loadLE64(at: 16)
        for i in 24..<size where bytes[i] != 0 { throw .nonZeroReserved }
        guard descriptorSize <= SlotDescriptor.maxSize else { throw .descriptorTooLarge }
        guard descriptorSize >= UInt32(SlotDescriptor.signedSize) else { throw .badDescriptorSize }
        let (end, overflow) = offset.addingReportingOverflow(UInt64(descriptorSize))
        guard !overflow, end <= partitionSize - UInt64(size) else { throw .descriptorOutOfRange }
        return ImageFooter(descriptorOffset: offset, descriptorSize: descriptorSize)
    }

    public func serialize(into bytes: inout MutableSpan<UInt8>) {
        bytes.fill(0, from: 0, to: ImageFooter.size)
        bytes.storeLE64(ImageFooter.magic, at: 0)
        bytes.storeLE32(ImageFooter.version, at: 8)
        bytes.storeLE32(descriptorSize, at: 12)
        bytes.storeLE64(descriptorOffset, at: 16)
    }
}

/// dm-verity parameters as `veritysetup format` makes them (hash type 1, SHA-256).
public struct VerityParameters: Equatable, Sendable {
    public var dataBlockSize: UInt32 = 0
    public var hashBlockSize: UInt32 = 0
    public var dataBlocks: UInt64 = 0
    public var treeOffset: UInt64 = 0
    public var treeSize: UInt64 = 0
    public var saltSize: UInt32 = 0
    public var salt = InlineArray<64, UInt8>(repeating: 0)
    public var rootHash = InlineArray<32, UInt8>(repeating: 0)

    public init() {}

    public static func == (a: VerityParameters, b: VerityParameters) -> Bool {
        guard a.dataBlockSize == b.dataBlockSize, a.hashBlockSize == b.hashBlockSize, a.dataBlocks == b.dataBlocks,
              a.treeOffset == b.treeOffset, a.treeSize == b.treeSize, a.saltSize == b.saltSize else { return false }
        for i in 0..<64 where a.salt[i] != b.salt[i] { return false }
        for i in 0..<32 where a.rootHash[i] != b.rootHash[i] { return false }
        return true
    }
}

/// The signed descriptor. Fixed layout (spec/image-format.md); the signature covers
/// bytes [0, 316), everything before the signature.
public struct SlotDescriptor: Sendable {
    public static let magic: UInt64 = 0x4353_4544_544F_4C53 // "SLOTDESC"
    public static let formatVersion: UInt32 = 1
    public static let signedSize = 316
    public static let maxSize: UInt32 = 4096
    public static let rollbackLocations: UInt32 = 32
    public static let flagVerity: UInt32 = 1

    public var payloadSize: UInt64 = 0
    public var hashAlgorithm: HashAlgorithm = .sha256
    public var flags: UInt32 = 0
    public var payloadDigest = InlineArray<32, UInt8>(repeating: 0)
    public var rollbackIndex: UInt64 = 0
    public var rollbackLocation: UInt32 = 0
    public var signatureAlgorithm: SignatureAlgorithm = .ed25519
    public var keyID = InlineArray<32, UInt8>(repeating: 0)
    /// UTF-8, NUL-padded; at most 63 bytes of text.
    public var versionString = InlineArray<64, UInt8>(repeating: 0)
    public var verity = VerityParameters()

    public init() {}

    public var totalSize: Int { SlotDescriptor.signedSize + signatureAlgorithm.signatureSize }
    public var hasVerity: Bool { flags & SlotDescriptor.flagVerity != 0 }

    public var versionLength: Int {
        var n = 0
        while n < 64, versionString[n] != 0 { n += 1 }
        return n
    }

    /// Parses and bounds-checks a descriptor read from `descriptorOffset` of a partition.
    /// `bytes` holds exactly the footer's descriptor size. The payload (and a verity
    /// tree) must end at or before the descriptor.
    public static func parse(_ bytes: Span<UInt8>, descriptorOffset: UInt64) throws(ImageError) -> SlotDescriptor {
        guard bytes.count >= signedSize, bytes.count <= Int(maxSize) else { throw .badDescriptorSize }
        guard bytes.loadLE64(at: 0) == magic else { throw .badDescriptorMagic }
        guard bytes.loadLE32(at: 8) == formatVersion else { throw .badDescriptorVersion }
        var d = SlotDescriptor()
        guard let hash = HashAlgorithm(rawValue: bytes.loadLE32(at: 24)) else { throw .unknownHashAlgorithm }
        d.hashAlgorithm = hash
        guard let algorithm = SignatureAlgorithm(rawValue: bytes.loadLE32(at: 76)) else { throw .unknownSignatureAlgorithm }
        d.signatureAlgorithm = algorithm
        guard Int(bytes.loadLE32(at: 312)) == algorithm.signatureSize else { throw .badSignatureSize }
        guard Int(bytes.loadLE32(at: 12)) == d.totalSize, bytes.count == d.totalSize else { throw .badDescriptorSize }
        d.payloadSize = bytes.loadLE64(at: 16)
        d.flags = bytes.loadLE32(at: 28)
        guard d.flags & ~flagVerity == 0 else { throw .unknownFlags }
        for i in 0..<32 { d.payloadDigest[i] = bytes[32 + i] }
        d.rollbackIndex = bytes.loadLE64(at: 64)
        d.rollbackLocation = bytes.loadLE32(at: 72)
        guard d.rollbackLocation < rollbackLocations else { throw .badRollbackLocation }
        for i in 0..<32 { d.keyID[i] = bytes[80 + i] }
        for i in 0..<64 { d.versionString[i] = bytes[112 + i] }
        try d.checkVersionString()
        guard d.payloadSize <= descriptorOffset else { throw .payloadOutOfRange }
        if d.hasVerity {
            var v = VerityParameters()
            v.dataBlockSize = bytes.loadLE32(at: 176)
            v.hashBlockSize = bytes.loadLE32(at: 180)
            v.dataBlocks = bytes.loadLE64(at: 184)
            v.treeOffset = bytes.loadLE64(at: 192)
            v.treeSize = bytes.loadLE64(at: 200)
            v.saltSize = bytes.loadLE32(at: 208)
            guard bytes.loadLE32(at: 212) == 1 else { throw .badVerityParameters }
            for i in 0..<64 { v.salt[i] = bytes[216 + i] }
            for i in 0..<32 { v.rootHash[i] = bytes[280 + i] }
            try v.check(payloadSize: d.payloadSize, descriptorOffset: descriptorOffset)
            d.verity = v
        } else {
            for i in 176..<312 where bytes[i] != 0 { throw .nonZeroReserved }
        }
        return d
    }

    func checkVersionString() throws(ImageError) {
        let length = versionLength
        guard length < 64 else { throw .badVersionString }
        for i in length..<64 where versionString[i] != 0 { throw .badVersionString }
        for i in 0..<length where versionString[i] < 0x20 || versionString[i] == 0x7F { throw .badVersionString }
    }

    /// Writes bytes [0, 316): everything the signature covers. The caller signs them and
    /// appends the signature.
    public func serializeSigned(into bytes: inout MutableSpan<UInt8>) {
        bytes.fill(0, from: 0, to: SlotDescriptor.signedSize)
        bytes.storeLE64(SlotDescriptor.magic, at: 0)
        bytes.storeLE32(SlotDescriptor.formatVersion, at: 8)
        bytes.storeLE32(UInt32(totalSize), at: 12)
        bytes.storeLE64(payloadSize, at: 16)
        bytes.storeLE32(hashAlgorithm.rawValue, at: 24)
        bytes.storeLE32(flags, at: 28)
        for i in 0..<32 { bytes[32 + i] = payloadDigest[i] }
        bytes.storeLE64(rollbackIndex, at: 64)
        bytes.storeLE32(rollbackLocation, at: 72)
        bytes.storeLE32(signatureAlgorithm.rawValue, at: 76)
        for i in 0..<32 { bytes[80 + i] = keyID[i] }
        for i in 0..<64 { bytes[112 + i] = versionString[i] }
        if hasVerity {
            bytes.storeLE32(verity.dataBlockSize, at: 176)
            bytes.storeLE32(verity.hashBlockSize, at: 180)
            bytes.storeLE64(verity.dataBlocks, at: 184)
            bytes.storeLE64(verity.treeOffset, at: 192)
            bytes.storeLE64(verity.treeSize, at: 200)
            bytes.storeLE32(verity.saltSize, at: 208)
            bytes.storeLE32(1, at: 212)
            for i in 0..<64 { bytes[216 + i] = verity.salt[i] }
            for i in 0..<32 { bytes[280 + i] = verity.rootHash[i] }
        }
        bytes.storeLE32(UInt32(signatureAlgorithm.signatureSize), at: 312)
    }
}

extension SlotDescriptor: Equatable {
    public static func == (a: SlotDescriptor, b: SlotDescriptor) -> Bool {
        guard a.payloadSize == b.payloadSize, a.hashAlgorithm == b.hashAlgorithm, a.flags == b.flags,
              a.rollbackIndex == b.rollbackIndex, a.rollbackLocation == b.rollbackLocation,
              a.signatureAlgorithm == b.signatureAlgorithm, a.verity == b.verity else { return false }
        for i in 0..<32 where a.payloadDigest[i] != b.payloadDigest[i] || a.keyID[i] != b.keyID[i] { return false }
        for i in 0..<64 where a.versionString[i] != b.versionString[i] { return false }
        return true
    }
}

extension VerityParameters {
    /// Block sizes 512...4096 and powers of two, salt ≤ 64 bytes, data blocks covering
    /// exactly the payload, the tree after the payload and before the descriptor.
    func check(payloadSize: UInt64, descriptorOffset: UInt64) throws(ImageError) {
        func isBlockSize(_ v: UInt32) -> Bool { v >= 512 && v <= 4096 && v & (v - 1) == 0 }
        guard isBlockSize(dataBlockSize), isBlockSize(hashBlockSize), saltSize <= 64 else { throw .badVerityParameters }
        for i in Int(saltSize)..<64 where salt[i] != 0 { throw .badVerityParameters }
        let (covered, overflow) = dataBlocks.multipliedReportingOverflow(by: UInt64(dataBlockSize))
        guard !overflow, covered == payloadSize, payloadSize > 0 else { throw .badVerityParameters }
        let (treeEnd, overflow2) = treeOffset.addingReportingOverflow(treeSize)
        guard !overflow2, treeOffset >= payloadSize, treeSize > 0, treeEnd <= descriptorOffset,
              treeOffset % UInt64(hashBlockSize) == 0 else { throw .badVerityParameters }
        // The tree is exactly as large as the data needs: its top block is where boot reads it.
        guard let geometry = VerityGeometry(dataBlocks: dataBlocks, hashBlockSize: hashBlockSize),
              geometry.treeBytes == treeSize else { throw .badVerityParameters }
    }
}

/// The stream form of a signed image (spec/install.md), for `install -`: a 64-byte
/// header, the descriptor, then image bytes [0, descriptor offset). The descriptor comes
/// first so it can be verified before any byte is written.
public struct StreamHeader: Equatable, Sendable {
    public static let size = 64
    public static let magic: UInt64 = 0x4D52_5453_544F_4C53 // "SLOTSTRM"
    public static let version: UInt32 = 1
    public var descriptorSize: UInt32
    /// Where the descriptor goes in the partition, and how many image bytes follow it.
    public var descriptorOffset: UInt64

    public init(descriptorSize: UInt32, descriptorOffset: UInt64) {
        self.descriptorSize = descriptorSize
        self.descriptorOffset = descriptorOffset
    }

    /// True when `bytes` (at least 8) start with the stream magic.
    public static func isStream(_ bytes: Span<UInt8>) -> Bool { bytes.count >= 8 && bytes.loadLE64(at: 0) == magic }

    public static func parse(_ bytes: Span<UInt8>) throws(ImageError) -> StreamHeader {
        guard bytes.count == size, bytes.loadLE64(at: 0) == magic else { throw .noFooter }
        guard bytes.loadLE32(at: 8) == version else { throw .badFooterVersion }
        let descriptorSize = bytes.loadLE32(at: 12)
        for i in 24..<size where bytes[i] != 0 { throw .nonZeroReserved }
        guard descriptorSize <= SlotDescriptor.maxSize else { throw .descriptorTooLarge }
        guard descriptorSize >= UInt32(SlotDescriptor.signedSize) else { throw .badDescriptorSize }
        return StreamHeader(descriptorSize: descriptorSize, descriptorOffset: bytes.loadLE64(at: 16))
    }

    public func serialize(into bytes: inout MutableSpan<UInt8>) {
        bytes.fill(0, from: 0, to: StreamHeader.size)
        bytes.storeLE64(StreamHeader.magic, at: 0)
        bytes.storeLE32(StreamHeader.version, at: 8)
        bytes.storeLE32(descriptorSize, at: 12)
        bytes.storeLE64(descriptorOffset, at: 16)
    }
}

/// Compares two digests in time independent of where they differ.
public func constantTimeEqual(_ a: Span<UInt8>, _ b: Span<UInt8>) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for i in 0..<a.count { difference |= a[i] ^ b[i] }
    return difference == 0
}
