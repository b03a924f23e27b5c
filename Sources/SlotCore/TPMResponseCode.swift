/// A TPM 2.0 response code taken apart (TPM 2.0 Library, Part 2, section 6.6): its name
/// as the specification spells it, which handle, parameter or session it is about, and a
/// hint a person can act on. Every TPM failure slotctl reports goes through this, so a
/// wrong owner password reads "TPM_RC_BAD_AUTH", not "0x9a2".
public struct TPMResponseCode: Sendable, Equatable {
    public enum Subject: Sendable, Equatable {
        case none
        case handle(UInt8)
        case parameter(UInt8)
        case session(UInt8)
    }

    public let raw: UInt32

    public init(_ raw: UInt32) { self.raw = raw }

    /// Format one (bit 7): the error is about a handle, a parameter or a session.
    var isFormatOne: Bool { raw & 0x80 != 0 }

    public var subject: Subject {
        guard isFormatOne else { return .none }
        let number = UInt8(truncatingIfNeeded: (raw >> 8) & 0xF)
        if raw & 0x40 != 0 { return .parameter(number) }
        return number & 0x8 != 0 ? .session(number & 0x7) : .handle(number & 0x7)
    }

    /// A warning (the command may succeed if retried or later), not an error.
    public var isWarning: Bool { !isFormatOne && raw & 0x900 == 0x900 }

    /// TPM_RC_BAD_AUTH, TPM_RC_NV_DEFINED, ...; "TPM_RC_?" for a code the specification
    /// does not name, "vendor-defined" and "TPM 1.2 code" for the other two families.
    public var name: StaticString {
        if isFormatOne { return TPMResponseCode.formatOne(UInt8(truncatingIfNeeded: raw & 0x3F)) }
        guard raw & 0x100 != 0 else { return "TPM 1.2 code" }
        if raw & 0x400 != 0 { return "vendor-defined" }
        let number = UInt8(truncatingIfNeeded: raw & 0x7F)
        return raw & 0x800 != 0 ? TPMResponseCode.warning(number) : TPMResponseCode.versionOne(number)
    }

    /// What to do about it; empty when there is nothing more useful than the name.
    public var hint: StaticString {
        if isFormatOne {
            switch raw & 0x3F {
            case 0x22, 0x0E: // BAD_AUTH, AUTH_FAIL
                return "the authorization value is wrong; to provision, give the owner password with --owner-auth-file or --owner-auth-fd"
            case 0x05: return "the hierarchy is disabled (tpm2_hierarchycontrol)"
            case 0x0B: return "the handle does not exist on this TPM"
            default: return ""
            }
        }
        guard raw & 0x100 != 0, raw & 0x400 == 0 else { return "" }
        let number = raw & 0x7F
        if raw & 0x800 != 0 {
            switch number {
            case 0x21: return "the TPM is in dictionary-attack lockout after failed authorizations; wait for it to recover, or reset it with tpm2_dictionarylockout"
            case 0x20: return "the TPM is rate-limiting NV writes; try again later"
            case 0x08, 0x0A, 0x22, 0x23: return "the TPM is busy; try again"
            default: return ""
            }
        }
        switch number {
        case 0x4C: return "the NV index is already defined"
        case 0x4B: return "the TPM has no NV memory left for another index"
        case 0x48: return "the NV index is write-locked"
        case 0x49: return "the NV index does not allow this kind of authorization"
        case 0x00: return "the TPM was not started (TPM2_Startup)"
        case 0x01: return "the TPM is in failure mode; it needs a reset"
        default: return ""
        }
    }

