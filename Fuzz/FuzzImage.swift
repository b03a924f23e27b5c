// libFuzzer target: the signed image's footer, descriptor and stream header, and the
// state partition's history copy, from hostile bytes. The input is a partition's tail: the last 64 bytes are the footer;
// the descriptor is taken where the footer says, when it lies inside the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzImage(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    // The state partition's history copy: what parses must serialize to what parses again
    // the same (spec/state.md).
    // Parsed twice: as given, and with its CRC made right, so that mutations reach the
    // count, record and duplicate-letter checks behind the CRC.
    if size >= HistoryLayout.copySize {
        var fixed = Array(UnsafeBufferPointer(rebasing: bytes[0..<HistoryLayout.copySize]))
        let crc = SlotHistory.checksum(fixed.span)
        for i in 0..<4 { fixed[HistoryLayout.crc + i] = UInt8(truncatingIfNeeded: crc >> UInt32(8 * i)) }
        for input in [Array(UnsafeBufferPointer(rebasing: bytes[0..<HistoryLayout.copySize])), fixed] {
            guard let history = try? SlotHistory.parse(input.span) else { continue }
            var copy = [UInt8](repeating: 0, count: HistoryLayout.copySize)
            var span = copy.mutableSpan
            history.serialize(into: &span)
            guard let again = try? SlotHistory.parse(copy.span), again.count == history.count, again.sequence == history.sequence else {
                fatalError("a history copy that parses does not survive serialize and parse")
            }
        }
    }
    if size >= StreamHeader.size {
        _ = try? StreamHeader.parse(UnsafeBufferPointer(rebasing: bytes[0..<StreamHeader.size]).span)
    }
    _ = try? SlotDescriptor.parse(bytes.span, descriptorOffset: UInt64(size) * 4)
    guard size >= ImageFooter.size else { return 0 }
    let footerBytes = UnsafeBufferPointer(rebasing: bytes[(size - ImageFooter.size)...])
    guard let footer = try? ImageFooter.parse(footerBytes.span, partitionSize: UInt64(size)) else { return 0 }
    let start = Int(footer.descriptorOffset), end = start + Int(footer.descriptorSize)
    guard end <= size - ImageFooter.size else { return 0 }
    if let d = try? SlotDescriptor.parse(UnsafeBufferPointer(rebasing: bytes[start..<end]).span, descriptorOffset: footer.descriptorOffset),
       d.hasVerity {
        _ = VerityGeometry(dataBlocks: d.verity.dataBlocks, hashBlockSize: d.verity.hashBlockSize)?.treeBytes
    }
    return 0
}
