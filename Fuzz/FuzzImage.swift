// libFuzzer target: the signed image's footer, descriptor and stream header from
// hostile bytes. The input is a partition's tail: the last 64 bytes are the footer;
// the descriptor is taken where the footer says, when it lies inside the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzImage(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
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
