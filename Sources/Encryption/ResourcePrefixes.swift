/// Where Kubernetes resources live in etcd: the map from resource names (`secrets`,
/// `routes.route.openshift.io`) to key prefixes that turns an EncryptionConfiguration's rules
/// into the keys swetcd encrypts. Two layouts are built in and either can be extended:
///
/// | resource | `kubernetes` (API server default `/registry`) | `openshift` |
/// |---|---|---|
/// | secrets | `/registry/secrets/` | `/kubernetes.io/secrets/` |
/// | configmaps | `/registry/configmaps/` | `/kubernetes.io/configmaps/` |
/// | routes.route.openshift.io | `/registry/routes/` | `/openshift.io/routes/` |
/// | oauthaccesstokens.oauth.openshift.io | `/registry/oauth/accesstokens/` | `/openshift.io/oauth/accesstokens/` |
/// | oauthauthorizetokens.oauth.openshift.io | `/registry/oauth/authorizetokens/` | `/openshift.io/oauth/authorizetokens/` |
///
/// Any other core resource `r` maps to `<root>/r/` (Kubernetes' default), a grouped one
/// `r.g` to `<root>/r/`; `*.*` covers every key under the layout's roots, `*.` every core
/// resource listed, `*.<group>` every listed resource of that group.
public struct ResourcePrefixes: Equatable, Sendable {
    /// Resource name → its key prefixes.
    public var prefixes: [String: [String]]
    /// Roots under which every resource lives (for `*.*`).
    public var roots: [String]

    public init(prefixes: [String: [String]], roots: [String]) {
        self.prefixes = prefixes
        self.roots = roots
    }

    public static let kubernetes = ResourcePrefixes(prefixes: [
        "secrets": ["/registry/secrets/"],
        "configmaps": ["/registry/configmaps/"],
        "routes.route.openshift.io": ["/registry/routes/"],
        "oauthaccesstokens.oauth.openshift.io": ["/registry/oauth/accesstokens/"],
        "oauthauthorizetokens.oauth.openshift.io": ["/registry/oauth/authorizetokens/"],
    ], roots: ["/registry/"])

    public static let openshift = ResourcePrefixes(prefixes: [
        "secrets": ["/kubernetes.io/secrets/"],
        "configmaps": ["/kubernetes.io/configmaps/"],
        "routes.route.openshift.io": ["/openshift.io/routes/"],
        "oauthaccesstokens.oauth.openshift.io": ["/openshift.io/oauth/accesstokens/"],
        "oauthauthorizetokens.oauth.openshift.io": ["/openshift.io/oauth/authorizetokens/"],
    ], roots: ["/kubernetes.io/", "/openshift.io/"])

    /// The key prefixes a rule's resource name stands for.
    public func prefixes(for resource: String) -> [String] {
        if resource == "*.*" { return roots }
        if resource.hasPrefix("*.") {
            let group = String(resource.dropFirst(2))
            return prefixes.filter { name, _ in Self.group(of: name) == group }.flatMap(\.value).sorted()
        }
        if let known = prefixes[resource] { return known }
        let plain = resource.split(separator: ".", maxSplits: 1).first.map(String.init) ?? resource
        return roots.map { $0 + plain + "/" }
    }

    /// "secrets" → "" (core), "routes.route.openshift.io" → "route.openshift.io".
    static func group(of resource: String) -> String {
        guard let dot = resource.firstIndex(of: ".") else { return "" }
        return String(resource[resource.index(after: dot)...])
    }
}

/// Which providers cover a key: the first rule whose resources cover it wins, as in
/// Kubernetes (a resource listed in two rules uses the first).
public struct Coverage: Sendable {
    public struct Entry: Sendable, Equatable {
        public var prefix: [UInt8]
        public var providers: [Provider]
        /// The rule's resource name that gave this prefix.
        public var resource: String

        /// What seals values under this prefix: the first provider and its first key, or nil
        /// when they are stored as written (identity first).
        public var sealer: (kind: Provider.Kind, key: NamedKey)? {
            guard case .keyed(let kind, let keys)? = providers.first, let first = keys.first else { return nil }
            return (kind, first)
        }

        /// The sealer as "<provider>:<key name>", or nil.
        public var sealingKey: String? { sealer.map { "\($0.kind.rawValue):\($0.key.name)" } }
    }

    public let entries: [Entry]

    public init(config: EncryptionConfig, prefixes: ResourcePrefixes) {
        var entries: [Entry] = []
        var seen: Set<[UInt8]> = []
        for rule in config.rules {
            for resource in rule.resources {
                for p in prefixes.prefixes(for: resource) where seen.insert(Array(p.utf8)).inserted {
                    entries.append(Entry(prefix: Array(p.utf8), providers: rule.providers, resource: resource))
                }
            }
        }
        self.entries = entries
    }

    /// The providers for `key`, or nil when no rule covers it (stored as written). The
    /// longest matching prefix wins among rules' prefixes.
    public func providers(for key: [UInt8]) -> [Provider]? {
        entry(for: key)?.providers
    }

    /// The entry covering `key` (the longest matching prefix), or nil.
    public func entry(for key: [UInt8]) -> Entry? {
        var best: Entry?
        for e in entries where key.starts(with: e.prefix) {
            if best == nil || e.prefix.count > best!.prefix.count { best = e }
        }
        return best
    }
}
