import Testing
import SlotCore

@Suite struct CRCTests {
    @Test func knownAnswer() {
        let check = Array("123456789".utf8)
        #expect(CRC32.checksum(check.span) == 0xCBF4_3926)
        #expect(CRC32.checksum([UInt8]().span) == 0)
    }

    @Test func zerosMatchExplicitZeros() {
        var a = CRC32(), b = CRC32()
        a.update(Array("abc".utf8).span)
        a.updateZeros(count: 13)
        b.update((Array("abc".utf8) + [UInt8](repeating: 0, count: 13)).span)
        #expect(a.value == b.value)
    }
}

@Suite struct AttributeTests {
    @Test func cgptExample() {
        // `cgpt add -i 1 -P 2 -T 5 -S 0` -> sgdisk prints attribute flags 0052000000000000.
        let state = SlotState(attributes: 0x0052_0000_0000_0000)
        #expect(state == SlotState(priority: 2, tries: 5, successful: false))
        #expect(state.encoded(into: 0) == 0x0052_0000_0000_0000)
        #expect(SlotState(priority: 15, tries: 0, successful: true).encoded(into: 0) == 0x010F_0000_0000_0000)
    }

    @Test func otherBitsSurvive() {
        var random = SystemRandomNumberGenerator()
        for _ in 0..<1000 {
            let original = UInt64.random(in: .min ... .max, using: &random)
            let state = SlotState(priority: UInt8.random(in: 0...15), tries: UInt8.random(in: 0...15), successful: Bool.random())
            let encoded = state.encoded(into: original)
            #expect(encoded & ~SlotState.mask == original & ~SlotState.mask)
            #expect(SlotState(attributes: encoded) == state)
        }
    }
}

@Suite struct GUIDTests {
    @Test func mixedEndianLayout() {
        // FBDD8489-B026-4652-B35F-A1FEB8CC13DB is stored 89 84 DD FB 26 B0 52 46 B3 5F A1 FE B8 CC 13 DB.
        let expected: [UInt8] = [0x89, 0x84, 0xDD, 0xFB, 0x26, 0xB0, 0x52, 0x46, 0xB3, 0x5F, 0xA1, 0xFE, 0xB8, 0xCC, 0x13, 0xDB]
        #expect((0..<16).map { GUID.slotctlSlot.byte($0) } == expected)
        #expect(GUID(loadingFrom: expected.span, at: 0) == GUID.slotctlSlot)
    }
}

@Suite struct HeaderTests {
    static let geometry = DiskGeometry(sectorSize: 512, sectorCount: 131_072)

    static func header() -> GPTHeader {
        GPTHeader(myLBA: 1, alternateLBA: 131_071, firstUsableLBA: 34, lastUsableLBA: 131_038,
                  diskGUID: GUID(low: 7, high: 9), entriesLBA: 2, entryCount: 128, entrySize: 128, entriesCRC: 0x1234)
    }

    static func sector(_ h: GPTHeader) -> [UInt8] {
        var bytes = [UInt8](repeating: 0xAA, count: 512)
        var span = bytes.mutableSpan
        var copy = h
        copy.serialize(into: &span)
        return bytes
    }

    @Test func roundTrip() throws {
        let bytes = Self.sector(Self.header())
        let parsed = try GPTHeader.parse(bytes.span)
        #expect(parsed.myLBA == 1 && parsed.alternateLBA == 131_071 && parsed.entriesCRC == 0x1234)
        #expect(parsed.diskGUID == GUID(low: 7, high: 9))
        try parsed.validate(role: .primary, readAt: 1, geometry: Self.geometry)
        #expect(bytes[92..<512].allSatisfy { $0 == 0 })
    }

    @Test func everyHeaderBitFlipIsDetected() {
        let bytes = Self.sector(Self.header())
        for bit in 0..<(92 * 8) {
            var bad = bytes
            bad[bit / 8] ^= 1 << UInt8(bit % 8)
            #expect(throws: TableError.self) { _ = try GPTHeader.parse(bad.span) }
        }
    }

