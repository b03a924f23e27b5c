import CSystem
import SlotCore
import SlotCounters
import SlotCrypto
import SlotFlows
import SlotStorage

/// `keys` and `keys pin` (spec/keys.md): the trusted key set, pinned in the counters' TPM
/// with the owner's authorization, and rotated one key at a time so that a cut at any
/// point leaves a key set the device accepts.
extension Commands {
    func keysCommand() throws(CLIError) -> Outcome {
        let counters = try counters()
        guard let action = line.positional.first else {
            if let flag = ["--add", "--remove", "--owner-auth-file", "--owner-auth-fd"].first(where: { line.flags[$0] != nil }) {
                throw CLIError(.usage, "keys: \(flag) goes with 'pin'")
            }
            return try keysShow(counters)
        }
        guard action == "pin" else { throw CLIError(.usage, "keys: unknown action '\(action)' (pin)") }
        guard let tpm = counters as? TPMCounters else {
            throw CLIError(.usage, "keys pin: the pin lives in the counters' TPM; set counters = tpm:/dev/tpmrm0 (or --counters tpm:...)")
        }
        if let secret = try ownerAuthorization(for: "keys pin") {
            do { try tpm.useOwnerAuthorization(secret) } catch { throw CLIError(error.code, "keys pin: \(error.message)") }
        }
        let add = line.flags["--add"], remove = line.flags["--remove"]
        guard add == nil || remove == nil else { throw CLIError(.usage, "keys pin: --add and --remove are two rotation steps; give one") }
        let text: String
        if let add { text = try pinAdd(add, tpm) } else if let remove { text = try pinRemove(remove, tpm) } else { text = try pinDirectory(tpm) }
        var (json, shown) = try keysSummary(counters)
        json.set("done", text)
        shown = text + "\n" + shown
        return (.ok, shown, json)
    }

    /// The current pin (nil: none in force), failing with the TPM's code.
    func currentPin(_ tpm: TPMCounters) throws(CLIError) -> KeyPin? {
        do { return try tpm.readKeyPin() } catch { throw CLIError(error.code, "keys pin: \(error.message)") }
    }

    func writePin(_ pin: KeyPin, _ tpm: TPMCounters) throws(CLIError) {
        do { try tpm.writeKeyPin(pin) } catch { throw CLIError(error.code, "keys pin: \(error.message)") }
    }

    /// The key directory as it is, every file usable: what `keys pin` pins.
    func usableDirectory(_ what: String) throws(CLIError) -> KeyDirectory {
        let keys = KeyDirectory(path: settings.keys)
        guard keys.problems.isEmpty else {
            throw CLIError(.usage, "\(what): \(settings.keys) holds files that are not usable keys; fix or remove them first: "
                + keys.problems.joined(separator: "; "))
        }
        return keys
    }

    /// A pin of exactly `keys`' ids; more than a pin holds is refused, never cut short.
    func directoryPin(_ keys: KeyDirectory, _ what: String) throws(CLIError) -> KeyPin {
        guard keys.keys.count <= KeyPin.maxKeys else {
            throw CLIError(.usage, "\(what): \(keys.keys.count) keys; a pin holds at most \(KeyPin.maxKeys)")
        }
        var pin = KeyPin()
        for key in keys.keys { let id = key.keyID; _ = pin.insert(id.span) }
        return pin
    }

    /// `keys pin`: pins exactly the directory's keys. Never narrower than what boot uses
    /// now (the directory less unpinned keys), so no slot that boots stops booting.
    func pinDirectory(_ tpm: TPMCounters) throws(CLIError) -> String {
        let keys = try usableDirectory("keys pin")
        guard !keys.keys.isEmpty else { throw CLIError(.usage, "keys pin: \(settings.keys) holds no key; there is nothing to pin") }
        let pin = try directoryPin(keys, "keys pin")
        if try currentPin(tpm) == pin { return "keys pin: the TPM pins these \(pin.count) key(s) already; nothing written" }
        try writePin(pin, tpm)
        return "keys pin: pinned \(pin.count) key(s) of \(settings.keys) in the TPM \(tpm.spec) (NV index 0x\(String(TPMCounters.keyPinIndex, radix: 16)))"
    }

