import SlotCore
import CSystem
import SlotStorage

/// The trusted public keys: every `*.pem` file in one directory (default
/// `/etc/slotctl/keys`). The directory and each key must pass `TrustedFiles`' rule (no
/// symbolic link, owned by root or the running user, not writable by group or others):
/// a directory that fails it yields no key at all, a key file that fails it is skipped.
/// A file that is not a usable public key is skipped too. Every skip is reported in
/// `problems`: it can never make a slot verify, and it does not stop the others from
/// being used.
public struct KeyDirectory {
    public let path: String
    public private(set) var keys: [PublicKey] = []
    public private(set) var problems: [String] = []

    /// Loads the directory. A missing or refused directory is an empty key set (every
    /// signed slot then fails as signed by an untrusted key), with the reason in `problems`.
    public init(path: String) {
        self.path = path
        let opened: FileDescriptor?
        do { opened = try TrustedFiles.open(path, .directory) } catch {
            problems.append(error.message)
            return
        }
        // Listed and read through the checked descriptor, never the path again, so the
        // directory checked is the directory read (fdopendir owns a duplicate of it).
        guard let checked = opened, let listing = try? checked.duplicate() else {
            problems.append("\(path): cannot open key directory: \(opened == nil ? Errno(ENOENT) : Errno.current)")
            return
        }
        guard let directory = fdopendir(listing) else {
            problems.append("\(path): cannot open key directory: \(Errno.current)")
            close(listing)
            return
        }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasSuffix(".pem") && !name.hasPrefix(".") { names.append(name) }
        }
        for name in names.sorted() {
            let file = path + "/" + name
            let read: [UInt8]?
            do { read = try TrustedFiles.read(name, in: checked, shownAs: file) } catch {
                problems.append(error.message)
                continue
            }
            guard let pem = read else { continue }
            do {
                let key = try PublicKey(pem: pem, path: file)
                if key.kind.algorithm == nil {
                    problems.append("\(file): \(key.kind) keys are not supported")
                } else if keys.contains(where: { $0.keyID == key.keyID }) {
                    problems.append("\(file): same key as another file, ignored")
                } else {
                    keys.append(key)
                }
            } catch {
                problems.append("\(error.message) (key directory files must be public keys)")
            }
        }
    }

    public func key(id: [UInt8]) -> PublicKey? { keys.first { $0.keyID == id } }

    /// The same, for an id as a descriptor holds it (no array made on the boot path).
    public func key(id: InlineArray<32, UInt8>) -> PublicKey? {
        keys.first { key in key.keyID.count == 32 && (0..<32).allSatisfy { key.keyID[$0] == id[$0] } }
    }

    /// No key is trusted: each moves to `problems` with `reason` (a pin that cannot be read).
    public mutating func refuseAll(_ reason: String) {
        for key in keys { problems.append("\(key.path): refused: \(reason)") }
        if keys.isEmpty { problems.append(reason) }
        keys = []
    }

    /// Keys whose id is not in `pin` stop being trusted (spec/keys.md): each is moved to
    /// `problems`, so a key file added or swapped without the TPM owner is refused by name
    /// while the pinned keys go on working. `source` names where the pin lives.
    public mutating func keepPinned(_ pin: KeyPin, source: String) {
        var kept: [PublicKey] = []
        for key in keys {
            if pin.pins(key.keyID) {
                kept.append(key)
            } else {
                problems.append("\(key.path): key \(key.keyID.hexText) is not pinned in \(source); refused "
                    + "(slotctl keys pin --add names a new key to the TPM)")
            }
        }
        keys = kept
    }
}

extension KeyPin {
    /// Whether the key id (32 bytes, as `PublicKey.keyID`) is pinned.
    public func pins(_ id: [UInt8]) -> Bool {
        let bytes = id
        return contains(bytes.span)
    }
}
