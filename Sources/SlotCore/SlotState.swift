/// Slot state in partition attribute bits, ChromeOS's layout (spec/table.md):
/// priority bits 48-51, tries bits 52-55, successful bit 56. Every other bit of the
/// 64-bit attribute field is carried through untouched.
public struct SlotState: Equatable, Sendable {
    public var priority: UInt8
    public var tries: UInt8
    public var successful: Bool

    public static let maxPriority: UInt8 = 15
    public static let maxTries: UInt8 = 15
    static let priorityShift: UInt64 = 48
    static let triesShift: UInt64 = 52
    static let successfulShift: UInt64 = 56
    /// The nine bits slotctl owns.
    public static let mask: UInt64 = 0x1FF << 48

    public init(priority: UInt8, tries: UInt8, successful: Bool) {
        self.priority = priority
        self.tries = tries
        self.successful = successful
    }

    public init(attributes: UInt64) {
        priority = UInt8(truncatingIfNeeded: (attributes >> SlotState.priorityShift) & 0xF)
        tries = UInt8(truncatingIfNeeded: (attributes >> SlotState.triesShift) & 0xF)
        successful = (attributes >> SlotState.successfulShift) & 1 == 1
    }

    /// `attributes` with this state's nine bits replaced and the other 55 kept.
    public func encoded(into attributes: UInt64) -> UInt64 {
        (attributes & ~SlotState.mask)
            | UInt64(priority & 0xF) << SlotState.priorityShift
            | UInt64(tries & 0xF) << SlotState.triesShift
            | (successful ? 1 : 0) << SlotState.successfulShift
    }

    /// bootable = priority > 0 and (successful or tries > 0): spec/policy.md.
    public var isBootable: Bool { priority > 0 && (successful || tries > 0) }

    public static let unbootable = SlotState(priority: 0, tries: 0, successful: false)
}
