/// The steps of an install in the order they run, as progress reports name them
/// (spec/install.md). A stream install has no `verify` step: its payload is hashed while
/// it is written.
public enum InstallStep: Sendable {
    /// The image file's payload hashed and its signature checked; nothing written yet.
    case verify
    /// The image copied into the target slot (a stream: received, hashed and written).
    case write
    /// The slot's writes forced to the disk (fsync).
    case flush
    /// The slot read back and verified as boot will.
    case readBack
    /// The slot table written: the slot boots next, on trial.
    case activate

    /// The name JSON progress lines use.
    public var name: String {
        switch self {
        case .verify: "verify"
        case .write: "write"
        case .flush: "flush"
        case .readBack: "read_back"
        case .activate: "activate"
        }
    }
}

/// Told where an install is: the step, and bytes done of the step's total (0 for a step
/// that moves no payload bytes: flush, activate). Called at each step's start (done 0,
/// `finished` false), after every chunk, and once at its end (`finished` true, done ==
/// total); a step that fails has no end. Set by the CLI's `install`; it may print, and
/// must not touch the disk or the stores.
public typealias InstallProgress = (_ step: InstallStep, _ done: UInt64, _ total: UInt64, _ finished: Bool) -> Void

/// An install's progress reporting: the hasher that moves the bytes reports each chunk
/// of the current step.
struct InstallSteps {
    let progress: InstallProgress?
    let hasher: PayloadHasher

    func begin(_ step: InstallStep, total: UInt64) {
        guard let progress else { return }
        progress(step, 0, total, false)
        hasher.onChunk = { done in progress(step, min(done, total), total, false) }
    }

    func end(_ step: InstallStep, total: UInt64) {
        hasher.onChunk = nil
        progress?(step, total, total, true)
    }
}
