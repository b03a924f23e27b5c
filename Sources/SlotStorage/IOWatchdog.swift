import CSystem

/// The bound on a disk that stops answering (spec/locking.md, "A disk that does not
/// answer"). A read, write or flush of a block device that never completes cannot be
/// interrupted: the process waits in the kernel, killable at best, uninterruptible in a
/// flush, and a shell that captured its output (`$(slotctl boot --shell)` in the
/// initramfs hook) waits with it for ever. So the command runs in a worker process, and
/// the process the caller started only supervises it: it relays the worker's output,
/// and if one disk operation stays unfinished past its deadline it kills the worker
/// (the kill lands when the kernel lets go) and exits at once with 61, holding none of
/// the worker's descriptors, so its caller sees the end of the output and the status.
///
/// The worker announces each operation in a page shared with the supervisor: the
/// deadline (CLOCK_MONOTONIC nanoseconds; 0 while no operation is in progress), what it
/// is, where, and on which file. A flush's deadline grows by one second per MiB written
/// since the previous flush, and a read's or a write's by one second per MiB it moves,
/// so a slow but working device (1 MiB/s or faster) is never taken for a stalled one.
public enum IOWatchdog {
    public enum Operation: UInt64 {
        case read = 1, write = 2, flush = 3, open = 4, close = 5
        var word: String {
            switch self {
            case .read: "read"
            case .write: "write"
            case .flush: "flush (fsync)"
            case .open: "open (and size and sector-size probe)"
            case .close: "close"
            }
        }
    }

    /// How the supervision ended, for the CLI.
    public enum Outcome {
        /// This is the worker: run the command.
        case worker
        /// The worker finished with this exit status; the supervisor exits with it.
        case finished(Int32)
        /// An operation did not finish in time; the worker was killed. One line saying
        /// which operation, on which file, and how long it was given.
        case stalled(String)
        /// The supervisor could not tell how the worker ended (an internal error).
        case failed(String)
    }

    // The shared page: eight UInt64 words, then the path's bytes.
    private static let deadlineWord = 0, kindWord = 1, offsetWord = 2, countWord = 3, allowedWord = 4, pathLengthWord = 5
    private static let pathStart = 64, pathCapacity = 1024
    nonisolated(unsafe) private static var page: UnsafeMutableRawPointer? = nil
    nonisolated(unsafe) private static var timeoutNanoseconds: UInt64 = 0
    nonisolated(unsafe) private static var worker: pid_t = 0
    private static let forwarded = [SIGTERM, SIGINT, SIGHUP, SIGQUIT]

