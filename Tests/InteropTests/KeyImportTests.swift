import Foundation
import SlotCore
@testable import SlotCrypto
import Testing

/// The raw Ed25519 import (PEMPublicKey) against OpenSSL's own reading of the same keys:
/// the same key id, the same signatures verified, and anything the strict reader does
/// not take handed to OpenSSL, never accepted differently.
@Suite struct KeyImportTests {
    static func derOf(_ publicPEM: String) throws -> [UInt8] {
        let out = try Tools.scratch().appendingPathComponent("key.der").path
        try Tools.must("openssl", ["pkey", "-pubin", "-in", publicPEM, "-outform", "DER", "-out", out])
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
    }

    @Test(arguments: KeySet.algorithms)
    func keyIDIsTheDigestOfOpenSSLsDER(algorithm: String) throws {
        let path = KeySet.shared.publicPath(algorithm)
        let pem = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let key = try PublicKey(pem: pem, path: path)
        #expect(key.keyID == SHA256Stream.digest(try Self.derOf(path)))
        // Only Ed25519 takes the raw path; the others go through OpenSSL's decoders.
        #expect((PEMPublicKey.der(pem).flatMap(PEMPublicKey.ed25519Key) != nil) == (algorithm == "ed25519"))
    }

    @Test func everySpellingOfOneKeyIsTheSameKey() throws {
        let path = KeySet.shared.publicPath("ed25519")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let der = try Self.derOf(path)
        let body = text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        let spellings = [
            text,
            text.replacingOccurrences(of: "\n", with: "\r\n"),
            "a comment before the block\n" + text,
            "-----BEGIN PUBLIC KEY-----\n\(body)\n-----END PUBLIC KEY-----\n",
            text + "\n\n",
        ]
        let message = Array("slotctl key import".utf8)
        let dir = try Tools.scratch()
        let messagePath = dir.appendingPathComponent("message").path
        let signaturePath = dir.appendingPathComponent("signature").path
        try Data(message).write(to: URL(fileURLWithPath: messagePath))
        try Tools.must("openssl", ["pkeyutl", "-sign", "-inkey", KeySet.shared.privatePath("ed25519"), "-rawin",
                                   "-in", messagePath, "-out", signaturePath])
        let signature = [UInt8](try Data(contentsOf: URL(fileURLWithPath: signaturePath)))
        for spelling in spellings {
            let pem = Array(spelling.utf8)
            #expect(PEMPublicKey.der(pem) == der, "\(spelling.debugDescription)")
            let key = try PublicKey(pem: pem, path: "spelling")
            #expect(key.keyID == SHA256Stream.digest(der))
            #expect(try key.verify(message: message, signature: signature, algorithm: .ed25519))
            var flipped = signature
            flipped[7] ^= 1
            #expect(try !key.verify(message: message, signature: flipped, algorithm: .ed25519))
        }
    }

    @Test func whatTheStrictReaderRefusesOpenSSLJudges() throws {
        let text = try String(contentsOfFile: KeySet.shared.publicPath("ed25519"), encoding: .utf8)
        var lines = text.split(separator: "\n").map(String.init)
        let body = lines[1]
        lines[1] = String(body.dropLast(2)) + "*="
        let badCharacter = lines.joined(separator: "\n") + "\n"
        let withHeader = text.replacingOccurrences(of: "-----BEGIN PUBLIC KEY-----\n",
                                                   with: "-----BEGIN PUBLIC KEY-----\nComment: x\n\n")
        let truncated = text.replacingOccurrences(of: "-----END PUBLIC KEY-----\n", with: "")
        let trailing = text + "junk\n"
        let other = try String(contentsOfFile: KeySet.shared.publicPath("other"), encoding: .utf8)
        let twoKeys = other + text
        for bad in [badCharacter, withHeader, truncated, trailing, twoKeys] {
            #expect(PEMPublicKey.der(Array(bad.utf8)) == nil, "\(bad.debugDescription)")
        }
        // Neither reader takes a broken body or a block that never ends.
        #expect(throws: CryptoError.self) { try PublicKey(pem: Array(badCharacter.utf8), path: "bad") }
        #expect(throws: CryptoError.self) { try PublicKey(pem: Array(truncated.utf8), path: "truncated") }
        #expect(throws: CryptoError.self) { try PublicKey(pem: Array(twoKeys.utf8), path: "two keys") }
        // A P-256 key is not mistaken for Ed25519, even with an Ed25519-sized body.
        let p256 = try Self.derOf(KeySet.shared.publicPath("p256"))
        #expect(PEMPublicKey.ed25519Key(p256) == nil)
    }

    @Test func base64AgreesWithFoundation() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<200 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let encoded = Array(Data(bytes).base64EncodedString().utf8)
            #expect(PEMPublicKey.decodeBase64(encoded) == (length == 0 ? nil : bytes))
        }
        for bad in ["A", "AB", "ABC", "A===", "AB=C", "AB==AB==", "AQ=", "AR==", "AAB="] {
            #expect(PEMPublicKey.decodeBase64(Array(bad.utf8)) == nil, "\(bad)")
        }
    }
}
