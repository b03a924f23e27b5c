import SlotCore
import SlotStorage

/// Which slot booted (spec/cli.md): what `boot` records for `mark-*` and `install`, and
/// what `slotctl.slot=` on the kernel command line says when there is no record. The
/// record is the slot letter on the first line and, when the slot was verified, the
/// rollback claim of its image as `rollback LOCATION INDEX` on the second, so that
/// `mark-successful` raises exactly what booted.
public struct BootedRecord {
    public var letter: UInt8
    public var claim: RollbackClaim?

    public init(letter: UInt8, claim: RollbackClaim?) {
        self.letter = letter
        self.claim = claim
    }

    /// The record's text, as `boot` writes it.
    public var text: String {
        BootControl.letterText(letter) + "\n" + (claim.map { "rollback \($0.location) \($0.index)\n" } ?? "")
    }

    /// Parses a record read from `source` (LF or CRLF lines, blank lines ignored). A
    /// malformed record is an error (64), never "unknown". Called by the CLI.
    public static func parse(_ text: String, source: String) throws(FlowError) -> BootedRecord {
        let lines = SmallFiles.lines(text).map(String.init)
        let first = trimmed(lines.first ?? "")
        guard let letter = SlotName.letter(first) else { throw SlotName.notASlot(first) }
        var claim: RollbackClaim? = nil
        if lines.count > 1 {
            let fields = lines[1].split(separator: " ")
            guard fields.count == 3, fields[0] == "rollback", let location = UInt32(fields[1]), let index = UInt64(fields[2]) else {
                throw FlowError(.usage, "\(source): second line is not 'rollback LOCATION INDEX'")
            }
            claim = RollbackClaim(location: location, index: index)
        }
        return BootedRecord(letter: letter, claim: claim)
    }

    /// The characters the kernel splits its command line at (C's isspace, ASCII only;
    /// "\r\n" is one Character to Swift). Character.isWhitespace would also take Unicode
    /// spaces the kernel does not, and link the Unicode property tables into Embedded.
    private static func isKernelSpace(_ c: Character) -> Bool {
        c == " " || c == "\t" || c == "\n" || c == "\r" || c == "\r\n" || c == "\u{0B}" || c == "\u{0C}"
    }

    /// `slotctl.slot=X` on a kernel command line; nil when it names none.
    public static func fromCommandLine(_ text: String) throws(FlowError) -> BootedRecord? {
        for word in text.split(whereSeparator: isKernelSpace) where word.hasPrefix("slotctl.slot=") {
            let name = String(word.dropFirst("slotctl.slot=".count))
            guard let letter = SlotName.letter(name) else { throw SlotName.notASlot(name) }
            return BootedRecord(letter: letter, claim: nil)
        }
        return nil
    }

    private static func trimmed(_ text: String) -> String {
        var s = Substring(text)
        while let first = s.first, first == " " || first == "\t" || first == "\r" { s.removeFirst() }
        while let last = s.last, last == " " || last == "\t" || last == "\r" { s.removeLast() }
        return String(s)
    }
}

/// Slot names as people write them: one letter, either case.
public enum SlotName {
    /// The slot letter (lower-case ASCII) `text` names, nil when it is not one letter.
    public static func letter(_ text: String) -> UInt8? {
        let bytes = Array(text.utf8)
        guard bytes.count == 1, let letter = bytes.first,
              (letter >= 0x61 && letter <= 0x7A) || (letter >= 0x41 && letter <= 0x5A) else { return nil }
        return letter | 0x20
    }

    /// The refusal for a word that is not a slot name (64).
    public static func notASlot(_ text: String) -> FlowError {
        FlowError(.usage, "'\(text)' is not a slot name (a letter: a, b, ...)")
    }
}
