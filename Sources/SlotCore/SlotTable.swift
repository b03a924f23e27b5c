/// One slot: a partition of slot type whose name ends in `_<letter>`.
public struct Slot: Equatable, Sendable {
    /// ASCII `a`...`z`.
    public var letter: UInt8
    /// Index in the GPT entry array (0-based; partition number is index + 1).
    public var entryIndex: Int
    /// The full 64-bit attribute field; `state` reads and writes bits 48-56 of it.
    public var attributes: UInt64
    public var firstLBA: UInt64
    public var lastLBA: UInt64

    public init(letter: UInt8, entryIndex: Int, attributes: UInt64, firstLBA: UInt64, lastLBA: UInt64) {
        self.letter = letter
        self.entryIndex = entryIndex
        self.attributes = attributes
        self.firstLBA = firstLBA
        self.lastLBA = lastLBA
    }

    public var state: SlotState {
        get { SlotState(attributes: attributes) }
        set { attributes = newValue.encoded(into: attributes) }
    }

    static let empty = Slot(letter: 0, entryIndex: 0, attributes: 0, firstLBA: 0, lastLBA: 0)
}

/// The A/B view of one validated GPT copy: up to 26 slots, in entry-array order.
/// Fixed-size storage: building and mutating it never allocates.
public struct SlotTable: Sendable {
    public static let capacity = 26
    public private(set) var count = 0
    var storage = InlineArray<26, Slot>(repeating: Slot.empty)

    public init() {}

    public subscript(index: Int) -> Slot {
        get { precondition(index < count); return storage[index] }
        set { precondition(index < count); storage[index] = newValue }
    }

    public mutating func append(_ slot: Slot) throws(TableError) {
        guard count < SlotTable.capacity else { throw .tooManySlots }
        storage[count] = slot
        count += 1
    }

    /// Index in this table of the slot named `letter` (ASCII, either case), or nil.
    public func index(ofLetter letter: UInt8) -> Int? {
        let lower = letter >= 0x41 && letter <= 0x5A ? letter + 0x20 : letter
        for i in 0..<count where storage[i].letter == lower { return i }
        return nil
    }

    /// Builds the slot view of an entry array that passed `PartitionEntries.validate`.
    /// Refuses duplicate slot names (two `_a` partitions are ambiguous: fail closed)
    /// and a table with no slots at all.
    public static func build(entries: Span<UInt8>, header: GPTHeader) throws(TableError) -> SlotTable {
        var table = SlotTable()
        for i in 0..<Int(header.entryCount) {
            guard PartitionEntries.isSlotType(PartitionEntries.typeGUID(entries, header, i)),
                  let letter = PartitionEntries.slotLetter(entries, header, i) else { continue }
            if table.index(ofLetter: letter) != nil { throw .duplicateSlotName }
            try table.append(Slot(letter: letter, entryIndex: i,
                                  attributes: PartitionEntries.attributes(entries, header, i),
                                  firstLBA: PartitionEntries.firstLBA(entries, header, i),
                                  lastLBA: PartitionEntries.lastLBA(entries, header, i)))
        }
        guard table.count > 0 else { throw .noSlots }
        return table
    }

    /// Writes every slot's attribute field back into the entry array. Only the attribute
    /// fields of slot entries change; the caller recomputes the entries CRC.
    public func store(into entries: inout MutableSpan<UInt8>, header: GPTHeader) {
        for i in 0..<count {
            PartitionEntries.setAttributes(&entries, header, storage[i].entryIndex, storage[i].attributes)
        }
    }
}
