/// A small TPM 2.0 command marshaller and response parser (TPM 2.0 Library, Part 3),
/// for the NV commands slotctl needs, in the spirit of ChromeOS's tlcl. Big-endian
/// throughout. Commands are built into a caller's fixed buffer; responses are parsed
/// with every length checked against what was received: a malformed response is an
/// error, never a trap.

public enum TPMError: Error, Equatable, Sendable {
    /// The TPM answered with a non-zero response code.
    case responseCode(UInt32)
    case shortResponse
    case sizeMismatch
    case badTag
    case malformed
    case bufferTooSmall

    public var reason: StaticString {
        switch self {
        case .responseCode: "TPM returned an error"
        case .shortResponse: "TPM response too short"
        case .sizeMismatch: "TPM response size field disagrees with what was received"
        case .badTag: "TPM response has an unexpected tag"
        case .malformed: "TPM response is malformed"
        case .bufferTooSmall: "command buffer too small"
        }
    }
}

public enum TPM2 {
    public static let tagNoSessions: UInt16 = 0x8001
    public static let tagSessions: UInt16 = 0x8002
    public static let passwordSession: UInt32 = 0x4000_0009 // TPM_RS_PW
    public static let ownerHierarchy: UInt32 = 0x4000_0001  // TPM_RH_OWNER
    public static let algSHA256: UInt16 = 0x000B
    /// The longest authorization value slotctl sends: TPM2B_AUTH holds at most a digest
    /// of the TPM's largest hash (SHA-512, 64 bytes).
    public static let maxPasswordSize = 64

    public enum Command: UInt32, Sendable {
        case nvUndefineSpace = 0x0000_0122
        case nvDefineSpace = 0x0000_012A
        case nvIncrement = 0x0000_0134
        case nvWrite = 0x0000_0137
        case nvWriteLock = 0x0000_0138
        case startup = 0x0000_0144
        case getCapability = 0x0000_017A
        case nvRead = 0x0000_014E
        case nvReadPublic = 0x0000_0169
        case pcrEvent = 0x0000_013C
        case pcrRead = 0x0000_017E
    }

    /// The hash algorithms a PCR bank may use, with their digest sizes (TCG Algorithm
    /// Registry). A response naming another algorithm cannot be walked: malformed.
    public static func digestSize(of algorithm: UInt16) -> Int? {
        switch algorithm {
        case 0x0004: 20      // TPM_ALG_SHA1
        case 0x000B: 32      // TPM_ALG_SHA256
        case 0x000C: 48      // TPM_ALG_SHA384
        case 0x000D: 64      // TPM_ALG_SHA512
        case 0x0012: 32      // TPM_ALG_SM3_256
        default: nil
        }
    }

    /// The name systemd and tpm2-tools use for a bank's algorithm ("sha256").
    public static func algorithmName(_ algorithm: UInt16) -> StaticString {
        switch algorithm {
        case 0x0004: "sha1"
        case 0x000B: "sha256"
        case 0x000C: "sha384"
        case 0x000D: "sha512"
        case 0x0012: "sm3_256"
        default: "unknown"
        }
    }

    /// The largest event TPM2_PCR_Event takes (TPM2B_EVENT).
    public static let maxEventSize = 1024

    /// TPMA_NV bits slotctl sets or checks.
    public enum NVAttribute {
        public static let ownerWrite: UInt32 = 1 << 1
        public static let authWrite: UInt32 = 1 << 2
        public static let typeMask: UInt32 = 0xF << 4
        public static let typeOrdinary: UInt32 = 0 << 4
        public static let typeCounter: UInt32 = 1 << 4
        public static let writeLocked: UInt32 = 1 << 11
        public static let writeDefine: UInt32 = 1 << 13
        public static let ownerRead: UInt32 = 1 << 17
        public static let authRead: UInt32 = 1 << 18
        public static let noDA: UInt32 = 1 << 25
        public static let written: UInt32 = 1 << 29
    }

