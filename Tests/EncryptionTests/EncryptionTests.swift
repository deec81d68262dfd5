import Foundation
import Testing

@testable import Encryption

@Suite struct EncryptionConfigTests {
    static let key32 = Data((0..<32).map { UInt8($0) }).base64EncodedString()
    static let key16 = Data((0..<16).map { UInt8($0 + 100) }).base64EncodedString()

    @Test func parsesTheRunbooksConfiguration() throws {
        let yaml = """
            apiVersion: apiserver.config.k8s.io/v1
            kind: EncryptionConfiguration
            resources:
              - resources:
                  - secrets
                  - configmaps
                  - routes.route.openshift.io
                  - oauthaccesstokens.oauth.openshift.io
                  - oauthauthorizetokens.oauth.openshift.io
                providers:
                  - aescbc:
                      keys:
                        - name: key1
                          secret: \(Self.key32)
                  - aesgcm:
                      keys:
                        - name: key2
                          secret: \(Self.key16)
                  - identity: {}
            """
        let c = try EncryptionConfig.parse(yaml, file: "enc.yaml")
        #expect(c.rules.count == 1)
        #expect(c.rules[0].resources.count == 5)
        #expect(c.rules[0].providers.count == 3)
        guard case .keyed(.aescbc, let keys) = c.rules[0].providers[0] else { Issue.record("first provider"); return }
        #expect(keys == [NamedKey(name: "key1", secret: (0..<32).map { UInt8($0) })])
        #expect(c.rules[0].providers[2] == .identity)
        let cov = Coverage(config: c, prefixes: .openshift)
        #expect(cov.providers(for: Array("/kubernetes.io/secrets/ns/a".utf8)) == c.rules[0].providers)
        #expect(cov.providers(for: Array("/openshift.io/oauth/accesstokens/t".utf8)) != nil)
        #expect(cov.providers(for: Array("/kubernetes.io/pods/ns/a".utf8)) == nil)
        let k8s = Coverage(config: c, prefixes: .kubernetes)
        #expect(k8s.providers(for: Array("/registry/configmaps/x".utf8)) != nil)
    }

    @Test func badConfigurationsNameTheFileAndTheField() {
        func problems(_ yaml: String) -> [String] {
            do {
                _ = try EncryptionConfig.parse(yaml, file: "/etc/enc.yaml")
                return []
            } catch {
                #expect(error.description.hasPrefix("error loading encryption provider config /etc/enc.yaml: "))
                return error.problems
            }
        }
        let head = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n"
        let short = Data(repeating: 1, count: 10).base64EncodedString()
        var p = problems(head + "resources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - name: k1\n        secret: \(short)\n")
        #expect(p == ["resources[0].providers[0].aescbc.keys[0].secret: Invalid value: REDACTED: secret is not of the expected length, got 10, expected one of [16 24 32] (key \"k1\")"])
        p = problems(head + "resources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: k1\n        secret: \(Self.key16)\n")
        #expect(p.first?.contains("expected one of [32]") == true)
        p = problems(head + "resources:\n- resources: [\"*\"]\n  providers:\n  - identity: {}\n")
        #expect(p.first?.contains("use '*.' to encrypt all the resources from core API group") == true)
        p = problems(head + "resources:\n- resources: [secrets]\n  providers:\n  - rot13: {}\n")
        #expect(p.first?.contains("Unsupported value: \"rot13\"") == true)
        p = problems(head + "resources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - {name: a, secret: \(Self.key16)}\n      - {name: a, secret: \(Self.key16)}\n")
        #expect(p == ["resources[0].providers[0].aesgcm.keys[1].name: Duplicate value: \"a\""])
        p = problems("kind: Something\nresources: []\n")
        #expect(p.count == 3)
        p = problems("{not yaml")
        #expect(p.first?.hasPrefix("error parsing YAML") == true)
    }

    @Test func wildcardsAndGroups() {
        let r = ResourcePrefixes.openshift
        #expect(r.prefixes(for: "*.*") == ["/kubernetes.io/", "/openshift.io/"])
        #expect(r.prefixes(for: "*.oauth.openshift.io") == ["/openshift.io/oauth/accesstokens/", "/openshift.io/oauth/authorizetokens/"])
        #expect(r.prefixes(for: "*.").sorted() == ["/kubernetes.io/configmaps/", "/kubernetes.io/secrets/"])
        #expect(r.prefixes(for: "pods") == ["/kubernetes.io/pods/", "/openshift.io/pods/"])
    }
}