    /// Hostile fields with a correct CRC are caught by validate, each with its own reason.
    @Test func hostileFields() throws {
        let cases: [(String, (inout GPTHeader) -> Void, TableError)] = [
            ("entry size 0", { $0.entrySize = 0 }, .badEntrySize),
            ("entry size 129", { $0.entrySize = 129 }, .badEntrySize),
            ("entry size huge", { $0.entrySize = 0x8000_0000 }, .badEntrySize),
            ("entry count 0", { $0.entryCount = 0 }, .badEntryCount),
            ("entry count huge", { $0.entryCount = 0xFFFF_FFFF }, .badEntryCount),
            ("entries past end", { $0.entriesLBA = 0xFFFF_FFFF_FFFF_FFF0 }, .entriesOutOfRange),
            ("entries into usable", { $0.entriesLBA = 30 }, .entriesOutOfRange),
            ("alternate past end", { $0.alternateLBA = 200_000 }, .badAlternateLBA),
            ("my LBA wrong", { $0.myLBA = 2 }, .badMyLBA),
            ("usable reversed", { $0.firstUsableLBA = 100_000; $0.lastUsableLBA = 50 }, .badUsableRange),
            ("usable past backup", { $0.lastUsableLBA = 131_071 }, .badUsableRange),
        ("no room for the backup entries", { $0.lastUsableLBA = 131_070 }, .badUsableRange),
        ]
        for (name, mutate, expected) in cases {
            var h = Self.header()
            mutate(&h)
            let parsed = try GPTHeader.parse(Self.sector(h).span)
            #expect(throws: expected, "\(name)") { try parsed.validate(role: .primary, readAt: 1, geometry: Self.geometry) }
        }
    }

    @Test func badSignatureAndRevision() {
        var bytes = Self.sector(Self.header())
        bytes[0] = 0x46
        #expect(throws: TableError.badSignature) { _ = try GPTHeader.parse(bytes.span) }
        bytes = Self.sector(Self.header())
        bytes[10] = 2
        #expect(throws: TableError.badRevision) { _ = try GPTHeader.parse(bytes.span) }
        #expect(throws: TableError.tooShort) { _ = try GPTHeader.parse([UInt8](repeating: 0, count: 50).span) }
    }
}

/// Helpers to build a SlotTable straight from states, for the policy tests.
func table(_ states: [SlotState]) -> SlotTable {
    var t = SlotTable()
    for (i, s) in states.enumerated() {
        try! t.append(Slot(letter: UInt8(0x61 + i), entryIndex: i, attributes: s.encoded(into: 0), firstLBA: 0, lastLBA: 0))
    }
    return t
}

func states(_ t: SlotTable) -> [SlotState] { (0..<t.count).map { t[$0].state } }

func S(_ p: UInt8, _ t: UInt8, _ s: Bool) -> SlotState { SlotState(priority: p, tries: t, successful: s) }

@Suite struct PolicyTests {
    @Test func bootableDefinition() {
        #expect(S(1, 1, false).isBootable)
        #expect(S(1, 0, true).isBootable)
        #expect(!S(0, 5, true).isBootable)
        #expect(!S(3, 0, false).isBootable)
    }

    @Test func choosesHighestPriorityTiesToLowerIndex() {
        #expect(Policy.choose(table([S(1, 0, true), S(2, 3, false)])) == 1)
        #expect(Policy.choose(table([S(2, 0, true), S(2, 3, false)])) == 0)
        #expect(Policy.choose(table([S(9, 0, false), S(2, 3, false)])) == 1)
        #expect(Policy.choose(table([S(0, 3, true), S(0, 3, false)])) == nil)
        #expect(Policy.choose(table([S(5, 1, false), S(2, 3, false)]), excluding: 1) == 1)
    }

    @Test func consumeTry() {
        var t = table([S(15, 2, false), S(14, 0, true)])
        #expect(Policy.consumeTry(&t, 0))
        #expect(t[0].state == S(15, 1, false))
        #expect(!Policy.consumeTry(&t, 1))
        #expect(t[1].state == S(14, 0, true))
    }

