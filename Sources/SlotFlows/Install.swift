import SlotCore
import SlotCounters
import SlotCrypto
import SlotStorage

/// Bounds of `install` that a user can see.
public enum InstallLimits {
    /// How long `install` waits for the next bytes of a stream (`-`, a FIFO) before it
    /// gives up with download_failed; `--stream-timeout` changes it.
    public static let defaultStreamTimeout = 30
}

/// `slotctl install IMAGE`: put a signed image into a slot that is not running, so that
/// no cut and no bad image can leave the device without a good slot (spec/install.md).
public enum InstallFlow {
    public struct Report {
        public let slot: UInt8
        public let partition: Int
        public let descriptor: SlotDescriptor
        public let bytesWritten: UInt64
        public let tries: UInt8
        public let warnings: [String]
    }

    /// Installs the signed image in `source` (a file, read from 0) into slot `target`
    /// of `disk`. `booted` is the running slot: never the target. Steps, each only if the
    /// one before succeeded:
    /// 1. verify the image (footer, descriptor, key, signature, payload digest, and with
    ///    counters the rollback index) — nothing is written before this passes;
    /// 2. check it fits: payload and descriptor within the partition, footer at its end;
    /// 3. mark the target unbootable and persist the table;
    /// 4. copy bytes [0, descriptor end) through one buffer, write the footer at the
    ///    partition's end, flush;
    /// 5. read the slot back and verify it as boot would, same descriptor;
    /// 6. set the slot active with `tries` (the slot boots next, on trial).
    /// A failure after 3 leaves the target unbootable and the running slot untouched.
    /// `progress` hears each step (InstallStep) and its bytes.
    public static func install(source: BlockStore, disk: BlockStore, target letter: UInt8, booted: UInt8?,
                               keys: KeyDirectory, counters: RollbackCounters?, hasher: PayloadHasher,
                               tries: UInt8, progress: InstallProgress? = nil) throws(FlowError) -> Report {
        let name = BootControl.letterText(letter)
        let steps = InstallSteps(progress: progress, hasher: hasher)
        // 1. Verify before anything is written.
        let payloadSize = ImageVerification.peek(source, offset: 0, size: source.byteCount).descriptor?.payloadSize ?? 0
        steps.begin(.verify, total: payloadSize)
        var report = ImageVerification.verify(source, offset: 0, size: source.byteCount, keys: keys, hasher: hasher)
        guard report.verified, let footer = report.footer else {
            throw FlowError(report.code, "install: the image is refused: \(report.reason ?? "verification failed"); nothing was written")
        }
        steps.end(.verify, total: payloadSize)
        try checkRollback(&report, counters)
        // 2 and 3. The target, its room, and it stops being bootable.
        var target = try prepareTarget(disk, letter: letter, booted: booted, descriptorOffset: footer.descriptorOffset,
                                       descriptorSize: footer.descriptorSize)
        let offset = target.offset, size = target.size, descriptorEnd = target.descriptorEnd
        do throws(FlowError) {
            // 4. Copy, then the footer where boot looks for it: the end of the partition.
            steps.begin(.write, total: descriptorEnd)
            try writeSlot(disk, footer: footer, partitionEnd: offset + size, name: name, steps: steps,
                          written: descriptorEnd) { () throws(StorageError) in
                try hasher.copyUnhashed(from: source, sourceOffset: 0, to: disk, targetOffset: offset, count: descriptorEnd)
            }
            // 5 and 6. Read back and verify as boot will, then on trial from the next boot.
            return try readBackAndActivate(disk, &target, letter: letter, expected: report, keys: keys, steps: steps, tries: tries)
        } catch {
            throw settle(disk, target, letter: letter, error)
        }
    }

