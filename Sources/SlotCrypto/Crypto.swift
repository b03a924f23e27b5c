internal import CLibCrypto
import SlotCore
import SlotStorage
import CSystem

/// A libcrypto failure, with OpenSSL's own reason when it gave one.
public struct CryptoError: Error, CustomStringConvertible {
    public var message: String
    /// The key file holds a key of the wrong half (a public key given to `sign`).
    public var wrongKeyHalf = false
    public init(_ message: String, wrongKeyHalf: Bool = false) {
        self.message = message
        self.wrongKeyHalf = wrongKeyHalf
    }
    public var description: String { message }

    /// `what` plus the newest OpenSSL error on this thread (the queue is cleared).
    static func openSSL(_ what: String) -> CryptoError {
        var reason = ""
        var code = ERR_get_error()
        while code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            reason = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            code = ERR_get_error()
        }
        return CryptoError(reason.isEmpty ? what : "\(what): \(reason)")
    }
}

/// OpenSSL is set up once, before its first use, without its configuration file
/// (OPENSSL_INIT_NO_LOAD_CONFIG): a boot verifier's behaviour must not depend on
/// /usr/lib/ssl/openssl.cnf (or OPENSSL_CONF), and reading and parsing it is a large part
/// of OpenSSL 3's start-up. slotctl needs only the default provider, which loads without it.
/// Nor does OpenSSL free its tables at exit (OPENSSL_INIT_NO_ATEXIT): the process is
/// ending, slotctl writes its output with write(2), and the cleanup costs a boot more
/// than the signature check it followed.
/// Nor does it fill the legacy cipher and digest name tables (OPENSSL_INIT_NO_ADD_ALL_
/// CIPHERS and _DIGESTS): OpenSSL 3 copies every name in them into its provider name map
/// at the first fetch, which was a third of the instructions of a signed `boot` (valgrind
/// --tool=callgrind: 7.3 million, 4.5 million without). The providers register every
/// name slotctl fetches by (SHA256, ED25519, EC, RSA, RSA-PSS and the PEM decoders) on
/// their own; the legacy tables only add old aliases slotctl never asks for.
private let openSSLPrepared: Bool =
    OPENSSL_init_crypto(UInt64(OPENSSL_INIT_NO_LOAD_CONFIG) | UInt64(OPENSSL_INIT_NO_ATEXIT)
        | UInt64(OPENSSL_INIT_NO_ADD_ALL_CIPHERS) | UInt64(OPENSSL_INIT_NO_ADD_ALL_DIGESTS), nil) == 1

/// An ASCII-only lower-case copy, for PEM labels in messages (String.lowercased() would
/// link the Unicode case tables into the Embedded binary for this one use).
private func asciiLowercased(_ text: String) -> String {
    String(decoding: text.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }, as: UTF8.self)
}

/// Called before any other libcrypto call (the first caller wins; later calls cost nothing).
func prepareOpenSSL() { _ = openSSLPrepared }

/// SHA-256 as fetched once from the default provider. `EVP_sha256()` is a legacy handle:
/// OpenSSL 3 looks its implementation up by name (a locked table search) on every
/// EVP_DigestInit_ex, which is per 4 KiB block when building a dm-verity tree. With a
/// fetched handle a re-init on the same context only resets the hash state. Never freed:
/// it lives as long as the process. The name goes to C as a StaticString's own
/// NUL-terminated bytes: a String argument is copied into a fresh C string in Embedded Swift.
nonisolated(unsafe) private let fetchedSHA256: OpaquePointer = {
    prepareOpenSSL()
    let name: StaticString = "SHA256"
    guard let digest = EVP_MD_fetch(nil, UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self), nil) else {
        fatalError("EVP_MD_fetch(SHA256) failed")
    }
    return digest
}()

/// Streaming SHA-256 through one reused EVP_MD_CTX. Used by verify and install to hash
/// a payload in fixed-size chunks, and by key loading for key ids.
public final class SHA256Stream {
    private let context: OpaquePointer

