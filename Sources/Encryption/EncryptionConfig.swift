import Foundation
import Yams

/// Kubernetes' EncryptionConfiguration (apiserver.config.k8s.io/v1), as swetcd reads it for
/// `--encryption-provider-config`: rules of resources and their providers. The first provider
/// (and its first key) of a rule encrypts; every listed key can decrypt.
public struct EncryptionConfig: Equatable, Sendable {
    public struct Rule: Equatable, Sendable {
        /// Kubernetes resource names: "secrets", "routes.route.openshift.io", "*.*", "*.apps".
        public var resources: [String]
        public var providers: [Provider]
    }

    public var rules: [Rule]

    /// Parses and validates the file's text; `file` names it in errors. Nothing is returned
    /// for a half-valid file: every error found is reported together.
    public static func parse(_ text: String, file: String) throws(EncryptionConfigError) -> EncryptionConfig {
        let root: Any?
        do {
            root = try Yams.load(yaml: text)
        } catch {
            throw EncryptionConfigError(file: file, problems: ["error parsing YAML: \(error)"])
        }
        var problems: [String] = []
        guard let doc = root as? [String: Any] else {
            throw EncryptionConfigError(file: file, problems: ["the file is not an EncryptionConfiguration object"])
        }
        if doc["kind"] as? String != "EncryptionConfiguration" {
            problems.append("kind: Invalid value: \(quoted(doc["kind"])): must be EncryptionConfiguration")
        }
        let apiVersion = doc["apiVersion"] as? String
        if apiVersion != "apiserver.config.k8s.io/v1" && apiVersion != "apiserver.config.k8s.io/v1beta1" {
            problems.append("apiVersion: Invalid value: \(quoted(doc["apiVersion"])): must be apiserver.config.k8s.io/v1")
        }
        let rawRules = doc["resources"] as? [Any] ?? []
        if rawRules.isEmpty { problems.append("resources: Required value: resources must be provided") }
        var rules: [Rule] = []
        var seenResources: [String: String] = [:]
        for (i, raw) in rawRules.enumerated() {
            let path = "resources[\(i)]"
            guard let obj = raw as? [String: Any] else {
                problems.append("\(path): Invalid value: must be an object with resources and providers")
                continue
            }
            let names = (obj["resources"] as? [Any] ?? []).map { "\($0)" }
            if names.isEmpty { problems.append("\(path).resources: Required value: resources must be provided") }
            for (j, name) in names.enumerated() {
                let rpath = "\(path).resources[\(j)]"
                if name == "*" {
                    problems.append("\(rpath): Invalid value: \"*\": use '*.' to encrypt all the resources from core API group or *.* to encrypt all resources")
                } else if name.isEmpty || name != name.lowercased() {
                    problems.append("\(rpath): Invalid value: \(quoted(name)): resource name must be lower case")
                } else if let first = seenResources[name] {
                    problems.append("\(rpath): Duplicate value: \(quoted(name)): already listed at \(first)")
                } else {
                    seenResources[name] = rpath
                }
            }
            let rawProviders = obj["providers"] as? [Any] ?? []
            if rawProviders.isEmpty { problems.append("\(path).providers: Required value: providers must be provided") }
            var providers: [Provider] = []
            for (j, rp) in rawProviders.enumerated() {
                let ppath = "\(path).providers[\(j)]"
                guard let p = rp as? [String: Any], p.count == 1, let (type, body) = p.first else {
                    problems.append("\(ppath): Invalid value: exactly one provider must be given in each element")
                    continue
                }
                switch type {
                case "identity":
                    providers.append(.identity)
                case "aescbc", "aesgcm", "secretbox":
                    let kind: Provider.Kind = type == "aescbc" ? .aescbc : type == "aesgcm" ? .aesgcm : .secretbox
                    let keys = parseKeys(body, kind: kind, path: "\(ppath).\(type)", problems: &problems)
                    providers.append(.keyed(kind, keys))
                case "kms":
                    problems.append("\(ppath).kms: Unsupported value: swetcd has no KMS plugin; use aescbc, aesgcm, secretbox or identity")
                default:
                    problems.append("\(ppath): Unsupported value: \(quoted(type)): supported providers are aescbc, aesgcm, secretbox, identity")
                }
            }
            rules.append(Rule(resources: names, providers: providers))
        }
        if !problems.isEmpty { throw EncryptionConfigError(file: file, problems: problems) }
        return EncryptionConfig(rules: rules)
    }

    private static func parseKeys(_ body: Any, kind: Provider.Kind, path: String, problems: inout [String]) -> [NamedKey] {
        let rawKeys = (body as? [String: Any])?["keys"] as? [Any] ?? []
        if rawKeys.isEmpty { problems.append("\(path).keys: Required value: keys must be provided") }
        var keys: [NamedKey] = []
        var names: Set<String> = []
        for (k, rk) in rawKeys.enumerated() {
            let kpath = "\(path).keys[\(k)]"
            let obj = rk as? [String: Any] ?? [:]
            let name = obj["name"].map { "\($0)" } ?? ""
            let secret = obj["secret"].map { "\($0)" } ?? ""
            if name.isEmpty { problems.append("\(kpath).name: Required value: key name is required") }
            if name.contains(":") { problems.append("\(kpath).name: Invalid value: \(quoted(name)): key name must not contain \":\"") }
            if !name.isEmpty && !names.insert(name).inserted {
                problems.append("\(kpath).name: Duplicate value: \(quoted(name))")
            }
            guard !secret.isEmpty else {
                problems.append("\(kpath).secret: Required value: secret is required (key \(quoted(name)))")
                continue
            }
            guard let bytes = Data(base64Encoded: secret) else {
                problems.append("\(kpath).secret: Invalid value: REDACTED: secrets must be base64 encoded (key \(quoted(name)))")
                continue
            }
            if !kind.keyLengths.contains(bytes.count) {
                let expected = kind.keyLengths.map(String.init).joined(separator: " ")
                problems.append("\(kpath).secret: Invalid value: REDACTED: secret is not of the expected length, got \(bytes.count), expected one of [\(expected)] (key \(quoted(name)))")
                continue
            }
            keys.append(NamedKey(name: name, secret: [UInt8](bytes)))
        }
        return keys
    }

    private static func quoted(_ v: Any?) -> String {
        guard let v else { return "\"\"" }
        return "\"\(v)\""
    }
}

/// A provider of a rule.
public enum Provider: Equatable, Sendable {
    public enum Kind: String, Sendable {
        case aescbc, aesgcm, secretbox

        /// Kubernetes' accepted key sizes.
        public var keyLengths: [Int] { self == .secretbox ? [32] : [16, 24, 32] }
    }

    case identity
    case keyed(Kind, [NamedKey])
}

public struct NamedKey: Equatable, Sendable {
    public var name: String
    public var secret: [UInt8]

    public init(name: String, secret: [UInt8]) {
        self.name = name
        self.secret = secret
    }
}

/// Everything wrong with a configuration file, naming the file and each field.
public struct EncryptionConfigError: Error, Equatable, CustomStringConvertible {
    public var file: String
    public var problems: [String]

    public var description: String {
        "error loading encryption provider config \(file): " + problems.joined(separator: "; ")
    }
}