    /// `install -`: the same steps for the stream form (spec/install.md). The descriptor
    /// arrives first and is verified (key, signature, rollback) before anything is
    /// written; the payload is hashed while it is written, and the slot stays
    /// unbootable unless the digest matches, the stream ends exactly where announced,
    /// and the slot reads back whole. A stream that ends early or fails: 10; a bad
    /// header or trailing bytes: 11.
    public static func installStream(_ stream: ByteStream, disk: BlockStore, target letter: UInt8, booted: UInt8?,
                                     keys: KeyDirectory, counters: RollbackCounters?, hasher: PayloadHasher,
                                     tries: UInt8, progress: InstallProgress? = nil) throws(FlowError) -> Report {
        let name = BootControl.letterText(letter)
        let steps = InstallSteps(progress: progress, hasher: hasher)
        let headerBytes = try receive(stream, StreamHeader.size, "stream header")
        guard StreamHeader.isStream(headerBytes.span) else {
            throw FlowError(.streamInvalid, "install: \(stream.name) is not a slotctl stream (made by sign --stream); "
                + "install an image file by its path; nothing was written")
        }
        let header: StreamHeader
        do { header = try StreamHeader.parse(headerBytes.span) } catch {
            throw FlowError(.streamInvalid, "install: \(stream.name) is not a slotctl stream: \(error.reason); nothing was written")
        }
        let descriptorBytes = try receive(stream, Int(header.descriptorSize), "descriptor")
        var report = ImageVerification.verifyDescriptor(descriptorBytes, descriptorOffset: header.descriptorOffset, keys: keys)
        guard report.verified, let descriptor = report.descriptor else {
            throw FlowError(report.code, "install: the stream is refused: \(report.reason ?? "verification failed"); nothing was written")
        }
        try checkRollback(&report, counters)
        var target = try prepareTarget(disk, letter: letter, booted: booted, descriptorOffset: header.descriptorOffset,
                                       descriptorSize: header.descriptorSize)
        let offset = target.offset, size = target.size
        do throws(FlowError) {
            steps.begin(.write, total: header.descriptorOffset)
            let copied = try copyStream(stream, hasher, disk, offset, header.descriptorOffset, descriptor.payloadSize, name)
            let received = copied.received, digest = copied.digest
            guard received == header.descriptorOffset else {
                throw FlowError(.downloadFailed, "install: \(stream.name) ended after \(received) of \(header.descriptorOffset) image bytes")
            }
            var extra = [UInt8](repeating: 0, count: 1)
            var trailing = 0
            var trailingError: StorageError? = nil
            extra.withUnsafeMutableBytes { b in
                do throws(StorageError) { trailing = try stream.read(into: b) } catch { trailingError = error }
            }
            if let trailingError {
                throw FlowError(.downloadFailed, "install: \(stream.name): \(trailingError.detail)")
            }
            guard trailing == 0 else {
                throw FlowError(.streamInvalid, "install: \(stream.name) goes on past the announced image")
            }
            let expected = report.payloadDigest ?? []
            guard constantTimeEqual(digest.span, expected.span) else {
                throw FlowError(.digestMismatch, "install: the streamed payload's SHA-256 is \(digest.hexText), the descriptor says "
                    + "\(expected.hexText)")
            }
            let footer = ImageFooter(descriptorOffset: header.descriptorOffset, descriptorSize: header.descriptorSize)
            try writeSlot(disk, footer: footer, partitionEnd: offset + size, name: name, steps: steps,
                          written: header.descriptorOffset) { () throws(StorageError) in
                try disk.writeBytes(descriptorBytes, at: offset + header.descriptorOffset)
            }
            return try readBackAndActivate(disk, &target, letter: letter, expected: report, keys: keys, steps: steps, tries: tries)
        } catch {
            throw settle(disk, target, letter: letter, error)
        }
    }

    /// The end of step 4 for both forms: `body` writes the image's bytes, then the footer
    /// goes to the end of the partition and everything is flushed. A failure is 31.
    /// `written` is the write step's total, which `body` has moved when it returns.
    private static func writeSlot(_ disk: BlockStore, footer: ImageFooter, partitionEnd: UInt64, name: String,
                                  steps: InstallSteps, written: UInt64, _ body: () throws(StorageError) -> Void) throws(FlowError) {
        do {
            try body()
            var footerBytes = [UInt8](repeating: 0, count: ImageFooter.size)
            var span = footerBytes.mutableSpan
            footer.serialize(into: &span)
            try disk.writeBytes(footerBytes, at: partitionEnd - UInt64(ImageFooter.size))
            steps.end(.write, total: written)
            steps.begin(.flush, total: 0)
            try disk.flush()
            steps.end(.flush, total: 0)
        } catch {
            throw FlowError(.writeFailed, "install: writing slot \(name): \(error.description)")
        }
    }

    /// Where an install writes, and what it has to say afterwards.
    struct Target {
        var table: LoadedTable
        var index: Int
        var offset: UInt64
        var size: UInt64
        var descriptorEnd: UInt64
        /// The target's attributes as this install left them (unbootable): activation
        /// happens only if the table still holds exactly these.
        var preparedAttributes: UInt64
        /// Set once the activation's save has begun: a failure from then on may have
        /// activated the (verified) slot, and is not another writer's doing.
        var activating = false
        var warnings: [String]
    }

