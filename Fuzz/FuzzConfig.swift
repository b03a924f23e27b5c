// libFuzzer target: /etc/slotctl.conf from hostile bytes (Sources/slotctl/Config.swift,
// compiled into this target on its own). The file decides which disk, keys and
// counters are used: any input must give settings or a usage error, never a crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    var settings = Settings()
    do {
        try Config.apply(text, path: "fuzz.conf", to: &settings)
        // Accepted: every value came from a `key = value` line, so none is empty.
        precondition(settings.disk.map { !$0.isEmpty } ?? true && !settings.keys.isEmpty)
    } catch {
        precondition(error.code == .usage && !error.message.isEmpty)
    }
    return 0
}
