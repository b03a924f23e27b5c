import SlotCore
import SlotCounters
import SlotCrypto
import SlotStorage

/// Hashes byte ranges of a store through one fixed, reused buffer: memory does not grow
/// with the payload. One per process is enough.
public final class PayloadHasher {
    public static let chunkSize = 1 << 20
    private let buffer: UnsafeMutableRawBufferPointer
    private let sha = SHA256Stream()

    public init() {
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: PayloadHasher.chunkSize, alignment: 4096)
    }

    deinit { buffer.deallocate() }

    /// SHA-256 of `count` bytes at `offset`.
    public func digest(_ store: BlockStore, offset: UInt64, count: UInt64) throws(StorageError) -> [UInt8] {
        sha.reset() // a read error in an earlier use must not leak into this digest
        var done: UInt64 = 0
        while done < count {
            let n = Int(min(UInt64(buffer.count), count - done))
            let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
            try store.read(into: chunk, at: offset + done)
            sha.update(UnsafeRawBufferPointer(chunk))
            done += UInt64(n)
        }
        return sha.finish()
    }

    /// Copies `count` bytes from `source` to `target` through the one buffer, hashing
    /// nothing (install verifies by reading the slot back afterwards).
    public func copyUnhashed(from source: BlockStore, sourceOffset: UInt64, to target: BlockStore, targetOffset: UInt64,
                     count: UInt64) throws(StorageError) {
        var done: UInt64 = 0
        while done < count {
            let n = Int(min(UInt64(buffer.count), count - done))
            let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
            try source.read(into: chunk, at: sourceOffset + done)
            try target.write(UnsafeRawBufferPointer(chunk), at: targetOffset + done)
            done += UInt64(n)
        }
    }

    /// Copies `count` bytes from a stream to `target` at `targetOffset`, hashing the first
    /// `hashed` of them; returns (bytes received, digest). Fewer bytes than `count` means
    /// the stream ended early.
    public func copyStream(from stream: ByteStream, to target: BlockStore, targetOffset: UInt64, count: UInt64,
                           hashed: UInt64) throws(StorageError) -> (received: UInt64, digest: [UInt8]) {
        sha.reset()
        var done: UInt64 = 0
        while done < count {
            let n = Int(min(UInt64(buffer.count), count - done))
            let got = try stream.readFully(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n]))
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<got])
            if done < hashed {
                sha.update(UnsafeRawBufferPointer(rebasing: chunk[0..<Int(min(UInt64(got), hashed - done))]))
            }
            try target.write(chunk, at: targetOffset + done)
            done += UInt64(got)
            if got < n { break }
        }
        return (done, sha.finish())
    }

    /// Copies `count` bytes from `source` at 0 to `target` at 0, then zeros up to
    /// `paddedCount`, and returns the SHA-256 of all of it: one pass, one buffer (used by
    /// `sign`). `eachChunk` sees every chunk, padding included, before the next is read,
    /// so the dm-verity tree is built from it instead of reading the payload a second
    /// time. Every chunk but the last is `chunkSize` bytes.
    public func copyAndDigest(from source: BlockStore, to target: BlockStore, count: UInt64, paddedCount: UInt64? = nil,
                              eachChunk: ((UnsafeRawBufferPointer) throws(StorageError) -> Void)? = nil) throws(StorageError) -> [UInt8] {
        sha.reset()
        let total = max(count, paddedCount ?? count)
        var done: UInt64 = 0
        while done < total {
            let n = Int(min(UInt64(buffer.count), total - done))
            let copied = done < count ? Int(min(UInt64(n), count - done)) : 0
            let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
            if copied > 0 { try source.read(into: UnsafeMutableRawBufferPointer(rebasing: chunk[0..<copied]), at: done) }
            UnsafeMutableRawBufferPointer(rebasing: chunk[copied...]).initializeMemory(as: UInt8.self, repeating: 0)
            try target.write(UnsafeRawBufferPointer(chunk), at: done)
            sha.update(UnsafeRawBufferPointer(chunk))
            try eachChunk?(UnsafeRawBufferPointer(chunk))
            done += UInt64(n)
        }
        return sha.finish()
    }
}

/// What verification found out about one signed image.
public struct ImageReport {
    /// `.ok`, or the 20-family code of the first check that failed.
    public var code: StatusCode
    /// Why, when `code` is not `.ok`.
    public var reason: String?
    public var descriptor: SlotDescriptor?
    public var footer: ImageFooter?
    /// The trusted key that verified the signature (nil if none did).
    public var signer: PublicKey?

    public init(code: StatusCode) { self.code = code }

