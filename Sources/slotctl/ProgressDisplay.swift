import CSystem
import SlotFlows

/// What `install --progress` prints on stderr while it works (spec/install.md).
enum ProgressMode: String {
    /// `text` when stderr is a terminal, else nothing: an init script's log stays clean.
    case auto
    /// One line rewritten in place: step, percent, bytes, rate.
    case text
    /// One JSON object a line, for OTA clients: each step's start and end, and every
    /// tenth of its bytes in between.
    case json
    case none
}

/// Renders InstallProgress reports for one install. Lives in the worker, so whether
/// stderr is a terminal is decided by the supervisor before the fork (main.swift): the
/// worker's stderr is a pipe to it.
final class ProgressDisplay {
    private let mode: ProgressMode
    private let slot: String
    private var stepStarted: Double = 0
    private var lastDraw: Double = 0
    private var lastTenth: UInt64 = 0
    /// A text line is drawn without its newline: a failure's message must not land on it.
    private var lineOpen = false

    init(mode: ProgressMode, slot: String) {
        self.mode = mode
        self.slot = slot
    }

    /// An InstallProgress report.
    func report(_ step: InstallStep, done: UInt64, total: UInt64, finished: Bool) {
        let now = ProgressDisplay.seconds()
        let starting = done == 0 && !finished
        if starting {
            stepStarted = now
            lastDraw = 0
            lastTenth = 0
        }
        switch mode {
        case .json: json(step, done: done, total: total, starting: starting, finished: finished)
        case .text: text(step, done: done, total: total, now: now, finished: finished)
        case .auto, .none: break
        }
    }

    private func json(_ step: InstallStep, done: UInt64, total: UInt64, starting: Bool, finished: Bool) {
        let tenth = total == 0 ? 0 : done * 10 / total
        guard starting || finished || (tenth > lastTenth && done < total) else { return }
        lastTenth = tenth
        var o = JSONObject(always: true)
        o.set("schema_version", BuildInfo.schemaVersion)
        o.set("progress", step.name)
        o.set("slot", slot)
        o.set("event", finished ? "end" : starting ? "start" : "bytes")
        o.set("done", done)
        o.set("total", total)
        emit(o.text + "\n", to: 2)
    }

    private func text(_ step: InstallStep, done: UInt64, total: UInt64, now: Double, finished: Bool) {
        // At most five redraws a second: a terminal over a serial line is slow.
        guard finished || now - lastDraw >= 0.2 else { return }
        lastDraw = now
        let what = switch step {
        case .verify: "verifying the image"
        case .write: "writing slot \(slot)"
        case .flush: "flushing slot \(slot) to the disk"
        case .readBack: "reading slot \(slot) back"
        case .activate: "activating slot \(slot)"
        }
        var line = "\rslotctl: install: \(what)"
        if total > 0 {
            let elapsed = max(now - stepStarted, 0.001)
            let rate = Double(done) / elapsed / 1_048_576
            line += ": \(done * 100 / total)% (\(ProgressDisplay.mib(done)) of \(ProgressDisplay.mib(total)) MiB, "
                + "\(ProgressDisplay.tenths(rate)) MiB/s)"
        } else if finished {
            line += ": done"
        }
        emit(line + "\u{1B}[K" + (finished ? "\n" : ""), to: 2)
        lineOpen = !finished
    }

    /// Ends a text line a failed step left open. Called when the install returns.
    func close() {
        if lineOpen { emit("\n", to: 2) }
        lineOpen = false
    }

    private static func mib(_ bytes: UInt64) -> String { tenths(Double(bytes) / 1_048_576) }

    /// One decimal, without Foundation's formatting.
    private static func tenths(_ value: Double) -> String {
        let scaled = UInt64((value * 10).rounded())
        return "\(scaled / 10).\(scaled % 10)"
    }

    private static func seconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}
