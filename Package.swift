// swift-tools-version: 6.2
// Layers, innermost first (spec/architecture.md): SlotCore (pure, Embedded, no I/O)
// <- SlotStorage (block stores) <- SlotFlows (boot, mark, set-active, format)
// <- slotctl (the CLI). Each imports only what is listed before it.
import PackageDescription

let package = Package(
    name: "slotctl",
    products: [
        .executable(name: "slotctl", targets: ["slotctl"]),
    ],
    targets: [
        .target(name: "SlotCore"),
        .systemLibrary(name: "CLibUUID", pkgConfig: "uuid", providers: [.apt(["uuid-dev"])]),
        .target(name: "SlotStorage", dependencies: ["SlotCore"]),
        .target(name: "SlotFlows", dependencies: ["SlotCore", "SlotStorage"]),
        .executableTarget(name: "slotctl", dependencies: ["SlotCore", "SlotStorage", "SlotFlows", "CLibUUID"]),
        .target(name: "SlotTestSupport", dependencies: ["SlotCore", "SlotStorage", "SlotFlows"],
                path: "Tests/SlotTestSupport"),
        .testTarget(name: "SlotCoreTests", dependencies: ["SlotCore", "SlotTestSupport"]),
        .testTarget(name: "SlotFlowsTests", dependencies: ["SlotCore", "SlotStorage", "SlotFlows", "SlotTestSupport"]),
        .testTarget(name: "InteropTests", dependencies: ["SlotCore", "SlotTestSupport"]),
    ]
)
