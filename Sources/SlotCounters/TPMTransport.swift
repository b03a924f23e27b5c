import CSystem
import SlotCore
import SlotStorage

/// Carries one TPM command and brings back its response.
public protocol TPMTransport: AnyObject {
    var name: String { get }
    func transact(_ command: [UInt8]) throws(CounterError) -> [UInt8]
}

/// Largest response slotctl accepts; its commands' responses are far smaller.
let maxResponse = 4096
/// How long a TPM may take to answer before slotctl gives up (fail closed).
let timeoutSeconds = 10

/// The kernel's TPM resource manager (`/dev/tpmrm0`): one write, one read.
public final class TPMDeviceTransport: TPMTransport {
    let path: String
    public var name: String { path }

    public init(path: String) { self.path = path }

    public func transact(_ command: [UInt8]) throws(CounterError) -> [UInt8] {
        // Blocking on purpose: the kernel runs the command inside write(2), bounded by the
        // TPM driver's own timeouts. O_NONBLOCK would not bound a stall any better (close
        // waits for the queued command) and would turn a transmit error into a timeout.
        // Opened without blocking only to check it is a device: a FIFO named as the TPM
        // would otherwise hang the boot in open(2) or read(2).
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK) } catch {
            throw CounterError.notSent("TPM \(path): cannot open: \(error)")
        }
        guard let info = try? fd.status(), info.st_mode & mode_t(S_IFMT) == mode_t(S_IFCHR) else {
            throw CounterError.notSent("TPM \(path): not a character device (a TPM is /dev/tpmrm0 or /dev/tpm0)")
        }
        fd.blockFromNowOn()
        do { try fd.writeAll(command) } catch { throw CounterError("TPM \(path): write failed: \(error)") }
        let ready: Bool
        do { ready = try fd.waitForInput(milliseconds: Int32(timeoutSeconds * 1000)) } catch {
            throw CounterError("TPM \(path): poll failed: \(error)")
        }
        guard ready else { throw CounterError("TPM \(path): no answer within \(timeoutSeconds) s") }
        var response = [UInt8](repeating: 0, count: maxResponse)
        var got = 0
        var failure: Errno? = nil
        response.withUnsafeMutableBytes { buffer in
            do throws(Errno) { got = try fd.read(into: buffer) } catch { failure = error }
        }
        if let failure { throw CounterError("TPM \(path): read failed: \(failure)") }
        guard got > 0 else { throw CounterError("TPM \(path): read failed: no response") }
        return Array(response[0..<got])
    }
}

/// A TPM reached over TCP (swtpm's server port takes raw command bytes): one
/// connection per command, send the command, read the 10-byte header, then the rest.
public final class TPMSocketTransport: TPMTransport {
    let host: String
    let port: UInt16
    public var name: String { "\(host):\(port)" }

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public func transact(_ command: [UInt8]) throws(CounterError) -> [UInt8] {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &address.sin_addr) == 1 else {
            throw CounterError.notSent(.usage, "TPM \(name): host must be an IPv4 address")
        }
        let fd: FileDescriptor
        do { fd = try FileDescriptor.tcpSocket() } catch { throw CounterError.notSent("TPM \(name): socket: \(error)") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd.raw, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd.raw, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd.raw, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw CounterError.notSent("TPM \(name): cannot connect: \(Errno.current)") }
        do { try fd.sendAll(command) } catch { throw CounterError("TPM \(name): send failed: \(error)") }
        var response = try receive(fd, count: 10)
        let size = Int(response[2]) << 24 | Int(response[3]) << 16 | Int(response[4]) << 8 | Int(response[5])
        guard size >= 10, size <= maxResponse else { throw CounterError("TPM \(name): response size \(size) out of range") }
        response += try receive(fd, count: size - 10)
        return response
    }

    /// Exactly `count` bytes (a receive timeout ends the wait: fail closed).
    private func receive(_ fd: FileDescriptor, count: Int) throws(CounterError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var got = 0
        var failure: Errno? = nil
        bytes.withUnsafeMutableBytes { buffer in
            do throws(Errno) {
                while got < count {
                    let n = try fd.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[got...]))
                    if n == 0 { break }
                    got += n
                }
            } catch { failure = error }
        }
        if let failure { throw CounterError("TPM \(name): no answer: \(failure)") }
        guard got == count else { throw CounterError("TPM \(name): connection closed mid-response") }
        return bytes
    }
}

extension TPMTransport {
    /// A command's failure as the counters and the PCRs report it: "TPM NAME: WHAT: " and
    /// the response code by name with its hint, or what was wrong with the response.
    func failure(_ what: String, _ error: TPMError) -> CounterError {
        if case .responseCode(let code) = error {
            return CounterError("TPM \(name): \(what): \(TPMCounters.describe(TPMResponseCode(code)))")
        }
        return CounterError("TPM \(name): \(what): \(error.reason)")
    }
}

extension CounterError {
    /// A transport failure before the command left: the TPM never saw it.
    static func notSent(_ message: String) -> CounterError { notSent(.countersUnavailable, message) }

    static func notSent(_ code: StatusCode, _ message: String) -> CounterError {
        var error = CounterError(code, message)
        error.commandSent = false
        return error
    }
}
