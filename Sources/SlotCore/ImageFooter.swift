/// The last 64 bytes of a signed slot partition.
public struct ImageFooter: Equatable, Sendable {
    public static let size = FooterLayout.size
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
        guard partitionSize >= UInt64(size) else { throw .noFooter }
        let (descriptorSize, offset) = try FooterLayout.parse(bytes, magic: magic, version: version)
        let (end, overflow) = offset.addingReportingOverflow(UInt64(descriptorSize))
        guard !overflow, end <= partitionSize - UInt64(size) else { throw .descriptorOutOfRange }
        return ImageFooter(descriptorOffset: offset, descriptorSize: descriptorSize)
    }

    public func serialize(into bytes: inout MutableSpan<UInt8>) {
        FooterLayout.serialize(into: &bytes, magic: ImageFooter.magic, version: ImageFooter.version,
                               descriptorSize: descriptorSize, descriptorOffset: descriptorOffset)
    }
}

/// The stream form of a signed image (spec/install.md), for `install -`: a 64-byte
/// header, the descriptor, then image bytes [0, descriptor offset). The descriptor comes
/// first so it can be verified before any byte is written.
public struct StreamHeader: Equatable, Sendable {
    public static let size = FooterLayout.size
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
    public static func isStream(_ bytes: Span<UInt8>) -> Bool { bytes.count >= 8 && bytes.loadLE64(at: FooterLayout.magic) == magic }

    public static func parse(_ bytes: Span<UInt8>) throws(ImageError) -> StreamHeader {
        let (descriptorSize, offset) = try FooterLayout.parse(bytes, magic: magic, version: version)
        return StreamHeader(descriptorSize: descriptorSize, descriptorOffset: offset)
    }

    public func serialize(into bytes: inout MutableSpan<UInt8>) {
        FooterLayout.serialize(into: &bytes, magic: StreamHeader.magic, version: StreamHeader.version,
                               descriptorSize: descriptorSize, descriptorOffset: descriptorOffset)
    }
}

/// The footer and the stream header share one layout and one set of checks; only the
/// magic (and what the offset must fit) differ.
extension FooterLayout {
    /// Checks size, magic (else `noFooter`), version, the reserved bytes and the
    /// descriptor size's bounds; returns the descriptor size and offset.
    static func parse(_ bytes: Span<UInt8>, magic: UInt64, version: UInt32) throws(ImageError) -> (UInt32, UInt64) {
        guard bytes.count == size, bytes.loadLE64(at: FooterLayout.magic) == magic else { throw .noFooter }
        guard bytes.loadLE32(at: FooterLayout.version) == version else { throw .badFooterVersion }
        let descriptorSize = bytes.loadLE32(at: FooterLayout.descriptorSize)
        for i in reserved..<size where bytes[i] != 0 { throw .nonZeroReserved }
        guard descriptorSize <= SlotDescriptor.maxSize else { throw .descriptorTooLarge }
        guard descriptorSize >= UInt32(SlotDescriptor.signedSize) else { throw .badDescriptorSize }
        return (descriptorSize, bytes.loadLE64(at: FooterLayout.descriptorOffset))
    }

    static func serialize(into bytes: inout MutableSpan<UInt8>, magic: UInt64, version: UInt32, descriptorSize: UInt32,
                          descriptorOffset: UInt64) {
        bytes.fill(0, from: 0, to: size)
        bytes.storeLE64(magic, at: FooterLayout.magic)
        bytes.storeLE32(version, at: FooterLayout.version)
        bytes.storeLE32(descriptorSize, at: FooterLayout.descriptorSize)
        bytes.storeLE64(descriptorOffset, at: FooterLayout.descriptorOffset)
    }
}
