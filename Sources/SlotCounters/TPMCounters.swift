import SlotCore

/// Rollback counters in TPM 2.0 NV indices of counter type (spec/rollback.md).
///
/// Location L is the counter at `counterBase + L`. A fresh TPM counter starts at the
/// highest value the TPM has seen, not at 0, so provisioning records each counter's
/// starting value in a base record (an ordinary index, written once and write-locked
/// for good). A location's value is `counter - base`. Every index is checked with
/// NV_ReadPublic before it is trusted.
public final class TPMCounters: RollbackCounters {
    public static let counterBase: UInt32 = 0x0150_5C00
    public static let baseRecord: UInt32 = 0x0150_5CFF
    public static let counterAttributes = TPM2.NVAttribute.typeCounter | TPM2.NVAttribute.authWrite
        | TPM2.NVAttribute.authRead | TPM2.NVAttribute.ownerRead | TPM2.NVAttribute.noDA
    public static let baseAttributes = TPM2.NVAttribute.typeOrdinary | TPM2.NVAttribute.authWrite
        | TPM2.NVAttribute.authRead | TPM2.NVAttribute.ownerRead | TPM2.NVAttribute.noDA | TPM2.NVAttribute.writeDefine

    let transport: TPMTransport
    public let spec: String
    /// Only a TPM reached through the kernel is a hardware root of trust; over TCP it is a
    /// simulator (or something anyone on the path could impersonate).
    public var hardwareBacked: Bool { transport is TPMDeviceTransport }
    private var bases: [UInt64]?
    /// The owner hierarchy's password, for the NV_DefineSpace of provisioning only; empty
    /// until `useOwnerAuthorization` gives one (boot and mark-successful never need it).
    var ownerAuth: [UInt8] = []

    init(transport: TPMTransport, spec: String) {
        self.transport = transport
        self.spec = spec
    }

    // MARK: commands

    /// The commands this store sends.
    enum Request {
        case permanent
        case readPublic(UInt32)
        case read(UInt32, size: UInt16)
        case increment(UInt32)
        case define(UInt32, attributes: UInt32, size: UInt16)
        case write(UInt32, [UInt8])
        case writeLock(UInt32)
        case writeAsOwner(UInt32, [UInt8])
    }

