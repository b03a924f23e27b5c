#if canImport(Glibc)
import Glibc
#endif
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

private func errnoText() -> String { String(cString: strerror(errno)) }

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
        let fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw CounterError("TPM \(path): cannot open: \(errnoText())") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFCHR else {
            throw CounterError("TPM \(path): not a character device (a TPM is /dev/tpmrm0 or /dev/tpm0)")
        }
        SmallFiles.blockingFromNowOn(fd)
        let put = command.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard put == command.count else { throw CounterError("TPM \(path): write failed: \(errnoText())") }
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        var ready: Int32
        repeat { ready = poll(&poller, 1, Int32(timeoutSeconds * 1000)) } while ready < 0 && errno == EINTR
        guard ready == 1 else {
            throw CounterError("TPM \(path): no answer within \(timeoutSeconds) s")
        }
        var response = [UInt8](repeating: 0, count: maxResponse)
        let got = response.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard got > 0 else { throw CounterError("TPM \(path): read failed: \(errnoText())") }
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
            throw CounterError(.usage, "TPM \(name): host must be an IPv4 address")
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CounterError("TPM \(name): socket: \(errnoText())") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw CounterError("TPM \(name): cannot connect: \(errnoText())") }
        var sent = 0
        while sent < command.count {
            let n = command.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw CounterError("TPM \(name): send failed: \(errnoText())") }
            sent += n
        }
        var response = try receive(fd, count: 10)
        let size = Int(response[2]) << 24 | Int(response[3]) << 16 | Int(response[4]) << 8 | Int(response[5])
        guard size >= 10, size <= maxResponse else { throw CounterError("TPM \(name): response size \(size) out of range") }
        response += try receive(fd, count: size - 10)
        return response
    }

    private func receive(_ fd: Int32, count: Int) throws(CounterError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw CounterError("TPM \(name): " + (n == 0 ? "connection closed mid-response" : "no answer: \(errnoText())"))
            }
            got += n
        }
        return bytes
    }
}
