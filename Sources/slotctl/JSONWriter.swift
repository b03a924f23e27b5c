/// The one hand-written JSON encoder: builds a single object in key order with correct
/// string escaping. Output shapes are documented in spec/json.md.
struct JSONObject {
    private var fields: [String] = []

    mutating func set(_ key: String, _ value: String) { fields.append("\(quote(key)):\(quote(value))") }
    mutating func set(_ key: String, _ value: Int) { fields.append("\(quote(key)):\(value)") }
    mutating func set(_ key: String, _ value: UInt64) { fields.append("\(quote(key)):\(value)") }
    mutating func set(_ key: String, _ value: Bool) { fields.append("\(quote(key)):\(value)") }
    mutating func setNull(_ key: String) { fields.append("\(quote(key)):null") }
    mutating func set(_ key: String, _ value: JSONObject) { fields.append("\(quote(key)):\(value.text)") }
    mutating func set(_ key: String, _ values: [JSONObject]) {
        fields.append("\(quote(key)):[\(values.map { $0.text }.joined(separator: ","))]")
    }
    mutating func set(_ key: String, strings values: [String]) {
        fields.append("\(quote(key)):[\(values.map(quote).joined(separator: ","))]")
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
