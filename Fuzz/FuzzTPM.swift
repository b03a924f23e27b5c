// libFuzzer target: TPM 2.0 responses from a TPM that lies: every parser slotctl uses
// on what comes back from /dev/tpmrm0 or the TCP transport.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTPM(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let response = UnsafeBufferPointer(start: data, count: size).span
    _ = try? TPM2.checkResponse(response)
    _ = try? TPM2.parseNVPublic(response)
    _ = try? TPM2.parsePermanent(response)
    var out = InlineArray<64, UInt8>(repeating: 0)
    var span = out.mutableSpan
    _ = try? TPM2.parseNVRead(response, into: &span)
    return 0
}
