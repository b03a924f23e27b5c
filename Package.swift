// swift-tools-version: 6.2
// Layers, innermost first (spec/architecture.md): SlotCore (pure, Embedded, no I/O)
// <- SlotStorage (block stores, files, locks) <- SlotCrypto (OpenSSL EVP)
// <- SlotCounters (TPM 2.0, file) <- SlotFlows (boot, mark, set-active, format, sign,
// verify, install) <- slotctl (the CLI). Each imports only what is listed before it.
import PackageDescription

let package = Package(
    name: "slotctl",
    products: [
        .executable(name: "slotctl", targets: ["slotctl"]),
    ],
    targets: [
        .target(name: "SlotCore"),
        .systemLibrary(name: "CSystem"),
        .systemLibrary(name: "CLibUUID", pkgConfig: "uuid", providers: [.apt(["uuid-dev"])]),
        .systemLibrary(name: "CLibCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CLibBlkid", pkgConfig: "blkid", providers: [.apt(["libblkid-dev"])]),
        .target(name: "SlotStorage", dependencies: ["SlotCore", "CSystem", "CLibBlkid"]),
        .target(name: "SlotCrypto", dependencies: ["SlotCore", "SlotStorage", "CSystem", "CLibCrypto"]),
        .target(name: "SlotCounters", dependencies: ["SlotCore", "SlotStorage", "CSystem"]),
        .target(name: "SlotFlows", dependencies: ["SlotCore", "SlotStorage", "SlotCrypto", "SlotCounters"]),
        .executableTarget(name: "slotctl", dependencies: ["SlotCore", "SlotStorage", "SlotCrypto", "SlotCounters", "SlotFlows", "CSystem", "CLibUUID"]),
        .target(name: "SlotTestSupport", dependencies: ["SlotCore", "SlotStorage", "SlotCrypto", "SlotCounters", "SlotFlows"],
                path: "Tests/SlotTestSupport"),
        .testTarget(name: "SlotCoreTests", dependencies: ["SlotCore", "SlotTestSupport"]),
        .testTarget(name: "SlotFlowsTests", dependencies: ["SlotCore", "SlotStorage", "SlotCrypto", "SlotCounters", "SlotFlows", "SlotTestSupport"]),
        .testTarget(name: "InteropTests", dependencies: ["SlotCore", "SlotStorage", "SlotCrypto", "SlotCounters", "SlotFlows",
                                                    "SlotTestSupport"]),
    ]
)