    /// TPMS_NV_PUBLIC.
    public struct NVPublic: Equatable, Sendable {
        public var index: UInt32
        public var nameAlg: UInt16
        public var attributes: UInt32
        public var authPolicySize: UInt16
        public var dataSize: UInt16

        public init(index: UInt32, nameAlg: UInt16, attributes: UInt32, authPolicySize: UInt16, dataSize: UInt16) {
            self.index = index
            self.nameAlg = nameAlg
            self.attributes = attributes
            self.authPolicySize = authPolicySize
            self.dataSize = dataSize
        }

        public var type: UInt32 { attributes & NVAttribute.typeMask }
    }

    /// Appends big-endian fields to a fixed command buffer.
    struct Writer {
        var length = 0

        mutating func u8(_ b: inout MutableSpan<UInt8>, _ v: UInt8) throws(TPMError) {
            guard length < b.count else { throw .bufferTooSmall }
            b[length] = v
            length += 1
        }
        mutating func u16(_ b: inout MutableSpan<UInt8>, _ v: UInt16) throws(TPMError) {
            try u8(&b, UInt8(v >> 8)); try u8(&b, UInt8(truncatingIfNeeded: v))
        }
        mutating func u32(_ b: inout MutableSpan<UInt8>, _ v: UInt32) throws(TPMError) {
            try u16(&b, UInt16(v >> 16)); try u16(&b, UInt16(truncatingIfNeeded: v))
        }

        mutating func header(_ b: inout MutableSpan<UInt8>, _ tag: UInt16, _ command: Command) throws(TPMError) {
            length = 0
            try u16(&b, tag)
            try u32(&b, 0) // size, patched by finish
            try u32(&b, command.rawValue)
        }

        /// One password session with an empty password (TPMS_AUTH_COMMAND).
        mutating func emptyPasswordAuth(_ b: inout MutableSpan<UInt8>) throws(TPMError) {
            try u32(&b, 9)              // authorizationSize
            try u32(&b, passwordSession)
            try u16(&b, 0)              // nonce
            try u8(&b, 0)               // sessionAttributes
            try u16(&b, 0)              // hmac (the password): empty
        }

        /// One password session carrying `password` in the clear (TPM_RS_PW: the TPM
        /// compares it with the entity's authValue). Longer than any digest: refused.
        mutating func passwordAuth(_ b: inout MutableSpan<UInt8>, _ password: Span<UInt8>) throws(TPMError) {
            guard password.count <= TPM2.maxPasswordSize else { throw .bufferTooSmall }
            try u32(&b, UInt32(9 + password.count))
            try u32(&b, passwordSession)
            try u16(&b, 0)
            try u8(&b, 0)
            try u16(&b, UInt16(password.count))
            for i in password.indices { try u8(&b, password[i]) }
        }

        func finish(_ b: inout MutableSpan<UInt8>) -> Int {
            let size = UInt32(length)
            b[2] = UInt8(size >> 24); b[3] = UInt8(truncatingIfNeeded: size >> 16)
            b[4] = UInt8(truncatingIfNeeded: size >> 8); b[5] = UInt8(truncatingIfNeeded: size)
            return length
        }
    }

    /// Command builders: each writes one whole command into `b` and returns its length.
    public enum Build {
        public static func startupClear(_ b: inout MutableSpan<UInt8>) throws(TPMError) -> Int {
            var w = Writer()
            try w.header(&b, tagNoSessions, .startup)
            try w.u16(&b, 0) // TPM_SU_CLEAR
            return w.finish(&b)
        }

        /// GetCapability(TPM_CAP_TPM_PROPERTIES, TPM_PT_PERMANENT, 1).
        public static func getPermanentProperties(_ b: inout MutableSpan<UInt8>) throws(TPMError) -> Int {
            var w = Writer()
            try w.header(&b, tagNoSessions, .getCapability)
            try w.u32(&b, 6)          // TPM_CAP_TPM_PROPERTIES
            try w.u32(&b, 0x200)      // TPM_PT_PERMANENT
            try w.u32(&b, 1)
            return w.finish(&b)
        }

