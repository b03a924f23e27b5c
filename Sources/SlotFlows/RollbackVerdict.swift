import SlotCore
import SlotCounters

/// The rollback check (spec/rollback.md): a verified image whose rollback index is below
/// the counter at its location is refused. Judged once, into the image's report, for
/// every caller: status, verify, install and the boot verifier.
public enum RollbackVerdict {
    /// No counters are configured: rollback is not enforced.
    case notChecked
    case current(stored: UInt64)
    case below(stored: UInt64)
    /// The counters cannot be read or trusted.
    case unavailable(CounterError)

    /// Reads the counter at `descriptor`'s location; nil `counters` is `.notChecked`.
    public static func judge(_ descriptor: SlotDescriptor, _ counters: RollbackCounters?) -> RollbackVerdict {
        guard let counters else { return .notChecked }
        do {
            let stored = try counters.read(location: descriptor.rollbackLocation)
            return descriptor.rollbackIndex >= stored ? .current(stored: stored) : .below(stored: stored)
        } catch {
            return .unavailable(error)
        }
    }

    /// The refusal this verdict makes (its code and one-line reason), nil when it allows.
    public func refusal(_ descriptor: SlotDescriptor) -> (code: StatusCode, reason: String)? {
        switch self {
        case .notChecked, .current: nil
        case .below(let stored):
            (.rollback, "rollback index \(descriptor.rollbackIndex) is below the counter \(stored) at location "
                + "\(descriptor.rollbackLocation) (a downgrade)")
        case .unavailable(let error): (error.code, "rollback counters: \(error.message)")
        }
    }
}

extension ImageVerification {
    /// Adds the rollback verdict to a verified report: a refusal becomes the report's
    /// code and reason. A report that did not verify is left as it is (no verdict).
    /// Called by status, verify and install.
    public static func judgeRollback(_ report: inout ImageReport, _ counters: RollbackCounters?) {
        guard report.verified, let descriptor = report.descriptor else { return }
        let verdict = RollbackVerdict.judge(descriptor, counters)
        report.rollback = verdict
        if let refusal = verdict.refusal(descriptor) {
            report.code = refusal.code
            report.reason = refusal.reason
        }
    }
}
