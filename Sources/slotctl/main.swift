/// slotctl's entry point in the normal build; Entry.swift has the command itself, and
/// the Embedded build's C entry point.
runCommand(CommandLine.arguments)
