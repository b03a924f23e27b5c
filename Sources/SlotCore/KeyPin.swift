/// The trusted key set pinned in a TPM NV index (spec/keys.md): the key ids (SHA-256 of
/// each public key) a device may trust, written only with the TPM owner's authorization.
/// A key directory's key is used only if its id is pinned.
///
/// Layout, little-endian like every slotctl format, `size` bytes:
///
///     0   8   magic "SLOTPIN1"
///     8   4   count, 1...maxKeys
///     12  4   reserved, zero
///     16  32 × maxKeys   key ids, strictly ascending; unused entries zero
public struct KeyPin: Equatable, Sendable {
    public static let maxKeys = 8
    public static let size = 16 + 32 * maxKeys
    static let magic: StaticString = "SLOTPIN1"

    public private(set) var count = 0
    public private(set) var ids = InlineArray<256, UInt8>(repeating: 0)

    public init() {}

    public static func == (a: KeyPin, b: KeyPin) -> Bool {
        guard a.count == b.count else { return false }
        for i in 0..<(32 * a.count) where a.ids[i] != b.ids[i] { return false }
        return true
    }

    /// The `index`-th pinned key id's byte `byte`.
    public func idByte(_ index: Int, _ byte: Int) -> UInt8 { ids[index * 32 + byte] }

    /// Whether `id` (32 bytes) is pinned.
    public func contains(_ id: Span<UInt8>) -> Bool { index(of: id) != nil }

    /// Where `id` stands among the pinned ids, nil when it is not pinned.
    func index(of id: Span<UInt8>) -> Int? {
        guard id.count == 32 else { return nil }
        for k in 0..<count where KeyPin.compare(id, ids, k) == 0 { return k }
        return nil
    }

    /// Adds `id` in order; false when it is there already or the pin is full.
    public mutating func insert(_ id: Span<UInt8>) -> Bool {
        guard id.count == 32, !contains(id), count < KeyPin.maxKeys else { return false }
        var at = count
        for k in 0..<count where KeyPin.compare(id, ids, k) < 0 { at = k; break }
        var k = count
        while k > at {
            for i in 0..<32 { ids[k * 32 + i] = ids[(k - 1) * 32 + i] }
            k -= 1
        }
        for i in 0..<32 { ids[at * 32 + i] = id[i] }
        count += 1
        return true
    }

    /// Removes `id`; false when it is not pinned.
    public mutating func remove(_ id: Span<UInt8>) -> Bool {
        guard let k = index(of: id) else { return false }
        for j in k..<(count - 1) { for i in 0..<32 { ids[j * 32 + i] = ids[(j + 1) * 32 + i] } }
        for i in 0..<32 { ids[(count - 1) * 32 + i] = 0 }
        count -= 1
        return true
    }

    /// -1, 0, 1 as `id` sorts before, equal to or after pinned key `k`.
    static func compare(_ id: Span<UInt8>, _ ids: InlineArray<256, UInt8>, _ k: Int) -> Int {
        for i in 0..<32 where id[i] != ids[k * 32 + i] { return id[i] < ids[k * 32 + i] ? -1 : 1 }
        return 0
    }

    /// Parses the index's bytes: the magic, a count of 1...maxKeys, ids strictly
    /// ascending, every reserved and unused byte zero. Anything else is not a pin slotctl
    /// wrote: refused, never read as fewer or other keys.
    public static func parse(_ bytes: Span<UInt8>) -> KeyPin? {
        guard bytes.count == size else { return nil }
        for i in 0..<8 where bytes[i] != magic.utf8Start[i] { return nil }
        let count = Int(bytes.loadLE32(at: 8))
        guard count >= 1, count <= maxKeys, bytes.loadLE32(at: 12) == 0 else { return nil }
        var pin = KeyPin()
        for i in 0..<(32 * maxKeys) { pin.ids[i] = bytes[16 + i] }
        pin.count = count
        for k in 1..<count where compare(bytes.extracting((16 + k * 32)..<(16 + k * 32 + 32)), pin.ids, k - 1) <= 0 {
            return nil
        }
        for i in (32 * count)..<(32 * maxKeys) where pin.ids[i] != 0 { return nil }
        return pin
    }

    /// Writes the index's `size` bytes.
    public func serialize(into bytes: inout MutableSpan<UInt8>) {
        precondition(bytes.count >= KeyPin.size)
        for i in 0..<8 { bytes[i] = KeyPin.magic.utf8Start[i] }
        bytes.storeLE32(UInt32(count), at: 8)
        bytes.storeLE32(0, at: 12)
        for i in 0..<(32 * KeyPin.maxKeys) { bytes[16 + i] = ids[i] }
    }
}
