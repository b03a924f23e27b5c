import SlotCore
import SlotStorage

/// Every refusal a flow makes: a structured code (the exit status) and one line a
/// person can act on: what failed, on which slot or file, and why.
public struct FlowError: Error, CustomStringConvertible {
    public var code: StatusCode
    public var message: String

    public init(_ code: StatusCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    static func io(_ error: StorageError, doing what: String) -> FlowError {
        FlowError(.ioError, "\(what): \(error.description)")
    }
}
