import Testing
import SlotCore
import SlotTestSupport

/// The descriptor and footer parsers on their own: layout, bounds, hostile values.
@Suite struct DescriptorTests {
    static let partitionSize: UInt64 = 1 << 20
    static let descriptorOffset: UInt64 = 512 << 10

    static func sample(_ algorithm: SignatureAlgorithm = .ed25519) -> SlotDescriptor {
        var d = SlotDescriptor()
        d.payloadSize = 300_000
        d.rollbackIndex = 7
        d.rollbackLocation = 2
        d.signatureAlgorithm = algorithm
        for i in 0..<32 { d.payloadDigest[i] = UInt8(i); d.keyID[i] = UInt8(255 - i) }
        for (i, b) in Array("1.2.3".utf8).enumerated() { d.versionString[i] = b }
        return d
    }

    static func bytes(_ d: SlotDescriptor) -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: d.totalSize) // signature bytes: anything
        var span = out.mutableSpan
        d.serializeSigned(into: &span)
        return out
    }

    @Test func roundTripAndLayout() throws {
        for algorithm in [SignatureAlgorithm.ed25519, .ecdsaP256SHA256, .rsa3072PSSSHA256, .rsa4096PSSSHA256] {
            let raw = Self.bytes(Self.sample(algorithm))
            #expect(raw.count == 316 + algorithm.signatureSize)
            #expect(Array(raw[0..<8]) == Array("SLOTDESC".utf8))
            let d = try SlotDescriptor.parse(raw.span, descriptorOffset: Self.descriptorOffset)
            #expect(d.payloadSize == 300_000 && d.rollbackIndex == 7 && d.rollbackLocation == 2)
            #expect(d.signatureAlgorithm == algorithm && d.versionLength == 5 && d.keyID[0] == 255)
        }
    }

    /// Every hostile value is refused with its own reason and without reading out of bounds.
    @Test func hostileFields() {
        let base = Self.bytes(Self.sample())
        func patch(_ offset: Int, _ width: Int, _ value: UInt64) -> [UInt8] {
            var b = base
            for i in 0..<width { b[offset + i] = UInt8(truncatingIfNeeded: value >> UInt64(8 * i)) }
            return b
        }
        let cases: [([UInt8], ImageError)] = [
            (patch(0, 1, 0x41), .badDescriptorMagic),
            (patch(8, 4, 2), .badDescriptorVersion),
            (patch(12, 4, 0xFFFF_FFFF), .badDescriptorSize),
            (patch(24, 4, 9), .unknownHashAlgorithm),
            (patch(76, 4, 0), .unknownSignatureAlgorithm),
            (patch(76, 4, 3), .badSignatureSize), // rsa3072 declared, 64-byte signature
            (patch(312, 4, 65), .badSignatureSize),
            (patch(28, 4, 2), .unknownFlags),
            (patch(16, 8, Self.descriptorOffset + 1), .payloadOutOfRange),
            (patch(16, 8, .max), .payloadOutOfRange),
            (patch(72, 4, 32), .badRollbackLocation),
            (patch(112 + 63, 1, 0x41), .badVersionString),
            (patch(112 + 1, 1, 0x0A), .badVersionString),
            (patch(112 + 10, 1, 0x41), .badVersionString), // text after the NUL
            (patch(200, 1, 1), .nonZeroReserved),          // verity block without the verity flag
            (Array(base[0..<300]), .badDescriptorSize),
            (base + [0], .badDescriptorSize),
        ]
        for (bytes, expected) in cases {
            #expect(throws: expected) { _ = try SlotDescriptor.parse(bytes.span, descriptorOffset: Self.descriptorOffset) }
        }
    }

    @Test func footerBounds() throws {
        func footer(_ offset: UInt64, _ size: UInt32) -> [UInt8] {
            var b = [UInt8](repeating: 0, count: 64)
            var span = b.mutableSpan
            ImageFooter(descriptorOffset: offset, descriptorSize: size).serialize(into: &span)
            return b
        }
        let ok = try ImageFooter.parse(footer(Self.descriptorOffset, 380).span, partitionSize: Self.partitionSize)
        #expect(ok.descriptorOffset == Self.descriptorOffset && ok.descriptorSize == 380)
        let cases: [([UInt8], UInt64, ImageError)] = [
            (footer(.max - 10, 380), Self.partitionSize, .descriptorOutOfRange),      // wraps
            (footer(Self.partitionSize - 64 - 379, 380), Self.partitionSize, .descriptorOutOfRange), // runs into the footer
            (footer(0, 5000), Self.partitionSize, .descriptorTooLarge),
            (footer(0, 100), Self.partitionSize, .badDescriptorSize),
            ([UInt8](repeating: 0, count: 64), Self.partitionSize, .noFooter),
            (footer(0, 380), 63, .noFooter),
        ]
        for (bytes, size, expected) in cases {
            #expect(throws: expected) { _ = try ImageFooter.parse(bytes.span, partitionSize: size) }
        }
        var version = footer(0, 380)
        version[8] = 2
        #expect(throws: ImageError.badFooterVersion) { _ = try ImageFooter.parse(version.span, partitionSize: Self.partitionSize) }
    }

    /// Seeded random damage to valid descriptors and footers: never a trap; whatever
    /// parses stays inside the bounds the parser promises.
    @Test func randomDamageNeverEscapesBounds() {
        var random = SeededRandom(seed: 0xDE5C)
        for n in 0..<20_000 {
            var d = Self.sample([SignatureAlgorithm.ed25519, .ecdsaP256SHA256, .rsa3072PSSSHA256][n % 3])
            if n % 4 == 0 {
                d.flags = SlotDescriptor.flagVerity
                d.verity.dataBlockSize = 4096
                d.verity.hashBlockSize = 4096
                d.payloadSize = 4096 * 70
                d.verity.dataBlocks = 70
                d.verity.treeOffset = 4096 * 70
                d.verity.treeSize = 4096 // one level for 70 blocks
                d.verity.saltSize = 32
            }
            var bytes = Self.bytes(d)
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                switch Int.random(in: 0..<3, using: &random) {
                case 0: bytes[Int.random(in: 0..<bytes.count, using: &random)] ^= 1 << UInt8.random(in: 0...7, using: &random)
                case 1: bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                default:
                    let at = Int.random(in: 0..<(bytes.count - 8), using: &random)
                    for i in 0..<8 { bytes[at + i] = [0x00, 0xFF][Int.random(in: 0...1, using: &random)] }
                }
            }
            if n % 7 == 0 { bytes.removeLast(Int.random(in: 1...bytes.count, using: &random)) }
            if let parsed = try? SlotDescriptor.parse(bytes.span, descriptorOffset: Self.descriptorOffset) {
                #expect(parsed.payloadSize <= Self.descriptorOffset, "seed case \(n)")
                #expect(parsed.rollbackLocation < SlotDescriptor.rollbackLocations && parsed.versionLength < 64)
                #expect(parsed.totalSize == bytes.count)
                if parsed.hasVerity {
                    #expect(parsed.verity.treeOffset + parsed.verity.treeSize <= Self.descriptorOffset)
                }
            }
            var footer = [UInt8](repeating: 0, count: 64)
            var span = footer.mutableSpan
            ImageFooter(descriptorOffset: UInt64(n) * 977, descriptorSize: UInt32(316 + n % 600)).serialize(into: &span)
            footer[Int.random(in: 8..<64, using: &random)] = UInt8.random(in: 0...255, using: &random)
            if let f = try? ImageFooter.parse(footer.span, partitionSize: Self.partitionSize) {
                #expect(f.descriptorOffset + UInt64(f.descriptorSize) <= Self.partitionSize - 64)
                #expect(f.descriptorSize <= SlotDescriptor.maxSize)
            }
        }
    }

    @Test func constantTimeCompare() {
        let a: [UInt8] = Array(0..<32), b = a
        var c = a
        c[31] ^= 1
        let same = constantTimeEqual(a.span, b.span)
        let differs = constantTimeEqual(a.span, c.span)
        let short = constantTimeEqual(a.span, Array(a[0..<31]).span)
        #expect(same && !differs && !short)
    }
}
