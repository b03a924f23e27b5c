import Testing
import SlotCore
import SlotFlows
import SlotStorage
import SlotTestSupport

/// Every mutating flow, cut at every write, with the cut write torn at several points and
/// with or without the drive cache lost. After each cut a fresh run must read the whole
/// old state or the whole new state, boot a good slot, and leave two valid equal copies.
@Suite struct PowerCutTests {
    struct Case {
        let name: String
        let states: [SlotState]
        let run: (BlockStore) throws -> Void
    }

    static var cases: [Case] { [
        Case(name: "boot", states: [S(15, 3, false), S(14, 0, true)]) {
            _ = try SlotFlows.boot($0, verifier: TableOnlyVerifier(), dryRun: false)
        },
        Case(name: "mark-successful", states: [S(15, 2, false), S(14, 0, true)]) {
            _ = try SlotFlows.markSuccessful($0, slot: UInt8(ascii: "a"))
        },
        Case(name: "mark-failed", states: [S(15, 2, false), S(14, 0, true)]) {
            _ = try SlotFlows.markFailed($0, slot: UInt8(ascii: "a"))
        },
        Case(name: "set-active", states: [S(15, 0, true), S(14, 0, true)]) {
            _ = try SlotFlows.setActive($0, slot: UInt8(ascii: "b"), tries: 6)
        },
    ] }

    @Test(arguments: [512, 4096])
    func cutAtEveryWrite(sectorSize: Int) throws {
        for testCase in Self.cases {
            let start = TableFixtures.disk(sectorSize: sectorSize, states: testCase.states, small: true)
            let oldStates = try #require(TableFixtures.states(start.bytes, sectorSize: sectorSize))
            let clean = MemoryStore(bytes: start.bytes, sectorSize: sectorSize)
            try testCase.run(clean)
            let newStates = try #require(TableFixtures.states(clean.bytes, sectorSize: sectorSize))
            #expect(newStates != oldStates, "\(testCase.name) changes the state")
            #expect(clean.writes == 4, "\(testCase.name): entries+header per copy")
            for cutAt in 0..<clean.writes {
                for torn in [0, 1, 91, sectorSize - 1, sectorSize, 1 << 20] {
                    for loseUnflushed in [false, true] {
                        let label = "\(testCase.name) sector \(sectorSize) cut at write \(cutAt) torn \(torn) lose-cache \(loseUnflushed)"
                        let store = PowerCutStore(bytes: start.bytes, sectorSize: sectorSize, cutAt: cutAt,
                                                  tornBytes: torn, loseUnflushed: loseUnflushed)
                        #expect(throws: (any Error).self, "\(label)") { try testCase.run(store) }
                        let after = MemoryStore(bytes: store.surviving, sectorSize: sectorSize)
                        let seen = TableFixtures.states(after.bytes, sectorSize: sectorSize)
                        #expect(seen == oldStates || seen == newStates, "\(label): read \(String(describing: seen))")
                        // The next boot finds a good slot and leaves both copies valid and equal.
                        let boot = try SlotFlows.boot(after, verifier: TableOnlyVerifier(), dryRun: false)
                        #expect(boot.slots[boot.chosen].state.isBootable || boot.consumedTry, "\(label)")
                        let reloaded = try TableStore.load(after)
                        #expect(reloaded.primary.status == .valid && reloaded.backup.status == .valid, "\(label)")
                    }
                }
            }
        }
    }
}
