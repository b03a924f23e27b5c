/// The one hand-written JSON encoder: builds a single object in key order with correct
/// string escaping. Output shapes are documented in spec/json.md.
///
/// A command's result object is only assembled when `--json` asked for it: the CLI sets
/// `assembling` from the settings before the command runs, and while it is off every `set`
/// is a no-op; a caller whose values cost something to compute checks `assembling` first. `--progress json` lines are always assembled (`always: true`).
struct JSONObject {
    nonisolated(unsafe) static var assembling = true
    private let active: Bool
    private var fields: [String] = []

    init(always: Bool = false) { active = always || JSONObject.assembling }

    mutating func set(_ key: String, _ value: String) {
        if active { fields.append("\(quote(key)):\(quote(value))") }
    }
    mutating func set(_ key: String, _ value: Int) { if active { fields.append("\(quote(key)):\(value)") } }
    mutating func set(_ key: String, _ value: UInt64) { if active { fields.append("\(quote(key)):\(value)") } }
    mutating func set(_ key: String, _ value: Bool) { if active { fields.append("\(quote(key)):\(value)") } }
    mutating func setNull(_ key: String) { if active { fields.append("\(quote(key)):null") } }
    mutating func set(_ key: String, _ value: JSONObject) {
        if active { fields.append("\(quote(key)):\(value.text)") }
    }
    mutating func set(_ key: String, _ values: [JSONObject]) {
        if active { fields.append("\(quote(key)):[\(values.map { $0.text }.joined(separator: ","))]") }
    }
    mutating func set(_ key: String, strings values: [String]) {
        if active { fields.append("\(quote(key)):[\(values.map(quote).joined(separator: ","))]") }
    }

    var text: String { "{\(fields.joined(separator: ","))}" }
}

func quote(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}
