import Testing
import Glibc
import SlotCore
import SlotCounters
import SlotFlows
import SlotStorage
import SlotTestSupport

let a = UInt8(ascii: "a"), b = UInt8(ascii: "b")

@Suite struct RollbackFlowTests {
    @Test func markSuccessfulRaisesAfterTheTableAndIsIdempotent() throws {
        let store = TableFixtures.disk(states: [S(14, 0, true), S(15, 3, false)])
        let counters = MemoryCounters(locations: 4)
        counters.values[1] = 2
        let verifier = ClaimVerifier(claims: [a: RollbackClaim(location: 1, index: 2), b: RollbackClaim(location: 1, index: 5)],
                                     counters: counters)
        let boot = try BootControl.boot(store, verifier: verifier, dryRun: false)
        #expect(boot.chosen == 1)
        let booted = (letter: b, claim: boot.claim)
        #expect(boot.claim == RollbackClaim(location: 1, index: 5))
        let report = try BootControl.markSuccessful(store, slot: b, verifier: verifier, counters: counters, booted: booted)
        #expect(report.raised?.from == 2 && report.raised?.to == 5 && counters.values[1] == 5 && counters.increments == 3)
        // Again: nothing more to raise, nothing written.
        let again = try BootControl.markSuccessful(store, slot: b, verifier: verifier, counters: counters, booted: booted)
        #expect(!again.wrote && again.raised?.to == 5 && counters.increments == 3)
        // a (index 2) is now a downgrade: boot refuses it if b goes away.
        _ = try BootControl.markFailed(store, slot: b)
        #expect { try BootControl.boot(store, verifier: verifier, dryRun: false) } throws: {
            ($0 as? FlowError)?.code == .noBootableSlot && ($0 as? FlowError)?.message.contains("below counter 5") == true
        }
        #expect(TableFixtures.states(store.bytes, sectorSize: 512) == [S(0, 0, false), S(0, 0, false)])
    }

    @Test func unreadableCountersStopBootWithoutJudging() throws {
        let store = TableFixtures.disk(states: [S(15, 3, false), S(14, 0, true)])
        let counters = MemoryCounters(locations: 2)
        counters.unreachable = true
        let verifier = ClaimVerifier(claims: [a: RollbackClaim(location: 0, index: 1), b: RollbackClaim(location: 0, index: 1)],
                                     counters: counters)
        let before = store.bytes
        #expect { try BootControl.boot(store, verifier: verifier, dryRun: false) } throws: {
            ($0 as? FlowError)?.code == .countersUnavailable
        }
        #expect(store.bytes == before)
    }

    /// An image naming a location this device never provisioned is refused on its own;
    /// the other slot still boots.
    @Test func anUnprovisionedLocationRefusesOnlyThatSlot() throws {
        let store = TableFixtures.disk(states: [S(15, 3, false), S(14, 0, true)])
        let verifier = ClaimVerifier(claims: [a: RollbackClaim(location: 20, index: 1), b: RollbackClaim(location: 0, index: 1)],
                                     counters: MemoryCounters(locations: 8))
        let boot = try BootControl.boot(store, verifier: verifier, dryRun: false)
        #expect(boot.chosen == 1 && boot.rejected.first?.code == .countersUnavailable)
    }

    /// Counters are raised only for the slot that booted, only for the image that booted,
    /// and only within the bound; each refusal changes nothing.
    @Test func markSuccessfulRaisesOnlyWhatBooted() throws {
        let store = TableFixtures.disk(states: [S(15, 0, true), S(14, 3, false)])
        let counters = MemoryCounters(locations: 1)
        counters.values[0] = 3
        let verifier = ClaimVerifier(claims: [a: RollbackClaim(location: 0, index: 3), b: RollbackClaim(location: 0, index: 4)],
                                     counters: counters)
        let before = store.bytes
        let cases: [((letter: UInt8, claim: RollbackClaim?)?, StatusCode)] = [
            ((a, RollbackClaim(location: 0, index: 3)), .usage),   // b did not boot
            (nil, .usage),                                          // nothing recorded
            ((b, RollbackClaim(location: 0, index: 9)), .digestMismatch), // another image booted
        ]
        for (booted, code) in cases {
            #expect { try BootControl.markSuccessful(store, slot: b, verifier: verifier, counters: counters, booted: booted) } throws: {
                ($0 as? FlowError)?.code == code
            }
            #expect(store.bytes == before && counters.values[0] == 3)
        }
        verifier.claims[b] = RollbackClaim(location: 0, index: 3 + RollbackLimits.maxRaise + 1)
        #expect { try BootControl.markSuccessful(store, slot: b, verifier: verifier, counters: counters,
                                               booted: (b, verifier.claims[b])) } throws: {
            ($0 as? FlowError)?.code == .raiseTooLarge
        }
        #expect(store.bytes == before && counters.values[0] == 3)
        verifier.claims[b] = RollbackClaim(location: 0, index: 4)
        let report = try BootControl.markSuccessful(store, slot: b, verifier: verifier, counters: counters, booted: (b, verifier.claims[b]))
        #expect(report.raised?.to == 4 && counters.values[0] == 4)
    }

    @Test func aRefusedImageIsNotConfirmedAndNothingChanges() throws {
        let store = TableFixtures.disk(states: [S(15, 2, false), S(14, 0, true)])
        let counters = MemoryCounters(locations: 1)
        counters.values[0] = 9
        let verifier = ClaimVerifier(claims: [a: RollbackClaim(location: 0, index: 3)], counters: counters)
        let before = store.bytes
        #expect { try BootControl.markSuccessful(store, slot: a, verifier: verifier, counters: counters) } throws: {
            ($0 as? FlowError)?.code == .rollback
        }
        #expect(store.bytes == before && counters.values[0] == 9)
    }

    /// Power cut at every write of mark-successful, table and counter together: the 4
    /// table writes, then each increment of the raise. After each cut: if b is not
    /// confirmed on disk and then fails, a (confirmed at 3) must still boot — which the
    /// counter-first order would break; if b is confirmed, the next mark-successful
    /// completes the raise.
    @Test func powerCutAtEveryWriteOfMarkSuccessful() throws {
        let start = TableFixtures.disk(states: [S(14, 0, true), S(15, 1, false)], small: true)
        let claims = [a: RollbackClaim(location: 0, index: 3), b: RollbackClaim(location: 0, index: 7)]
        let steps = 4 + 4 // four table writes, then 3 -> 7 in four increments
        for cut in 0..<steps {
            for cache in [PowerCutStore.Cache.keep, .lose, .randomSubset(seed: UInt64(cut))] {
                let counters = MemoryCounters(locations: 1)
                counters.values[0] = 3 // a was confirmed at index 3
                let verifier = ClaimVerifier(claims: claims, counters: counters)
                let disk = PowerCutStore(bytes: start.bytes, sectorSize: 512, cutAt: cut < 4 ? cut : 99, tornBytes: 100, cache: cache)
                // The power is gone for the TPM too: a cut in the table allows no increment.
                counters.failAfterIncrements = cut < 4 ? 0 : cut - 4
                let booted = (letter: b, claim: claims[b])
                #expect(throws: FlowError.self) {
                    try BootControl.markSuccessful(disk, slot: b, verifier: verifier, counters: counters, booted: booted)
                }
                #expect(counters.values[0] >= 3 && counters.values[0] <= 7, "cut \(cut)")
                let after = MemoryStore(bytes: disk.surviving, sectorSize: 512)
                counters.failAfterIncrements = nil
                let bConfirmed = try #require(TableFixtures.states(after.bytes, sectorSize: 512))[1].successful
                // Confirmed once the primary header landed whole (a tear past byte 92 lands it).
                if cut >= 2 { #expect(bConfirmed, "cut \(cut): the flushed primary was lost") }
                if bConfirmed {
                    let boot = try BootControl.boot(after, verifier: verifier, dryRun: false)
                    #expect(boot.chosen == 1, "cut \(cut)")
                    _ = try BootControl.markSuccessful(after, slot: b, verifier: verifier, counters: counters, booted: booted)
                    #expect(counters.values[0] == 7, "cut \(cut): the raise completes on the next mark-successful")
                } else {
                    _ = try BootControl.markFailed(after, slot: b)
                    let boot = try BootControl.boot(after, verifier: verifier, dryRun: false)
                    #expect(boot.chosen == 0, "cut \(cut): b failed, a must still boot")
                }
            }
        }
    }

    /// Random sequences of install-by-copy, boot, mark-successful and mark-failed: no
    /// counter ever decreases, and no slot boots with an index below its counter.
    @Test func randomUpdateSequences() throws {
        for seed in UInt64(1)...300 {
            var random = SeededRandom(seed: seed)
            let store = TableFixtures.disk(states: [S(15, 0, true), S(0, 0, false)], small: true)
            let counters = MemoryCounters(locations: 2)
            let verifier = ClaimVerifier(claims: [a: RollbackClaim(location: 0, index: 0)], counters: counters)
            var booted: UInt8? = nil
            var bootedClaim: RollbackClaim? = nil
            var highest: [UInt64] = [0, 0]
            for _ in 0..<40 {
                switch Int.random(in: 0..<4, using: &random) {
                case 0: // install by copy: a new image (newer or older) into the slot not booted
                    let target = booted == a ? b : a
                    let location = UInt32.random(in: 0...1, using: &random)
                    let index = UInt64(max(0, Int(counters.values[Int(location)]) + Int.random(in: -2...3, using: &random)))
                    verifier.claims[target] = RollbackClaim(location: location, index: index)
                    _ = try BootControl.setActive(store, slot: target, tries: UInt8.random(in: 1...3, using: &random))
                case 1:
                    do {
                        let boot = try BootControl.boot(store, verifier: verifier, dryRun: false)
                        let letter = boot.slots[boot.chosen].letter
                        let claim = try #require(verifier.claims[letter])
                        #expect(claim.index >= counters.values[Int(claim.location)], "seed \(seed): booted below the counter")
                        booted = letter
                        bootedClaim = boot.claim
                    } catch let error as FlowError {
                        #expect(error.code == .noBootableSlot, "seed \(seed): \(error.message)")
                        booted = nil
                    }
                case 2:
                    if let slot = booted {
                        let confirmed = try? BootControl.markSuccessful(store, slot: slot, verifier: verifier, counters: counters,
                                                                      booted: (slot, bootedClaim))
                        if confirmed != nil, let claim = bootedClaim {
                            #expect(counters.values[Int(claim.location)] >= claim.index, "seed \(seed): confirmed but not raised")
                        }
                    }
                default:
                    if let slot = booted { _ = try BootControl.markFailed(store, slot: slot); booted = nil }
                }
                for location in 0..<2 {
                    #expect(counters.values[location] >= highest[location], "seed \(seed): counter decreased")
                    highest[location] = counters.values[location]
                }
            }
        }
    }
}

