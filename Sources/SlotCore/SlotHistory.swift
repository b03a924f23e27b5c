/// Why each slot last stopped being bootable: the records of the state partition
/// (spec/state.md). Pure: parse, choose between the two copies, change, serialize.
/// Nothing here decides a boot; the records only explain decisions already on disk.

/// What made a slot unbootable.
public enum StopKind: UInt8, Sendable {
    /// Its tries ran out before anything confirmed it (`boot`, normalization).
    case triesExhausted = 1
    /// `mark-failed` (by whom: `actor`).
    case markedFailed = 2
    /// The verifier refused its image at boot (`code`: the status code).
    case refused = 3
    /// `install` made it unbootable to write it, and did not get to activate it.
    case installIncomplete = 4
    /// `format` made it, and nothing has activated it since.
    case neverActivated = 5

    public var name: StaticString {
        switch self {
        case .triesExhausted: "tries_exhausted"
        case .markedFailed: "marked_failed"
        case .refused: "refused"
        case .installIncomplete: "install_incomplete"
        case .neverActivated: "never_activated"
        }
    }
}

/// One slot's record. `firstLBA` and `attributesAfter` tie it to the table: it explains
/// the slot only while the slot's entry still holds exactly these.
public struct StopRecord: Sendable {
    public static let actorSize = 16
    public static let reasonSize = 250

    public var letter: UInt8
    public var kind: StopKind
    /// For `refused`: the status code; else 0.
    public var code: UInt8
    public var attributesAfter: UInt64
    public var firstLBA: UInt64
    /// Who: `boot`, `confirm`, `rauc`, `operator`, `install`, ... (ASCII, NUL-padded).
    public var actor = InlineArray<16, UInt8>(repeating: 0)
    public var reasonLength: UInt16 = 0
    /// Free text (UTF-8, at most reasonSize bytes).
    public var reason = InlineArray<250, UInt8>(repeating: 0)

    public init(letter: UInt8, kind: StopKind, code: UInt8, attributesAfter: UInt64, firstLBA: UInt64) {
        self.letter = letter
        self.kind = kind
        self.code = code
        self.attributesAfter = attributesAfter
        self.firstLBA = firstLBA
    }

    /// Sets `actor` from `bytes`, cut to actorSize.
    public mutating func setActor(_ bytes: Span<UInt8>) {
        for i in 0..<StopRecord.actorSize { actor[i] = i < bytes.count ? bytes[i] : 0 }
    }

    /// Sets `reason` from `bytes`, cut to reasonSize (at a UTF-8 character boundary).
    public mutating func setReason(_ bytes: Span<UInt8>) {
        var n = min(bytes.count, StopRecord.reasonSize)
        // Not inside a multi-byte character: back off over continuation bytes.
        if n < bytes.count { while n > 0 && bytes[n] & 0xC0 == 0x80 { n -= 1 } }
        for i in 0..<StopRecord.reasonSize { reason[i] = i < n ? bytes[i] : 0 }
        reasonLength = UInt16(n)
    }

    /// True when this record explains `slot` as the table holds it now.
    public func explains(_ slot: Slot) -> Bool {
        slot.letter == letter && slot.firstLBA == firstLBA && slot.attributes == attributesAfter
    }
}

public enum HistoryError: Error, Sendable, Equatable {
    case badMagic, badVersion, badCount, badChecksum, badRecord, nonZeroReserved

    public var reason: StaticString {
        switch self {
        case .badMagic: "no SLOTHIST magic"
        case .badVersion: "unknown version"
        case .badCount: "more records than slots"
        case .badChecksum: "checksum mismatch (a torn or damaged write)"
        case .badRecord: "a record with an unknown kind, letter or length"
        case .nonZeroReserved: "reserved bytes are not zero"
        }
    }
}

/// One copy of the history: a sequence number and up to 26 records.
public struct SlotHistory: Sendable {
    public static let magic: UInt64 = 0x5453_4948_544F_4C53 // "SLOTHIST"
    public static let version: UInt32 = 1
    public static let maxRecords = 26

    public var sequence: UInt64 = 0
    public private(set) var count = 0
    private var records = InlineArray<26, StopRecord>(repeating: StopRecord(letter: 0, kind: .markedFailed, code: 0,
                                                                                   attributesAfter: 0, firstLBA: 0))

    public init() {}

    public subscript(_ i: Int) -> StopRecord { records[i] }

    /// The record of slot `letter`, if any.
    public func record(for letter: UInt8) -> StopRecord? {
        for i in 0..<count where records[i].letter == letter { return records[i] }
        return nil
    }

    /// Replaces the record of `record.letter` (or adds it).
    public mutating func set(_ record: StopRecord) {
        for i in 0..<count where records[i].letter == record.letter {
            records[i] = record
            return
        }
        guard count < SlotHistory.maxRecords else { return }
        records[count] = record
        count += 1
    }

    /// Drops the record of `letter`; true if there was one.
    @discardableResult
    public mutating func clear(_ letter: UInt8) -> Bool {
        for i in 0..<count where records[i].letter == letter {
            var j = i
            while j + 1 < count { records[j] = records[j + 1]; j += 1 }
            count -= 1
            return true
        }
        return false
    }

