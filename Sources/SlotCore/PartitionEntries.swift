/// Read access to one GPT partition entry (UEFI 5.3.3) inside an entry array. Only the
/// first 128 bytes have meaning; larger entry sizes keep their tail untouched.
public enum PartitionEntryLayout {
    /// 0    16  partition type GUID (all zero: unused entry)
    public static let typeGUID = 0
    /// 16   16  unique partition GUID
    public static let uniqueGUID = 16
    /// 32   8   first LBA
    public static let firstLBA = 32
    /// 40   8   last LBA, inclusive
    public static let lastLBA = 40
    /// 48   8   attribute flags (slot state in bits 48-56, ChromeOS's layout)
    public static let attributes = 48
    /// 56   72  name, UTF-16LE, NUL-padded
    public static let name = 56
    /// the name's length in UTF-16 code units
    public static let nameUnits = 36
}

extension Span where Element == UInt8 {
    /// The offset of entry `index`; callers pass an index below a validated entry count.
    @inline(__always)
    func entryOffset(_ index: Int, _ header: GPTHeader) -> Int { index * Int(header.entrySize) }
}

public enum PartitionEntries {
    public static func typeGUID(_ entries: Span<UInt8>, _ header: GPTHeader, _ index: Int) -> GUID {
        GUID(loadingFrom: entries, at: entries.entryOffset(index, header) + PartitionEntryLayout.typeGUID)
    }

    public static func uniqueGUID(_ entries: Span<UInt8>, _ header: GPTHeader, _ index: Int) -> GUID {
        GUID(loadingFrom: entries, at: entries.entryOffset(index, header) + PartitionEntryLayout.uniqueGUID)
    }

    public static func firstLBA(_ entries: Span<UInt8>, _ header: GPTHeader, _ index: Int) -> UInt64 {
        entries.loadLE64(at: entries.entryOffset(index, header) + PartitionEntryLayout.firstLBA)
    }

    public static func lastLBA(_ entries: Span<UInt8>, _ header: GPTHeader, _ index: Int) -> UInt64 {
        entries.loadLE64(at: entries.entryOffset(index, header) + PartitionEntryLayout.lastLBA)
    }

    public static func attributes(_ entries: Span<UInt8>, _ header: GPTHeader, _ index: Int) -> UInt64 {
        entries.loadLE64(at: entries.entryOffset(index, header) + PartitionEntryLayout.attributes)
    }

    public static func setAttributes(_ entries: inout MutableSpan<UInt8>, _ header: GPTHeader, _ index: Int, _ value: UInt64) {
        entries.storeLE64(value, at: index * Int(header.entrySize) + PartitionEntryLayout.attributes)
    }

    /// Fills entry `index` of a fresh (zeroed) entry array: type, unique GUID, LBA range
    /// and name; attributes stay zero (the slot never boots until `set-active`). Called by
    /// `format`; `name` holds at most `PartitionEntryLayout.nameUnits` code units.
    public static func write(_ entries: inout MutableSpan<UInt8>, entrySize: Int, _ index: Int, type: GUID, unique: GUID,
                             firstLBA: UInt64, lastLBA: UInt64, name: Span<UInt16>) {
        let base = index * entrySize
        type.store(into: &entries, at: base + PartitionEntryLayout.typeGUID)
        unique.store(into: &entries, at: base + PartitionEntryLayout.uniqueGUID)
        entries.storeLE64(firstLBA, at: base + PartitionEntryLayout.firstLBA)
        entries.storeLE64(lastLBA, at: base + PartitionEntryLayout.lastLBA)
        for unit in 0..<min(name.count, PartitionEntryLayout.nameUnits) {
            entries.storeLE16(name[unit], at: base + PartitionEntryLayout.name + 2 * unit)
        }
    }

    /// UTF-16LE code unit `unit` (0..<36) of the partition name.
    public static func nameUnit(_ entries: Span<UInt8>, _ header: GPTHeader, _ index: Int, _ unit: Int) -> UInt16 {
        entries.loadLE16(at: entries.entryOffset(index, header) + PartitionEntryLayout.name + 2 * unit)
    }

    /// Name length in UTF-16 code units: up to the first NUL, at most 36.
    public static func nameLength(_ entries: Span<UInt8>, _ header: GPTHeader, _ index: Int) -> Int {
        var length = 0
        while length < PartitionEntryLayout.nameUnits, nameUnit(entries, header, index, length) != 0 { length += 1 }
        return length
    }

    /// The slot letter ("a"..."z" as ASCII) if the name ends in `_a`..`_z`, else nil.
    public static func slotLetter(_ entries: Span<UInt8>, _ header: GPTHeader, _ index: Int) -> UInt8? {
        let length = nameLength(entries, header, index)
        guard length >= 2, nameUnit(entries, header, index, length - 2) == 0x5F else { return nil }
        let last = nameUnit(entries, header, index, length - 1)
        guard last >= 0x61, last <= 0x7A else { return nil }
        return UInt8(last)
    }

    public static func isSlotType(_ type: GUID) -> Bool {
        type == GUID.slotctlSlot || type == GUID.chromeOSKernel
    }

    /// Checks the entry array of a header that passed `GPTHeader.validate`: the CRC, then
    /// every used entry (non-zero type) lies in the usable range with first <= last, and
    /// no two used entries overlap (sorted by first LBA in a fixed buffer, then adjacent
    /// pairs compared: O(n log n), no allocation). `entries` must hold exactly
    /// `header.entriesByteCount` bytes.
    public static func validate(_ entries: Span<UInt8>, _ header: GPTHeader) throws(TableError) {
        guard UInt64(entries.count) == header.entriesByteCount else { throw .entriesOutOfRange }
        guard CRC32.checksum(entries) == header.entriesCRC else { throw .badEntriesCRC }
        var ranges = InlineArray<4096, LBARange>(repeating: LBARange(first: 0, last: 0))
        var used = 0
        for i in 0..<Int(header.entryCount) where !typeGUID(entries, header, i).isZero {
            let first = firstLBA(entries, header, i), last = lastLBA(entries, header, i)
            guard first <= last, first >= header.firstUsableLBA, last <= header.lastUsableLBA
            else { throw .partitionOutOfRange }
            ranges[used] = LBARange(first: first, last: last)
            used += 1
        }
        heapSort(&ranges, count: used)
        var i = 1
        while i < used {
            if ranges[i].first <= ranges[i - 1].last { throw .partitionsOverlap }
            i += 1
        }
    }
}

struct LBARange {
    var first: UInt64
    var last: UInt64
}

/// In-place heap sort of the first `count` ranges by first LBA.
func heapSort(_ a: inout InlineArray<4096, LBARange>, count: Int) {
    func siftDown(_ a: inout InlineArray<4096, LBARange>, _ start: Int, _ end: Int) {
        var root = start
        while 2 * root + 1 < end {
            var child = 2 * root + 1
            if child + 1 < end && a[child].first < a[child + 1].first { child += 1 }
            guard a[root].first < a[child].first else { return }
            a.swapAt(root, child)
            root = child
        }
    }
    guard count > 1 else { return }
    var start = count / 2
    while start > 0 { start -= 1; siftDown(&a, start, count) }
    var end = count
    while end > 1 {
        end -= 1
        a.swapAt(0, end)
        siftDown(&a, 0, end)
    }
}
