import Testing
import SlotCore

/// The pin's bytes (spec/keys.md): what slotctl writes, and every malformed form refused.
@Suite struct KeyPinFormatTests {
    func id(_ byte: UInt8) -> [UInt8] { [UInt8](repeating: byte, count: 32) }

    // Spans cannot enter #expect: each call is made first, its result checked.
    func insert(_ pin: inout KeyPin, _ id: [UInt8]) -> Bool { pin.insert(id.span) }
    func remove(_ pin: inout KeyPin, _ id: [UInt8]) -> Bool { pin.remove(id.span) }
    func contains(_ pin: KeyPin, _ id: [UInt8]) -> Bool { pin.contains(id.span) }
    func parse(_ bytes: [UInt8]) -> KeyPin? { KeyPin.parse(bytes.span) }

    func bytes(_ pin: KeyPin) -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: KeyPin.size)
        var span = out.mutableSpan
        pin.serialize(into: &span)
        return out
    }

    @Test func layoutAndRoundTrip() throws {
        var pin = KeyPin()
        let (b, a, c) = (id(0xBB), id(0xAA), id(0xCC))
        let inserted = [insert(&pin, b), insert(&pin, a), insert(&pin, c)]
        #expect(inserted == [true, true, true])
        let again = insert(&pin, a)
        #expect(!again, "a key is pinned once")
        let raw = bytes(pin)
        #expect(Array(raw[0..<8]) == Array("SLOTPIN1".utf8))
        #expect(Array(raw[8..<16]) == [3, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(raw[16..<48]) == a && Array(raw[48..<80]) == b && Array(raw[80..<112]) == c, "ascending")
        #expect(raw[112...].allSatisfy { $0 == 0 })
        #expect(parse(raw) == pin)
        #expect(contains(pin, b) && !contains(pin, id(0xDD)))
        let removed = [remove(&pin, b), remove(&pin, b)]
        #expect(removed == [true, false])
        #expect(parse(bytes(pin))?.count == 2)
    }

    @Test func fullPinRefusesMore() {
        var pin = KeyPin()
        for i in 0..<KeyPin.maxKeys {
            let added = insert(&pin, id(UInt8(i + 1)))
            #expect(added)
        }
        let ninth = insert(&pin, id(0x99))
        #expect(!ninth)
        #expect(parse(bytes(pin))?.count == KeyPin.maxKeys)
    }

    @Test func malformedPinsAreRefused() {
        var pin = KeyPin()
        _ = insert(&pin, id(0x10))
        _ = insert(&pin, id(0x20))
        let good = bytes(pin)
        var cases: [(String, [UInt8])] = []
        var bad = good; bad[0] = UInt8(ascii: "X"); cases.append(("magic", bad))
        bad = good; bad[8] = 0; cases.append(("count 0", bad))
        bad = good; bad[8] = 9; cases.append(("count 9", bad))
        bad = good; bad[12] = 1; cases.append(("reserved", bad))
        bad = good; bad[200] = 1; cases.append(("unused entry", bad))
        bad = good; for i in 0..<32 { bad[48 + i] = 0x10 }; cases.append(("duplicate", bad))
        bad = good; for i in 0..<32 { bad[16 + i] = 0x30 }; cases.append(("descending", bad))
        cases.append(("short", Array(good[0..<(KeyPin.size - 1)])))
        cases.append(("long", good + [0]))
        for (name, bytes) in cases { #expect(parse(bytes) == nil, "\(name)") }
        #expect(parse(good) == pin)
    }
}
