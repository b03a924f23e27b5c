/// The descriptor's bytes (spec/image-format.md), little-endian; read by
/// `SlotDescriptor.parse`, written by `serializeSigned`.
public enum DescriptorLayout {
    /// 0    8   magic "SLOTDESC"
    public static let magic = 0
    /// 8    4   format version (1)
    public static let formatVersion = 8
    /// 12   4   descriptor size: the signed bytes plus the signature
    public static let totalSize = 12
    /// 16   8   payload size in bytes
    public static let payloadSize = 16
    /// 24   4   hash algorithm (1: SHA-256)
    public static let hashAlgorithm = 24
    /// 28   4   flags (bit 0: dm-verity parameters present)
    public static let flags = 28
    /// 32   32  payload digest
    public static let payloadDigest = 32
    /// 64   8   rollback index
    public static let rollbackIndex = 64
    /// 72   4   rollback location
    public static let rollbackLocation = 72
    /// 76   4   signature algorithm
    public static let signatureAlgorithm = 76
    /// 80   32  key id: SHA-256 of the signer's public key (DER)
    public static let keyID = 80
    /// 112  64  version string, UTF-8, NUL-padded
    public static let versionString = 112
    /// 176  4   verity data block size (176...311 all zero without the verity flag)
    public static let verityDataBlockSize = 176
    /// 180  4   verity hash block size
    public static let verityHashBlockSize = 180
    /// 184  8   verity data blocks
    public static let verityDataBlocks = 184
    /// 192  8   verity hash tree offset in the partition
    public static let verityTreeOffset = 192
    /// 200  8   verity hash tree size
    public static let verityTreeSize = 200
    /// 208  4   verity salt size
    public static let veritySaltSize = 208
    /// 212  4   verity hash type (1, as veritysetup format)
    public static let verityHashType = 212
    /// 216  64  verity salt, zero past its size
    public static let veritySalt = 216
    /// 280  32  verity root hash
    public static let verityRootHash = 280
    /// 312  4   signature size
    public static let signatureSize = 312
    /// 316  n   the signature, over bytes [0, 316)
    public static let signature = 316
}

/// The 64-byte footer at the end of a signed partition, and the stream header that
/// starts the stream form: the same fields, each with its own magic. Little-endian.
public enum FooterLayout {
    /// 0    8   magic ("SLOTFOOT", or "SLOTSTRM" for the stream header)
    public static let magic = 0
    /// 8    4   version (1)
    public static let version = 8
    /// 12   4   descriptor size
    public static let descriptorSize = 12
    /// 16   8   descriptor offset in the partition
    public static let descriptorOffset = 16
    /// 24   40  reserved, zero
    public static let reserved = 24
    /// 64       total size
    public static let size = 64
}
