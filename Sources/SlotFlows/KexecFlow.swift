import SlotCore
import SlotStorage

/// The kexec step of a stage-0 boot (spec/kexec.md): the slot `boot` chose starts its own
/// kernel, read from its own verified root.
public enum KexecFlow {
    public struct Plan {
        public let letter: UInt8
        public let kernel: SlotKernel
        /// The slot's command line with `slotctl.slot=X` added: the slot's own initramfs
        /// and userspace learn where they run from it (`boot --chosen`, `mark-*`).
        public let commandLine: String
    }

    /// Called by `slotctl kexec ROOT` in the stage-0 initramfs, after `boot` chose and
    /// verified `letter` (the booted record) and the hook mounted its dm-verity mapping
    /// read-only at `root`. Verifies the slot once more: its verified descriptor must carry
    /// a dm-verity tree, since a kernel read from a root without one is not covered by the
    /// signature. Then reads the kernel files through the mount (SlotKernel). Writes nothing;
    /// the hook marks the slot failed when this throws.
    public static func plan(_ store: BlockStore, slot letter: UInt8, verifier: SlotVerifier,
                            root: String) throws(FlowError) -> Plan {
        let table = try TableStore.load(store)
        let name = BootControl.letterText(letter)
        guard let index = table.slots.index(ofLetter: letter) else {
            throw FlowError(.usage, "kexec: no slot \(name) in the slot table")
        }
        switch verifier.verify(slot: table.slots[index], in: table, store: store) {
        case .accepted(_, let descriptor):
            guard let descriptor else {
                throw FlowError(.kernelUnusable, "kexec: slot \(name): verification is off, so nothing proves its kernel; "
                    + "not loaded")
            }
            guard descriptor.hasVerity else {
                throw FlowError(.kernelUnusable, "kexec: slot \(name): its image has no dm-verity tree, so its kernel is not "
                    + "covered by the signature; not loaded (sign it with --verity)")
            }
        case .rejected(let code, let reason), .fatal(let code, let reason):
            throw FlowError(code, "kexec: slot \(name) refused: \(reason)")
        }
        let kernel: SlotKernel
        do { kernel = try SlotKernel(root: root) } catch {
            throw FlowError(error.kind == .corrupt ? .digestMismatch : .kernelUnusable, "kexec: slot \(name): \(error.message)")
        }
        for word in kernel.commandLine.split(separator: " ") where word.hasPrefix("slotctl.slot=") {
            throw FlowError(.kernelUnusable, "kexec: slot \(name): \(SlotKernel.commandLinePath) names \(word) itself; "
                + "slotctl adds slotctl.slot=")
        }
        let commandLine = (kernel.commandLine.isEmpty ? "" : kernel.commandLine + " ") + "slotctl.slot=\(name)"
        return Plan(letter: letter, kernel: kernel, commandLine: commandLine)
    }

    /// Loads the planned kernel and jumps into it; returns only by throwing (the load was
    /// refused, or the jump failed). Called by `slotctl kexec` without --dry-run.
    public static func start(_ plan: Plan) throws(FlowError) -> Never {
        do { try plan.kernel.load(commandLine: plan.commandLine) } catch {
            throw FlowError(.kernelUnusable, "kexec: slot \(BootControl.letterText(plan.letter)): \(error.message)")
        }
        let failure = SlotKernel.start()
        throw FlowError(.kernelUnusable, "kexec: slot \(BootControl.letterText(plan.letter)): \(failure.message)")
    }
}