    /// One copy's bytes: HistoryLayout.copySize, checked whole (magic, version, count,
    /// reserved bytes, every record, the CRC32 over the copy with its CRC field zero).
    public static func parse(_ bytes: Span<UInt8>) throws(HistoryError) -> SlotHistory {
        guard bytes.count >= HistoryLayout.copySize, bytes.loadLE64(at: HistoryLayout.magic) == magic else { throw .badMagic }
        guard bytes.loadLE32(at: HistoryLayout.version) == version else { throw .badVersion }
        guard checksum(bytes) == bytes.loadLE32(at: HistoryLayout.crc) else { throw .badChecksum }
        let count = Int(bytes.loadLE32(at: HistoryLayout.count))
        guard count <= maxRecords else { throw .badCount }
        for i in HistoryLayout.reserved..<HistoryLayout.records where bytes[i] != 0 { throw .nonZeroReserved }
        var history = SlotHistory()
        history.sequence = bytes.loadLE64(at: HistoryLayout.sequence)
        for r in 0..<count {
            let at = HistoryLayout.records + r * HistoryLayout.recordSize
            let letter = bytes[at + HistoryLayout.letter]
            guard letter >= 0x61 && letter <= 0x7A, let kind = StopKind(rawValue: bytes[at + HistoryLayout.kind]),
                  history.record(for: letter) == nil else { throw .badRecord }
            var record = StopRecord(letter: letter, kind: kind, code: bytes[at + HistoryLayout.code],
                                    attributesAfter: bytes.loadLE64(at: at + HistoryLayout.attributes),
                                    firstLBA: bytes.loadLE64(at: at + HistoryLayout.firstLBA))
            for i in 0..<StopRecord.actorSize { record.actor[i] = bytes[at + HistoryLayout.actor + i] }
            let length = bytes.loadLE16(at: at + HistoryLayout.reasonLength)
            guard Int(length) <= StopRecord.reasonSize else { throw .badRecord }
            record.reasonLength = length
            for i in 0..<Int(length) { record.reason[i] = bytes[at + HistoryLayout.reason + i] }
            history.set(record)
        }
        return history
    }

    /// Writes this copy into `bytes` (HistoryLayout.copySize), CRC included.
    public func serialize(into bytes: inout MutableSpan<UInt8>) {
        bytes.fill(0, from: 0, to: HistoryLayout.copySize)
        bytes.storeLE64(SlotHistory.magic, at: HistoryLayout.magic)
        bytes.storeLE32(SlotHistory.version, at: HistoryLayout.version)
        bytes.storeLE32(UInt32(count), at: HistoryLayout.count)
        bytes.storeLE64(sequence, at: HistoryLayout.sequence)
        for r in 0..<count {
            let record = records[r], at = HistoryLayout.records + r * HistoryLayout.recordSize
            bytes[at + HistoryLayout.letter] = record.letter
            bytes[at + HistoryLayout.kind] = record.kind.rawValue
            bytes[at + HistoryLayout.code] = record.code
            bytes.storeLE64(record.attributesAfter, at: at + HistoryLayout.attributes)
            bytes.storeLE64(record.firstLBA, at: at + HistoryLayout.firstLBA)
            for i in 0..<StopRecord.actorSize { bytes[at + HistoryLayout.actor + i] = record.actor[i] }
            bytes.storeLE16(record.reasonLength, at: at + HistoryLayout.reasonLength)
            for i in 0..<Int(record.reasonLength) { bytes[at + HistoryLayout.reason + i] = record.reason[i] }
        }
        bytes.storeLE32(SlotHistory.checksum(bytes.span), at: HistoryLayout.crc)
    }

    /// The CRC32 of a copy (its first copySize bytes) with the CRC field taken as zero.
    public static func checksum(_ bytes: Span<UInt8>) -> UInt32 {
        var crc = CRC32()
        crc.update(bytes.extracting(0..<HistoryLayout.crc))
        crc.updateZeros(count: 4)
        crc.update(bytes.extracting((HistoryLayout.crc + 4)..<HistoryLayout.copySize))
        return crc.value
    }

    /// Which copy holds the current history: the valid one with the higher sequence (copy
    /// 0 on a tie), or nil when neither is valid (an empty, new or wiped area). The
    /// writer writes the other copy next, so a torn write never touches the winner.
    public static func choose(_ copy0: Result<SlotHistory, HistoryError>, _ copy1: Result<SlotHistory, HistoryError>) -> Int? {
        switch (copy0, copy1) {
        case (.success(let a), .success(let b)): b.sequence > a.sequence ? 1 : 0
        case (.success, .failure): 0
        case (.failure, .success): 1
        case (.failure, .failure): nil
        }
    }
}

/// The bytes of one history copy (spec/state.md). Two copies: at 0 and at copySize of
/// the state partition.
public enum HistoryLayout {
    /// 0    8   magic "SLOTHIST"
    public static let magic = 0
    /// 8    4   version (1)
    public static let version = 8
    /// 12   4   record count (0...26)
    public static let count = 12
    /// 16   8   sequence: the copy with the higher one is current
    public static let sequence = 16
    /// 24   4   CRC32 of the whole copy, this field taken as zero
    public static let crc = 24
    /// 28   4   reserved, zero
    public static let reserved = 28
    /// 32       26 records of recordSize bytes
    public static let records = 32
    public static let recordSize = 288
    /// The copy: 8 KiB, so it is whole sectors of 512 and 4096 bytes.
    public static let copySize = 8192

    // Within a record:
    /// 0    1   slot letter (a...z)
    public static let letter = 0
    /// 1    1   kind (StopKind)
    public static let kind = 1
    /// 2    1   status code (refused), else 0
    public static let code = 2
    /// 3    1   reserved
    /// 4    8   the slot's attributes after the change
    public static let attributes = 4
    /// 12   8   the slot's first LBA
    public static let firstLBA = 12
    /// 20   16  actor, ASCII, NUL-padded
    public static let actor = 20
    /// 36   2   reason length
    public static let reasonLength = 36
    /// 38   250 reason, UTF-8
    public static let reason = 38
}