    public var verified: Bool { code == .ok }
    public var keyID: [UInt8]? { descriptor.map { d in (0..<32).map { d.keyID[$0] } } }
    public var payloadDigest: [UInt8]? { descriptor.map { d in (0..<32).map { d.payloadDigest[$0] } } }
    public var version: String? {
        descriptor.map { d in String(decoding: (0..<d.versionLength).map { d.versionString[$0] }, as: UTF8.self) }
    }
}

/// Verification of signed slot images (spec/image-format.md), in this order, stopping at
/// the first failure: footer, descriptor bounds, trusted key, key kind, signature over
/// the descriptor, payload digest (constant-time compare). Rollback joins with counters.
public enum ImageVerification {
    /// Verifies the image in bytes [offset, offset + size) of `store`: a slot partition
    /// or an image file. Never throws: every failure is a report with a code.
    /// With `verityTopOnly`, an image with a dm-verity tree is checked by its signed root
    /// hash against the tree's top block instead of hashing the whole payload: `boot` does
    /// this, and dm-verity checks every block as it is read afterwards.
    public static func verify(_ store: BlockStore, offset: UInt64, size: UInt64, keys: KeyDirectory,
                              hasher: PayloadHasher, verityTopOnly: Bool = false) -> ImageReport {
        var report = ImageReport(code: .ok)
        func fail(_ code: StatusCode, _ reason: String) -> ImageReport {
            report.code = code
            report.reason = reason
            return report
        }
        guard size >= UInt64(ImageFooter.size) else { return fail(.unsigned, "too small to hold a footer") }
        let footer: ImageFooter
        let descriptorBytes: [UInt8]
        do {
            let footerBytes = try store.readBytes(count: ImageFooter.size, at: offset + size - UInt64(ImageFooter.size))
            do { footer = try ImageFooter.parse(footerBytes.span, partitionSize: size) } catch {
                return fail(error.statusCode, error.reason.description)
            }
            report.footer = footer
            // Bounded by ImageFooter.parse: at most SlotDescriptor.maxSize, inside the partition.
            descriptorBytes = try store.readBytes(count: Int(footer.descriptorSize), at: offset + footer.descriptorOffset)
        } catch {
            return fail(.ioError, "reading the image: \(error.description)")
        }
        report = verifyDescriptor(descriptorBytes, descriptorOffset: footer.descriptorOffset, keys: keys, into: report)
        guard report.verified, let descriptor = report.descriptor else { return report }
        if verityTopOnly && descriptor.hasVerity {
            let v = descriptor.verity
            let top: [UInt8]
            do { top = try store.readBytes(count: Int(v.hashBlockSize), at: offset + v.treeOffset) } catch {
                return fail(.ioError, "reading the hash tree: \(error.description)")
            }
            let salt = (0..<Int(v.saltSize)).map { v.salt[$0] }
            let root = VerityBuilder.rootHash(topBlock: top, salt: salt)
            let expected = (0..<32).map { v.rootHash[$0] }
            guard constantTimeEqual(root.span, expected.span) else {
                report.signer = nil
                return fail(.digestMismatch, "dm-verity root hash of the tree is \(root.hexText), the descriptor says \(expected.hexText)")
            }
            return report
        }
        let digest: [UInt8]
        do { digest = try hasher.digest(store, offset: offset, count: descriptor.payloadSize) } catch {
            return fail(.ioError, "reading the payload: \(error.description)")
        }
        let expected = report.payloadDigest!
        guard constantTimeEqual(digest.span, expected.span) else {
            report.signer = nil
            return fail(.digestMismatch, "payload SHA-256 is \(digest.hexText), the descriptor says \(expected.hexText)")
        }
        if descriptor.hasVerity {
            // Every block of the tree, not just its top: rebuilt from the proven payload and
            // compared byte for byte, so dm-verity will accept every block it reads later.
            do {
                if let problem = try VerityBuilder.check(store, offset: offset, descriptor: descriptor) {
                    report.signer = nil
                    return fail(.digestMismatch, problem)
                }
            } catch {
                return fail(error.code, error.message)
            }
        }
        return report
    }
}

