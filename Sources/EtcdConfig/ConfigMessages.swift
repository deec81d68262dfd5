// Every message etcd 3.4.23 prints while reading its configuration, in one
// place. Each was checked against /usr/bin/etcd 3.4.23 (see the tests for the
// command lines and the observed output) or read from its Go source.

enum ConfigMessages {
    // MARK: Go `flag` package (written raw to stderr, then the usage; exit 2)
    static func notDefined(_ name: String) -> String { "flag provided but not defined: -\(name)" }
    static func badSyntax(_ arg: String) -> String { "bad flag syntax: \(arg)" }
    static func needsArgument(_ name: String) -> String { "flag needs an argument: -\(name)" }
    static func invalidValue(_ value: String, flag: String, _ err: String) -> String {
        "invalid value \(goQuote(value)) for flag -\(flag): \(err)"
    }
    static func invalidBoolean(_ value: String, flag: String, _ err: String) -> String {
        "invalid boolean value \(goQuote(value)) for -\(flag): \(err)"
    }
    static func invalidBooleanFlag(_ flag: String, _ err: String) -> String { "invalid boolean flag \(flag): \(err)" }

    // MARK: etcdmain (logged "error verifying flags, <msg>. See 'etcd --help'."; exit 1)
    static func notAValidFlag(_ arg: String) -> String { "'\(arg)' is not a valid flag" }
    static func verifyingFlags(_ err: String) -> String { "error verifying flags, \(err). See 'etcd --help'." }
    static let zapFailedToVerify = "failed to verify flags"
    static let unsetAdvertiseHint = "When listening on specific address(es), this etcd process must advertise accessible url(s) to each connected client."
    static let zapUnsetAdvertise = "advertise client URLs are not set"
    static func loadingConfigFile(_ path: String) -> String {
        "Loading server configuration from \(goQuote(path)). Other configuration command line flags and environment variables will be ignored if provided."
    }
    static let zapLoadedConfigFile = "loaded server configuration, other configuration command line flags and environment variables will be ignored if provided"
    static func noDataDir(_ dir: String) -> String { "no data-dir provided, using default data-dir ./\(dir)" }
    static let zapNoDataDir = "'data-dir' was empty; using default"
    static func advertisingDefaultHost(_ host: String) -> String { "advertising using detected default host \(goQuote(host))" }
    static let zapDetectedDefaultHost = "detected default host for advertise"

    // MARK: pkg/flags (environment)
    static func envInvalidValue(_ value: String, key: String, _ err: String) -> String {
        "invalid value \(goQuote(value)) for \(key): \(err)"
    }
    static func envRecognized(_ key: String, _ value: String) -> String { "recognized and used environment variable \(key)=\(value)" }
    static func envUnrecognized(_ key: String, _ value: String) -> String { "unrecognized environment variable \(key)=\(value)" }
    static func envConflict(_ key: String) -> String {
        "conflicting environment variable \(goQuote(key)) is shadowed by corresponding command-line flag (either unset environment variable or disable flag)"
    }
    static func ignoredFlag(_ name: String) -> String { "flag \"-\(name)\" is no longer supported - ignoring." }

    // MARK: config file
    static func fileURLSetup(_ label: String, _ err: String) -> String { "unexpected error setting up \(label): \(err)" }
    static func fileSelectiveSetup(_ what: String) -> String { "unexpected error setting up \(what): invalid value" }
    static func uniqueURLsPanic(_ err: String) -> String { "new UniqueURLs should never fail: \(err)" }

