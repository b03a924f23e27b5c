import SlotCore
import SlotCounters
import SlotCrypto
import SlotStorage

/// The boot verifier for signed slots: a slot boots only if its image verifies and,
/// with counters, its rollback index is not below the counter at its location.
public final class SignedSlotVerifier: SlotVerifier {
    public let keys: KeyDirectory
    public let counters: RollbackCounters?
    public let hasher: PayloadHasher

    public init(keys: KeyDirectory, counters: RollbackCounters?, hasher: PayloadHasher = PayloadHasher()) {
        self.keys = keys
        self.counters = counters
        self.hasher = hasher
    }

    /// The boot verifier `boot` and `mark-successful` use. A key directory without a
    /// single usable key is a configuration error, refused (21) before any slot is
    /// judged, so that a missing key never marks every slot unbootable.
    public static func requiringKeys(_ keys: KeyDirectory, counters: RollbackCounters?) throws(FlowError) -> SignedSlotVerifier {
        guard !keys.keys.isEmpty else {
            let why = keys.problems.isEmpty ? "it holds no *.pem public key" : keys.problems.joined(separator: "; ")
            throw FlowError(.untrustedKey, "no trusted key in \(keys.path) (\(why)); no slot was judged or changed")
        }
        return SignedSlotVerifier(keys: keys, counters: counters)
    }

    public var name: String { counters == nil ? "signature" : "signature+rollback" }

    public func verify(slot: Slot, in table: LoadedTable, store: BlockStore) -> SlotVerdict {
        let report = ImageVerification.verify(store, offset: table.byteOffset(slot), size: table.byteSize(slot),
                                              keys: keys, hasher: hasher, depth: .boot)
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
        let verdict = RollbackVerdict.judge(descriptor, counters)
        guard let refusal = verdict.refusal(descriptor) else { return .accepted(claim, descriptor: descriptor) }
        if case .unavailable = verdict { return .fatal(code: refusal.code, reason: refusal.reason) }
        return .rejected(code: refusal.code, reason: refusal.reason)
    }
}
