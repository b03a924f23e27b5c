import SlotCore
import SlotCounters
import SlotCrypto
import SlotFlows
import SlotStorage

extension Commands {
    /// The counters part of status and of `counters`.
    func countersSummary(_ counters: RollbackCounters?) -> (JSONObject, String, CounterError?) {
        var json = JSONObject()
        guard let counters else {
            json.setNull("spec")
            return (json, "rollback counters: none configured (rollback is not enforced; set counters = ...)\n", nil)
        }
        json.set("spec", counters.spec)
        json.set("hardware_backed", counters.hardwareBacked)
        var text = "rollback counters: \(counters.spec)"
            + (counters.hardwareBacked ? " (hardware-backed)\n" : " (NOT hardware-backed: development only)\n")
        let caveats = counters.caveats()
        json.set("caveats", strings: caveats)
        for caveat in caveats { text += "  caveat: \(caveat)\n" }
        var failure: CounterError? = nil
        do {
            let count = try counters.provisionedLocations()
            var values: [JSONObject] = []
            if count == 0 { text += "  not provisioned (run slotctl counters provision)\n" }
            for location in 0..<UInt32(count) {
                let value = try counters.read(location: location)
                var item = JSONObject()
                item.set("location", Int(location))
                item.set("value", value)
                values.append(item)
                text += "  location \(location): \(value)\n"
            }
            json.set("provisioned", count)
            json.set("locations", values)
        } catch {
            json.set("error", error.message)
            text += "  unavailable: \(error.message)\n"
            failure = error
        }
        return (json, text, failure)
    }

    /// `counters` shows the rollback counters; `counters provision [--locations N]`
    /// creates them (default 8 locations).
    func countersCommand() throws(CLIError) -> Outcome {
        guard let counters = try counters() else {
            throw CLIError(.usage, "counters: no counter store configured: pass --counters SPEC or set 'counters =' in \(line.configPath)")
        }
        var json = JSONObject()
        var text = ""
        if let action = line.positional.first {
            guard action == "provision" else { throw CLIError(.usage, "counters: unknown action '\(action)' (provision)") }
            var locations = 8
            if let value = line.flags["--locations"] {
                guard let n = Int(value) else { throw CLIError(.usage, "--locations: '\(value)' is not a number") }
                locations = n
            } else if let provisioned = try? counters.provisionedLocations(), provisioned > 0 {
                // Provisioning again without --locations keeps what is there: only an
                // explicit --locations asks a store to grow (and one that cannot says so).
                locations = provisioned
            }
            do { text = try counters.provision(locations: locations) + "\n" } catch {
                throw CLIError(error.code, "counters provision: \(error.message)")
            }
            json.set("provisioned", text.trimmingNewline)
        } else if line.flags["--locations"] != nil {
            throw CLIError(.usage, "counters: --locations goes with 'provision'")
        }
        let (summary, summaryText, failure) = countersSummary(counters)
        json.set("counters", summary)
        text += summaryText
        if let failure { throw CLIError(failure.code, failure.message, details: text) }
        return (.ok, text, json)
    }
}

extension String {
    var trimmingNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
}