    public init() {
        prepareOpenSSL()
        guard let context = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new: out of memory") }
        self.context = context
        reset()
    }

    deinit { EVP_MD_CTX_free(context) }

    public func reset() {
        guard EVP_DigestInit_ex2(context, fetchedSHA256, nil) == 1 else { fatalError("EVP_DigestInit_ex2(SHA256) failed") }
    }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        EVP_DigestUpdate(context, bytes.baseAddress, bytes.count)
    }

    /// The digest; the stream is reset for the next use.
    public func finish() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        EVP_DigestFinal_ex(context, &digest, &length)
        reset()
        return digest
    }

    /// Writes the 32-byte digest to `out`; the stream is reset. No allocation.
    public func finish(into out: UnsafeMutableRawPointer) {
        var length: UInt32 = 0
        EVP_DigestFinal_ex(context, out.assumingMemoryBound(to: UInt8.self), &length)
        reset()
    }

    public static func digest(_ bytes: [UInt8]) -> [UInt8] {
        let stream = SHA256Stream()
        bytes.withUnsafeBytes { stream.update($0) }
        return stream.finish()
    }
}

/// dm-verity's block hash (hash type 1): SHA-256(salt || block), for many blocks through
/// one reused context. The loop is here rather than in the caller so that each block
/// costs one init, two updates and one final on the same context, with no allocation
/// and no call across a module boundary per step.
public final class SaltedBlockHasher {
    private let stream = SHA256Stream()
    private let salt: UnsafeMutableRawBufferPointer

    /// `salt` may be empty (veritysetup's `--salt=-`).
    public init(salt: [UInt8]) {
        self.salt = UnsafeMutableRawBufferPointer.allocate(byteCount: salt.count, alignment: 16)
        salt.withUnsafeBytes { self.salt.copyMemory(from: $0) }
    }

    deinit { salt.deallocate() }

    /// Writes SHA-256(salt || block) for each `blockSize`-byte block of `blocks` (a whole
    /// number of them) as 32-byte digests back to back from `digests`.
    public func digest(eachBlockOf blocks: UnsafeRawBufferPointer, blockSize: Int, into digests: UnsafeMutableRawPointer) {
        precondition(blockSize > 0 && blocks.count % blockSize == 0, "SaltedBlockHasher: not a whole number of blocks")
        var output = digests
        var start = 0
        while start < blocks.count {
            stream.update(UnsafeRawBufferPointer(salt))
            stream.update(UnsafeRawBufferPointer(rebasing: blocks[start..<start + blockSize]))
            stream.finish(into: output)
            output += 32
            start += blockSize
        }
    }
}

/// Cryptographically random bytes from OpenSSL (for verity salts).
public func randomBytes(_ count: Int) throws(CryptoError) -> [UInt8] {
    prepareOpenSSL()
    var bytes = [UInt8](repeating: 0, count: count)
    guard RAND_bytes(&bytes, Int32(count)) == 1 else { throw CryptoError.openSSL("RAND_bytes failed") }
    return bytes
}

/// The kinds of key slotctl signs and verifies with.
public enum KeyKind: Equatable, Sendable, CustomStringConvertible {
    case ed25519
    case ecP256
    case rsa(bits: Int)
    case unsupported(String)

    /// The descriptor algorithm this key signs with, if any.
    public var algorithm: SignatureAlgorithm? {
        switch self {
        case .ed25519: .ed25519
        case .ecP256: .ecdsaP256SHA256
        case .rsa(3072): .rsa3072PSSSHA256
        case .rsa(4096): .rsa4096PSSSHA256
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .ed25519: "ed25519"
        case .ecP256: "ec-p256"
        case .rsa(let bits): "rsa-\(bits)"
        case .unsupported(let what): "unsupported (\(what))"
        }
    }
}

/// An EVP_PKEY with what slotctl needs to know about it.
public class Key {
    let pkey: OpaquePointer
    /// SHA-256 of the DER SubjectPublicKeyInfo: the key id descriptors name.
    public let keyID: [UInt8]
    public let kind: KeyKind
    public let path: String

