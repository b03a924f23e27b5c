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
            if let secret = try ownerAuthorization() {
                do { try counters.useOwnerAuthorization(secret) } catch {
                    throw CLIError(error.code, "counters provision: \(error.message)")
                }
            }
            do { text = try counters.provision(locations: locations) + "\n" } catch {
                throw CLIError(error.code, "counters provision: \(error.message)")
            }
            json.set("provisioned", text.trimmingNewline)
        } else if let flag = ["--locations", "--owner-auth-file", "--owner-auth-fd"].first(where: { line.flags[$0] != nil }) {
            throw CLIError(.usage, "counters: \(flag) goes with 'provision'")
        }
        let (summary, summaryText, failure) = countersSummary(counters)
        json.set("counters", summary)
        text += summaryText
        if let failure { throw CLIError(failure.code, failure.message, details: text) }
        return (.ok, text, json)
    }
}

extension Commands {
    /// The TPM owner password from --owner-auth-file or --owner-auth-fd, if either is
    /// given (spec/rollback.md, "Owner authorization"); never from an argument itself.
    func ownerAuthorization(for command: String = "counters provision") throws(CLIError) -> [UInt8]? {
        let file = line.flags["--owner-auth-file"], descriptor = line.flags["--owner-auth-fd"]
        guard file == nil || descriptor == nil else {
            throw CLIError(.usage, "\(command): --owner-auth-file and --owner-auth-fd are two ways to give one password; give one")
        }
        var number: Int32? = nil
        if let descriptor {
            guard let parsed = Int32(descriptor), parsed >= 0 else {
                throw CLIError(.usage, "--owner-auth-fd: '\(descriptor)' is not a descriptor number")
            }
            number = parsed
        }
        do throws(TrustError) {
            if let file { return try SecretFiles.read(path: file) }
            if let number { return try SecretFiles.read(descriptor: number) }
        } catch {
            throw CLIError(.usage, "\(command): owner authorization: \(error.message)")
        }
        return nil
    }
}

extension String {
    var trimmingNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
}
