import SlotCore

/// The pinned key set (spec/keys.md) in the counters' TPM: one ordinary NV index that only
/// the owner may write (TPMA_NV_OWNERWRITE) and anyone may read. Checked with
/// NV_ReadPublic before it is trusted, as the counters are.
extension TPMCounters {
    public static let keyPinIndex: UInt32 = 0x0150_5D00
    public static let keyPinAttributes = TPM2.NVAttribute.typeOrdinary | TPM2.NVAttribute.ownerWrite
        | TPM2.NVAttribute.authRead | TPM2.NVAttribute.ownerRead | TPM2.NVAttribute.noDA

    /// slotctl's pin index: ordinary, exactly slotctl's attributes (WRITTEN aside),
    /// `KeyPin.size` bytes, SHA-256 name, no policy.
    static func isKeyPin(_ pub: TPM2.NVPublic) -> Bool {
        pub.index == keyPinIndex && pub.type == TPM2.NVAttribute.typeOrdinary
            && pub.attributes & ~TPM2.NVAttribute.written == keyPinAttributes
            && Int(pub.dataSize) == KeyPin.size && pub.nameAlg == TPM2.algSHA256 && pub.authPolicySize == 0
    }

    /// The pinned key set, or nil when no pin is in force: no index, or one defined by a
    /// `keys pin` cut short before its first write (nothing was ever pinned in it). An
    /// index there that is not slotctl's, or bytes that are not a pin, are refused (28):
    /// never read as "unpinned".
    public func readKeyPin() throws(CounterError) -> KeyPin? {
        let index = TPMCounters.keyPinIndex
        guard let pub = try readPublic(index) else { return nil }
        guard TPMCounters.isKeyPin(pub) else {
            throw CounterError("TPM \(transport.name): NV index 0x\(String(index, radix: 16)) is not slotctl's key pin "
                + "(attributes 0x\(String(pub.attributes, radix: 16)), size \(pub.dataSize)); refusing to trust any key")
        }
        guard pub.attributes & TPM2.NVAttribute.written != 0 else { return nil }
        let bytes = try readBytes(index, size: pub.dataSize)
        guard let pin = KeyPin.parse(bytes.span) else {
            throw CounterError("TPM \(transport.name): the key pin in NV index 0x\(String(index, radix: 16)) is malformed; "
                + "refusing to trust any key")
        }
        return pin
    }

    /// Writes `pin` with the owner's authorization, defining the index first when it is
    /// missing. The pin changes in one NV_Write (the TPM applies a write whole or not at
    /// all), then is read back. Used by `keys pin` only.
    public func writeKeyPin(_ pin: KeyPin) throws(CounterError) {
        let index = TPMCounters.keyPinIndex
        if let pub = try readPublic(index) {
            guard TPMCounters.isKeyPin(pub) else {
                throw CounterError("TPM \(transport.name): NV index 0x\(String(index, radix: 16)) is not slotctl's key pin "
                    + "(attributes 0x\(String(pub.attributes, radix: 16))); refusing to write over it")
            }
        } else {
            let what = "NV_DefineSpace 0x\(String(index, radix: 16))"
            try expectOK(what, try run(what, .define(index, attributes: TPMCounters.keyPinAttributes, size: UInt16(KeyPin.size))))
        }
        var data = [UInt8](repeating: 0, count: KeyPin.size)
        var span = data.mutableSpan
        pin.serialize(into: &span)
        let what = "NV_Write 0x\(String(index, radix: 16))"
        try expectOK(what, try run(what, .writeAsOwner(index, data)))
        guard try readKeyPin() == pin else {
            throw CounterError("TPM \(transport.name): the key pin reads back different from what was written")
        }
    }
}
