internal import CLibBlkid
import CSystem

/// What a disk already holds, found the way `wipefs` finds it: libblkid's probe for every
/// partition table (GPT, DOS/MBR, Sun, SGI, BSD, Atari, …) and every file-system, RAID,
/// swap or LUKS signature, each with the offset of its magic. `format` refuses a disk on
/// which this finds anything, unless `--force` (spec/table.md).
public enum DiskSignatures {
    public struct Found: Equatable, Sendable {
        /// `dos`, `gpt`, `sun`, `ext4`, `crypto_LUKS`, `swap`, …
        public var type: String
        /// `partition table`, or blkid's usage (`filesystem`, `crypto`, `raid`, `other`).
        public var kind: String
        public var offset: UInt64?

        public var description: String {
            "\(kind == "partition table" ? "a \(type) partition table" : "\(type) (\(kind))")"
                + (offset.map { " at offset 0x\(String($0, radix: 16))" } ?? "")
        }
    }

    /// Every signature on `path` (an image file or block device), in probe order.
    /// Probing reads only; an error opening or probing is thrown, never taken as "empty".
    public static func probe(path: String) throws(StorageError) -> [Found] {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) } catch {
            throw StorageError(.open, path: path, detail: "cannot open to probe: \(error)")
        }
        // libblkid reads through `fd.raw`: the descriptor must outlive the probe.
        defer { withExtendedLifetime(fd) {} }
        guard let probe = blkid_new_probe() else { throw StorageError(.read, path: path, detail: "libblkid: cannot create a probe") }
        defer { blkid_free_probe(probe) }
        guard blkid_probe_set_device(probe, fd.raw, 0, 0) == 0 else {
            throw StorageError(.read, path: path, detail: "libblkid cannot probe it")
        }
        blkid_probe_enable_superblocks(probe, 1)
        blkid_probe_set_superblocks_flags(probe, Int32(BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE | BLKID_SUBLKS_MAGIC | BLKID_SUBLKS_BADCSUM))
        blkid_probe_enable_partitions(probe, 1)
        blkid_probe_set_partitions_flags(probe, Int32(BLKID_PARTS_MAGIC | BLKID_PARTS_FORCE_GPT))
        var found: [Found] = []
        // blkid_do_probe returns one signature per call, 1 when there are no more (wipefs's loop).
        for _ in 0..<64 {
            let result = blkid_do_probe(probe)
            if result == 1 { break }
            guard result == 0 else { throw StorageError(.read, path: path, detail: "libblkid: probing failed") }
            if let table = value(probe, "PTTYPE") {
                found.append(Found(type: table, kind: "partition table", offset: value(probe, "PTMAGIC_OFFSET").flatMap { UInt64($0) }))
            } else if let type = value(probe, "TYPE") {
                found.append(Found(type: type, kind: value(probe, "USAGE") ?? "other",
                                   offset: value(probe, "SBMAGIC_OFFSET").flatMap { UInt64($0) }))
            }
        }
        return found
    }

    private static func value(_ probe: blkid_probe, _ name: String) -> String? {
        var data: UnsafePointer<CChar>? = nil
        var length = 0
        guard blkid_probe_lookup_value(probe, name, &data, &length) == 0, let data else { return nil }
        return String(cString: data)
    }
}
