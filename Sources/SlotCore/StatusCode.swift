/// The exit status of every slotctl command, in the families of spec/status-codes.md.
/// The raw value is the process exit code; `name` is the stable JSON name.
public enum StatusCode: UInt8, Sendable {
    case ok = 0
    case downloadFailed = 10
    case streamInvalid = 11
    case signatureInvalid = 20
    case untrustedKey = 21
    case rollback = 22
    case digestMismatch = 23
    case malformedDescriptor = 24
    case keyAlgorithmMismatch = 25
    case unsigned = 26
    case cryptoError = 27
    case countersUnavailable = 28
    case raiseTooLarge = 29
    case noSpace = 30
    case writeFailed = 31
    case readbackMismatch = 32
    case targetIsBooted = 33
    case runningUnconfirmed = 34
    case postcheckFailed = 40
    case noBootableSlot = 50
    case slotNotBootable = 51
    case kernelUnusable = 52
    case tableUnusable = 60
    case ioError = 61
    case noSlots = 62
    case duplicateSlot = 63
    case usage = 64
    case writeRefused = 65
    case diskLocked = 66
    case internalError = 70

    public var name: StaticString {
        switch self {
        case .ok: "ok"
        case .downloadFailed: "download_failed"
        case .streamInvalid: "stream_invalid"
        case .signatureInvalid: "signature_invalid"
        case .untrustedKey: "untrusted_key"
        case .rollback: "rollback"
        case .digestMismatch: "digest_mismatch"
        case .malformedDescriptor: "malformed_descriptor"
        case .keyAlgorithmMismatch: "key_algorithm_mismatch"
        case .unsigned: "unsigned"
        case .cryptoError: "crypto_error"
        case .countersUnavailable: "counters_unavailable"
        case .raiseTooLarge: "raise_too_large"
        case .noSpace: "no_space"
        case .writeFailed: "write_failed"
        case .readbackMismatch: "readback_mismatch"
        case .targetIsBooted: "target_is_booted"
        case .runningUnconfirmed: "running_unconfirmed"
        case .postcheckFailed: "postcheck_failed"
        case .noBootableSlot: "no_bootable_slot"
        case .slotNotBootable: "slot_not_bootable"
        case .kernelUnusable: "kernel_unusable"
        case .tableUnusable: "table_unusable"
        case .ioError: "io_error"
        case .noSlots: "no_slots"
        case .duplicateSlot: "duplicate_slot"
        case .usage: "usage"
        case .writeRefused: "write_refused"
        case .diskLocked: "disk_locked"
        case .internalError: "internal"
        }
    }
}

/// Why one copy of the GPT (header + entry array) was rejected. Each has a one-line reason
/// for people; the copy is simply not used, so these never become an exit status alone:
/// both copies bad is `StatusCode.tableUnusable`.
public enum TableError: Error, Equatable, Sendable {
    case tooShort
    case badSignature
    case badRevision
    case badHeaderSize
    case badHeaderCRC
    case badMyLBA
    case badAlternateLBA
    case badEntrySize
    case badEntryCount
    case entriesOutOfRange
    case badUsableRange
    case badEntriesCRC
    case partitionOutOfRange
    case partitionsOverlap
    case tooManySlots
    case duplicateSlotName
    case noSlots

    public var reason: StaticString {
        switch self {
        case .tooShort: "disk too small to hold a GPT"
        case .badSignature: "no 'EFI PART' signature"
        case .badRevision: "unsupported GPT revision (want 1.0)"
        case .badHeaderSize: "header size outside 92..sector size"
        case .badHeaderCRC: "header CRC mismatch"
        case .badMyLBA: "header's own LBA is not where it was read"
        case .badAlternateLBA: "alternate header LBA out of place"
        case .badEntrySize: "partition entry size is not 128 * 2^n up to 4096"
        case .badEntryCount: "partition entry count is 0 or over the limit"
        case .entriesOutOfRange: "partition entry array outside its allowed area"
        case .badUsableRange: "usable LBA range inconsistent with the layout"
        case .badEntriesCRC: "partition entry array CRC mismatch"
        case .partitionOutOfRange: "a partition lies outside the usable range or ends before it starts"
        case .partitionsOverlap: "two partitions overlap"
        case .tooManySlots: "more than 26 slot partitions"
        case .duplicateSlotName: "two slot partitions share a slot name"
        case .noSlots: "no slot partitions (type slotctl or ChromeOS kernel, name ending _a.._z)"
        }
    }
}
