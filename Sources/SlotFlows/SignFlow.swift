import SlotCore
import SlotCrypto
import SlotStorage

/// `slotctl sign`: payload at 0, descriptor at the next 4 KiB boundary, footer in the
/// last 64 bytes of the partition.
public enum SignFlow {
    public struct Request {
        public var payloadSize: UInt64
        public var partitionSize: UInt64?
        public var rollbackIndex: UInt64
        public var rollbackLocation: UInt32
        public var version: String
        /// With a salt: build a dm-verity tree (4 KiB blocks) after the padded payload.
        public var veritySalt: [UInt8]?

        public init(payloadSize: UInt64, partitionSize: UInt64?, rollbackIndex: UInt64, rollbackLocation: UInt32, version: String,
                    veritySalt: [UInt8]? = nil) {
            self.payloadSize = payloadSize
            self.partitionSize = partitionSize
            self.rollbackIndex = rollbackIndex
            self.rollbackLocation = rollbackLocation
            self.version = version
            self.veritySalt = veritySalt
        }
    }

    public struct Layout {
        public var descriptorOffset: UInt64
        public var partitionSize: UInt64
        /// With verity: the signed payload size (padded to whole blocks) and the tree.
        public var signedPayloadSize: UInt64
        public var geometry: VerityGeometry?
    }

    static let verityBlock: UInt32 = 4096

    static let alignment: UInt64 = 4096

    /// Where the descriptor goes and how large the image is; refuses (code 64) a
    /// partition size the image does not fit in.
    public static func layout(_ request: Request, algorithm: SignatureAlgorithm) throws(FlowError) -> Layout {
        let descriptorSize = UInt64(SlotDescriptor.signedSize + algorithm.signatureSize)
        let (padded, overflow) = request.payloadSize.addingReportingOverflow(alignment - 1)
        guard !overflow else { throw FlowError(.usage, "sign: payload too large") }
        var descriptorOffset = padded / alignment * alignment
        var geometry: VerityGeometry? = nil
        var signedPayloadSize = request.payloadSize
        if request.veritySalt != nil {
            // dm-verity covers whole blocks: the payload is padded with zeros (to at least two
            // blocks, so there is a tree) and signed padded.
            descriptorOffset = max(descriptorOffset, 2 * UInt64(verityBlock))
            signedPayloadSize = descriptorOffset
            geometry = VerityGeometry(dataBlocks: signedPayloadSize / UInt64(verityBlock), hashBlockSize: verityBlock)
            guard let geometry else { throw FlowError(.usage, "sign --verity: the payload is empty") }
            descriptorOffset += geometry.treeBytes
        }
        let needed = descriptorOffset + descriptorSize + UInt64(ImageFooter.size)
        let partitionSize = request.partitionSize ?? (needed + alignment - 1) / alignment * alignment
        guard needed <= partitionSize else {
            throw FlowError(.usage, "sign: payload of \(request.payloadSize) bytes with its descriptor and footer needs \(needed) bytes; --partition-size is \(partitionSize)")
        }
        return Layout(descriptorOffset: descriptorOffset, partitionSize: partitionSize, signedPayloadSize: signedPayloadSize,
                      geometry: geometry)
    }