    // MARK: embed.Config.Validate / setupLogging
    static let logOutputDeprecated = "'--log-output' flag has been deprecated! Please use '--log-outputs'!"
    static let bothLogOutputs = "both '--log-output' and '--log-outputs' are set; only set '--log-outputs'"
    static let noLogOutput = "either '--log-output' or '--log-outputs' flag must be set"
    static func incompatibleLogOutputs(_ a: [String], _ b: [String]) -> String {
        "'--log-output=\(goQuoteList(a))' and '--log-outputs=\(goQuoteList(b))' are incompatible; only set --log-outputs"
    }
    static func deprecatedLogOutputSet(_ a: [String]) -> String { "[WARNING] Deprecated '--log-output' flag is set to \(goQuoteList(a))" }
    static let pleaseUseLogOutputs = "Please use '--log-outputs' flag"
    // etcd's text lacks the closing parenthesis.
    static let deprecatedDebug = "[WARNING] Deprecated '--debug' flag is set to true (use '--log-level=debug' instead"
    static func debugInconsistent(_ level: String) -> String {
        "[WARNING] Deprecated '--debug' flag is set to true with inconsistent '--log-level=\(level)' flag"
    }
    static func deprecatedLogger(_ logger: String) -> String {
        "[WARNING] Deprecated '--logger=\(logger)' flag is set; use '--logger=zap' flag instead"
    }
    static func deprecatedPackageLevels(_ v: String) -> String {
        "[WARNING] Deprecated '--log-package-levels=\(v)' flag is set; use '--logger=zap' flag instead"
    }
    static func unknownLevelPanic(_ level: String) -> String { "panic: unknown level \(goQuote(level))" }
    static func packageLevelsUnparsable(_ err: String) -> String { "couldn't parse log level string: \(err), continuing with default levels" }
    static func capnslogOneOutput(_ outs: [String]) -> String {
        "--logger=capnslog supports only 1 value in '--log-outputs', got \(goQuoteList(outs))"
    }
    static func unknownLogOutput(_ o: String) -> String {
        "unknown log-output \(goQuote(o)) (only supports \"default\", \"stderr\", \"stdout\")"
    }
    static let multiDefaultOutput = "multi logoutput for \"default\" is not supported yet"
    static func journalWithOthers(_ outs: [String]) -> String {
        "running with systemd/journal but other '--log-outputs' values (\(goQuoteList(outs))) are configured with 'default'; override 'default' value with something else"
    }
    static func unknownLogger(_ l: String) -> String { "unknown logger option \(goQuote(l))" }
    static func expectedIPForBinding(_ url: String) -> String { "expected IP in URL for binding (\(url))" }
    static func unexpectedEmptyHost(_ url: String) -> String { "unexpected empty host (\(url))" }
    static func advertisePeerHostPort(_ urls: String, _ err: String) -> String {
        "--initial-advertise-peer-urls \(goQuote(urls)) must be \"host:port\" (\(err))"
    }
    static func advertiseClientHostPort(_ urls: String, _ err: String) -> String {
        "--advertise-client-urls \(goQuote(urls)) must be \"host:port\" (\(err))"
    }
    static func unexpectedClusterState(_ s: String) -> String { "unexpected clusterState \(goQuote(s))" }
    static let conflictBootstrapFlags = "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\""
    static func heartbeatNotPositive(_ ms: UInt) -> String { "--heartbeat-interval must be >0 (set to \(ms)ms)" }
    static func electionNotPositive(_ ms: UInt) -> String { "--election-timeout must be >0 (set to \(ms)ms)" }
    static func electionTooShort(election: UInt, heartbeat: UInt) -> String {
        "--election-timeout[\(election)ms] should be at least as 5 times as --heartbeat-interval[\(heartbeat)ms]"
    }
    static func electionTooLong(_ ms: UInt) -> String {
        "--election-timeout[\(ms)ms] is too long, and should be set less than 50000ms"
    }
    static let unsetAdvertiseClientURLs = "--advertise-client-urls is required when --listen-client-urls is set explicitly"
    static func unknownCompactionMode(_ m: String) -> String { "unknown auto-compaction-mode \(goQuote(m))" }
    static let checkpointWithoutPersist = "Detected that checkpointing is enabled without persistence. Consider enabling experimental-enable-lease-checkpoint-persist"
    static let persistRequiresCheckpoint = "setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint"

    // MARK: bootstrap (etcdserver.ServerConfig.VerifyBootstrap / VerifyJoinExisting)
    static func localNameMissing(_ name: String) -> String {
        "couldn't find local name \(goQuote(name)) in the initial cluster configuration"
    }
    static func initialClusterMissingFromAdvertise(_ missing: String, _ advertised: String, _ err: String) -> String {
        "--initial-cluster has \(missing) but missing from --initial-advertise-peer-urls=\(advertised) (\(err))"
    }
    static func advertiseMissingFromInitialCluster(_ missing: String, _ cluster: String) -> String {
        "--initial-advertise-peer-urls has \(missing) but missing from --initial-cluster=\(cluster)"
    }
    static func failedToResolve(_ advertised: String, _ cluster: String, _ err: String) -> String {
        "failed to resolve \(advertised) to match --initial-cluster=\(cluster) (\(err))"
    }
    static func duplicateURL(_ cluster: String) -> String { "initial cluster \(cluster) has duplicate url" }
    static let clusterUnset = "initial cluster unset and no discovery URL found"
    static let discoveryWhenJoining = "discovery URL should not be set when joining existing initial cluster"
    static let zapFailedToStart = "failed to start etcd"
    static let zapDiscoveryFailed = "discovery failed"
}