        public static func nvReadPublic(_ b: inout MutableSpan<UInt8>, _ index: UInt32) throws(TPMError) -> Int {
            var w = Writer()
            try w.header(&b, tagNoSessions, .nvReadPublic)
            try w.u32(&b, index)
            return w.finish(&b)
        }

        /// NV_Read authorized by the index itself (TPMA_NV_AUTHREAD), empty password.
        public static func nvRead(_ b: inout MutableSpan<UInt8>, _ index: UInt32, size: UInt16, offset: UInt16) throws(TPMError) -> Int {
            var w = Writer()
            try w.header(&b, tagSessions, .nvRead)
            try w.u32(&b, index) // authHandle
            try w.u32(&b, index) // nvIndex
            try w.emptyPasswordAuth(&b)
            try w.u16(&b, size)
            try w.u16(&b, offset)
            return w.finish(&b)
        }

        public static func nvIncrement(_ b: inout MutableSpan<UInt8>, _ index: UInt32) throws(TPMError) -> Int {
            try indexAuthorized(&b, .nvIncrement, index)
        }

        public static func nvWriteLock(_ b: inout MutableSpan<UInt8>, _ index: UInt32) throws(TPMError) -> Int {
            try indexAuthorized(&b, .nvWriteLock, index)
        }

        static func indexAuthorized(_ b: inout MutableSpan<UInt8>, _ command: Command, _ index: UInt32) throws(TPMError) -> Int {
            var w = Writer()
            try w.header(&b, tagSessions, command)
            try w.u32(&b, index)
            try w.u32(&b, index)
            try w.emptyPasswordAuth(&b)
            return w.finish(&b)
        }

        /// NV_Write of `data` at offset 0, authorized by the index.
        public static func nvWrite(_ b: inout MutableSpan<UInt8>, _ index: UInt32, data: Span<UInt8>) throws(TPMError) -> Int {
            var w = Writer()
            try w.header(&b, tagSessions, .nvWrite)
            try w.u32(&b, index)
            try w.u32(&b, index)
            try w.emptyPasswordAuth(&b)
            try w.u16(&b, UInt16(data.count))
            for i in 0..<data.count { try w.u8(&b, data[i]) }
            try w.u16(&b, 0) // offset
            return w.finish(&b)
        }

        /// NV_Write of `data` at offset 0, authorized by the owner (an index with
        /// TPMA_NV_OWNERWRITE: only the owner's password changes it).
        public static func nvWriteAsOwner(_ b: inout MutableSpan<UInt8>, _ index: UInt32, data: Span<UInt8>,
                                          ownerAuth: Span<UInt8>) throws(TPMError) -> Int {
            var w = Writer()
            try w.header(&b, tagSessions, .nvWrite)
            try w.u32(&b, ownerHierarchy)
            try w.u32(&b, index)
            try w.passwordAuth(&b, ownerAuth)
            try w.u16(&b, UInt16(data.count))
            for i in 0..<data.count { try w.u8(&b, data[i]) }
            try w.u16(&b, 0) // offset
            return w.finish(&b)
        }

        /// NV_DefineSpace under the owner hierarchy, authorized by `ownerAuth` (the owner
        /// password; empty while none is set), with an empty index auth.
        public static func nvDefineSpace(_ b: inout MutableSpan<UInt8>, _ index: UInt32, attributes: UInt32,
                                         dataSize: UInt16, ownerAuth: Span<UInt8>) throws(TPMError) -> Int {
            var w = Writer()
            try w.header(&b, tagSessions, .nvDefineSpace)
            try w.u32(&b, ownerHierarchy)
            try w.passwordAuth(&b, ownerAuth)
            try w.u16(&b, 0)          // auth: TPM2B_AUTH, empty
            try w.u16(&b, 14)         // TPM2B_NV_PUBLIC size
            try w.u32(&b, index)
            try w.u16(&b, algSHA256)
            try w.u32(&b, attributes)
            try w.u16(&b, 0)          // authPolicy: empty
            try w.u16(&b, dataSize)
            return w.finish(&b)
        }

