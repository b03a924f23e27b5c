// libFuzzer target: a GPT as slotctl reads it, from hostile bytes. Input layout: the
// first 8 bytes give the disk's sector count (as a device would report it, bounded),
// the rest is the start of the disk from LBA 0 with 512-byte sectors. Each copy is
// parsed, validated and, when valid, turned into a slot table and a boot decision.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGPT(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 8 + 1024 else { return 0 }
    let bytes = UnsafeBufferPointer(start: data, count: size)
    var count: UInt64 = 0
    for i in 0..<8 { count |= UInt64(bytes[i]) << UInt64(8 * i) }
    let disk = UnsafeBufferPointer(rebasing: bytes[8...])
    let sectorCount = count % (1 << 40)
    let geometry = DiskGeometry(sectorSize: 512, sectorCount: max(sectorCount, UInt64(disk.count / 512)))
    for lba in [UInt64(1), UInt64(disk.count / 512) - 1] where lba >= 1 {
        let start = Int(lba) * 512
        guard start + 512 <= disk.count else { continue }
        let sector = UnsafeBufferPointer(rebasing: disk[start..<start + 512])
        guard let header = try? GPTHeader.parse(sector.span) else { continue }
        let role: GPTHeader.Role = lba == 1 ? .primary : .backup
        guard (try? header.validate(role: role, readAt: lba, geometry: geometry)) != nil else { continue }
        let from = Int(header.entriesLBA) * 512, count = Int(header.entriesByteCount)
        guard from <= disk.count, count <= disk.count - from else { continue }
        let entries = UnsafeBufferPointer(rebasing: disk[from..<from + count])
        guard (try? PartitionEntries.validate(entries.span, header)) != nil,
              var table = try? SlotTable.build(entries: entries.span, header: header) else { continue }
        _ = Policy.normalize(&table)
        if let chosen = Policy.choose(table) { _ = Policy.consumeTry(&table, chosen) }
        _ = try? TableCopies.headersForSave(source: header, sourceRole: role, entriesCRC: 0, geometry: geometry)
    }
    return 0
}