    /// Writes the signed image to `output` (already `layout.partitionSize` bytes of zeros)
    /// and returns its descriptor.
    public static func sign(payload: BlockStore, output: BlockStore, key: PrivateKey, request: Request,
                            hasher: PayloadHasher) throws(FlowError) -> SlotDescriptor {
        guard let algorithm = key.kind.algorithm else {
            throw FlowError(.keyAlgorithmMismatch, "sign: \(key.path) is a \(key.kind) key; use ed25519, EC P-256, or RSA 3072/4096")
        }
        guard request.rollbackLocation < SlotDescriptor.rollbackLocations else {
            throw FlowError(.usage, "sign: rollback location must be 0...\(SlotDescriptor.rollbackLocations - 1)")
        }
        let versionBytes = Array(request.version.utf8)
        guard versionBytes.count < 64, !versionBytes.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
            throw FlowError(.usage, "sign: --version must be at most 63 bytes of printable text")
        }
        let layout = try layout(request, algorithm: algorithm)
        var descriptor = SlotDescriptor()
        descriptor.payloadSize = request.payloadSize
        descriptor.rollbackIndex = request.rollbackIndex
        descriptor.rollbackLocation = request.rollbackLocation
        descriptor.signatureAlgorithm = algorithm
        for (i, byte) in key.keyID.enumerated() { descriptor.keyID[i] = byte }
        for (i, byte) in versionBytes.enumerated() { descriptor.versionString[i] = byte }
        // With verity the tree is built from the payload as it is copied (one read of it),
        // the padded payload signed as dm-verity will see it: zeros to whole blocks.
        var tree: VerityTreeWriter? = nil
        if let salt = request.veritySalt {
            guard salt.count <= 64 else { throw FlowError(.usage, "sign --verity: salt longer than 64 bytes") }
            tree = try VerityTreeWriter(target: output, dataBlocks: layout.signedPayloadSize / UInt64(verityBlock),
                                        dataBlockSize: verityBlock, hashBlockSize: verityBlock, salt: salt,
                                        treeOffset: layout.signedPayloadSize)
        }
        var root: [UInt8] = []
        do {
            let digest = try hasher.copyAndDigest(from: payload, to: output, count: request.payloadSize,
                                                  paddedCount: layout.signedPayloadSize) { (chunk) throws(StorageError) in
                try tree?.append(chunk)
            }
            for (i, byte) in digest.enumerated() { descriptor.payloadDigest[i] = byte }
            if let tree { root = try tree.finish() }
        } catch {
            throw FlowError.io(error, doing: tree == nil ? "sign: copying the payload" : "sign: copying the payload and building its hash tree")
        }
        descriptor.payloadSize = layout.signedPayloadSize
        if let salt = request.veritySalt, let geometry = layout.geometry {
            let dataBlocks = layout.signedPayloadSize / UInt64(verityBlock)
            descriptor.flags |= SlotDescriptor.flagVerity
            descriptor.verity.dataBlockSize = verityBlock
            descriptor.verity.hashBlockSize = verityBlock
            descriptor.verity.dataBlocks = dataBlocks
            descriptor.verity.treeOffset = layout.signedPayloadSize
            descriptor.verity.treeSize = geometry.treeBytes
            descriptor.verity.saltSize = UInt32(salt.count)
            for (i, byte) in salt.enumerated() { descriptor.verity.salt[i] = byte }
            for (i, byte) in root.enumerated() { descriptor.verity.rootHash[i] = byte }
        }
        var bytes = [UInt8](repeating: 0, count: descriptor.totalSize)
        var span = bytes.mutableSpan
        descriptor.serializeSigned(into: &span)
        let signature: [UInt8]
        do { signature = try key.sign(message: Array(bytes[0..<SlotDescriptor.signedSize]), algorithm: algorithm) } catch {
            throw FlowError(.cryptoError, "sign: \(error.message)")
        }
        guard signature.count == algorithm.signatureSize else {
            throw FlowError(.cryptoError, "sign: \(algorithm.name) signature of \(signature.count) bytes, expected \(algorithm.signatureSize)")
        }
        bytes.replaceSubrange(SlotDescriptor.signedSize..., with: signature)
        var footerBytes = [UInt8](repeating: 0, count: ImageFooter.size)
        var footerSpan = footerBytes.mutableSpan
        ImageFooter(descriptorOffset: layout.descriptorOffset, descriptorSize: UInt32(bytes.count)).serialize(into: &footerSpan)
        do {
            try output.writeBytes(bytes, at: layout.descriptorOffset)
            try output.writeBytes(footerBytes, at: layout.partitionSize - UInt64(ImageFooter.size))
            try output.flush()
        } catch { throw FlowError.io(error, doing: "sign: writing the image") }
        return descriptor
    }

    /// Writes the stream form of the signed image in `image` to `output` (`sign --stream`).
    public static func writeStream(image: BlockStore, to output: BlockStore) throws(FlowError) {
        do throws(StorageError) {
            let footerBytes = try image.readBytes(count: ImageFooter.size, at: image.byteCount - UInt64(ImageFooter.size))
            guard let footer = try? ImageFooter.parse(footerBytes.span, partitionSize: image.byteCount) else {
                throw StorageError(.read, path: "image", detail: "no valid footer")
            }
            var header = [UInt8](repeating: 0, count: StreamHeader.size)
            var span = header.mutableSpan
            StreamHeader(descriptorSize: footer.descriptorSize, descriptorOffset: footer.descriptorOffset).serialize(into: &span)
            try output.writeBytes(header, at: 0)
            let descriptor = try image.readBytes(count: Int(footer.descriptorSize), at: footer.descriptorOffset)
            try output.writeBytes(descriptor, at: UInt64(StreamHeader.size))
            try PayloadHasher().copyUnhashed(from: image, sourceOffset: 0, to: output,
                                     targetOffset: UInt64(StreamHeader.size) + UInt64(footer.descriptorSize), count: footer.descriptorOffset)
            try output.flush()
        } catch {
            throw FlowError(.ioError, "sign --stream: \(error.description)")
        }
    }
}