@Suite struct ValueCipherTests {
    let etcdKey = Array("/registry/secrets/default/s1".utf8)

    @Test(arguments: [Provider.Kind.aescbc, .aesgcm, .secretbox])
    func roundTripInKubernetesForm(kind: Provider.Kind) throws {
        var g = SystemRandomNumberGenerator()
        let secret = (0..<32).map { _ in UInt8.random(in: 0...255, using: &g) }
        let key = NamedKey(name: "key1", secret: secret)
        for size in [0, 1, 15, 16, 17, 1000] {
            let plain = (0..<size).map { _ in UInt8.random(in: 0...255, using: &g) }
            let stored = try ValueCipher.seal(plain, kind: kind, key: key, etcdKey: etcdKey)
            #expect(stored.starts(with: Array("k8s:enc:\(kind.rawValue):v1:key1:".utf8)))
            let body = stored.count - "k8s:enc:\(kind.rawValue):v1:key1:".utf8.count
            switch kind {
            case .aescbc: #expect(body == 16 + (size / 16 + 1) * 16)
            case .aesgcm: #expect(body == 12 + size + 16)
            case .secretbox: #expect(body == 24 + 16 + size)
            }
            if size >= 16 { #expect(!stored.windows(ofCount: 16).contains(where: { Array($0) == Array(plain.prefix(16)) })) }
            let other = NamedKey(name: "old", secret: Array(secret.reversed()))
            #expect(try ValueCipher.open(stored, kind: kind, keys: [other, key], etcdKey: etcdKey) == plain)
            // The wrong key under the right name, a missing key, a flipped byte: errors, never the
            // plaintext. aescbc has no MAC (as in Kubernetes): a wrong key fails on the PKCS#7
            // padding, except about 1 time in 256, when the garbage it decrypts to happens to
            // end in valid padding.
            let wrongKey = [NamedKey(name: "key1", secret: other.secret)]
            if kind == .aescbc {
                #expect((try? ValueCipher.open(stored, kind: kind, keys: wrongKey, etcdKey: etcdKey)) != plain)
            } else {
                #expect(throws: CipherError.self) { _ = try ValueCipher.open(stored, kind: kind, keys: wrongKey, etcdKey: etcdKey) }
            }
            #expect(throws: CipherError("no \(kind.rawValue) key named \"key1\" in the encryption provider config: it is needed to read the data")) {
                _ = try ValueCipher.open(stored, kind: kind, keys: [other], etcdKey: etcdKey)
            }
            if kind != .aescbc {
                var flipped = stored
                flipped[flipped.count - 1] ^= 1
                #expect(throws: CipherError.self) { _ = try ValueCipher.open(flipped, kind: kind, keys: [key], etcdKey: etcdKey) }
            }
        }
    }

    /// Values sealed by Go's crypto in Kubernetes' layouts (Fixtures/kubernetes-vectors.go.txt,
    /// run with Debian's golang-go and golang-golang-x-crypto-dev: `GOPATH=/usr/share/gocode
    /// GO111MODULE=off go run`) open to the same plaintext here.
    @Test func opensValuesSealedByGo() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/kubernetes-vectors.txt")
        let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 3)
        let key = NamedKey(name: "key1", secret: (0..<32).map { UInt8(truncatingIfNeeded: $0 * 7) })
        for line in lines {
            let parts = line.split(separator: " ")
            let kind = Provider.Kind(rawValue: String(parts[0]))!
            let hex = Array(parts[1].utf8)
            let bytes = stride(from: 0, to: hex.count, by: 2).map { UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
            #expect(try ValueCipher.open(bytes, kind: kind, keys: [key], etcdKey: etcdKey) == Array("top secret value 0123456789".utf8))
        }
    }

    @Test func gcmBindsTheValueToItsKey() throws {
        let key = NamedKey(name: "k", secret: [UInt8](repeating: 7, count: 16))
        let stored = try ValueCipher.seal(Array("v".utf8), kind: .aesgcm, key: key, etcdKey: etcdKey)
        #expect(throws: CipherError.self) {
            _ = try ValueCipher.open(stored, kind: .aesgcm, keys: [key], etcdKey: Array("/registry/secrets/default/s2".utf8))
        }
    }
}

extension Array {
    fileprivate func windows(ofCount n: Int) -> [ArraySlice<Element>] {
        guard count >= n else { return [] }
        return (0...(count - n)).map { self[$0..<($0 + n)] }
    }
}