    /// `keys pin --add PEM`: the new key joins the pin first, then the directory, so a cut
    /// between them leaves a directory whose every key is pinned. Idempotent.
    func pinAdd(_ path: String, _ tpm: TPMCounters) throws(CLIError) -> String {
        let (key, pem) = try readPublicKey(path, "keys pin --add")
        guard key.kind.algorithm != nil else { throw CLIError(.keyAlgorithmMismatch, "keys pin --add: \(path): \(key.kind) keys are not supported") }
        // The key directory reads *.pem: new.pem keeps its name, new.pub becomes new.pem.
        var name = path.split(separator: "/").last.map(String.init) ?? path
        if !name.hasSuffix(".pem") { name = String(name.split(separator: ".", omittingEmptySubsequences: false).first ?? "") + ".pem" }
        guard !name.hasPrefix("."), name != ".pem" else {
            throw CLIError(.usage, "keys pin --add: \(path): name the key file NAME.pem (the key directory reads *.pem)")
        }
        let target = settings.keys + "/" + name
        let existing = KeyDirectory(path: settings.keys)
        if let other = existing.keys.first(where: { $0.path == target }), other.keyID != key.keyID {
            throw CLIError(.usage, "keys pin --add: \(target) exists and holds another key; choose another file name")
        }
        var pin: KeyPin
        if let current = try currentPin(tpm) {
            pin = current
        } else {
            // First pin: the directory's keys as they are, plus the new one.
            pin = try directoryPin(try usableDirectory("keys pin --add"), "keys pin --add")
        }
        let id = key.keyID
        var wrote = false
        if !pin.contains(id.span) {
            guard pin.insert(id.span) else { throw CLIError(.usage, "keys pin --add: the pin is full (\(KeyPin.maxKeys) keys); remove one first") }
            try writePin(pin, tpm)
            wrote = true
        }
        if existing.key(id: id) == nil {
            // The very bytes that were parsed and pinned, never the file read again.
            do { try SmallFiles.replace(target, with: pem, mode: 0o644) } catch {
                throw CLIError(.ioError, "keys pin --add: the key is pinned, but copying it to \(target) failed: \(error.description); run the command again")
            }
        }
        return "keys pin --add: key \(id.hexText) " + (wrote ? "pinned in the TPM \(tpm.spec)" : "was pinned already") + " and in \(target)"
    }

    /// `keys pin --remove PEM|KEYID`: refused while a slot that may boot (or the booted
    /// one) carries an image signed by the key, or when no key would be left. The file
    /// leaves the directory first, then the pin, so a cut between them leaves a
    /// directory whose every key is pinned. Idempotent.
    func pinRemove(_ which: String, _ tpm: TPMCounters) throws(CLIError) -> String {
        let directory = KeyDirectory(path: settings.keys)
        var id: [UInt8]
        if which.utf8.count == 64, let hex = [UInt8](hexText: which) {
            id = hex
        } else {
            id = try readPublicKey(which, "keys pin --remove").0.keyID
        }
        guard var pin = try currentPin(tpm) else {
            throw CLIError(.usage, "keys pin --remove: no key is pinned; remove the file from \(settings.keys) instead")
        }
        let inDirectory = directory.key(id: id)
        // Already gone from both (a step run again after it finished): nothing to do.
        guard pin.contains(id.span) || inDirectory != nil else {
            return "keys pin --remove: key \(id.hexText) is neither pinned nor in \(settings.keys); nothing to remove"
        }
        var remaining = pin
        _ = remaining.remove(id.span)
        guard remaining.count > 0, directory.keys.contains(where: { $0.keyID != id && remaining.pins($0.keyID) }) else {
            throw CLIError(.usage, "keys pin --remove: no pinned key would be left in \(settings.keys); the device would accept no image")
        }
        try refuseIfASlotNeeds(id)
        if let file = inDirectory?.path {
            guard unlink(file) == 0 else { throw CLIError(.ioError, "keys pin --remove: cannot remove \(file): \(Errno.current)") }
            try? FileDescriptor.open(settings.keys, O_RDONLY | O_DIRECTORY | O_CLOEXEC).sync()
        }
        if pin.contains(id.span) {
            _ = pin.remove(id.span)
            try writePin(pin, tpm)
        }
        return "keys pin --remove: key \(id.hexText) removed from \(settings.keys) and from the pin in the TPM \(tpm.spec)"
    }