    /// A key whose id and kind are already known (the raw Ed25519 import).
    init(pkey: OpaquePointer, path: String, keyID: [UInt8], kind: KeyKind) {
        self.pkey = pkey
        self.path = path
        self.keyID = keyID
        self.kind = kind
    }

    init(pkey: OpaquePointer, path: String) throws(CryptoError) {
        self.pkey = pkey
        self.path = path
        let length = i2d_PUBKEY(pkey, nil)
        guard length > 0 else { throw CryptoError.openSSL("\(path): cannot encode the public key") }
        var der = [UInt8](repeating: 0, count: Int(length))
        der.withUnsafeMutableBufferPointer { buffer in
            var cursor: UnsafeMutablePointer<UInt8>? = buffer.baseAddress
            _ = i2d_PUBKEY(pkey, &cursor)
        }
        keyID = SHA256Stream.digest(der)
        kind = Key.kind(of: pkey)
    }

    deinit { EVP_PKEY_free(pkey) }

    static func kind(of pkey: OpaquePointer) -> KeyKind {
        switch EVP_PKEY_get_base_id(pkey) {
        case NID_ED25519: return .ed25519
        case NID_rsaEncryption: return .rsa(bits: Int(EVP_PKEY_get_bits(pkey)))
        case NID_X9_62_id_ecPublicKey:
            var name = [CChar](repeating: 0, count: 64)
            var length = 0
            guard EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, &name, name.count, &length) == 1 else {
                return .unsupported("EC key without a named curve")
            }
            let curve = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return curve == "prime256v1" ? .ecP256 : .unsupported("EC curve \(curve)")
        case let other: return .unsupported(String(cString: OBJ_nid2sn(other)))
        }
    }

    /// The key in PEM bytes, read by `read` from a memory BIO. A file holding more than
    /// one PEM block is refused: OpenSSL would silently take the first, and whoever looks
    /// at the file may trust another.
    static func parsePEM(_ pem: [UInt8], path: String, _ read: (OpaquePointer) -> OpaquePointer?) throws(CryptoError) -> OpaquePointer {
        prepareOpenSSL()
        let blocks = pemBlockCount(pem)
        guard blocks <= 1 else {
            throw CryptoError("\(path): holds \(blocks) PEM blocks; a key file must hold exactly one key")
        }
        // A memory BIO borrows the bytes: it is read and freed while they are pinned.
        let pkey = pem.withUnsafeBytes { bytes -> OpaquePointer? in
            guard let bio = BIO_new_mem_buf(bytes.baseAddress, Int32(bytes.count)) else { return nil }
            defer { BIO_free(bio) }
            return read(bio)
        }
        guard let pkey else { throw CryptoError.openSSL("\(path): not a PEM key") }
        return pkey
    }

    /// The labels of the PEM blocks in the bytes (`PUBLIC KEY`, `EC PRIVATE KEY`, …).
    static func pemLabels(_ pem: [UInt8]) -> [String] {
        SmallFiles.lines(String(decoding: pem, as: UTF8.self)).compactMap { line in
            guard line.hasPrefix("-----BEGIN "), line.hasSuffix("-----") else { return nil }
            return String(line.dropFirst("-----BEGIN ".count).dropLast(5))
        }
    }

    /// How many keys the bytes hold: every PEM block but `EC PARAMETERS`, which
    /// `openssl ecparam -genkey` writes before the key it belongs to.
    static func pemBlockCount(_ pem: [UInt8]) -> Int {
        pemLabels(pem).filter { $0 != "EC PARAMETERS" }.count
    }

    /// Sets up a sign or verify context for `algorithm` on this key.
    func initContext(_ context: OpaquePointer, algorithm: SignatureAlgorithm, signing: Bool) throws(CryptoError) {
        let digest = algorithm == .ed25519 ? nil : EVP_sha256()
        var keyContext: OpaquePointer? = nil
        let ok = signing ? EVP_DigestSignInit(context, &keyContext, digest, nil, pkey)
                         : EVP_DigestVerifyInit(context, &keyContext, digest, nil, pkey)
        guard ok == 1 else { throw CryptoError.openSSL("\(path): cannot set up \(algorithm.name)") }
        if algorithm == .rsa3072PSSSHA256 || algorithm == .rsa4096PSSSHA256 {
            guard EVP_PKEY_CTX_set_rsa_padding(keyContext, RSA_PKCS1_PSS_PADDING) == 1,
                  EVP_PKEY_CTX_set_rsa_pss_saltlen(keyContext, RSA_PSS_SALTLEN_DIGEST) == 1 else {
                throw CryptoError.openSSL("\(path): cannot select RSA-PSS")
            }
        }
    }
}

