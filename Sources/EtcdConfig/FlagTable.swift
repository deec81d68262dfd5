// THE list of etcd 3.4.23 flags (etcdmain/config.go newConfig, plus the
// ignored legacy flags). Parsing, ETCD_* lookup, config-file keys, defaults
// (read back from `EtcdConfig()`) and `notHonoured` all derive from it.

/// A flag's value while parsing (Go's flag.Value state).
enum FlagValue: Sendable, Equatable {
    case string(String)
    case bool(Bool)
    case uint(UInt64)
    case int(Int64)
    /// Nanoseconds.
    case duration(Int64)
    /// etcd's UniqueURLs: the set of accepted strings and the parsed URL list.
    case urls(values: Set<String>, urls: [EtcdURL])
    case strings([String])
    /// Legacy flag that is accepted and ignored.
    case ignored
}

/// How a flag's text is parsed (the Go `flag.Value` behind it).
enum FlagKind: Sendable, Equatable {
    case string
    case bool
    /// Go `uint`/`uint64` (64-bit): strconv.ParseUint(s, 0, 64), errors "parse error"/"value out of range".
    case uint
    /// Go `int`/`int64`.
    case int
    /// etcd's own uint32 value (--max-concurrent-streams): raw strconv error text.
    case uint32
    case duration
    /// etcd's UniqueURLs with non-URL exceptions.
    case urls(allowed: Set<String>)
    /// etcd's UniqueStringsValue: comma list, sorted, unique.
    case uniqueStrings
    /// etcd's StringsValue: comma list as given.
    case strings
    /// etcd's SelectiveStringValue.
    case selective([String])
    /// etcd's IgnoredFlag (bool-like, warns when set).
    case ignored

    var isBool: Bool { self == .bool || self == .ignored }

    /// Go `flag.Value.Set(raw)` given the current value; the error text is the Set error.
    func set(_ raw: String, current: FlagValue) throws(FlagSetError) -> FlagValue {
        switch self {
        case .string:
            return .string(raw)
        case .bool:
            guard let b = GoStrconv.parseBool(raw) else { throw FlagSetError("parse error") }
            return .bool(b)
        case .uint:
            do { return .uint(try GoStrconv.parseUint(raw, bitSize: 64)) } catch { throw FlagSetError(error.flagText) }
        case .int:
            do { return .int(try GoStrconv.parseInt(raw, bitSize: 64)) } catch { throw FlagSetError(error.flagText) }
        case .uint32:
            do { return .uint(try GoStrconv.parseUint(raw, bitSize: 32)) } catch {
                throw FlagSetError(error.strconvText(function: "ParseUint", input: raw))
            }
        case .duration:
            guard let d = GoDuration.parse(raw) else { throw FlagSetError("parse error") }
            return .duration(d)
        case .urls(let allowed):
            guard case .urls(var values, let urls) = current else { return current }
            if values.contains(raw) { return current }
            if allowed.contains(raw) {
                values.insert(raw)
                return .urls(values: values, urls: urls)
            }
            do {
                let parsed = try EtcdURLs.parseCommaList(raw)
                return .urls(values: Set(parsed.map(\.description)), urls: parsed)
            } catch {
                throw FlagSetError(error.message)
            }
        case .uniqueStrings:
            return .strings(Array(Set(raw.split(separator: ",", omittingEmptySubsequences: false).map(String.init))).sorted())
        case .strings:
            return .strings(raw.split(separator: ",", omittingEmptySubsequences: false).map(String.init))
        case .selective(let valids):
            guard valids.contains(raw) else { throw FlagSetError("invalid value") }
            return .string(raw)
        case .ignored:
            return .ignored
        }
    }
}

struct FlagSetError: Error, Equatable {
    let message: String
    init(_ message: String) { self.message = message }
}

/// How a flag appears in the YAML config file (etcd's embed.configYAML /
/// etcdmain.configProxy JSON field). Go's JSON decoder gives the error texts.
struct YAMLBinding: Sendable, Equatable {
    enum Shape: Sendable, Equatable {
        case string
        case bool
        /// A JSON number into a Go integer type ("uint", "uint64", "uint32", "int", "int64", "time.Duration").
        case number(goType: String)
        case stringList
        /// A comma-separated URL list in a string; a bad list makes etcd print
        /// "unexpected error setting up <label>: <err>" and exit 1.
        case urlString(label: String)
    }

