/// TLS settings of one side (client or peer), as etcd's `transport.TLSInfo` flags set them.
public struct TLSSettings: Sendable, Equatable {
    public var certFile = ""
    public var keyFile = ""
    public var clientCertAuth = false
    public var trustedCAFile = ""
    public var crlFile = ""
    public var allowedCN = ""
    public var allowedHostname = ""
    public init() {}

    /// etcd's `TLSInfo.Empty()`: no certificate and no key given.
    public var isEmpty: Bool { certFile.isEmpty && keyFile.isEmpty }
}

/// Everything etcd 3.4.23's command line, `ETCD_*` environment and
/// `--config-file` can set, with etcd's defaults (the command-line defaults;
/// a config file starts from embed.NewConfig(), see `FlagTable.fileModeDefaults`).
///
/// Build it with `EtcdConfig.parse(arguments:environment:)`; the flag table
/// (`FlagTable.all`) is the one list from which flag parsing, `ETCD_*` lookup,
/// YAML keys and `notHonoured` derive.
public struct EtcdConfig: Sendable, Equatable {
    // MARK: member
    public var name = "default"
    /// After parsing: "<name>.etcd" when not given (etcd's rule, with its warning).
    public var dataDir = ""
    /// "" = <data-dir>/member/wal.
    public var walDir = ""
    public var snapshotCount: UInt64 = 100_000
    public var maxSnapshots: UInt = 5
    public var maxWALs: UInt = 5
    public var heartbeatIntervalMs: UInt = 100
    public var electionTimeoutMs: UInt = 1000
    public var initialElectionTickAdvance = true
    public var listenPeerURLs: [EtcdURL] = [EtcdURL(scheme: "http", host: "localhost:2380")]
    public var listenClientURLs: [EtcdURL] = [EtcdURL(scheme: "http", host: "localhost:2379")]
    public var listenMetricsURLs: [EtcdURL] = []
    /// 0 = etcd's default quota (2 GiB).
    public var quotaBackendBytes: Int64 = 0
    /// 0 = the backend's default (100ms).
    public var backendBatchInterval: Duration = .zero
    /// 0 = the backend's default (10000).
    public var backendBatchLimit: Int = 0
    public var maxTxnOps: UInt = 128
    public var maxRequestBytes: UInt = 1_572_864
    public var maxConcurrentStreams: UInt32 = .max
    public var grpcKeepAliveMinTime: Duration = .seconds(5)
    public var grpcKeepAliveInterval: Duration = .seconds(7200)
    public var grpcKeepAliveTimeout: Duration = .seconds(20)

    // MARK: clustering
    public var initialAdvertisePeerURLs: [EtcdURL] = [EtcdURL(scheme: "http", host: "localhost:2380")]
    /// Empty when --listen-client-urls was given without --advertise-client-urls
    /// (etcd then refuses to start unless it may be a proxy).
    public var advertiseClientURLs: [EtcdURL] = [EtcdURL(scheme: "http", host: "localhost:2379")]
    public var discovery = ""
    public var discoveryFallback = "proxy"
    public var discoveryProxy = ""
    public var discoverySRV = ""
    public var discoverySRVName = ""
    /// etcd's default derives from the name and --initial-advertise-peer-urls.
    public var initialCluster = "default=http://localhost:2380"
    public var initialClusterToken = "etcd-cluster"
    public var initialClusterState = "new"
    public var strictReconfigCheck = true
    public var enableV2 = false
    public var preVote = false
    public var autoCompactionRetention = "0"
    public var autoCompactionMode = "periodic"

    // MARK: v2 proxy
    public var proxy = "off"
    public var proxyFailureWaitMs: UInt = 5000
    public var proxyRefreshIntervalMs: UInt = 30000
    public var proxyDialTimeoutMs: UInt = 1000
    public var proxyWriteTimeoutMs: UInt = 5000
    public var proxyReadTimeoutMs: UInt = 0

    // MARK: security
    public var clientTLS = TLSSettings()
    public var clientAutoTLS = false
    public var peerTLS = TLSSettings()
    public var peerAutoTLS = false
    public var cipherSuites: [String] = []
    public var experimentalPeerSkipClientSANVerification = false
    /// Sorted unique origins ("*" = all).
    public var cors: [String] = ["*"]
    /// Sorted unique host names ("*" = all).
    public var hostWhitelist: [String] = ["*"]

    // MARK: auth
    public var authToken = "simple"
    public var bcryptCost: UInt = 10
    public var authTokenTTL: UInt = 300

    // MARK: profiling and monitoring
    public var enablePprof = false
    public var metrics = "basic"

    // MARK: logging
    /// "capnslog" (etcd 3.4's default) or "zap".
    public var logger = "capnslog"
    /// debug, info, warn, error, panic, fatal (also dpanic).
    public var logLevel = "info"
    /// Sorted unique values; "default" = stderr.
    public var logOutputs: [String] = ["default"]
    /// The deprecated --log-output.
    public var deprecatedLogOutput: [String] = ["default"]
    /// The deprecated --debug (capnslog: debug level).
    public var debug = false
    public var logPackageLevels = ""