    /// Called by the CLI once, before the command opens any file. `timeout` 0 turns the
    /// bound off: the command runs in this process and `.worker` is returned at once.
    /// Otherwise forks: the worker gets `.worker` (its standard output and error are
    /// pipes to the supervisor, and with `relayInput` so is its standard input); the
    /// supervisor relays them until the worker ends and returns `.finished` or
    /// `.stalled`. If no worker can be started the command runs here, unbounded, and
    /// `warning` says so.
    public static func supervise(timeout: Double, relayInput: Bool, warning: (String) -> Void) -> Outcome {
        guard timeout > 0 else { return .worker }
        guard let shared = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0),
              Int(bitPattern: shared) != -1 else {
            warning("no I/O watchdog (mmap: \(Errno.current)); a disk that does not answer is not bounded")
            return .worker
        }
        var output: [Int32] = [-1, -1], errors: [Int32] = [-1, -1], input: [Int32] = [-1, -1]
        // Each pair closed in turn (joining them would allocate, in the worker too).
        func closePipes(above lowest: Int32) {
            for fd in output where fd > lowest { close(fd) }
            for fd in errors where fd > lowest { close(fd) }
            for fd in input where fd > lowest { close(fd) }
        }
        guard pipe(&output) == 0, pipe(&errors) == 0, !relayInput || pipe(&input) == 0 else {
            warning("no I/O watchdog (pipe: \(Errno.current)); a disk that does not answer is not bounded")
            closePipes(above: -1)
            munmap(shared, 4096)
            return .worker
        }
        // The worker's exit status is read with waitpid: a SIGCHLD the caller set to
        // SIG_IGN would have the kernel reap it first.
        signal(SIGCHLD, slotctl_sig_dfl())
        // A signal that would end the caller's slotctl ends the worker the same way: the
        // supervisor forwards it. Held across the fork, so none lands before the handlers
        // are in place; both processes then take these signals unblocked, even when the
        // caller's mask (a test harness's thread, say) blocked them, as a command run
        // from a shell does.
        var forwarded = sigset_t()
        sigemptyset(&forwarded)
        for signalNumber in IOWatchdog.forwarded { sigaddset(&forwarded, signalNumber) }
        sigprocmask(SIG_BLOCK, &forwarded, nil)
        defer { sigprocmask(SIG_UNBLOCK, &forwarded, nil) }
        shared.initializeMemory(as: UInt8.self, repeating: 0, count: 4096)
        page = shared
        timeoutNanoseconds = UInt64(timeout * 1e9)
        var affinity = slotctl_cpu_mask()
        let pinned = slotctl_pin_to_this_cpu(&affinity) == 0
        let pid = fork()
        if pinned { slotctl_restore_affinity(&affinity) }
        if pid < 0 {
            warning("no I/O watchdog (fork: \(Errno.current)); a disk that does not answer is not bounded")
            closePipes(above: -1)
            page = nil
            munmap(shared, 4096)
            return .worker
        }
        if pid == 0 {
            dup2(output[1], 1)
            dup2(errors[1], 2)
            if relayInput { dup2(input[0], 0) }
            closePipes(above: 2)
            return .worker
        }
        close(output[1])
        close(errors[1])
        if relayInput {
            close(input[0])
            // A worker that stops reading early (a refused stream) closes its end: the
            // next write says EPIPE instead of killing the supervisor with SIGPIPE.
            signal(SIGPIPE, slotctl_sig_ign())
        }
        worker = pid
        for signalNumber in IOWatchdog.forwarded {
            signal(signalNumber) { received in if IOWatchdog.worker > 0 { kill(IOWatchdog.worker, received) } }
        }
        sigprocmask(SIG_UNBLOCK, &forwarded, nil)
        return relay(errors: FileDescriptor(adopting: errors[0]), output: FileDescriptor(adopting: output[0]),
                     input: relayInput ? input[1] : nil, shared)
    }

    /// Copies the worker's errors and output to this process's own (and, for a stream
    /// install, this process's standard input to the worker's) until both outputs end,
    /// watching the worker's deadline every 100 ms meanwhile. Errors first within a
    /// round: slotctl writes its warnings before its result.
    private static func relay(errors: FileDescriptor, output: FileDescriptor, input feed: Int32?,
                              _ shared: UnsafeMutableRawPointer) -> Outcome {
        let pipes = [errors, output]
        let destinations: [FileDescriptor] = [.standardError, .standardOutput]
        var sources = pipes.map { pollfd(fd: $0.raw, events: Int16(POLLIN), revents: 0) }
        // The input relay: read the caller's stdin only when what was read before has
        // gone to the worker, and write to the worker without blocking, so a worker
        // that stops reading (stuck on the disk) never stops the deadline check.
        // Owned here alone: dropping it is what closes the worker's end at the end.
        var input = feed.map { FileDescriptor(adopting: $0) }
        if let input { _ = slotctl_fcntl_int(input.raw, F_SETFL, slotctl_fcntl(input.raw, F_GETFL) | O_NONBLOCK) }
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while sources.prefix(2).contains(where: { $0.fd >= 0 }) {
            var polled = Array(sources.prefix(2))
            if let input {
                polled.append(pending.isEmpty ? pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
                                              : pollfd(fd: input.raw, events: Int16(POLLOUT), revents: 0))
            }
            // Several descriptors at once: the one poll(2) outside FileDescriptor.
            _ = poll(&polled, nfds_t(polled.count), 100)
            for i in 0..<2 where polled[i].fd >= 0 && polled[i].revents != 0 {
                var got = 0, again = false
                buffer.withUnsafeMutableBytes { chunk in
                    do throws(Errno) { got = try pipes[i].read(into: chunk) } catch { again = error.code == EAGAIN }
                }
                if again { continue }
                if got == 0 { // the end (or an error): nothing more comes from this one
                    sources[i].fd = -1
                    continue
                }
                buffer.withUnsafeBytes { try? destinations[i].writeAll(UnsafeRawBufferPointer(rebasing: $0[0..<got])) }
            }
            if let relaying = input, polled.count == 3, polled[2].revents != 0,
               !relayStep(relaying, &pending, &buffer) {
                input = nil // closes the worker's end: it sees the end of the stream
            }
            let now = monotonicNanoseconds()
            let deadline = shared.load(fromByteOffset: deadlineWord * 8, as: UInt64.self)
            if deadline != 0 && now > deadline {
                let text = describeStall(shared)
                kill(worker, SIGKILL)
                return .stalled(text)
            }
        }
        var status: Int32 = 0
        var reaped: pid_t
        repeat { reaped = waitpid(worker, &status, 0) } while reaped < 0 && slotctl_errno() == EINTR
        worker = 0
        guard reaped > 0 else { return .failed("cannot learn how the worker ended: waitpid: \(Errno.current)") }
        let signalNumber = status & 0x7f
        if signalNumber == 0 { return .finished((status >> 8) & 0xff) }
        // Killed by a signal: end the same way, so the caller sees what the worker saw
        // (without a second core dump of this process).
        var noCore = rlimit(rlim_cur: 0, rlim_max: 0)
        _ = setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &noCore)
        signal(signalNumber, slotctl_sig_dfl())
        kill(getpid(), signalNumber)
        return .finished(128 + signalNumber)
    }

    /// One step of the input relay: hands what is pending to the worker, or reads the
    /// next chunk of the caller's stdin. False once either side is done: the caller's
    /// input ended, or the worker stopped reading.
    private static func relayStep(_ input: FileDescriptor, _ pending: inout [UInt8], _ buffer: inout [UInt8]) -> Bool {
        if pending.isEmpty {
            var got = 0, again = false
            buffer.withUnsafeMutableBytes { chunk in
                do throws(Errno) { got = try FileDescriptor.standardInput.read(into: chunk) } catch { again = error.code == EAGAIN }
            }
            if again { return true }
            if got == 0 { return false }
            pending = Array(buffer[0..<got])
            return true
        }
        let put = pending.withUnsafeBytes { write(input.raw, $0.baseAddress, $0.count) }
        if put > 0 { pending.removeFirst(put); return true }
        return put < 0 && (slotctl_errno() == EAGAIN || slotctl_errno() == EINTR)
    }

    private static func describeStall(_ shared: UnsafeMutableRawPointer) -> String {
        func word(_ index: Int) -> UInt64 { shared.load(fromByteOffset: index * 8, as: UInt64.self) }
        let operation = Operation(rawValue: word(kindWord)) ?? .read
        let length = Int(min(word(pathLengthWord), UInt64(pathCapacity)))
        let path = String(decoding: UnsafeRawBufferPointer(start: shared + pathStart, count: length), as: UTF8.self)
        let allowed = word(allowedWord)
        let tenths = (allowed + 50_000_000) / 100_000_000
        let seconds = tenths % 10 == 0 ? "\(tenths / 10)" : "\(tenths / 10).\(tenths % 10)"
        let what = switch operation {
        case .flush: "a \(operation.word) after \(word(countWord)) bytes written"
        case .open, .close: "an \(operation.word)"
        case .read, .write: "a \(operation.word) of \(word(countWord)) bytes at \(word(offsetWord))"
        }
        return "\(path): \(what) did not finish within \(seconds) s (--io-timeout, plus 1 s per MiB): the disk does "
            + "not answer; slotctl stopped, and the slot table holds the old state or the new one, as after a power cut"
    }

    /// Marks the start of a disk operation (FileBlockStore, around every pread, pwrite
    /// and fsync). `bytes` is what the operation may have to move: the request's size,
    /// or for a flush everything written since the last one. A no-op without a supervisor.
    static func begin(_ operation: Operation, path: String, offset: UInt64, bytes: UInt64) {
        guard let page else { return }
        let allowed = timeoutNanoseconds + ((min(bytes, 1 << 40) * 1000) >> 20) * 1_000_000
        page.storeBytes(of: operation.rawValue, toByteOffset: kindWord * 8, as: UInt64.self)
        page.storeBytes(of: offset, toByteOffset: offsetWord * 8, as: UInt64.self)
        page.storeBytes(of: bytes, toByteOffset: countWord * 8, as: UInt64.self)
        page.storeBytes(of: allowed, toByteOffset: allowedWord * 8, as: UInt64.self)
        var length = 0
        for byte in path.utf8.prefix(pathCapacity) {
            page.storeBytes(of: byte, toByteOffset: pathStart + length, as: UInt8.self)
            length += 1
        }
        page.storeBytes(of: UInt64(length), toByteOffset: pathLengthWord * 8, as: UInt64.self)
        // The deadline last: the supervisor reads the rest only once it has passed.
        page.storeBytes(of: monotonicNanoseconds() + allowed, toByteOffset: deadlineWord * 8, as: UInt64.self)
    }

    /// Marks the end of the operation `begin` announced.
    static func end() {
        page?.storeBytes(of: 0 as UInt64, toByteOffset: deadlineWord * 8, as: UInt64.self)
    }

    private static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}