    var key: String
    /// For keys inside "client-transport-security" / "peer-transport-security".
    var parent: String?
    /// "configYAML" (embed.Config) or "configProxy" (etcdmain's proxy settings).
    var structName: String
    var shape: Shape
}

struct FlagSpec: Sendable {
    let name: String
    let kind: FlagKind
    let yaml: YAMLBinding?
    /// Does swetcd implement what this flag changes? A flag set to a
    /// non-default value with `honoured == false` lands in `notHonoured`.
    let honoured: Bool
    let read: @Sendable (EtcdConfig) -> FlagValue
    let apply: @Sendable (inout EtcdConfig, FlagValue) -> Void

    /// ETCD_NAME_WITH_UNDERSCORES (etcd's flags.FlagToEnv).
    var envKey: String { "ETCD_" + name.replacingOccurrences(of: "-", with: "_").uppercased() }
}

// MARK: - Row constructors

private typealias KP<T> = WritableKeyPath<EtcdConfig, T> & Sendable

private func yamlTop(_ key: String, _ shape: YAMLBinding.Shape) -> YAMLBinding {
    YAMLBinding(key: key, parent: nil, structName: "configYAML", shape: shape)
}

private func str(_ name: String, _ kp: KP<String>, yaml: Bool = true, honoured: Bool) -> FlagSpec {
    FlagSpec(
        name: name, kind: .string, yaml: yaml ? yamlTop(name, .string) : nil, honoured: honoured,
        read: { .string($0[keyPath: kp]) },
        apply: { c, v in if case .string(let s) = v { c[keyPath: kp] = s } })
}

private func bool(_ name: String, _ kp: KP<Bool>, yaml: YAMLBinding? = nil, noYAML: Bool = false, honoured: Bool) -> FlagSpec {
    FlagSpec(
        name: name, kind: .bool, yaml: noYAML ? nil : (yaml ?? yamlTop(name, .bool)), honoured: honoured,
        read: { .bool($0[keyPath: kp]) },
        apply: { c, v in if case .bool(let b) = v { c[keyPath: kp] = b } })
}

private func uint(_ name: String, _ kp: KP<UInt>, goType: String = "uint", yaml: YAMLBinding? = nil, honoured: Bool) -> FlagSpec {
    FlagSpec(
        name: name, kind: .uint, yaml: yaml ?? yamlTop(name, .number(goType: goType)), honoured: honoured,
        read: { .uint(UInt64($0[keyPath: kp])) },
        apply: { c, v in if case .uint(let u) = v { c[keyPath: kp] = UInt(truncatingIfNeeded: u) } })
}

private func uint64(_ name: String, _ kp: KP<UInt64>, honoured: Bool) -> FlagSpec {
    FlagSpec(
        name: name, kind: .uint, yaml: yamlTop(name, .number(goType: "uint64")), honoured: honoured,
        read: { .uint($0[keyPath: kp]) },
        apply: { c, v in if case .uint(let u) = v { c[keyPath: kp] = u } })
}

private func int(_ name: String, _ kp: KP<Int>, honoured: Bool) -> FlagSpec {
    FlagSpec(
        name: name, kind: .int, yaml: yamlTop(name, .number(goType: "int")), honoured: honoured,
        read: { .int(Int64($0[keyPath: kp])) },
        apply: { c, v in if case .int(let i) = v { c[keyPath: kp] = Int(truncatingIfNeeded: i) } })
}

private func int64(_ name: String, _ kp: KP<Int64>, honoured: Bool) -> FlagSpec {
    FlagSpec(
        name: name, kind: .int, yaml: yamlTop(name, .number(goType: "int64")), honoured: honoured,
        read: { .int($0[keyPath: kp]) },
        apply: { c, v in if case .int(let i) = v { c[keyPath: kp] = i } })
}

private func duration(_ name: String, _ kp: KP<Duration>, honoured: Bool) -> FlagSpec {
    FlagSpec(
        name: name, kind: .duration, yaml: yamlTop(name, .number(goType: "time.Duration")), honoured: honoured,
        read: { .duration(nanoseconds($0[keyPath: kp])) },
        apply: { c, v in if case .duration(let ns) = v { c[keyPath: kp] = .nanoseconds(ns) } })
}