extension ImageVerification {
    /// Steps 2-5 of verification on descriptor bytes alone (their offset in the
    /// partition is `descriptorOffset`): bounds, trusted key, key kind, signature. On
    /// success `signer` is set; the payload digest is the caller's to check. Used for
    /// images (after the footer) and for streams (before the payload arrives).
    public static func verifyDescriptor(_ descriptorBytes: [UInt8], descriptorOffset: UInt64, keys: KeyDirectory,
                                        into start: ImageReport = .init(code: .ok)) -> ImageReport {
        var report = start
        func fail(_ code: StatusCode, _ reason: String) -> ImageReport {
            report.code = code
            report.reason = reason
            report.signer = nil
            return report
        }
        let descriptor: SlotDescriptor
        do { descriptor = try SlotDescriptor.parse(descriptorBytes.span, descriptorOffset: descriptorOffset) } catch {
            return fail(error.statusCode, error.reason.description)
        }
        report.descriptor = descriptor
        let keyID = report.keyID!
        guard let key = keys.key(id: keyID) else {
            return fail(.untrustedKey, "signed by key \(keyID.hexText), which is not in \(keys.path)")
        }
        guard key.kind.algorithm == descriptor.signatureAlgorithm else {
            return fail(.keyAlgorithmMismatch,
                        "descriptor says \(descriptor.signatureAlgorithm.name) but key \(key.path) is \(key.kind)")
        }
        let message = Array(descriptorBytes[0..<SlotDescriptor.signedSize])
        let signature = Array(descriptorBytes[SlotDescriptor.signedSize...])
        do {
            guard try key.verify(message: message, signature: signature, algorithm: descriptor.signatureAlgorithm) else {
                return fail(.signatureInvalid, "descriptor signature does not verify with \(key.path)")
            }
        } catch {
            return fail(.cryptoError, error.message)
        }
        report.signer = key
        return report
    }
}

/// The rollback check (spec/rollback.md): a verified image whose rollback index is below
/// the counter at its location is refused.
public enum RollbackCheck {
    public enum Outcome {
        case current(stored: UInt64)
        case below(stored: UInt64)
        /// The counters cannot be read or trusted.
        case unavailable(CounterError)
    }

    public static func check(_ descriptor: SlotDescriptor, _ counters: RollbackCounters) -> Outcome {
        do {
            let stored = try counters.read(location: descriptor.rollbackLocation)
            return descriptor.rollbackIndex >= stored ? .current(stored: stored) : .below(stored: stored)
        } catch {
            return .unavailable(error)
        }
    }

    public static func reason(_ descriptor: SlotDescriptor, stored: UInt64) -> String {
        "rollback index \(descriptor.rollbackIndex) is below the counter \(stored) at location \(descriptor.rollbackLocation) (a downgrade)"
    }
}

/// The boot verifier for signed slots: a slot boots only if its image verifies and,
/// with counters, its rollback index is not below the counter at its location.
public struct SignedSlotVerifier: SlotVerifier {
    public let keys: KeyDirectory
    public let counters: RollbackCounters?
    public let hasher: PayloadHasher

    public init(keys: KeyDirectory, counters: RollbackCounters?, hasher: PayloadHasher = PayloadHasher()) {
        self.keys = keys
        self.counters = counters
        self.hasher = hasher
    }

    public var name: String { counters == nil ? "signature" : "signature+rollback" }

    public func verify(slot: Slot, in table: LoadedTable, store: BlockStore) -> SlotVerdict {
        let report = ImageVerification.verify(store, offset: table.byteOffset(slot), size: table.byteSize(slot),
                                              keys: keys, hasher: hasher, verityTopOnly: true)
        guard report.verified, let descriptor = report.descriptor else {
            return .rejected(code: report.code, reason: report.reason ?? "verification failed")
        }
        let claim = RollbackClaim(location: descriptor.rollbackLocation, index: descriptor.rollbackIndex)
        guard let counters else { return .accepted(claim, descriptor: descriptor) }
        // A store that cannot answer at all stops the boot; a location this device never
        // provisioned is this image's problem only.
        let provisioned: Int
        do { provisioned = try counters.provisionedLocations() } catch {
            return .fatal(code: error.code, reason: "rollback counters: \(error.message)")
        }
        guard provisioned > 0 else {
            return .fatal(code: .countersUnavailable, reason: "rollback counters \(counters.spec) are not provisioned (run slotctl counters provision)")
        }
        guard Int(descriptor.rollbackLocation) < provisioned else {
            return .rejected(code: .countersUnavailable,
                             reason: "rollback location \(descriptor.rollbackLocation) is not provisioned on this device (\(provisioned) locations)")
        }
        switch RollbackCheck.check(descriptor, counters) {
        case .current: return .accepted(claim, descriptor: descriptor)
        case .below(let stored): return .rejected(code: .rollback, reason: RollbackCheck.reason(descriptor, stored: stored))
        case .unavailable(let error): return .fatal(code: error.code, reason: "rollback counters: \(error.message)")
        }
    }
}

extension LoadedTable {
    public func byteOffset(_ slot: Slot) -> UInt64 { slot.firstLBA * UInt64(geometry.sectorSize) }
    public func byteSize(_ slot: Slot) -> UInt64 { (slot.lastLBA - slot.firstLBA + 1) * UInt64(geometry.sectorSize) }
}

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
}
