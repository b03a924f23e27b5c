import CSystem
import SlotCore
import SlotCrypto
import SlotStorage

/// What `slotctl --version` and `slotctl version [--json]` report: the release, how this
/// binary was built, the libcrypto it runs with, and the versions of every format it
/// reads and writes, so a field engineer can tell two builds apart from the binary alone.
enum BuildInfo {
    static let version = "0.5.0"
    /// The version of the `--json` contract (spec/json.md): raised when a key changes
    /// meaning or goes away; new keys do not raise it.
    static let schemaVersion = 1

    static var embedded: Bool {
        #if hasFeature(Embedded)
        true
        #else
        false
        #endif
    }

    static var debug: Bool {
        #if DEBUG
        true
        #else
        false
        #endif
    }

    /// No program interpreter: the kernel started this binary directly (a static
    /// executable, as `make static` builds for the initramfs). Read from the auxiliary
    /// vector (AT_BASE, 7, is the interpreter's base; 0 without one).
    static var statically: Bool {
        guard let auxv = try? SmallFiles.read("/proc/self/auxv", limit: 4096) else { return false }
        var offset = 0
        while offset + 16 <= auxv.count {
            var type: UInt64 = 0, value: UInt64 = 0
            for i in 0..<8 {
                type |= UInt64(auxv[offset + i]) << (8 * UInt64(i))
                value |= UInt64(auxv[offset + 8 + i]) << (8 * UInt64(i))
            }
            if type == 7 { return value == 0 }
            if type == 0 { break }
            offset += 16
        }
        return true
    }

    static let formats: [(name: String, version: String)] = [
        ("gpt", "UEFI GPT revision 1.0, ChromeOS attribute bits"),
        ("descriptor", "\(SlotDescriptor.formatVersion)"),
        ("footer", "\(ImageFooter.version)"),
        ("stream", "\(StreamHeader.version)"),
        ("counter_file", "1"),
        ("booted_record", "1"),
        ("json_schema", "\(schemaVersion)"),
    ]

    static var text: String {
        "slotctl \(version)\n"
            + "build: \(embedded ? "Embedded Swift" : "Swift runtime"), \(statically ? "static" : "dynamic"), "
            + "\(debug ? "debug" : "release")\n"
            + "crypto: \(cryptoLibraryVersion())\n"
            + "formats: " + formats.map { "\($0.name) \($0.version)" }.joined(separator: "; ") + "\n"
    }

    static var json: JSONObject {
        var o = JSONObject()
        o.set("version", version)
        o.set("embedded", embedded)
        o.set("static", statically)
        o.set("debug", debug)
        o.set("crypto", cryptoLibraryVersion())
        var formatsObject = JSONObject()
        for format in formats { formatsObject.set(format.name, format.version) }
        o.set("formats", formatsObject)
        return o
    }
}
