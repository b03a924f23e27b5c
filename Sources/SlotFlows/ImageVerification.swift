import SlotCore
import SlotCrypto
import SlotStorage

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
    /// The rollback verdict, once judged (`ImageVerification.judgeRollback`).
    public var rollback: RollbackVerdict?
    /// How much of the payload was proven against the signed descriptor.
    public var payloadCheck: PayloadCheck = .none

    public init(code: StatusCode) { self.code = code }

    public var verified: Bool { code == .ok }
    public var keyID: [UInt8]? { descriptor.map { d in (0..<32).map { d.keyID[$0] } } }
    public var payloadDigest: [UInt8]? { descriptor.map { d in (0..<32).map { d.payloadDigest[$0] } } }
    public var version: String? { descriptor?.versionText }
}

/// How much of an image `ImageVerification.verify` reads. The footer, the descriptor,
/// the key and the signature are checked at every depth.
public enum VerificationDepth: Sendable {
    /// No payload byte is read; a dm-verity tree's top block is checked against the
    /// signed root hash (one block). `status` by default: cheap, and it still refuses an
    /// unsigned, foreign-key, tampered-descriptor or bad-tree-top image.
    case signature
    /// As `signature` for an image with a verity tree (dm-verity checks each block as it
    /// is read afterwards); the whole payload's SHA-256 for one without. `boot`.
    case boot
    /// The payload's SHA-256 and every block of a verity tree rebuilt and compared.
    /// `verify`, `install` (before and after writing) and `status --full`.
    case full
}

/// What part of the payload a report proved.
public enum PayloadCheck: Sendable {
    /// None: the payload was not read (or verification stopped before it).
    case none
    /// The verity tree's top block against the signed root hash; data blocks are left to
    /// dm-verity at run time.
    case verityRoot
    /// Every payload byte, and every tree block when there is a tree.
    case full

    /// The name JSON and spec/json.md use.
    public var name: String {
        switch self {
        case .none: "none"
        case .verityRoot: "verity_root"
        case .full: "full"
        }
    }
}

/// Verification of signed slot images (spec/image-format.md), in this order, stopping at
/// the first failure: footer, descriptor bounds, trusted key, key kind, signature over
/// the descriptor, payload digest (constant-time compare). Rollback joins with counters.
public enum ImageVerification {
    /// Verifies the image in bytes [offset, offset + size) of `store`: a slot partition
    /// or an image file. Never throws: every failure is a report with a code.
    /// `depth` says how much of the payload is read (see `VerificationDepth`); the report's
    /// `payloadCheck` says what was.
    public static func verify(_ store: BlockStore, offset: UInt64, size: UInt64, keys: KeyDirectory,
                              hasher: PayloadHasher, depth: VerificationDepth = .full) -> ImageReport {
        var report = ImageReport(code: .ok)
        func fail(_ code: StatusCode, _ reason: String) -> ImageReport {
            report.code = code
            report.reason = reason
            return report
        }
        let footer: ImageFooter
        let descriptorBytes: [UInt8]
        switch readSigned(store, offset: offset, size: size) {
        case .success(let read): (footer, descriptorBytes) = read
        case .failure(let refusal): return fail(refusal.code, refusal.message)
        }
        report.footer = footer
        report = verifyDescriptor(descriptorBytes, descriptorOffset: footer.descriptorOffset, keys: keys, into: report)
        guard report.verified, let descriptor = report.descriptor else { return report }
        if depth != .full && descriptor.hasVerity {
            let v = descriptor.verity
            let top: [UInt8]
            do { top = try store.readBytes(count: Int(v.hashBlockSize), at: offset + v.treeOffset) } catch {
                return fail(.ioError, "reading the hash tree: \(error.description)")
            }
            let root = VerityBuilder.rootHash(topBlock: top, of: v)
            let expected = v.rootHash
            guard constantTimeEqual(root.span, expected.span) else {
                report.signer = nil
                return fail(.digestMismatch, "dm-verity root hash of the tree is \(root.hexText), the descriptor says "
                    + "\((0..<32).map { expected[$0] }.hexText)")
            }
            report.payloadCheck = .verityRoot
            return report
        }
        if depth == .signature { return report }
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
        report.payloadCheck = .full
        return report
    }
}

extension ImageVerification {
    /// Step 1: the footer at the end of [offset, offset + size) and the descriptor bytes it
    /// locates (bounded by the footer's checks: at most SlotDescriptor.maxSize, inside the
    /// partition). Shared by `verify` and `peek`.
    static func readSigned(_ store: BlockStore, offset: UInt64, size: UInt64) -> Result<(ImageFooter, [UInt8]), FlowError> {
        guard size >= UInt64(ImageFooter.size) else { return .failure(FlowError(.unsigned, "too small to hold a footer")) }
        do {
            let parsed = try withBytes(of: store, count: ImageFooter.size, at: offset + size - UInt64(ImageFooter.size)) {
                bytes -> Result<ImageFooter, FlowError> in
                do throws(ImageError) { return .success(try ImageFooter.parse(bytes, partitionSize: size)) } catch {
                    return .failure(FlowError(error.statusCode, error.reason.description))
                }
            }
            let footer: ImageFooter
            switch parsed {
            case .success(let valid): footer = valid
            case .failure(let refusal): return .failure(refusal)
            }
            return .success((footer, try store.readBytes(count: Int(footer.descriptorSize), at: offset + footer.descriptorOffset)))
        } catch {
            return .failure(FlowError(.ioError, "reading the image: \(error.description)"))
        }
    }

    /// The image's footer and descriptor, parsed with every bound checked but with no key,
    /// signature or payload checked: what `slotctl current` shows, at the cost of two
    /// small reads. `code` is `.ok` when the descriptor parses; the report's `signer` is
    /// never set.
    public static func peek(_ store: BlockStore, offset: UInt64, size: UInt64) -> ImageReport {
        var report = ImageReport(code: .ok)
        switch readSigned(store, offset: offset, size: size) {
        case .failure(let refusal):
            report.code = refusal.code
            report.reason = refusal.message
        case .success(let (footer, bytes)):
            report.footer = footer
            do { report.descriptor = try SlotDescriptor.parse(bytes.span, descriptorOffset: footer.descriptorOffset) } catch {
                report.code = error.statusCode
                report.reason = error.reason.description
            }
        }
        return report
    }

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
        guard let key = keys.key(id: descriptor.keyID) else {
            return fail(.untrustedKey, "signed by key \(report.keyID!.hexText), which is not in \(keys.path)")
        }
        guard key.kind.algorithm == descriptor.signatureAlgorithm else {
            return fail(.keyAlgorithmMismatch,
                        "descriptor says \(descriptor.signatureAlgorithm.name) but key \(key.path) is \(key.kind)")
        }
        let message = descriptorBytes[0..<SlotDescriptor.signedSize]
        let signature = descriptorBytes[SlotDescriptor.signedSize...]
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

extension SlotDescriptor {
    /// The version string as text (its bytes are checked printable UTF-8 by parse).
    public var versionText: String { String(decoding: (0..<versionLength).map { versionString[$0] }, as: UTF8.self) }
}