/// A trusted public key from the key directory.
public final class PublicKey: Key {
    /// A PEM public key (`openssl pkey -pubout` output) already read by the key directory
    /// under the trusted-file rule, from a checked descriptor; `path` names it in messages.
    /// There is no path-reading initializer: a trusted key is never read around that rule.
    /// An Ed25519 key in the usual PEM form is imported raw (PEMPublicKey); every other
    /// key, and any PEM that reader does not take, goes through PEM_read_bio_PUBKEY.
    public init(pem: [UInt8], path: String) throws(CryptoError) {
        prepareOpenSSL()
        if let der = PEMPublicKey.der(pem), let raw = PEMPublicKey.ed25519Key(der),
           let pkey = raw.withUnsafeBufferPointer({ EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, $0.baseAddress, $0.count) }) {
            // The DER is canonical (a fixed prefix and the key), so its digest is the id
            // i2d_PUBKEY's encoding would give.
            super.init(pkey: pkey, path: path, keyID: SHA256Stream.digest(der), kind: .ed25519)
            return
        }
        let pkey = try Key.parsePEM(pem, path: path) { PEM_read_bio_PUBKEY($0, nil, nil, nil) }
        try super.init(pkey: pkey, path: path)
    }

    /// True only for a signature that verifies over `message` with `algorithm`.
    /// A key of the wrong kind for `algorithm` is the caller's check (it has its own code).
    /// Slices of the descriptor's bytes are verified where they lie (no copies).
    public func verify(message: ArraySlice<UInt8>, signature: ArraySlice<UInt8>,
                       algorithm: SignatureAlgorithm) throws(CryptoError) -> Bool {
        guard let context = EVP_MD_CTX_new() else { throw CryptoError("out of memory") }
        defer { EVP_MD_CTX_free(context) }
        try initContext(context, algorithm: algorithm, signing: false)
        var der: [UInt8] = []
        if algorithm == .ecdsaP256SHA256 {
            guard let encoded = ECDSASignature.der(fromRaw: Array(signature)) else { return false }
            der = encoded
        }
        let result = message.withUnsafeBufferPointer { message in
            func run(_ signature: UnsafeBufferPointer<UInt8>) -> Int32 {
                EVP_DigestVerify(context, signature.baseAddress, signature.count, message.baseAddress, message.count)
            }
            return der.isEmpty ? signature.withUnsafeBufferPointer(run) : der.withUnsafeBufferPointer(run)
        }
        ERR_clear_error()
        return result == 1
    }

    public func verify(message: [UInt8], signature: [UInt8], algorithm: SignatureAlgorithm) throws(CryptoError) -> Bool {
        try verify(message: message[...], signature: signature[...], algorithm: algorithm)
    }
}