private func urls(_ name: String, _ kp: KP<[EtcdURL]>, allowed: Set<String> = [""], yamlLabel: String?, honoured: Bool) -> FlagSpec {
    FlagSpec(
        name: name, kind: .urls(allowed: allowed),
        yaml: yamlLabel.map { yamlTop(name, .urlString(label: $0)) }, honoured: honoured,
        read: { c in
            let list = c[keyPath: kp]
            return .urls(values: Set(list.map(\.description)), urls: list)
        },
        apply: { c, v in if case .urls(_, let list) = v { c[keyPath: kp] = list } })
}

private func uniqueStrings(_ name: String, _ kp: KP<[String]>, yamlShape: YAMLBinding.Shape, honoured: Bool) -> FlagSpec {
    FlagSpec(
        name: name, kind: .uniqueStrings, yaml: yamlTop(name, yamlShape), honoured: honoured,
        read: { .strings($0[keyPath: kp]) },
        apply: { c, v in if case .strings(let s) = v { c[keyPath: kp] = s } })
}

private func selective(_ name: String, _ kp: KP<String>, _ valids: [String], yaml: YAMLBinding?, honoured: Bool) -> FlagSpec {
    FlagSpec(
        name: name, kind: .selective(valids), yaml: yaml, honoured: honoured,
        read: { .string($0[keyPath: kp]) },
        apply: { c, v in if case .string(let s) = v { c[keyPath: kp] = s } })
}

private func ignored(_ name: String) -> FlagSpec {
    FlagSpec(name: name, kind: .ignored, yaml: nil, honoured: true, read: { _ in .ignored }, apply: { _, _ in })
}

private func tls(_ parent: String, _ key: String, _ shape: YAMLBinding.Shape) -> YAMLBinding {
    YAMLBinding(key: key, parent: parent, structName: "securityConfig", shape: shape)
}

private func proxyKey(_ key: String, _ shape: YAMLBinding.Shape) -> YAMLBinding {
    YAMLBinding(key: key, parent: nil, structName: "configProxy", shape: shape)
}

func nanoseconds(_ d: Duration) -> Int64 {
    let (s, atto) = d.components
    return s * 1_000_000_000 + atto / 1_000_000_000
}

// MARK: - The table

