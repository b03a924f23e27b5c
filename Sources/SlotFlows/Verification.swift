import SlotCore
import SlotStorage

/// The verdict on one candidate slot.
public enum SlotVerdict: Equatable, Sendable {
    case accepted
    /// Refused: the slot is marked unbootable and the next candidate is tried.
    case rejected(code: StatusCode, reason: String)
}

/// The seam between selection and proof: `boot` asks it about each candidate slot, in
/// policy order, before it consumes a try. Signature and rollback checks plug in here;
/// nothing else in the policy knows about them.
public protocol SlotVerifier {
    /// A short word for status output ("none", "signature+rollback", ...).
    var name: String { get }
    func verify(slot: Slot, in table: LoadedTable, store: BlockStore) -> SlotVerdict
}

/// Verifies nothing beyond the slot table itself. Used until slots carry signatures.
public struct TableOnlyVerifier: SlotVerifier {
    public init() {}
    public var name: String { "none" }
    public func verify(slot: Slot, in table: LoadedTable, store: BlockStore) -> SlotVerdict { .accepted }
}
