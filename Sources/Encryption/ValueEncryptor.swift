import Foundation
import Yams

/// A loaded `--encryption-provider-config`: which keys are covered, how a value is sealed on
/// submit (the first provider of the key's rule, its first key; identity first: stored as
/// written) and how a sealed value is opened (any key of its provider kind and name that the
/// file lists: the key's own rule first, then every rule, so values stay readable after a
/// rule's coverage changed).
public final class ValueEncryptor: Sendable {
    /// The file it was loaded from (named in errors).
    public let file: String
    public let config: EncryptionConfig
    public let coverage: Coverage
    /// Every key the file lists, by "<provider>:<name>".
    private let allKeys: [String: (Provider.Kind, NamedKey)]

    public init(config: EncryptionConfig, prefixes: ResourcePrefixes, file: String) {
        self.file = file
        self.config = config
        self.coverage = Coverage(config: config, prefixes: prefixes)
        var keys: [String: (Provider.Kind, NamedKey)] = [:]
        for rule in config.rules {
            for case .keyed(let kind, let named) in rule.providers {
                for k in named where keys["\(kind.rawValue):\(k.name)"] == nil { keys["\(kind.rawValue):\(k.name)"] = (kind, k) }
            }
        }
        self.allKeys = keys
    }

    /// Reads and validates `file`; `prefixes` is "kubernetes", "openshift" or a YAML file
    /// (see `ResourcePrefixes.load`).
    public static func load(file: String, prefixes: String) throws(EncryptionConfigError) -> ValueEncryptor {
        let text = try readText(file, what: "--encryption-provider-config")
        let config = try EncryptionConfig.parse(text, file: file)
        return ValueEncryptor(config: config, prefixes: try ResourcePrefixes.load(prefixes), file: file)
    }

    /// The sealed form of `value` stored at `key`, or nil when it is stored as written (no
    /// rule covers the key, or its rule's first provider is identity).
    public func seal(key: [UInt8], value: [UInt8]) throws(CipherError) -> [UInt8]? {
        guard let (kind, first) = coverage.entry(for: key)?.sealer else { return nil }
        return try ValueCipher.seal(value, kind: kind, key: first, etcdKey: key)
    }

    /// The plaintext of a value `seal` made.
    public func open(key: [UInt8], stored: [UInt8]) throws(CipherError) -> [UInt8] {
        guard let (kind, name) = ValueCipher.keyName(of: stored) else {
            throw CipherError("the stored value is not in Kubernetes' k8s:enc:<provider>:v1:<key>: form")
        }
        var candidates: [NamedKey] = []
        for case .keyed(let k, let named) in coverage.providers(for: key) ?? [] where k == kind {
            candidates += named.filter { $0.name == name }
        }
        if candidates.isEmpty, let (_, k) = allKeys["\(kind.rawValue):\(name)"] { candidates = [k] }
        guard !candidates.isEmpty else {
            throw CipherError("key \"\(kind.rawValue):\(name)\" is not listed in \(file): it is needed to read this value")
        }
        var last = CipherError("")
        for k in candidates {
            do { return try ValueCipher.open(stored, kind: kind, keys: [k], etcdKey: key) } catch { last = error }
        }
        throw last
    }

    /// Of `names` ("<provider>:<name>"), those this file does not list.
    public func missing(_ names: Set<String>) -> [String] {
        names.filter { allKeys[$0] == nil }.sorted()
    }

    /// The key that values stored at `key` are sealed with ("<provider>:<name>"), or nil
    /// when they are stored as written.
    public func sealingKey(for key: [UInt8]) -> String? {
        coverage.entry(for: key)?.sealingKey
    }
}

extension ResourcePrefixes {
    /// "kubernetes", "openshift", or a YAML file:
    ///
    ///     roots: ["/registry/"]            # what "*.*" covers; [""] covers every key
    ///     resources:                       # resource name → its key prefixes
    ///       secrets: ["/registry/secrets/"]
    public static func load(_ spec: String) throws(EncryptionConfigError) -> ResourcePrefixes {
        switch spec {
        case "", "kubernetes": return .kubernetes
        case "openshift": return .openshift
        default: break
        }
        let text = try readText(spec, what: "--encryption-resource-prefixes (kubernetes, openshift or a YAML file)")
        guard let doc = (try? Yams.load(yaml: text)) as? [String: Any] else {
            throw EncryptionConfigError(file: spec, problems: ["not a YAML object with roots and resources"])
        }
        var problems: [String] = []
        let roots = (doc["roots"] as? [Any])?.map { "\($0)" }
        if roots == nil { problems.append("roots: Required value: a list of key prefixes") }
        var map: [String: [String]] = [:]
        if let raw = doc["resources"] {
            if let obj = raw as? [String: Any] {
                for (name, v) in obj {
                    guard let list = v as? [Any] else { problems.append("resources.\(name): Invalid value: must be a list of key prefixes"); continue }
                    map[name] = list.map { "\($0)" }
                }
            } else {
                problems.append("resources: Invalid value: must map resource names to lists of key prefixes")
            }
        }
        if !problems.isEmpty { throw EncryptionConfigError(file: spec, problems: problems) }
        return ResourcePrefixes(prefixes: map, roots: roots ?? [])
    }
}

/// A config file's text, or an error saying why it cannot be read.
func readText(_ path: String, what: String) throws(EncryptionConfigError) -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
        let why = FileManager.default.fileExists(atPath: path) ? "permission denied" : "no such file or directory"
        throw EncryptionConfigError(file: path, problems: ["\(what): open \(path): \(why)"])
    }
    guard let text = String(data: data, encoding: .utf8) else {
        throw EncryptionConfigError(file: path, problems: ["\(what): the file is not UTF-8 text"])
    }
    return text
}