enum FlagTable {
    static let all: [FlagSpec] = [
        str("config-file", \.configFile, yaml: false, honoured: true),

        // member
        str("data-dir", \.dataDir, honoured: true),
        str("wal-dir", \.walDir, honoured: true),
        urls("listen-peer-urls", \.listenPeerURLs, yamlLabel: "listen-peer-urls", honoured: true),
        urls("listen-client-urls", \.listenClientURLs, yamlLabel: "listen-client-urls", honoured: true),
        urls("listen-metrics-urls", \.listenMetricsURLs, yamlLabel: "listen-metrics-urls", honoured: true),
        uint("max-snapshots", \.maxSnapshots, honoured: true),
        uint("max-wals", \.maxWALs, honoured: true),
        str("name", \.name, honoured: true),
        uint64("snapshot-count", \.snapshotCount, honoured: true),
        uint("heartbeat-interval", \.heartbeatIntervalMs, honoured: true),
        uint("election-timeout", \.electionTimeoutMs, honoured: true),
        bool("initial-election-tick-advance", \.initialElectionTickAdvance, honoured: false),
        int64("quota-backend-bytes", \.quotaBackendBytes, honoured: true),
        duration("backend-batch-interval", \.backendBatchInterval, honoured: true),
        int("backend-batch-limit", \.backendBatchLimit, honoured: true),
        uint("max-txn-ops", \.maxTxnOps, honoured: true),
        uint("max-request-bytes", \.maxRequestBytes, honoured: true),
        duration("grpc-keepalive-min-time", \.grpcKeepAliveMinTime, honoured: true),
        duration("grpc-keepalive-interval", \.grpcKeepAliveInterval, honoured: true),
        duration("grpc-keepalive-timeout", \.grpcKeepAliveTimeout, honoured: true),
        FlagSpec(
            name: "max-concurrent-streams", kind: .uint32, yaml: yamlTop("max-concurrent-streams", .number(goType: "uint32")),
            honoured: false,
            read: { .uint(UInt64($0.maxConcurrentStreams)) },
            apply: { c, v in if case .uint(let u) = v { c.maxConcurrentStreams = UInt32(truncatingIfNeeded: u) } }),

        // clustering
        urls("initial-advertise-peer-urls", \.initialAdvertisePeerURLs, yamlLabel: "initial-advertise-peer-urls", honoured: true),
        // etcd's own typo: a bad advertise-client-urls in a config file is reported as "advertise-peer-urls".
        urls("advertise-client-urls", \.advertiseClientURLs, yamlLabel: "advertise-peer-urls", honoured: true),
        str("discovery", \.discovery, honoured: false),
        selective("discovery-fallback", \.discoveryFallback, ["proxy", "exit"], yaml: proxyKey("discovery-fallback", .string), honoured: false),
        str("discovery-proxy", \.discoveryProxy, honoured: false),
        str("discovery-srv", \.discoverySRV, honoured: false),
        str("discovery-srv-name", \.discoverySRVName, honoured: false),
        str("initial-cluster", \.initialCluster, honoured: true),
        str("initial-cluster-token", \.initialClusterToken, honoured: true),
        selective("initial-cluster-state", \.initialClusterState, ["new", "existing"], yaml: yamlTop("initial-cluster-state", .string), honoured: true),
        bool("strict-reconfig-check", \.strictReconfigCheck, honoured: true),
        bool("enable-v2", \.enableV2, honoured: false),
        bool("pre-vote", \.preVote, honoured: true),

        // v2 proxy
        selective("proxy", \.proxy, ["off", "readonly", "on"], yaml: proxyKey("proxy", .string), honoured: false),
        uint("proxy-failure-wait", \.proxyFailureWaitMs, yaml: proxyKey("proxy-failure-wait", .number(goType: "uint")), honoured: false),
        uint("proxy-refresh-interval", \.proxyRefreshIntervalMs, yaml: proxyKey("proxy-refresh-interval", .number(goType: "uint")), honoured: false),
        uint("proxy-dial-timeout", \.proxyDialTimeoutMs, yaml: proxyKey("proxy-dial-timeout", .number(goType: "uint")), honoured: false),
        uint("proxy-write-timeout", \.proxyWriteTimeoutMs, yaml: proxyKey("proxy-write-timeout", .number(goType: "uint")), honoured: false),
        uint("proxy-read-timeout", \.proxyReadTimeoutMs, yaml: proxyKey("proxy-read-timeout", .number(goType: "uint")), honoured: false),

        // security
        tlsString("cert-file", \.clientTLS.certFile, parent: "client-transport-security", key: "cert-file"),
        tlsString("key-file", \.clientTLS.keyFile, parent: "client-transport-security", key: "key-file"),
        bool("client-cert-auth", \.clientTLS.clientCertAuth, yaml: tls("client-transport-security", "client-cert-auth", .bool), honoured: false),
        tlsString("client-crl-file", \.clientTLS.crlFile, parent: nil, key: nil),
        tlsString("client-cert-allowed-hostname", \.clientTLS.allowedHostname, parent: nil, key: nil),
        tlsString("trusted-ca-file", \.clientTLS.trustedCAFile, parent: "client-transport-security", key: "trusted-ca-file"),
        bool("auto-tls", \.clientAutoTLS, yaml: tls("client-transport-security", "auto-tls", .bool), honoured: false),
        tlsString("peer-cert-file", \.peerTLS.certFile, parent: "peer-transport-security", key: "cert-file"),
        tlsString("peer-key-file", \.peerTLS.keyFile, parent: "peer-transport-security", key: "key-file"),
        bool("peer-client-cert-auth", \.peerTLS.clientCertAuth, yaml: tls("peer-transport-security", "client-cert-auth", .bool), honoured: false),
        tlsString("peer-trusted-ca-file", \.peerTLS.trustedCAFile, parent: "peer-transport-security", key: "trusted-ca-file"),
        bool("peer-auto-tls", \.peerAutoTLS, yaml: tls("peer-transport-security", "auto-tls", .bool), honoured: false),
        tlsString("peer-crl-file", \.peerTLS.crlFile, parent: nil, key: nil),
        tlsString("peer-cert-allowed-cn", \.peerTLS.allowedCN, parent: nil, key: nil),
        tlsString("peer-cert-allowed-hostname", \.peerTLS.allowedHostname, parent: nil, key: nil),
        FlagSpec(
            name: "cipher-suites", kind: .strings, yaml: yamlTop("cipher-suites", .stringList), honoured: false,
            read: { .strings($0.cipherSuites) },
            apply: { c, v in if case .strings(let s) = v { c.cipherSuites = s } }),
        bool("experimental-peer-skip-client-san-verification", \.experimentalPeerSkipClientSANVerification, noYAML: true, honoured: false),
        FlagSpec(
            name: "cors", kind: .urls(allowed: ["*"]), yaml: yamlTop("cors", .string), honoured: false,
            read: { c in .urls(values: Set(c.cors), urls: []) },
            apply: { c, v in if case .urls(let values, _) = v { c.cors = values.sorted() } }),
        uniqueStrings("host-whitelist", \.hostWhitelist, yamlShape: .string, honoured: false),

        // logging
        str("logger", \.logger, honoured: true),
        uniqueStrings("log-output", \.deprecatedLogOutput, yamlShape: .stringList, honoured: true),
        uniqueStrings("log-outputs", \.logOutputs, yamlShape: .stringList, honoured: true),
        bool("debug", \.debug, honoured: true),
        str("log-level", \.logLevel, honoured: true),
        str("log-package-levels", \.logPackageLevels, honoured: true),

        // version
        FlagSpec(name: "version", kind: .bool, yaml: nil, honoured: true, read: { _ in .bool(false) }, apply: { _, _ in }),

        str("auto-compaction-retention", \.autoCompactionRetention, honoured: true),
        str("auto-compaction-mode", \.autoCompactionMode, honoured: true),
        bool("enable-pprof", \.enablePprof, honoured: false),
        str("metrics", \.metrics, honoured: false),
        str("auth-token", \.authToken, honoured: false),
        uint("bcrypt-cost", \.bcryptCost, honoured: false),
        uint("auth-token-ttl", \.authTokenTTL, honoured: false),
        bool("enable-grpc-gateway", \.enableGRPCGateway, honoured: false),

        // experimental
        bool("experimental-initial-corrupt-check", \.experimentalInitialCorruptCheck, honoured: false),
        duration("experimental-corrupt-check-time", \.experimentalCorruptCheckTime, honoured: false),
        str("experimental-enable-v2v3", \.experimentalEnableV2V3, honoured: false),
        str("experimental-backend-bbolt-freelist-type", \.experimentalBackendFreelistType, honoured: false),
        bool("experimental-enable-lease-checkpoint", \.experimentalEnableLeaseCheckpoint, honoured: false),
        bool("experimental-enable-lease-checkpoint-persist", \.experimentalEnableLeaseCheckpointPersist, honoured: false),
        int("experimental-compaction-batch-limit", \.experimentalCompactionBatchLimit, honoured: false),
        duration("experimental-watch-progress-notify-interval", \.experimentalWatchProgressNotifyInterval, honoured: false),
        duration("experimental-warning-apply-duration", \.experimentalWarningApplyDuration, honoured: false),

        // unsafe
        bool("unsafe-no-fsync", \.unsafeNoFsync, honoured: true),
        bool("force-new-cluster", \.forceNewCluster, honoured: false),

        // swetcd's own: encryption at rest
        str("encryption-provider-config", \.encryptionProviderConfig, honoured: true),
        bool("encryption-provider-config-automatic-reload", \.encryptionProviderConfigAutomaticReload, honoured: true),
        str("encryption-resource-prefixes", \.encryptionResourcePrefixes, honoured: true),
    ] + ignoredNames.map(ignored)