    /// A public key named on the command line: a regular file, bounded, parsed once.
    func readPublicKey(_ path: String, _ what: String) throws(CLIError) -> (PublicKey, [UInt8]) {
        let read: [UInt8]?
        do { read = try SmallFiles.read(path, limit: 64 << 10) } catch { throw CLIError(.usage, "\(what): \(error.description)") }
        guard let pem = read else { throw CLIError(.usage, "\(what): \(path): no such file (give a public key file, or for --remove its 64-digit id)") }
        do { return (try PublicKey(pem: pem, path: path), pem) } catch {
            throw CLIError(.usage, "\(what): \(error.message) (a public key: openssl pkey -pubout)")
        }
    }

    /// A key still signing an image that may boot (a bootable slot, or the booted one)
    /// cannot go: that slot would be refused at its next boot.
    func refuseIfASlotNeeds(_ id: [UInt8]) throws(CLIError) {
        guard settings.disk != nil else {
            throw CLIError(.usage, "keys pin --remove: needs the disk (--disk or disk =) to check that no slot still needs the key")
        }
        let store = try openDisk(writable: false)
        let table = try flow { () throws(FlowError) in try TableStore.load(store) }
        let booted = try? bootedSlot()
        for i in 0..<table.slots.count {
            let slot = table.slots[i]
            guard slot.state.priority > 0 || booted == slot.letter else { continue }
            let report = ImageVerification.peek(store, offset: table.byteOffset(slot), size: table.byteSize(slot))
            if let descriptor = report.descriptor, (0..<32).allSatisfy({ descriptor.keyID[$0] == id[$0] }) {
                throw CLIError(.usage, "keys pin --remove: slot \(BootControl.letterText(slot.letter)) holds an image signed by key "
                    + "\(id.hexText) and may boot; install an image signed by a remaining key first (nothing was changed)")
            }
        }
    }

    /// `keys`: every key file, its id, whether the pin names it; the pin itself.
    func keysShow(_ counters: RollbackCounters?) throws(CLIError) -> Outcome {
        let (json, text) = try keysSummary(counters)
        return (.ok, text, json)
    }

    func keysSummary(_ counters: RollbackCounters?) throws(CLIError) -> (JSONObject, String) {
        let directory = KeyDirectory(path: settings.keys)
        var pin: KeyPin? = nil
        var pinJSON = JSONObject()
        var text = "keys in \(settings.keys):\n"
        if let tpm = counters as? TPMCounters {
            pin = try currentPin(tpm)
            pinJSON.set("tpm", tpm.spec)
            pinJSON.set("index", "0x" + String(TPMCounters.keyPinIndex, radix: 16))
            var ids: [String] = []
            if let pin { for k in 0..<pin.count { ids.append((0..<32).map { pin.idByte(k, $0) }.hexText) } }
            pinJSON.set("key_ids", strings: ids)
        }
        var items: [JSONObject] = []
        for key in directory.keys {
            var item = JSONObject()
            item.set("file", key.path)
            item.set("key_id", key.keyID.hexText)
            item.set("kind", key.kind.description)
            if let pin { item.set("pinned", pin.pins(key.keyID)) } else { item.setNull("pinned") }
            items.append(item)
            let mark = pin.map { $0.pins(key.keyID) ? "pinned" : "NOT PINNED: refused" } ?? "no pin"
            text += "  \(key.path): \(key.kind) \(key.keyID.hexText) (\(mark))\n"
        }
        for problem in directory.problems { text += "  problem: \(problem)\n" }
        var json = JSONObject()
        json.set("directory", settings.keys)
        json.set("keys", items)
        json.set("problems", strings: directory.problems)
        if counters is TPMCounters {
            json.set("pin", pinJSON)
            text += pin.map { "pin: \($0.count) key(s) in TPM \(settings.counters ?? "") NV index 0x\(String(TPMCounters.keyPinIndex, radix: 16))\n" }
                ?? "pin: none (keys pin pins this directory with the TPM owner's password)\n"
        } else {
            json.setNull("pin")
            text += "pin: none (the pin lives in the counters' TPM: counters = tpm:...)\n"
        }
        json.set("pinned", pin != nil)
        return (json, text)
    }
}