/// The development counter file, read byte by byte (FileCounters.parse): what it accepts
/// and what it refuses, through the public `openCounters`, on real files.
@Suite struct CounterFileFormatTests {
    func counters(_ text: String) throws -> (RollbackCounters, String) {
        let path = "/tmp/slotctl-counterfile-\(getpid())-\(text.utf8.count)-\(text.hashValue & 0xffff)"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        #expect(fd >= 0)
        _ = Array(text.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        return (try openCounters("file:" + path), path)
    }

    @Test func wellFormedFilesAreRead() throws {
        for text in ["slotctl-counters 1\n0 7\n1 18446744073709551615\n",
                     "slotctl-counters 1\r\n0 7\r\n1 18446744073709551615\r\n",
                     "\nslotctl-counters 1\n\n0  7 \n\n1 18446744073709551615"] {
            let (counters, path) = try counters(text)
            defer { unlink(path) }
            #expect(try counters.provisionedLocations() == 2)
            #expect(try counters.read(location: 0) == 7)
            #expect(try counters.read(location: 1) == UInt64.max)
        }
    }

    @Test func malformedFilesAreRefusedWithTheLine() throws {
        let cases: [(String, String)] = [
            ("", "not a slotctl counter file"),
            ("slotctl-counters 2\n0 1\n", "not a slotctl counter file"),
            ("slotctl-counters 1\n1 5\n", "line 2 is not 'LOCATION VALUE' in order"),
            ("slotctl-counters 1\n0 5\n0 6\n", "line 3 is not 'LOCATION VALUE' in order"),
            ("slotctl-counters 1\n0 5 6\n", "line 2 is not"),
            ("slotctl-counters 1\n0\n", "line 2 is not"),
            ("slotctl-counters 1\n0 -5\n", "line 2 is not"),
            ("slotctl-counters 1\n0 18446744073709551616\n", "line 2 is not"),
            ("slotctl-counters 1\n0 5\r7\n", "line 2 is not"),
            ("slotctl-counters 1\n0\t5\n", "line 2 is not"),
        ]
        for (text, expected) in cases {
            let (counters, path) = try counters(text)
            defer { unlink(path) }
            #expect(throws: CounterError.self) { _ = try counters.read(location: 0) }
            do { _ = try counters.read(location: 0) } catch {
                #expect(error.message.contains(expected), "\(text.debugDescription): \(error.message)")
            }
        }
    }
}