    /// etcd's legacy flags that are accepted and ignored with a warning.
    static let ignoredNames = [
        "cluster-active-size", "cluster-remove-delay", "cluster-sync-interval", "config", "force",
        "max-result-buffer", "max-retry-attempts", "peer-heartbeat-interval", "peer-election-timeout",
        "retry-interval", "snapshot", "v", "vv", "test.coverprofile", "test.outputdir",
    ]

    static let byName: [String: FlagSpec] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    /// Go's FlagSet.VisitAll order: sorted by name.
    static let sortedByName: [FlagSpec] = all.sorted { $0.name < $1.name }

    /// The defaults a config file starts from (embed.NewConfig + etcdmain's proxy
    /// defaults): unlike the flags, no auto-compaction defaults and the gRPC gateway off.
    static func fileModeDefaults() -> EtcdConfig {
        var c = EtcdConfig()
        c.autoCompactionRetention = ""
        c.autoCompactionMode = ""
        c.enableGRPCGateway = false
        return c
    }
}

private func tlsString(_ name: String, _ kp: KP<String>, parent: String?, key: String?) -> FlagSpec {
    var binding: YAMLBinding?
    if let parent, let key { binding = tls(parent, key, .string) }
    return FlagSpec(
        name: name, kind: .string, yaml: binding, honoured: false,
        read: { .string($0[keyPath: kp]) },
        apply: { c, v in if case .string(let s) = v { c[keyPath: kp] = s } })
}