    /// With counters, the image's rollback index must not be below its counter: judged
    /// into the report, refused before anything is written.
    static func checkRollback(_ report: inout ImageReport, _ counters: RollbackCounters?) throws(FlowError) {
        ImageVerification.judgeRollback(&report, counters)
        guard report.verified else { throw FlowError(report.code, "install: \(report.reason ?? "rollback"); nothing was written") }
    }

    /// Steps 2 and 3: the target exists and may be written, the image fits (footer at the
    /// partition's end), and the target is made unbootable and persisted before its
    /// first byte changes.
    static func prepareTarget(_ disk: BlockStore, letter: UInt8, booted: UInt8?, descriptorOffset: UInt64,
                              descriptorSize: UInt32) throws(FlowError) -> Target {
        let name = BootControl.letterText(letter)
        let table = try TableStore.load(disk)
        guard let index = table.slots.index(ofLetter: letter) else { throw FlowError(.usage, "install: no slot \(name) in the slot table") }
        try checkTarget(table, letter: letter, booted: booted)
        let slot = table.slots[index]
        let size = table.byteSize(slot)
        let (descriptorEnd, overflow) = descriptorOffset.addingReportingOverflow(UInt64(descriptorSize))
        guard !overflow, descriptorEnd <= size - UInt64(ImageFooter.size) else {
            throw FlowError(.noSpace, "install: the image needs more than the \(size) bytes of slot \(name); nothing was written")
        }
        var slots = table.slots
        Policy.markUnbootable(&slots, index)
        var warnings: [String] = []
        if slots[index].attributes != table.slots[index].attributes || table.needsRepair {
            if let warning = try TableStore.save(disk, table, slots: slots) { warnings.append(warning) }
        }
        // Until activation, status explains the slot as an install that has not finished.
        if let warning = StopHistory.recordStops(disk, [StopNote(letter: letter, kind: .installIncomplete, actor: "install",
                                                                 reason: "being written by an install that has not finished")]) {
            warnings.append(warning)
        }
        return Target(table: table, index: index, offset: table.byteOffset(slot), size: size, descriptorEnd: descriptorEnd,
                      preparedAttributes: slots[index].attributes, warnings: warnings)
    }

    /// Steps 5 and 6: the slot must read back as the image that was verified (full
    /// verification, tree included), then it is activated on trial.
    static func readBackAndActivate(_ disk: BlockStore, _ target: inout Target, letter: UInt8, expected: ImageReport,
                                    keys: KeyDirectory, steps: InstallSteps, tries: UInt8) throws(FlowError) -> Report {
        let name = BootControl.letterText(letter)
        let payloadSize = expected.descriptor?.payloadSize ?? 0
        steps.begin(.readBack, total: payloadSize)
        let check = ImageVerification.verify(disk, offset: target.offset, size: target.size, keys: keys, hasher: steps.hasher)
        // The whole signed descriptor must match, not only digest and key: a different
        // rollback index, version or verity tree under the same payload is another image.
        guard check.verified, let descriptor = expected.descriptor, check.descriptor == descriptor else {
            throw FlowError(.readbackMismatch, "install: slot \(name) does not read back as written: \(check.reason ?? "different image")")
        }
        steps.end(.readBack, total: payloadSize)
        // Activated only if nobody touched the slot's entry since this install made it
        // unbootable: another install or a set-active in between means the bytes just
        // verified may already be someone else's (spec/install.md).
        let prepared = target.table.slots[target.index]
        steps.begin(.activate, total: 0)
        if let warning = StopHistory.clearBeforeActivation(disk, target.table, letter) { target.warnings.append(warning) }
        let active = try BootControl.change(disk, letter) { (slots, index, _) throws(FlowError) in
            let now = slots[index]
            guard now.attributes == target.preparedAttributes, now.firstLBA == prepared.firstLBA, now.lastLBA == prepared.lastLBA else {
                throw FlowError(.readbackMismatch, "install: slot \(name) was changed by another writer while this install wrote it "
                    + "(now priority \(now.state.priority), tries \(now.state.tries)); not activated")
            }
            do throws(PolicyError) { try Policy.setActive(&slots, index, tries: tries) } catch {
                throw FlowError(.usage, "install: tries must be 1...\(SlotState.maxTries), not \(tries)")
            }
            target.activating = true
        }
        steps.end(.activate, total: 0)
        target.warnings += active.warnings
        return Report(slot: letter, partition: target.table.partitionNumber(target.table.slots[target.index]), descriptor: descriptor,
                      bytesWritten: target.descriptorEnd + UInt64(ImageFooter.size), tries: tries, warnings: target.warnings)
    }

