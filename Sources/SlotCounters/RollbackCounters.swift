import SlotCore

/// A failure of the counter store: fails closed, never falls back to another store.
public struct CounterError: Error, CustomStringConvertible {
    public var code: StatusCode
    public var message: String
    /// False when a TPM command certainly never reached the TPM (the device would not
    /// open, the socket would not connect): measured boot needs to know whether an extend
    /// may have happened.
    public var commandSent = true

    public init(_ code: StatusCode, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The counters cannot be read, trusted or raised.
    public init(_ message: String) {
        self.init(.countersUnavailable, message)
    }

    public var description: String { message }
}

/// Per-location, 64-bit, never-decreasing rollback counters (spec/rollback.md).
/// `boot` reads them; only `mark-successful` raises them.
public protocol RollbackCounters: AnyObject {
    /// `tpm:/dev/tpmrm0`, `tpm:tcp:HOST:PORT`, `file:PATH`.
    var spec: String { get }
    /// False for the file store and a TPM over TCP: status says so plainly.
    var hardwareBacked: Bool { get }
    /// Anything that weakens the store's guarantees (an owner authorization left
    /// empty), for status; empty when nothing is known to be wrong.
    func caveats() -> [String]
    /// How many locations are provisioned (0 when not provisioned).
    func provisionedLocations() throws(CounterError) -> Int
    /// The value at `location`. Not provisioned, unreadable or untrustworthy: an error.
    func read(location: UInt32) throws(CounterError) -> UInt64
    /// Raises `location` to `value` one step at a time; never lowers it. A cut part way
    /// leaves it between the old and the new value.
    func raise(location: UInt32, to value: UInt64) throws(CounterError)
    /// Creates the first `locations` counters (idempotent); returns what it did.
    func provision(locations: Int) throws(CounterError) -> String
    /// The owner password `provision` authorizes its NV_DefineSpace with (TPM only; a
    /// store without an owner refuses it as a usage error).
    func useOwnerAuthorization(_ secret: [UInt8]) throws(CounterError)
}

public enum RollbackLimits {
    /// Locations a store may provision (descriptor locations are 0..<32).
    public static let maxLocations = 32
    /// The largest single raise `mark-successful` makes: a TPM counter moves one
    /// increment at a time, so rollback indexes are small, dense security versions.
    public static let maxRaise: UInt64 = 1000
    /// The largest rollback index `sign` accepts.
    public static let maxIndex: UInt64 = 65_535
}

/// Opens a counter store from its spec. Used by the CLI.
public func openCounters(_ spec: String) throws(CounterError) -> RollbackCounters {
    if spec.hasPrefix("file:") {
        let path = String(spec.dropFirst(5))
        guard !path.isEmpty else { throw CounterError(.usage, "counters: file: needs a path") }
        return FileCounters(path: path, spec: spec)
    }
    if spec.hasPrefix("tpm:") {
        return TPMCounters(transport: try openTPM(spec, what: "counters"), spec: spec)
    }
    throw CounterError(.usage, "counters: '\(spec)' is not file:PATH, tpm:/dev/tpmrm0 or tpm:tcp:HOST:PORT")
}
