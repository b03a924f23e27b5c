import SlotCore
#if canImport(Glibc)
import Glibc
#endif

/// The trusted public keys: every `*.pem` file in one directory (default
/// `/etc/slotctl/keys`). A file that is not a usable public key is skipped and
/// reported in `problems`: it can never make a slot verify, and it does not stop the
/// others from being used.
public struct KeyDirectory {
    public let path: String
    public private(set) var keys: [PublicKey] = []
    public private(set) var problems: [String] = []

    /// Loads the directory. A missing directory is an empty key set (every signed slot
    /// then fails as signed by an untrusted key), with the reason in `problems`.
    public init(path: String) {
        self.path = path
        guard let directory = opendir(path) else {
            problems.append("\(path): cannot open key directory: \(String(cString: strerror(errno)))")
            return
        }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name.hasSuffix(".pem") && !name.hasPrefix(".") { names.append(name) }
        }
        closedir(directory)
        for name in names.sorted() {
            let file = path + "/" + name
            do {
                let key = try PublicKey(pemPath: file)
                if key.kind.algorithm == nil {
                    problems.append("\(file): \(key.kind) keys are not supported")
                } else if keys.contains(where: { $0.keyID == key.keyID }) {
                    problems.append("\(file): same key as another file, ignored")
                } else {
                    keys.append(key)
                }
            } catch {
                problems.append("\(error.message) (key directory files must be public keys)")
            }
        }
    }

    public func key(id: [UInt8]) -> PublicKey? { keys.first { $0.keyID == id } }
}

public func hex(_ bytes: [UInt8]) -> String {
    let digits: [Character] = Array("0123456789abcdef")
    var out = ""
    out.reserveCapacity(bytes.count * 2)
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 15)])
    }
    return out
}
