import SlotCore
import SlotStorage

/// What a verified image claims about rollback: its index at its location.
public struct RollbackClaim: Equatable, Sendable {
    public var location: UInt32
    public var index: UInt64

    public init(location: UInt32, index: UInt64) {
        self.location = location
        self.index = index
    }
}

/// The verdict on one candidate slot.
public enum SlotVerdict: Equatable, Sendable {
    /// Proven; with the rollback claim `mark-successful` raises the counter to, and the
    /// descriptor that was proven: what `boot` hands the hook (dm-verity's root hash)
    /// must come from here, never from reading the disk again (spec/security.md).
    case accepted(RollbackClaim?, descriptor: SlotDescriptor? = nil)
    /// Refused: the slot is marked unbootable and the next candidate is tried.
    case rejected(code: StatusCode, reason: String)
    /// The verifier itself cannot work (the counters are unreachable): stop without
    /// judging or changing any slot.
    case fatal(code: StatusCode, reason: String)
}

/// The seam between selection and proof: `boot` asks it about each candidate slot, in
/// policy order, before it consumes a try. Signature and rollback checks plug in here;
/// nothing else in the policy knows about them. Class-bound, so that an Embedded build
/// (which has only class existentials) can hold either kind in one variable.
public protocol SlotVerifier: AnyObject {
    /// A short word for status output ("none", "signature+rollback", ...).
    var name: String { get }
    func verify(slot: Slot, in table: LoadedTable, store: BlockStore) -> SlotVerdict
}

/// Verifies nothing beyond the slot table itself. Used until slots carry signatures.
public final class TableOnlyVerifier: SlotVerifier {
    public init() {}
    public var name: String { "none" }
    public func verify(slot: Slot, in table: LoadedTable, store: BlockStore) -> SlotVerdict { .accepted(nil) }
}
