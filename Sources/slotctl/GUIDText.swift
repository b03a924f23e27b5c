import CLibUUID
import CSystem
import SlotCore

extension GUID {
    /// Byte i of the RFC 4122 form is byte rfcOrder[i] of GPT's form (and back): the first
    /// three fields are stored little-endian.
    static let rfcOrder = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15]

    /// Canonical upper-case text, as sgdisk and cgpt print it.
    var text: String { unparsed(uuid_unparse_upper) }

    /// Lower-case text, as the kernel shows a PARTUUID (/dev/disk/by-partuuid, root=PARTUUID=).
    var lowercaseText: String { unparsed(uuid_unparse_lower) }

    /// GPT stores the first three fields little-endian; libuuid wants RFC 4122 (big-endian)
    /// byte order.
    private func unparsed(_ unparse: (UnsafePointer<UInt8>, UnsafeMutablePointer<CChar>) -> Void) -> String {
        var rfc: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &rfc) { raw in
            for (i, source) in GUID.rfcOrder.enumerated() { raw[i] = byte(source) }
        }
        var out = [CChar](repeating: 0, count: 37)
        withUnsafePointer(to: &rfc) { pointer in
            pointer.withMemoryRebound(to: UInt8.self, capacity: 16) { unparse($0, &out) }
        }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A fresh random (version 4) GUID, in GPT byte order. The 122 random bits come from
    /// getrandom(2), as libuuid's uuid_generate_random takes them; calling it instead would
    /// link libuuid's time-based generator into the static binary as well (its clock file
    /// is read with fscanf, which brings glibc's scanf and locale machinery: 12 KB).
    /// getrandom blocks only until the kernel's pool is first initialized, and a GUID that
    /// must be unique is worth that wait.
    static func random() -> GUID {
        var rfc = [UInt8](repeating: 0, count: 16)
        var filled = 0
        while filled < 16 {
            let got = rfc.withUnsafeMutableBytes { getrandom($0.baseAddress! + filled, 16 - filled, 0) }
            if got > 0 { filled += got } else if slotctl_errno() != EINTR { fatalError("getrandom failed: errno \(slotctl_errno())") }
        }
        rfc[6] = (rfc[6] & 0x0F) | 0x40  // version 4
        rfc[8] = (rfc[8] & 0x3F) | 0x80  // RFC 4122 variant
        var disk = [UInt8](repeating: 0, count: 16)
        for (i, source) in GUID.rfcOrder.enumerated() { disk[i] = rfc[source] }
        return GUID(loadingFrom: disk.span, at: 0)
    }
}
