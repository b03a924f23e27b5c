import Testing
import SlotCore
import SlotFlows
import SlotStorage
import SlotTestSupport

/// Every mutating flow, cut at every write, with the cut write torn at several points and
/// the drive cache kept, lost, or partly lost; starting from a clean table, from one
/// whose primary is damaged (the backup is the source), and from one whose backup is
/// stale. After each cut a fresh run must read the whole old state or the whole new
/// state, and boot exactly the slot the policy picks from it, leaving two valid copies.
@Suite struct PowerCutTests {
    struct Case {
        let name: String
        let states: [SlotState]
        let run: (BlockStore) throws -> Void
    }

    static var cases: [Case] { [
        Case(name: "boot", states: [S(15, 3, false), S(14, 0, true)]) {
            _ = try BootControl.boot($0, verifier: TableOnlyVerifier(), dryRun: false)
        },
        Case(name: "boot on the last try", states: [S(15, 1, false), S(14, 0, true)]) {
            _ = try BootControl.boot($0, verifier: TableOnlyVerifier(), dryRun: false)
        },
        Case(name: "mark-successful", states: [S(15, 2, false), S(14, 0, true)]) {
            _ = try BootControl.markSuccessful($0, slot: UInt8(ascii: "a"))
        },
        Case(name: "mark-successful after the last try", states: [S(15, 0, false), S(14, 0, true)]) {
            _ = try BootControl.markSuccessful($0, slot: UInt8(ascii: "a"))
        },
        Case(name: "mark-failed", states: [S(15, 2, false), S(14, 0, true)]) {
            _ = try BootControl.markFailed($0, slot: UInt8(ascii: "a"))
        },
        Case(name: "set-active", states: [S(15, 0, true), S(14, 0, true)]) {
            _ = try BootControl.setActive($0, slot: UInt8(ascii: "b"), tries: 6)
        },
    ] }

    enum Start: CaseIterable { case clean, damagedPrimary, staleBackup }

    /// The image a case starts from, and the states it holds.
    static func startImage(_ testCase: Case, _ start: Start, sectorSize: Int) throws -> [UInt8] {
        let disk = TableFixtures.disk(sectorSize: sectorSize, states: testCase.states, small: true)
        switch start {
        case .clean:
            return disk.bytes
        case .damagedPrimary:
            for i in sectorSize..<(2 * sectorSize) { disk.bytes[i] ^= 0xA5 }
            return disk.bytes
        case .staleBackup:
            // Change slot b through the primary only (its priority, and a bit that is not
            // slotctl's): the backup holds an older state, valid but stale. A save must
            // not let a torn primary fall back to it: that would lose the state the
            // primary committed.
            let table = try TableStore.load(disk)
            var slots = table.slots
            slots[1].attributes ^= 1 << 2 | 1 << 48
            let cut = PowerCutStore(bytes: disk.bytes, sectorSize: sectorSize, cutAt: 2, tornBytes: 0, cache: .keep)
            _ = try? TableStore.save(cut, table, slots: slots)
            let result = try TableStore.load(MemoryStore(bytes: cut.surviving, sectorSize: sectorSize))
            #expect(result.backup.status == .stale)
            return cut.surviving
        }
    }

    @Test(arguments: [512, 4096])
    func cutAtEveryWrite(sectorSize: Int) throws {
        var checked = 0
        for testCase in Self.cases {
            for start in Start.allCases {
                let image = try Self.startImage(testCase, start, sectorSize: sectorSize)
                let oldStates = try #require(TableFixtures.states(image, sectorSize: sectorSize))
                let clean = MemoryStore(bytes: image, sectorSize: sectorSize)
                try testCase.run(clean)
                let newStates = try #require(TableFixtures.states(clean.bytes, sectorSize: sectorSize))
                #expect(newStates != oldStates, "\(testCase.name) changes the state")
                #expect(clean.writes == 4, "\(testCase.name): entries + header per copy")
                for cutAt in 0..<clean.writes {
                    for torn in [0, 1, 91, sectorSize - 1, sectorSize, 1 << 20] {
                        for cache in [PowerCutStore.Cache.keep, .lose, .randomSubset(seed: 1), .randomSubset(seed: 2),
                                      .randomSubset(seed: 3)] {
                            let label = "\(testCase.name) from \(start) sector \(sectorSize) cut at write \(cutAt) torn \(torn) cache \(cache)"
                            let store = PowerCutStore(bytes: image, sectorSize: sectorSize, cutAt: cutAt,
                                                      tornBytes: torn, cache: cache)
                            let threw = (try? testCase.run(store)) == nil
                            // Before the primary is flushed the command fails; after it, the new
                            // state is committed and the lost backup is only a warning. With a
                            // stale backup the backup is written first, and the primary's flush
                            // (after write 3) commits.
                            let commitsAfter = start == .staleBackup ? 4 : 2
                            #expect(threw == (cutAt < commitsAfter), "\(label)")
                            let after = MemoryStore(bytes: store.surviving, sectorSize: sectorSize)
                            let seen = try #require(TableFixtures.states(after.bytes, sectorSize: sectorSize), "\(label)")
                            #expect(seen == oldStates || seen == newStates, "\(label): read \(seen)")
                            if cutAt >= commitsAfter { #expect(seen == newStates, "\(label): committed state lost") }
                            let boot = try BootControl.boot(after, verifier: TableOnlyVerifier(), dryRun: false)
                            #expect(boot.chosen == PropertyTests.oracleChoice(seen), "\(label)")
                            let reloaded = try TableStore.load(after)
                            #expect(reloaded.primary.status == .valid && reloaded.backup.status == .valid, "\(label)")
                            checked += 1
                        }
                    }
                }
            }
        }
        #expect(checked == Self.cases.count * Start.allCases.count * 4 * 6 * 5)
    }
}
