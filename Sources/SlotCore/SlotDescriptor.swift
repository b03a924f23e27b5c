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
    public static let signedSize = DescriptorLayout.signature
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
        guard bytes.loadLE64(at: DescriptorLayout.magic) == magic else { throw .badDescriptorMagic }
        guard bytes.loadLE32(at: DescriptorLayout.formatVersion) == formatVersion else { throw .badDescriptorVersion }
        var d = SlotDescriptor()
        guard let hash = HashAlgorithm(rawValue: bytes.loadLE32(at: DescriptorLayout.hashAlgorithm)) else { throw .unknownHashAlgorithm }
        d.hashAlgorithm = hash
        guard let algorithm = SignatureAlgorithm(rawValue: bytes.loadLE32(at: DescriptorLayout.signatureAlgorithm)) else { throw .unknownSignatureAlgorithm }
        d.signatureAlgorithm = algorithm
        guard Int(bytes.loadLE32(at: DescriptorLayout.signatureSize)) == algorithm.signatureSize else { throw .badSignatureSize }
        guard Int(bytes.loadLE32(at: DescriptorLayout.totalSize)) == d.totalSize, bytes.count == d.totalSize else { throw .badDescriptorSize }
        d.payloadSize = bytes.loadLE64(at: DescriptorLayout.payloadSize)
        d.flags = bytes.loadLE32(at: DescriptorLayout.flags)
        guard d.flags & ~flagVerity == 0 else { throw .unknownFlags }
        for i in 0..<32 { d.payloadDigest[i] = bytes[DescriptorLayout.payloadDigest + i] }
        d.rollbackIndex = bytes.loadLE64(at: DescriptorLayout.rollbackIndex)
        d.rollbackLocation = bytes.loadLE32(at: DescriptorLayout.rollbackLocation)
        guard d.rollbackLocation < rollbackLocations else { throw .badRollbackLocation }
        for i in 0..<32 { d.keyID[i] = bytes[DescriptorLayout.keyID + i] }
        for i in 0..<64 { d.versionString[i] = bytes[DescriptorLayout.versionString + i] }
        try d.checkVersionString()
        guard d.payloadSize <= descriptorOffset else { throw .payloadOutOfRange }
        if d.hasVerity {
            var v = VerityParameters()
            v.dataBlockSize = bytes.loadLE32(at: DescriptorLayout.verityDataBlockSize)
            v.hashBlockSize = bytes.loadLE32(at: DescriptorLayout.verityHashBlockSize)
            v.dataBlocks = bytes.loadLE64(at: DescriptorLayout.verityDataBlocks)
            v.treeOffset = bytes.loadLE64(at: DescriptorLayout.verityTreeOffset)
            v.treeSize = bytes.loadLE64(at: DescriptorLayout.verityTreeSize)
            v.saltSize = bytes.loadLE32(at: DescriptorLayout.veritySaltSize)
            guard bytes.loadLE32(at: DescriptorLayout.verityHashType) == 1 else { throw .badVerityParameters }
            for i in 0..<64 { v.salt[i] = bytes[DescriptorLayout.veritySalt + i] }
            for i in 0..<32 { v.rootHash[i] = bytes[DescriptorLayout.verityRootHash + i] }
            try v.check(payloadSize: d.payloadSize, descriptorOffset: descriptorOffset)
            d.verity = v
        } else {
            for i in DescriptorLayout.verityDataBlockSize..<DescriptorLayout.signatureSize where bytes[i] != 0 { throw .nonZeroReserved }
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
        bytes.storeLE64(SlotDescriptor.magic, at: DescriptorLayout.magic)
        bytes.storeLE32(SlotDescriptor.formatVersion, at: DescriptorLayout.formatVersion)
        bytes.storeLE32(UInt32(totalSize), at: DescriptorLayout.totalSize)
        bytes.storeLE64(payloadSize, at: DescriptorLayout.payloadSize)
        bytes.storeLE32(hashAlgorithm.rawValue, at: DescriptorLayout.hashAlgorithm)
        bytes.storeLE32(flags, at: DescriptorLayout.flags)
        for i in 0..<32 { bytes[DescriptorLayout.payloadDigest + i] = payloadDigest[i] }
        bytes.storeLE64(rollbackIndex, at: DescriptorLayout.rollbackIndex)
        bytes.storeLE32(rollbackLocation, at: DescriptorLayout.rollbackLocation)
        bytes.storeLE32(signatureAlgorithm.rawValue, at: DescriptorLayout.signatureAlgorithm)
        for i in 0..<32 { bytes[DescriptorLayout.keyID + i] = keyID[i] }
        for i in 0..<64 { bytes[DescriptorLayout.versionString + i] = versionString[i] }
        if hasVerity {
            bytes.storeLE32(verity.dataBlockSize, at: DescriptorLayout.verityDataBlockSize)
            bytes.storeLE32(verity.hashBlockSize, at: DescriptorLayout.verityHashBlockSize)
            bytes.storeLE64(verity.dataBlocks, at: DescriptorLayout.verityDataBlocks)
            bytes.storeLE64(verity.treeOffset, at: DescriptorLayout.verityTreeOffset)
            bytes.storeLE64(verity.treeSize, at: DescriptorLayout.verityTreeSize)
            bytes.storeLE32(verity.saltSize, at: DescriptorLayout.veritySaltSize)
            bytes.storeLE32(1, at: DescriptorLayout.verityHashType)
            for i in 0..<64 { bytes[DescriptorLayout.veritySalt + i] = verity.salt[i] }
            for i in 0..<32 { bytes[DescriptorLayout.verityRootHash + i] = verity.rootHash[i] }
        }
        bytes.storeLE32(UInt32(signatureAlgorithm.signatureSize), at: DescriptorLayout.signatureSize)
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

/// Compares two digests in time independent of where they differ.
public func constantTimeEqual(_ a: Span<UInt8>, _ b: Span<UInt8>) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for i in 0..<a.count { difference |= a[i] ^ b[i] }
    return difference == 0
}