    /// What a failure after the target was made unbootable really left: the table is read
    /// again, and if the target is bootable now (another writer activated it while this
    /// install was writing into it) it is marked unbootable again, since its bytes are
    /// now a mix. The message ends with what the disk holds.
    static func settle(_ disk: BlockStore, _ target: Target, letter: UInt8, _ error: FlowError) -> FlowError {
        let name = BootControl.letterText(letter)
        if target.activating {
            // The slot read back verified; only its activation's save failed, which may or
            // may not have landed (table.md). Either state is safe: nothing to undo.
            return FlowError(error.code, "\(error.message); slot \(name) read back verified, and its activation may or may "
                + "not have reached the disk (a bootable slot there holds this verified image)")
        }
        var activatedByOther = false
        do {
            _ = try BootControl.change(disk, letter) { (slots, index, _) throws(FlowError) in
                if slots[index].state.priority > 0 {
                    activatedByOther = true
                    Policy.markUnbootable(&slots, index)
                }
            }
        } catch let recheck {
            return FlowError(error.code, "\(error.message); slot \(name) could not be checked again (\(recheck.message)): "
                + "it is unbootable unless another writer activated it meanwhile")
        }
        if activatedByOther {
            return FlowError(error.code, "\(error.message); another writer had activated slot \(name) meanwhile, over bytes this "
                + "install also wrote: marked unbootable again")
        }
        _ = StopHistory.recordStops(disk, [StopNote(letter: letter, kind: .installIncomplete, code: UInt8(truncatingIfNeeded: error.code.rawValue),
                                                    actor: "install", reason: error.message)])
        return FlowError(error.code, "\(error.message); slot \(name) stays unbootable")
    }

    /// The slot `install` writes when none is named: the one that is not running, on a
    /// disk with exactly two slots. Called by the CLI before it opens the image.
    public static func defaultTarget(_ table: LoadedTable, booted: UInt8?) throws(FlowError) -> UInt8 {
        guard let booted else {
            throw FlowError(.usage, "install: no booted slot recorded, so the inactive slot is unknown; name it with --slot")
        }
        let others = (0..<table.slots.count).map { table.slots[$0].letter }.filter { $0 != booted }
        guard others.count == 1 else {
            throw FlowError(.usage, "install: \(others.count) slots besides the running one; name the target with --slot")
        }
        return others[0]
    }

    /// The running slot is never a target, and must itself be confirmed: the target is
    /// made unbootable before it is written, so while the running slot is on trial an
    /// interrupted install plus a failed trial would leave nothing to boot.
    static func checkTarget(_ table: LoadedTable, letter: UInt8, booted: UInt8?) throws(FlowError) {
        guard let booted else { return }
        let name = BootControl.letterText(letter)
        guard letter != booted else {
            throw FlowError(.targetIsBooted, "install: slot \(name) is the running slot; install into another one")
        }
        if let running = table.slots.index(ofLetter: booted), !table.slots[running].state.successful {
            throw FlowError(.runningUnconfirmed, "install: the running slot \(BootControl.letterText(booted)) is still on trial; "
                + "confirm it (mark-successful) first, or an interrupted install and a failed trial would leave nothing to boot")
        }
    }

    private static func receive(_ stream: ByteStream, _ count: Int, _ what: String) throws(FlowError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var got = 0
        var failure: StorageError? = nil
        bytes.withUnsafeMutableBytes { buffer in
            do throws(StorageError) { got = try stream.readFully(into: buffer) } catch { failure = error }
        }
        if let failure { throw FlowError(.downloadFailed, "install: \(stream.name): \(failure.detail)") }
        guard got == count else {
            throw FlowError(.downloadFailed, "install: \(stream.name) ended after \(got) of the \(count) bytes of the \(what); nothing was written")
        }
        return bytes
    }

    private static func copyStream(_ stream: ByteStream, _ hasher: PayloadHasher, _ disk: BlockStore, _ offset: UInt64,
                                   _ count: UInt64, _ hashed: UInt64, _ name: String) throws(FlowError) -> (received: UInt64, digest: [UInt8]) {
        do {
            return try hasher.copyStream(from: stream, to: disk, targetOffset: offset, count: count, hashed: hashed)
        } catch {
            let code: StatusCode = error.kind == .read || error.kind == .timedOut ? .downloadFailed : .writeFailed
            throw FlowError(code, "install: \(error.description)")
        }
    }
}
