import Crypto
import CryptoExtras
import Foundation

/// Values in the stored form Kubernetes' API server writes, so that a snapshot of swetcd's
/// data reads back through an API server with the same EncryptionConfiguration:
/// `k8s:enc:<provider>:v1:<key name>:` followed by
/// - aescbc: a 16-byte IV, then AES-CBC with PKCS#7 padding;
/// - aesgcm: a 12-byte nonce, then AES-GCM ciphertext and 16-byte tag, the etcd key as
///   additional authenticated data;
/// - secretbox: a 24-byte nonce, then XSalsa20-Poly1305 (NaCl secretbox: tag, ciphertext).
public enum ValueCipher {
    public static func prefix(_ kind: Provider.Kind, keyName: String) -> [UInt8] {
        Array("k8s:enc:\(kind.rawValue):v1:\(keyName):".utf8)
    }

    /// The provider and key name of a value in that form (`k8s:enc:<provider>:v1:<name>:…`).
    public static func keyName(of stored: some Collection<UInt8>) -> (kind: Provider.Kind, name: String)? {
        let head = Array("k8s:enc:".utf8)
        guard stored.starts(with: head) else { return nil }
        let parts = stored.dropFirst(head.count).split(separator: UInt8(ascii: ":"), maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count == 4, parts[1].elementsEqual("v1".utf8),
              let kind = Provider.Kind(rawValue: String(decoding: parts[0], as: UTF8.self)) else { return nil }
        return (kind, String(decoding: parts[2], as: UTF8.self))
    }

    /// "<provider>:<key name>" of a value in that form.
    public static func keyLabel(of stored: some Collection<UInt8>) -> String? {
        keyName(of: stored).map { "\($0.kind.rawValue):\($0.name)" }
    }

    /// Encrypts `plaintext` (the value stored at `etcdKey`) with `key`.
    public static func seal(_ plaintext: [UInt8], kind: Provider.Kind, key: NamedKey, etcdKey: [UInt8]) throws(CipherError) -> [UInt8] {
        let body: [UInt8]
        do {
            switch kind {
            case .aescbc:
                let iv = AES._CBC.IV()
                let ct = try AES._CBC.encrypt(plaintext, using: SymmetricKey(data: key.secret), iv: iv)
                body = Array(iv) + Array(ct)
            case .aesgcm:
                let box = try AES.GCM.seal(plaintext, using: SymmetricKey(data: key.secret), authenticating: etcdKey)
                body = Array(box.nonce) + Array(box.ciphertext) + Array(box.tag)
            case .secretbox:
                body = try Secretbox.seal(plaintext, key: key.secret)
            }
        } catch let e as CipherError {
            throw e
        } catch {
            throw CipherError("cannot encrypt with \(kind.rawValue) key \(key.name): \(error)")
        }
        return prefix(kind, keyName: key.name) + body
    }

    /// Decrypts a stored value written by `seal` with one of `keys` (chosen by the name in
    /// the value's prefix). A value that is not in that form, names a key not listed, or
    /// fails authentication is an error naming the key — never garbage.
    public static func open(_ stored: [UInt8], kind: Provider.Kind, keys: [NamedKey], etcdKey: [UInt8]) throws(CipherError) -> [UInt8] {
        let head = Array("k8s:enc:\(kind.rawValue):v1:".utf8)
        guard stored.starts(with: head), let colon = stored[head.count...].firstIndex(of: UInt8(ascii: ":")) else {
            throw CipherError("stored value is not in the \(kind.rawValue) form")
        }
        let name = String(decoding: stored[head.count..<colon], as: UTF8.self)
        guard let key = keys.first(where: { $0.name == name }) else {
            throw CipherError("no \(kind.rawValue) key named \"\(name)\" in the encryption provider config: it is needed to read the data")
        }
        let body = Array(stored[(colon + 1)...])
        do {
            switch kind {
            case .aescbc:
                guard body.count >= 32, body.count % 16 == 0 else { throw CipherError("aescbc value too short") }
                let iv = try AES._CBC.IV(ivBytes: body.prefix(16))
                return Array(try AES._CBC.decrypt(body.dropFirst(16), using: SymmetricKey(data: key.secret), iv: iv))
            case .aesgcm:
                guard body.count >= 28 else { throw CipherError("aesgcm value too short") }
                let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: body.prefix(12)),
                                                ciphertext: body.dropFirst(12).dropLast(16), tag: body.suffix(16))
                return Array(try AES.GCM.open(box, using: SymmetricKey(data: key.secret), authenticating: etcdKey))
            case .secretbox:
                return try Secretbox.open(body, key: key.secret)
            }
        } catch let e as CipherError {
            throw CipherError("cannot decrypt with \(kind.rawValue) key \"\(name)\": \(e.message)")
        } catch {
            throw CipherError("cannot decrypt with \(kind.rawValue) key \"\(name)\": \(error)")
        }
    }
}

public struct CipherError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// NaCl's secretbox (XSalsa20-Poly1305) from libsodium, loaded when first used: swift-crypto
/// has no XSalsa20, and loading the library at run time keeps building swetcd free of it
/// (Debian: libsodium23). Without the library, the secretbox provider fails with that error.
enum Secretbox {
    private typealias Box = @convention(c) (
        UnsafeMutablePointer<UInt8>, UnsafePointer<UInt8>, UInt64, UnsafePointer<UInt8>, UnsafePointer<UInt8>) -> Int32
    private struct Library: @unchecked Sendable {
        var easy: Box
        var openEasy: Box
    }

    private static let library: Result<Library, CipherError> = {
        for name in ["libsodium.so.23", "libsodium.so"] {
            guard let h = dlopen(name, RTLD_NOW) else { continue }
            typealias Init = @convention(c) () -> Int32
            guard let initSym = dlsym(h, "sodium_init"), let easy = dlsym(h, "crypto_secretbox_easy"),
                  let open = dlsym(h, "crypto_secretbox_open_easy") else { continue }
            guard unsafeBitCast(initSym, to: Init.self)() >= 0 else { continue }
            return .success(Library(easy: unsafeBitCast(easy, to: Box.self), openEasy: unsafeBitCast(open, to: Box.self)))
        }
        return .failure(CipherError("the secretbox provider needs libsodium (libsodium.so.23), which is not installed"))
    }()

    static func seal(_ plaintext: [UInt8], key: [UInt8]) throws(CipherError) -> [UInt8] {
        let lib = try library.get()
        var nonce = [UInt8](repeating: 0, count: 24)
        var rng = SystemRandomNumberGenerator()
        for i in nonce.indices { nonce[i] = UInt8.random(in: 0...255, using: &rng) }
        var out = [UInt8](repeating: 0, count: plaintext.count + 16)
        let rc = lib.easy(&out, plaintext, UInt64(plaintext.count), nonce, key)
        guard rc == 0 else { throw CipherError("secretbox encryption failed") }
        return nonce + out
    }

    static func open(_ body: [UInt8], key: [UInt8]) throws(CipherError) -> [UInt8] {
        let lib = try library.get()
        guard body.count >= 24 + 16 else { throw CipherError("secretbox value too short") }
        let nonce = Array(body.prefix(24))
        let box = Array(body.dropFirst(24))
        var out = [UInt8](repeating: 0, count: box.count - 16)
        let rc = lib.openEasy(&out, box, UInt64(box.count), nonce, key)
        guard rc == 0 else { throw CipherError("message authentication failed") }
        return out
    }
}
