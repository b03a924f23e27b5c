import CLibUUID
import SlotCore

extension GUID {
    /// Byte i of the RFC 4122 form is byte rfcOrder[i] of GPT's form (and back): the first
    /// three fields are stored little-endian.
    static let rfcOrder = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15]

    /// Canonical upper-case text, as sgdisk and cgpt print it. GPT stores the first three
    /// fields little-endian; libuuid wants RFC 4122 (big-endian) byte order.
    var text: String {
        var rfc: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &rfc) { raw in
            for (i, source) in GUID.rfcOrder.enumerated() { raw[i] = byte(source) }
        }
        var out = [CChar](repeating: 0, count: 37)
        withUnsafePointer(to: &rfc) { pointer in
            pointer.withMemoryRebound(to: UInt8.self, capacity: 16) { uuid_unparse_upper($0, &out) }
        }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A fresh random GUID from libuuid, in GPT byte order.
    static func random() -> GUID {
        var rfc: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutablePointer(to: &rfc) { pointer in
            pointer.withMemoryRebound(to: UInt8.self, capacity: 16) { uuid_generate_random($0) }
        }
        var disk = [UInt8](repeating: 0, count: 16)
        withUnsafeBytes(of: &rfc) { raw in
            for (i, source) in GUID.rfcOrder.enumerated() { disk[i] = raw[source] }
        }
        return GUID(loadingFrom: disk.span, at: 0)
    }
}