        /// PCR_Event: the TPM hashes `event` with every allocated bank's algorithm and
        /// extends `pcr` in each, so no bank is left unextended. The PCR's authorization is
        /// empty (the platform's default for PCRs 0...23).
        public static func pcrEvent(_ b: inout MutableSpan<UInt8>, pcr: UInt32, event: Span<UInt8>) throws(TPMError) -> Int {
            guard event.count <= maxEventSize else { throw .bufferTooSmall }
            var w = Writer()
            try w.header(&b, tagSessions, .pcrEvent)
            try w.u32(&b, pcr)
            try w.emptyPasswordAuth(&b)
            try w.u16(&b, UInt16(event.count))
            for i in event.indices { try w.u8(&b, event[i]) }
            return w.finish(&b)
        }

        /// PCR_Read of one PCR in the SHA-256 bank.
        public static func pcrReadSHA256(_ b: inout MutableSpan<UInt8>, pcr: UInt32) throws(TPMError) -> Int {
            guard pcr < 24 else { throw .bufferTooSmall }
            var w = Writer()
            try w.header(&b, tagNoSessions, .pcrRead)
            try w.u32(&b, 1)                          // TPML_PCR_SELECTION.count
            try w.u16(&b, algSHA256)
            try w.u8(&b, 3)                           // sizeofSelect: PCRs 0...23
            for byte in 0..<UInt32(3) { try w.u8(&b, pcr / 8 == byte ? UInt8(1) << UInt8(pcr % 8) : 0) }
            return w.finish(&b)
        }

        public static func nvUndefineSpace(_ b: inout MutableSpan<UInt8>, _ index: UInt32,
                                           ownerAuth: Span<UInt8>) throws(TPMError) -> Int {
            var w = Writer()
            try w.header(&b, tagSessions, .nvUndefineSpace)
            try w.u32(&b, ownerHierarchy)
            try w.u32(&b, index)
            try w.passwordAuth(&b, ownerAuth)
            return w.finish(&b)
        }
    }

    /// Reads big-endian fields from a response, every read bounds-checked.
    struct Reader {
        var offset: Int

        mutating func u8(_ b: Span<UInt8>) throws(TPMError) -> UInt8 {
            guard offset < b.count else { throw .malformed }
            defer { offset += 1 }
            return b[offset]
        }
        mutating func u16(_ b: Span<UInt8>) throws(TPMError) -> UInt16 { UInt16(try u8(b)) << 8 | UInt16(try u8(b)) }
        mutating func u32(_ b: Span<UInt8>) throws(TPMError) -> UInt32 { UInt32(try u16(b)) << 16 | UInt32(try u16(b)) }
        mutating func skip(_ b: Span<UInt8>, _ n: Int) throws(TPMError) {
            guard n >= 0, n <= b.count - offset else { throw .malformed }
            offset += n
        }
    }

    /// Checks a response's header against the bytes received; returns the offset where
    /// its body starts (after the parameterSize field when the tag says sessions).
    public static func checkResponse(_ response: Span<UInt8>) throws(TPMError) -> Int {
        guard response.count >= 10 else { throw .shortResponse }
        var r = Reader(offset: 0)
        let tag = try r.u16(response)
        let size = try r.u32(response)
        let code = try r.u32(response)
        guard Int(size) == response.count else { throw .sizeMismatch }
        guard code == 0 else { throw .responseCode(code) }
        switch tag {
        case tagNoSessions: return 10
        case tagSessions:
            let parameterSize = try r.u32(response)
            guard Int(parameterSize) <= response.count - 14 else { throw .malformed }
            return 14
        default: throw .badTag
        }
    }