/// A signing key (`openssl genpkey` output), used by `slotctl sign` on the build host.
public final class PrivateKey: Key {
    public init(pemPath path: String) throws(CryptoError) {
        // A FIFO or pipe is fine here (`sign --key <(fetch-key)` on a build host); it is
        // read to its end, bounded, like a file.
        let read: [UInt8]?
        do { read = try SmallFiles.read(path, limit: 64 * 1024, allowStreams: true) } catch { throw CryptoError(error.description) }
        guard let pem = read else { throw CryptoError("\(path): cannot open: no such file") }
        let labels = Key.pemLabels(pem)
        if !labels.isEmpty, labels.allSatisfy({ $0.hasSuffix("PUBLIC KEY") || $0 == "CERTIFICATE" }) {
            throw CryptoError("\(path) holds a \(asciiLowercased(labels[0])), not a private key; sign needs the private key "
                + "(openssl genpkey's output)", wrongKeyHalf: true)
        }
        let pkey = try Key.parsePEM(pem, path: path) { PEM_read_bio_PrivateKey($0, nil, nil, nil) }
        try super.init(pkey: pkey, path: path)
    }

    /// Signs `message`; ECDSA signatures come back as raw r||s (64 bytes).
    public func sign(message: [UInt8], algorithm: SignatureAlgorithm) throws(CryptoError) -> [UInt8] {
        guard let context = EVP_MD_CTX_new() else { throw CryptoError("out of memory") }
        defer { EVP_MD_CTX_free(context) }
        try initContext(context, algorithm: algorithm, signing: true)
        var length = 0
        guard EVP_DigestSign(context, nil, &length, message, message.count) == 1 else {
            throw CryptoError.openSSL("\(path): signing failed")
        }
        var signature = [UInt8](repeating: 0, count: length)
        guard EVP_DigestSign(context, &signature, &length, message, message.count) == 1 else {
            throw CryptoError.openSSL("\(path): signing failed")
        }
        signature.removeSubrange(length...)
        if algorithm == .ecdsaP256SHA256 {
            guard let raw = ECDSASignature.raw(fromDER: signature) else { throw CryptoError("\(path): bad ECDSA signature encoding") }
            return raw
        }
        return signature
    }
}

/// ECDSA P-256 signatures: DER (what libcrypto speaks) <-> raw r||s (what descriptors hold).
public enum ECDSASignature {
    public static func raw(fromDER der: [UInt8]) -> [UInt8]? {
        prepareOpenSSL()
        return der.withUnsafeBufferPointer { buffer -> [UInt8]? in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            guard let signature = d2i_ECDSA_SIG(nil, &cursor, der.count) else { return nil }
            defer { ECDSA_SIG_free(signature) }
            var out = [UInt8](repeating: 0, count: 64)
            guard let r = ECDSA_SIG_get0_r(signature), let s = ECDSA_SIG_get0_s(signature),
                  BN_bn2binpad(r, &out, 32) == 32,
                  out.withUnsafeMutableBufferPointer({ BN_bn2binpad(s, $0.baseAddress! + 32, 32) }) == 32 else { return nil }
            return out
        }
    }

    public static func der(fromRaw raw: [UInt8]) -> [UInt8]? {
        prepareOpenSSL()
        guard raw.count == 64, let signature = ECDSA_SIG_new() else { return nil }
        defer { ECDSA_SIG_free(signature) }
        let r = raw.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, 32, nil) }
        let s = raw.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress! + 32, 32, nil) }
        guard let r, let s else { BN_free(r); BN_free(s); return nil }
        guard ECDSA_SIG_set0(signature, r, s) == 1 else { BN_free(r); BN_free(s); return nil }
        let length = i2d_ECDSA_SIG(signature, nil)
        guard length > 0 else { return nil }
        var der = [UInt8](repeating: 0, count: Int(length))
        der.withUnsafeMutableBufferPointer { buffer in
            var cursor: UnsafeMutablePointer<UInt8>? = buffer.baseAddress
            _ = i2d_ECDSA_SIG(signature, &cursor)
        }
        return der
    }
}

/// The libcrypto slotctl runs with, as OpenSSL names itself ("OpenSSL 3.0.x ..."), for
/// `slotctl --version`.
public func cryptoLibraryVersion() -> String {
    prepareOpenSSL()
    guard let text = OpenSSL_version(OPENSSL_VERSION) else { return "unknown" }
    return String(cString: text)
}