    @Test func markSuccessfulAndFailed() throws {
        var t = table([S(15, 3, false), S(0, 0, false), S(9, 0, false)])
        try Policy.markSuccessful(&t, 0)
        #expect(t[0].state == S(15, 0, true))
        #expect(throws: PolicyError.slotNotBootable) { try Policy.markSuccessful(&t, 1) }
        // Priority kept and no tries left: the boot running now spent the last try.
        try Policy.markSuccessful(&t, 2)
        #expect(t[2].state == S(9, 0, true))
        Policy.markUnbootable(&t, 0)
        #expect(t[0].state == S(0, 0, false))
    }

    @Test func setActiveKeepsOthersInOrder() throws {
        var t = table([S(15, 0, true), S(1, 0, true), S(14, 0, true)])
        try Policy.setActive(&t, 1, tries: 6)
        #expect(states(t) == [S(14, 0, true), S(15, 6, false), S(13, 0, true)])
        var u = table([S(10, 0, true), S(0, 0, false)])
        try Policy.setActive(&u, 1, tries: 3)
        #expect(states(u) == [S(10, 0, true), S(15, 3, false)])
        #expect(throws: PolicyError.badTries) { try Policy.setActive(&u, 1, tries: 0) }
        #expect(throws: PolicyError.badTries) { try Policy.setActive(&u, 1, tries: 16) }
    }

    /// The others keep their order and their ties, however many levels they use.
    @Test func setActiveReranksWithoutReordering() throws {
        var t = table([S(1, 0, true), S(2, 0, true), S(15, 0, true), S(0, 0, false)])
        try Policy.setActive(&t, 3, tries: 6)
        #expect(states(t) == [S(12, 0, true), S(13, 0, true), S(14, 0, true), S(15, 6, false)])
        var ties = table([S(15, 0, true), S(15, 2, false), S(3, 0, true), S(0, 0, false)])
        try Policy.setActive(&ties, 3, tries: 2)
        #expect(states(ties) == [S(14, 0, true), S(14, 2, false), S(13, 0, true), S(15, 2, false)])
        // 16 levels among 17 others cannot all stay apart: the lowest share priority 1,
        // and no slot overtakes one that was above it.
        var many = SlotTable()
        for i in 0..<17 {
            try many.append(Slot(letter: UInt8(0x61 + i), entryIndex: i,
                                 attributes: S(UInt8(max(1, 15 - i)), 0, true).encoded(into: 0), firstLBA: 0, lastLBA: 0))
        }
        try many.append(Slot(letter: 0x72, entryIndex: 17, attributes: 0, firstLBA: 0, lastLBA: 0))
        let before = states(many)
        try Policy.setActive(&many, 17, tries: 1)
        let after = states(many)
        for i in 0..<17 {
            for j in 0..<17 where before[i].priority > before[j].priority {
                #expect(after[i].priority >= after[j].priority)
            }
            #expect(after[i].priority >= 1 && after[i].priority <= 14)
        }
    }

    @Test func normalize() {
        var t = table([S(15, 4, true), S(9, 0, false), S(0, 3, false), S(2, 2, false)])
        let report = Policy.normalize(&t)
        #expect(states(t) == [S(15, 0, true), S(0, 0, false), S(0, 3, false), S(2, 2, false)])
        #expect(report.clearedTries == 0b0001 && report.exhausted == 0b0010)
        var again = t
        #expect(Policy.normalize(&again).isEmpty)
    }

    @Test func attributesOutsideSlotBitsUntouchedByTransitions() throws {
        var t = SlotTable()
        let other: UInt64 = 0xF000_0000_0000_0005 // bits 0, 2, 60-63
        try t.append(Slot(letter: 0x61, entryIndex: 0, attributes: other | S(15, 2, false).encoded(into: 0), firstLBA: 0, lastLBA: 0))
        _ = Policy.consumeTry(&t, 0)
        try Policy.markSuccessful(&t, 0)
        Policy.markUnbootable(&t, 0)
        try Policy.setActive(&t, 0, tries: 7)
        #expect(t[0].attributes & ~SlotState.mask == other)
    }
}