    /// The TPMS_NV_PUBLIC of an NV_ReadPublic response.
    public static func parseNVPublic(_ response: Span<UInt8>) throws(TPMError) -> NVPublic {
        var r = Reader(offset: try checkResponse(response))
        let size = Int(try r.u16(response))
        let start = r.offset
        let index = try r.u32(response)
        let nameAlg = try r.u16(response)
        let attributes = try r.u32(response)
        let policySize = try r.u16(response)
        try r.skip(response, Int(policySize))
        let dataSize = try r.u16(response)
        guard r.offset - start == size else { throw .malformed }
        return NVPublic(index: index, nameAlg: nameAlg, attributes: attributes, authPolicySize: policySize, dataSize: dataSize)
    }

    /// TPM_PT_PERMANENT from a GetCapability response (bit 0: ownerAuthSet).
    public static func parsePermanent(_ response: Span<UInt8>) throws(TPMError) -> UInt32 {
        var r = Reader(offset: try checkResponse(response))
        _ = try r.u8(response)                       // moreData
        guard try r.u32(response) == 6 else { throw .malformed }
        guard try r.u32(response) >= 1 else { throw .malformed }
        guard try r.u32(response) == 0x200 else { throw .malformed }
        return try r.u32(response)
    }

    /// The data of an NV_Read response, copied into `out`; returns its length.
    public static func parseNVRead(_ response: Span<UInt8>, into out: inout MutableSpan<UInt8>) throws(TPMError) -> Int {
        var r = Reader(offset: try checkResponse(response))
        let size = Int(try r.u16(response))
        guard size <= out.count else { throw .malformed }
        for i in 0..<size { out[i] = try r.u8(response) }
        return size
    }

    /// The TPML_DIGEST_VALUES of a PCR_Event response: `each` sees every bank's
    /// algorithm and the digest the TPM extended it with. Returns how many there were.
    public static func parseEventDigests(_ response: Span<UInt8>,
                                         _ each: (UInt16, Span<UInt8>) -> Void) throws(TPMError) -> Int {
        var r = Reader(offset: try checkResponse(response))
        let count = try r.u32(response)
        guard count >= 1, count <= 16 else { throw .malformed }
        for _ in 0..<count {
            let algorithm = try r.u16(response)
            guard let size = digestSize(of: algorithm) else { throw .malformed }
            let start = r.offset
            try r.skip(response, size)
            each(algorithm, response.extracting(start..<start + size))
        }
        return Int(count)
    }

    /// The SHA-256 value of the one PCR a `pcrReadSHA256` command asked for, copied into
    /// `out` (32 bytes). False when the TPM has no SHA-256 bank allocated: it answers
    /// such a read with an empty selection, which is not a malformed response.
    public static func parsePCRReadSHA256(_ response: Span<UInt8>, pcr: UInt32,
                                          into out: inout MutableSpan<UInt8>) throws(TPMError) -> Bool {
        var r = Reader(offset: try checkResponse(response))
        _ = try r.u32(response)                       // pcrUpdateCounter
        let selections = try r.u32(response)
        guard selections <= 16 else { throw .malformed }
        var selected = false
        for _ in 0..<selections {
            let algorithm = try r.u16(response)
            let size = Int(try r.u8(response))
            var bits: UInt32 = 0
            for i in 0..<size {
                let byte = try r.u8(response)
                if i < 4 { bits |= UInt32(byte) << UInt32(8 * i) }
            }
            if algorithm == algSHA256 && pcr < 32 && bits >> pcr & 1 == 1 { selected = true }
        }
        let digests = try r.u32(response)
        guard digests <= 8 else { throw .malformed }
        guard selected, digests == 1 else { return false }
        let size = Int(try r.u16(response))
        guard size == 32, out.count >= 32 else { throw .malformed }
        for i in 0..<32 { out[i] = try r.u8(response) }
        return true
    }

    /// A counter's 8 bytes, big-endian, as NV_Read returns them.
    public static func counterValue(_ bytes: Span<UInt8>) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(bytes[i]) }
        return v
    }
}