    static func formatOne(_ number: UInt8) -> StaticString {
        switch number {
        case 0x01: "TPM_RC_ASYMMETRIC"
        case 0x02: "TPM_RC_ATTRIBUTES"
        case 0x03: "TPM_RC_HASH"
        case 0x04: "TPM_RC_VALUE"
        case 0x05: "TPM_RC_HIERARCHY"
        case 0x07: "TPM_RC_KEY_SIZE"
        case 0x08: "TPM_RC_MGF"
        case 0x09: "TPM_RC_MODE"
        case 0x0A: "TPM_RC_TYPE"
        case 0x0B: "TPM_RC_HANDLE"
        case 0x0C: "TPM_RC_KDF"
        case 0x0D: "TPM_RC_RANGE"
        case 0x0E: "TPM_RC_AUTH_FAIL"
        case 0x0F: "TPM_RC_NONCE"
        case 0x10: "TPM_RC_PP"
        case 0x12: "TPM_RC_SCHEME"
        case 0x15: "TPM_RC_SIZE"
        case 0x16: "TPM_RC_SYMMETRIC"
        case 0x17: "TPM_RC_TAG"
        case 0x18: "TPM_RC_SELECTOR"
        case 0x1A: "TPM_RC_INSUFFICIENT"
        case 0x1B: "TPM_RC_SIGNATURE"
        case 0x1C: "TPM_RC_KEY"
        case 0x1D: "TPM_RC_POLICY_FAIL"
        case 0x1F: "TPM_RC_INTEGRITY"
        case 0x20: "TPM_RC_TICKET"
        case 0x21: "TPM_RC_RESERVED_BITS"
        case 0x22: "TPM_RC_BAD_AUTH"
        case 0x23: "TPM_RC_EXPIRED"
        case 0x24: "TPM_RC_POLICY_CC"
        case 0x25: "TPM_RC_BINDING"
        case 0x26: "TPM_RC_CURVE"
        case 0x27: "TPM_RC_ECC_POINT"
        default: "TPM_RC_?"
        }
    }

    static func versionOne(_ number: UInt8) -> StaticString {
        switch number {
        case 0x00: "TPM_RC_INITIALIZE"
        case 0x01: "TPM_RC_FAILURE"
        case 0x03: "TPM_RC_SEQUENCE"
        case 0x0B: "TPM_RC_PRIVATE"
        case 0x19: "TPM_RC_HMAC"
        case 0x20: "TPM_RC_DISABLED"
        case 0x21: "TPM_RC_EXCLUSIVE"
        case 0x24: "TPM_RC_AUTH_TYPE"
        case 0x25: "TPM_RC_AUTH_MISSING"
        case 0x26: "TPM_RC_POLICY"
        case 0x27: "TPM_RC_PCR"
        case 0x28: "TPM_RC_PCR_CHANGED"
        case 0x2D: "TPM_RC_UPGRADE"
        case 0x2E: "TPM_RC_TOO_MANY_CONTEXTS"
        case 0x2F: "TPM_RC_AUTH_UNAVAILABLE"
        case 0x30: "TPM_RC_REBOOT"
        case 0x31: "TPM_RC_UNBALANCED"
        case 0x42: "TPM_RC_COMMAND_SIZE"
        case 0x43: "TPM_RC_COMMAND_CODE"
        case 0x44: "TPM_RC_AUTHSIZE"
        case 0x45: "TPM_RC_AUTH_CONTEXT"
        case 0x46: "TPM_RC_NV_RANGE"
        case 0x47: "TPM_RC_NV_SIZE"
        case 0x48: "TPM_RC_NV_LOCKED"
        case 0x49: "TPM_RC_NV_AUTHORIZATION"
        case 0x4A: "TPM_RC_NV_UNINITIALIZED"
        case 0x4B: "TPM_RC_NV_SPACE"
        case 0x4C: "TPM_RC_NV_DEFINED"
        case 0x50: "TPM_RC_BAD_CONTEXT"
        case 0x51: "TPM_RC_CPHASH"
        case 0x52: "TPM_RC_PARENT"
        case 0x53: "TPM_RC_NEEDS_TEST"
        case 0x54: "TPM_RC_NO_RESULT"
        case 0x55: "TPM_RC_SENSITIVE"
        default: "TPM_RC_?"
        }
    }

    static func warning(_ number: UInt8) -> StaticString {
        switch number {
        case 0x01: "TPM_RC_CONTEXT_GAP"
        case 0x02: "TPM_RC_OBJECT_MEMORY"
        case 0x03: "TPM_RC_SESSION_MEMORY"
        case 0x04: "TPM_RC_MEMORY"
        case 0x05: "TPM_RC_SESSION_HANDLES"
        case 0x06: "TPM_RC_OBJECT_HANDLES"
        case 0x07: "TPM_RC_LOCALITY"
        case 0x08: "TPM_RC_YIELDED"
        case 0x09: "TPM_RC_CANCELED"
        case 0x0A: "TPM_RC_TESTING"
        case 0x10...0x16: "TPM_RC_REFERENCE_H"
        case 0x18...0x1E: "TPM_RC_REFERENCE_S"
        case 0x20: "TPM_RC_NV_RATE"
        case 0x21: "TPM_RC_LOCKOUT"
        case 0x22: "TPM_RC_RETRY"
        case 0x23: "TPM_RC_NV_UNAVAILABLE"
        default: "TPM_RC_?"
        }
    }
}