    // MARK: gateway, experimental, unsafe
    public var enableGRPCGateway = true
    public var experimentalInitialCorruptCheck = false
    public var experimentalCorruptCheckTime: Duration = .zero
    public var experimentalEnableV2V3 = ""
    public var experimentalBackendFreelistType = ""
    public var experimentalEnableLeaseCheckpoint = false
    public var experimentalEnableLeaseCheckpointPersist = false
    public var experimentalCompactionBatchLimit: Int = 0
    public var experimentalWatchProgressNotifyInterval: Duration = .zero
    public var experimentalWarningApplyDuration: Duration = .milliseconds(100)
    public var unsafeNoFsync = false

    // swetcd's own: encryption at rest (not etcd flags; Kubernetes' API server names).
    /// Kubernetes' EncryptionConfiguration file; empty: no encryption.
    public var encryptionProviderConfig = ""
    /// Re-read the file when it changes and on SIGHUP.
    public var encryptionProviderConfigAutomaticReload = false
    /// Where resources live in etcd: "kubernetes" (/registry/...), "openshift", or a YAML
    /// file with `roots` and `resources` (see the Encryption module's ResourcePrefixes).
    public var encryptionResourcePrefixes = "kubernetes"
    public var forceNewCluster = false

    // MARK: where the values came from
    /// The --config-file (or ETCD_CONFIG_FILE) in use; "" when configured by flags and environment.
    public var configFile = ""
    /// Every flag given explicitly (command line, ETCD_* variable or config-file key),
    /// by flag name, with its raw value as given.
    public var explicitlySet: [String: String] = [:]
    /// Flags that were set but whose feature swetcd does not honour yet (the
    /// caller logs a warning for each, never silently). Names, sorted.
    public var notHonoured: [String] = []
    /// Lines etcd prints while parsing, before logging is configured (ignored-flag
    /// warnings, "recognized and used environment variable ...",
    /// "[WARNING] Deprecated '--logger=capnslog' ..."). Write them first with
    /// `writeEarlyOutput()`.
    public var earlyOutput: [OutputLine] = []
    /// The raw "[WARNING] ..." lines of etcd's logging setup; etcd prints them a
    /// second time when the embedded server starts (embed.StartEtcd validates again).
    public var loggingSetupWarnings: [String] = []
    /// Messages etcd logs through the configured logger right after parsing
    /// ("Loading server configuration from ...", "no data-dir provided, using default ...").
    /// The capnslog version banner ("etcd Version: ...") belongs between
    /// `preBannerLog` and this list; see `startupLog(banner:)`.
    public var postParseLog: [LogEntry] = []
    /// Logged before the banner (the config-file note).
    public var preBannerLog: [LogEntry] = []

    public init() {}

    /// The messages of `earlyOutput` (e.g. "recognized and used environment variable ETCD_NAME=foo").
    public var parseWarnings: [String] {
        earlyOutput.map { line in
            switch line {
            case .raw(let s): return s.hasSuffix("\n") ? String(s.dropLast()) : s
            case .capnslog(let e), .log(let e): return e.message
            }
        }
    }

    /// How the configured logger writes.
    public var logSpec: LogSpec {
        var outputs = logOutputs
        if logger == "zap" && outputs.isEmpty { outputs = ["default"] }
        let explicitStd = outputs.count == 1 && (outputs[0] == "stderr" || outputs[0] == "stdout")
        return LogSpec(logger: logger, outputs: outputs, capnslogCaller: logger == "capnslog" && debug && explicitStd)
    }

    /// Writes `earlyOutput` to stderr (call before bootstrapping swift-log).
    public func writeEarlyOutput() {
        writeOutput(earlyOutput, spec: nil, now: .init())
    }

    /// The WAL directory in effect.
    public var effectiveWALDir: String { walDir.isEmpty ? dataDir + "/member/wal" : walDir }

    /// The initial cluster as a map (etcd's `types.NewURLsMap`).
    public func initialClusterMap() throws(URLParseError) -> InitialClusterMap {
        try InitialClusterMap.parse(initialCluster)
    }

    /// etcd's `InitialClusterFromName`: "<name>=<url>,..." over the advertised peer URLs.
    public func initialClusterFromName(_ name: String) -> String {
        let n = name.isEmpty ? "default" : name
        return initialAdvertisePeerURLs.map { "\(n)=\($0)" }.joined(separator: ",")
    }

    /// Does the process run as a v2 proxy rather than a member (--proxy on/readonly,
    /// or discovery with fallback to proxy)? swetcd does not implement the v2 proxy.
    public var mayBeProxy: Bool {
        proxy != "off" || (!discovery.isEmpty && discoveryFallback == "proxy")
    }
}