    static func marshal(_ request: Request, ownerAuth: [UInt8]) throws(TPMError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 1024)
        var span = buffer.mutableSpan
        let length: Int
        switch request {
        case .permanent: length = try TPM2.Build.getPermanentProperties(&span)
        case .readPublic(let index): length = try TPM2.Build.nvReadPublic(&span, index)
        case .read(let index, let size): length = try TPM2.Build.nvRead(&span, index, size: size, offset: 0)
        case .increment(let index): length = try TPM2.Build.nvIncrement(&span, index)
        case .define(let index, let attributes, let size):
            length = try TPM2.Build.nvDefineSpace(&span, index, attributes: attributes, dataSize: size, ownerAuth: ownerAuth.span)
        case .write(let index, let data): length = try TPM2.Build.nvWrite(&span, index, data: data.span)
        case .writeLock(let index): length = try TPM2.Build.nvWriteLock(&span, index)
        case .writeAsOwner(let index, let data):
            length = try TPM2.Build.nvWriteAsOwner(&span, index, data: data.span, ownerAuth: ownerAuth.span)
        }
        return Array(buffer[0..<length])
    }

    func run(_ what: String, _ request: Request) throws(CounterError) -> [UInt8] {
        let command: [UInt8]
        do { command = try TPMCounters.marshal(request, ownerAuth: ownerAuth) } catch { throw CounterError(.internalError, "\(what): \(error.reason)") }
        return try transport.transact(command)
    }

    func fail(_ what: String, _ error: TPMError) -> CounterError { transport.failure(what, error) }

    func expectOK(_ what: String, _ response: [UInt8]) throws(CounterError) {
        do { _ = try TPM2.checkResponse(response.span) } catch { throw fail(what, error) }
    }

    /// The public area of `index`, or nil when the index is not defined.
    func readPublic(_ index: UInt32) throws(CounterError) -> TPM2.NVPublic? {
        let what = "NV_ReadPublic 0x\(String(index, radix: 16))"
        let response = try run(what, .readPublic(index))
        do { return try TPM2.parseNVPublic(response.span) } catch {
            // TPM_RC_HANDLE (0x08B) on handle 1: no such index.
            if case .responseCode(let code) = error, code & 0xFFF == 0x18B { return nil }
            throw fail(what, error)
        }
    }

    func readBytes(_ index: UInt32, size: UInt16) throws(CounterError) -> [UInt8] {
        let what = "NV_Read 0x\(String(index, radix: 16))"
        let response = try run(what, .read(index, size: size))
        var out = [UInt8](repeating: 0, count: Int(size))
        var span = out.mutableSpan
        let n: Int
        do { n = try TPM2.parseNVRead(response.span, into: &span) } catch { throw fail(what, error) }
        guard n == Int(size) else { throw CounterError("TPM \(transport.name): \(what): \(n) bytes, expected \(size)") }
        return out
    }

    func increment(_ index: UInt32) throws(CounterError) {
        let what = "NV_Increment 0x\(String(index, radix: 16))"
        try expectOK(what, try run(what, .increment(index)))
    }

    // MARK: checked access

    /// slotctl's counter: the index asked for, counter type, exactly slotctl's attributes
    /// (WRITTEN aside, required when `written`), 8 bytes, SHA-256 name, no policy.
    static func isSlotctlCounter(_ pub: TPM2.NVPublic, _ index: UInt32, written: Bool) -> Bool {
        pub.index == index && pub.type == TPM2.NVAttribute.typeCounter
            && pub.attributes & ~TPM2.NVAttribute.written == counterAttributes
            && (!written || pub.attributes & TPM2.NVAttribute.written != 0)
            && pub.dataSize == 8 && pub.nameAlg == TPM2.algSHA256 && pub.authPolicySize == 0
    }

    /// slotctl's base record: the index asked for, ordinary, exactly slotctl's attributes,
    /// 8 bytes a location, no policy; `locked`: written and write-locked (trusted), else
    /// neither (defined by a provisioning that was cut short).
    static func isBaseRecord(_ pub: TPM2.NVPublic, _ index: UInt32, locked: Bool) -> Bool {
        let lockBits = TPM2.NVAttribute.written | TPM2.NVAttribute.writeLocked
        return pub.index == index && pub.type == TPM2.NVAttribute.typeOrdinary
            && pub.attributes & ~lockBits == baseAttributes && pub.attributes & lockBits == (locked ? lockBits : 0)
            && pub.dataSize % 8 == 0 && pub.dataSize >= 8 && Int(pub.dataSize) / 8 <= RollbackLimits.maxLocations
            && pub.authPolicySize == 0
    }

    /// A counter index is trusted only if it is a counter with exactly slotctl's attributes.
    func checkCounter(_ location: UInt32) throws(CounterError) -> UInt32 {
        let index = TPMCounters.counterBase + location
        let found = try readPublic(index)
        guard let pub = found else {
            throw CounterError("TPM \(transport.name): location \(location) not provisioned (no NV index 0x\(String(index, radix: 16)))")
        }
        guard TPMCounters.isSlotctlCounter(pub, index, written: true) else {
            throw CounterError("TPM \(transport.name): NV index 0x\(String(index, radix: 16)) is not a slotctl counter "
                + "(attributes 0x\(String(pub.attributes, radix: 16)), size \(pub.dataSize)); refusing to trust it")
        }
        return index
    }

    /// The base record: an ordinary index, written and write-locked since definition.
    func loadBases() throws(CounterError) -> [UInt64] {
        if let bases { return bases }
        let index = TPMCounters.baseRecord
        let found = try readPublic(index)
        guard let pub = found else {
            throw CounterError("TPM \(transport.name): counters not provisioned (no base record 0x\(String(index, radix: 16)); run slotctl counters provision)")
        }
        guard TPMCounters.isBaseRecord(pub, index, locked: true) else {
            throw CounterError("TPM \(transport.name): NV index 0x\(String(index, radix: 16)) is not a locked slotctl base record "
                + "(attributes 0x\(String(pub.attributes, radix: 16))); refusing to trust it")
        }
        let bytes = try readBytes(index, size: pub.dataSize)
        let values = (0..<Int(pub.dataSize) / 8).map { TPM2.counterValue(Array(bytes[$0 * 8..<$0 * 8 + 8]).span) }
        bases = values
        return values
    }

    func rawValue(_ index: UInt32) throws(CounterError) -> UInt64 {
        // Bound first: taking the span of a temporary inside `try` trips the 6.3 compiler.
        let bytes = try readBytes(index, size: 8)
        return TPM2.counterValue(bytes.span)
    }

    /// "TPM_RC_BAD_AUTH (0x9a2, session 1): the authorization value is wrong; ...".
    static func describe(_ code: TPMResponseCode) -> String {
        var text = "\(code.name) (0x\(String(code.raw, radix: 16))"
        switch code.subject {
        case .none: break
        case .handle(let n): text += ", handle \(n)"
        case .parameter(let n): text += ", parameter \(n)"
        case .session(let n): text += ", session \(n)"
        }
        text += ")"
        let hint = code.hint.description
        return hint.isEmpty ? text : text + ": " + hint
    }

    public func useOwnerAuthorization(_ secret: [UInt8]) throws(CounterError) {
        guard secret.count <= TPM2.maxPasswordSize else {
            throw CounterError(.usage, "the owner authorization is \(secret.count) bytes; a TPM takes at most \(TPM2.maxPasswordSize)")
        }
        ownerAuth = secret
    }

    // MARK: RollbackCounters

    public func caveats() -> [String] {
        var notes: [String] = []
        if !hardwareBacked { notes.append("a TPM over TCP is a simulator or a remote device, not this device's hardware") }
        if let response = try? run("GetCapability", .permanent) {
            if let permanent = try? TPM2.parsePermanent(response.span), permanent & 1 == 0 {
                notes.append("the TPM owner authorization is empty: anyone with root can undefine and re-provision the "
                    + "counters (set an owner password after provisioning; spec/rollback.md)")
            }
        }
        return notes
    }

    public func provisionedLocations() throws(CounterError) -> Int {
        let record = try readPublic(TPMCounters.baseRecord)
        guard record != nil else {
            // No record: never provisioned, unless a written counter says it was removed.
            let first = try readPublic(TPMCounters.counterBase)
            if let pub = first, pub.attributes & TPM2.NVAttribute.written != 0 {
                throw CounterError("TPM \(transport.name): counter 0x\(String(TPMCounters.counterBase, radix: 16)) exists without "
                    + "its base record: the record was removed; refusing to trust the counters (spec/rollback.md)")
            }
            return 0
        }
        return try loadBases().count
    }

    public func read(location: UInt32) throws(CounterError) -> UInt64 {
        let bases = try loadBases()
        guard Int(location) < bases.count else {
            throw CounterError("TPM \(transport.name): location \(location) not provisioned (\(bases.count) locations)")
        }
        let raw = try rawValue(try checkCounter(location))
        guard raw >= bases[Int(location)] else {
            throw CounterError("TPM \(transport.name): counter at location \(location) is below its recorded base; refusing to trust it")
        }
        return raw - bases[Int(location)]
    }

    public func raise(location: UInt32, to value: UInt64) throws(CounterError) {
        let current = try read(location: location)
        guard value > current else { return }
        guard value - current <= RollbackLimits.maxRaise else {
            throw CounterError(.raiseTooLarge, "raising location \(location) from \(current) to \(value) takes over \(RollbackLimits.maxRaise) TPM increments")
        }
        let index = TPMCounters.counterBase + location
        for _ in 0..<(value - current) { try increment(index) }
        // Read back: a TPM that acknowledged increments it did not make is caught here.
        let now = try read(location: location)
        guard now >= value else {
            throw CounterError("TPM \(transport.name): location \(location) reads \(now) after raising it to \(value)")
        }
    }

    public func provision(locations: Int) throws(CounterError) -> String {
        guard locations >= 1, locations <= RollbackLimits.maxLocations else {
            throw CounterError(.usage, "--locations must be 1...\(RollbackLimits.maxLocations)")
        }
        let record = TPMCounters.baseRecord
        let existing = try readPublic(record)
        var count = locations
        // An interrupted provisioning is finished with the size it was defined with.
        var unfinishedSmaller = false
        if let pub = existing {
            let locked = TPM2.NVAttribute.written | TPM2.NVAttribute.writeLocked
            if pub.attributes & locked == locked {
                let provisioned = try loadBases().count
                for location in 0..<provisioned { _ = try checkCounter(UInt32(location)) }
                guard locations <= provisioned else {
                    throw CounterError(.usage, "TPM \(transport.name) has \(provisioned) locations and its base "
                        + "record is locked, so it cannot grow to \(locations); locations \(provisioned)...\(locations - 1) stay "
                        + "unprovisioned (spec/rollback.md)")
                }
                return "TPM \(transport.name): already provisioned, \(provisioned) locations (the base record is locked; it cannot grow)"
            }
            // Defined first and never written: a provisioning that was cut short. Nothing
            // was ever trusted from it, so finish it with the size it was defined with.
            guard TPMCounters.isBaseRecord(pub, record, locked: false) else {
                throw CounterError("TPM \(transport.name): NV index 0x\(String(record, radix: 16)) is not a slotctl base record "
                    + "(attributes 0x\(String(pub.attributes, radix: 16))); refusing to provision over it")
            }
            count = Int(pub.dataSize) / 8
            unfinishedSmaller = locations > count
        } else {
            // Counters that were written without a base record were not made by an
            // interrupted provisioning (the record is defined first): tampering.
            for location in 0..<UInt32(count) {
                let found = try readPublic(TPMCounters.counterBase + location)
                if let pub = found, pub.attributes & TPM2.NVAttribute.written != 0 {
                    throw CounterError("TPM \(transport.name): counter 0x\(String(TPMCounters.counterBase + location, radix: 16)) "
                        + "exists without its base record: the record was removed; refusing to re-provision (spec/rollback.md)")
                }
            }
            let step = "NV_DefineSpace 0x\(String(record, radix: 16))"
            try expectOK(step, try run(step, .define(record, attributes: TPMCounters.baseAttributes, size: UInt16(count * 8))))
        }
        var bases: [UInt64] = []
        for location in 0..<UInt32(count) {
            let index = TPMCounters.counterBase + location
            let defined = try readPublic(index)
            if defined == nil {
                let what = "NV_DefineSpace 0x\(String(index, radix: 16))"
                try expectOK(what, try run(what, .define(index, attributes: TPMCounters.counterAttributes, size: 8)))
            }
            // A counter reads only once written: the first increment sets its starting value.
            // Never increment what is not ours: check the kind before the first increment.
            let now = try readPublic(index)
            guard let pub = now, TPMCounters.isSlotctlCounter(pub, index, written: false) else {
                throw CounterError("TPM \(transport.name): NV index 0x\(String(index, radix: 16)) is not a slotctl counter "
                    + "(attributes 0x\(String(now?.attributes ?? 0, radix: 16))); refusing to provision over it")
            }
            if pub.attributes & TPM2.NVAttribute.written == 0 { try increment(index) }
            bases.append(try rawValue(try checkCounter(location)))
        }
        var data: [UInt8] = []
        for base in bases { for shift in stride(from: 56, through: 0, by: -8) { data.append(UInt8(truncatingIfNeeded: base >> UInt64(shift))) } }
        var step = "NV_Write 0x\(String(record, radix: 16))"
        try expectOK(step, try run(step, .write(record, data)))
        step = "NV_WriteLock 0x\(String(record, radix: 16))"
        try expectOK(step, try run(step, .writeLock(record)))
        self.bases = nil
        _ = try loadBases()
        let note = unfinishedSmaller ? " (an interrupted provisioning finished with the \(count) locations it was defined "
            + "with, not \(locations): the locked record cannot grow)" : ""
        return "TPM \(transport.name): provisioned \(bases.count) counters at 0x\(String(TPMCounters.counterBase, radix: 16))..., bases \(bases.map(String.init).joined(separator: ", ")) recorded in locked index 0x\(String(record, radix: 16))" + note
    }
}
