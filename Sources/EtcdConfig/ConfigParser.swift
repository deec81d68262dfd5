// etcd 3.4.23's configuration pipeline (etcdmain.config.parse, configFromCmdLine,
// configFromFile, embed.Config.Validate and the start of startEtcdOrProxyV2),
// re-implemented over the flag table.
//
// How the executable uses it (main.swift):
//
//     let outcome: ParseOutcome
//     do {
//         outcome = try EtcdConfig.parse(arguments: Array(CommandLine.arguments.dropFirst()),
//                                        environment: ProcessInfo.processInfo.environment)
//     } catch {
//         error.write()                 // etcd's exact lines (stderr, or the zap outputs)
//         exit(error.exitCode)          // 2 for flag syntax errors, 1 otherwise
//     }
//     switch outcome {
//     case .printHelp(let out), .printVersion(let out):
//         out.write(); exit(0)
//     case .run(let config):
//         config.writeEarlyOutput()     // env notes, [WARNING] lines: before logging exists
//         LoggingSystem.bootstrap(try makeLogHandlerFactory(config: config))
//         for e in config.startupLog(cpus: n, availableCPUs: n) + config.notHonouredLog {
//             e.emit(logger: config.logger)
//         }
//         // when the data dir has no WAL yet (a new member):
//         if let err = config.verifyInitialCluster() { err.write(); exit(err.exitCode) }
//     }

/// What is printed while parsing, and whether logging is configured yet.
struct ParseSession {
    var lines: [OutputLine] = []
    /// Set once etcd's setupLogging succeeded; later messages go through the configured logger.
    var logSpec: LogSpec?
    /// Logged just before an "error verifying flags" (etcd's config-file note).
    var noteBeforeVerifyError: LogEntry?

    mutating func log(_ entry: LogEntry) {
        lines.append(logSpec == nil ? .capnslog(entry) : .log(entry))
    }

    mutating func raw(_ line: String) {
        lines.append(.raw(line + "\n"))
    }

    /// A Go `flag` error: message and usage on stderr, exit 2.
    func flagError(_ message: String) -> ConfigError {
        ConfigError(message: message, exitCode: 2, lines: lines + [.raw(message + "\n"), .raw(HelpText.usage)], logSpec: nil)
    }

    /// etcdmain's "error verifying flags" path, exit 1.
    func verifyError(_ message: String, extra: [LogEntry] = []) -> ConfigError {
        var copy = self
        if let note = noteBeforeVerifyError { copy.log(note) }
        copy.log(LogEntry(
            .error, "etcdmain", ConfigMessages.verifyingFlags(message),
            zap: .warn, ConfigMessages.zapFailedToVerify, fields: [.error(message)], caller: "etcdmain/etcd.go:66"))
        for e in extra { copy.log(e) }
        return ConfigError(message: message, exitCode: 1, lines: copy.lines, logSpec: logSpec)
    }

    /// A fatal log line (capnslog C), exit 1.
    func fatal(_ message: String, package: String) -> ConfigError {
        var copy = self
        copy.log(LogEntry(.critical, package, message, zap: .fatal))
        return ConfigError(message: message, exitCode: 1, lines: copy.lines, logSpec: logSpec)
    }

    /// A raw stderr line, exit 1 (etcd's fmt.Fprintf + os.Exit(1)).
    func rawFatal(_ message: String) -> ConfigError {
        ConfigError(message: message, exitCode: 1, lines: lines + [.raw(message + "\n")], logSpec: logSpec)
    }

    /// A Go panic: "panic: ..." on stderr, exit 2.
    func panic(_ message: String) -> ConfigError {
        ConfigError(message: message, exitCode: 2, lines: lines + [.raw(message + "\n\ngoroutine 1 [running]:\n")], logSpec: logSpec)
    }
}

/// Version texts. swetcd answers `--version` with etcd's lines first (so scripts
/// that read the first line or grep "etcd Version" keep working), then its own.
public struct VersionInfo: Sendable, Equatable {
    public var etcdVersion = "3.4.23"
    public var swetcdVersion = "0.1.0"
    public var gitSHA = "Not provided"
    public var swiftVersion = VersionInfo.compiledSwiftVersion
    public var osArch = VersionInfo.currentOSArch
    public init() {}

    /// `swetcd --version` (stdout):
    /// ```
    /// etcd Version: 3.4.23
    /// Git SHA: Not provided
    /// Swift Version: 6.3
    /// OS/Arch: linux/amd64
    /// swetcd Version: 0.1.0
    /// ```
    /// etcd prints "etcd Version", "Git SHA", "Go Version", "Go OS/Arch"; swetcd keeps the
    /// first two labels and says what it really is for the others.
    public var versionText: String {
        "etcd Version: \(etcdVersion)\nGit SHA: \(gitSHA)\nSwift Version: \(swiftVersion)\nOS/Arch: \(osArch)\nswetcd Version: \(swetcdVersion)\n"
    }

    public static var compiledSwiftVersion: String {
        #if swift(>=6.5)
        return "6.5+"
        #elseif swift(>=6.4)
        return "6.4"
        #elseif swift(>=6.3)
        return "6.3"
        #elseif swift(>=6.2)
        return "6.2"
        #elseif swift(>=6.1)
        return "6.1"
        #else
        return "6.0"
        #endif
    }

    public static var currentOSArch: String {
        #if os(Linux)
        let os = "linux"
        #elseif os(macOS)
        let os = "darwin"
        #else
        let os = "unknown"
        #endif
        #if arch(x86_64)
        let arch = "amd64"
        #elseif arch(arm64)
        let arch = "arm64"
        #else
        let arch = "unknown"
        #endif
        return "\(os)/\(arch)"
    }
}

extension EtcdConfig {
    /// Parses etcd's command line (without argv[0]) and environment, exactly as
    /// etcd 3.4.23 does, including the config file, validation and defaults.
    ///
    /// - Parameters:
    ///   - defaultHost: the machine's default-route address (etcd's
    ///     netutil.GetDefaultHost), used to replace a default advertise URL when
    ///     listening on 0.0.0.0; nil when unknown (no replacement).
    ///   - version: what `--version` prints.
    /// - Throws: `ConfigError` with etcd's text and exit code.
    public static func parse(
        arguments: [String], environment: [String: String], defaultHost: String? = nil, version: VersionInfo = VersionInfo()
    ) throws(ConfigError) -> ParseOutcome {
        var session = ParseSession()
        var state = FlagState(defaults: EtcdConfig())

        // 1. Go flag syntax.
        var idx = 0
        while idx < arguments.count {
            let s = arguments[idx]
            if s.utf8.count < 2 || !s.hasPrefix("-") { break }
            var numMinuses = 1
            if s.hasPrefix("--") {
                numMinuses = 2
                if s == "--" { idx += 1; break }
            }
            var name = String(s.dropFirst(numMinuses))
            if name.isEmpty || name.hasPrefix("-") || name.hasPrefix("=") {
                throw session.flagError(ConfigMessages.badSyntax(s))
            }
            idx += 1
            var hasValue = false
            var value = ""
            if let eq = name.dropFirst().firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
                hasValue = true
            }
            guard let spec = FlagTable.byName[name] else {
                if name == "help" || name == "h" {
                    return .printHelp(PrintOut(stdout: HelpText.flags, stderr: session.lines + [.raw(HelpText.usage)]))
                }
                throw session.flagError(ConfigMessages.notDefined(name))
            }
            if spec.kind.isBool {
                let raw = hasValue ? value : "true"
                do {
                    try state.set(spec, raw, session: &session)
                } catch {
                    throw session.flagError(hasValue
                        ? ConfigMessages.invalidBoolean(value, flag: name, error.message)
                        : ConfigMessages.invalidBooleanFlag(name, error.message))
                }
                state.markSet(spec.name, raw)
            } else {
                if !hasValue && idx < arguments.count {
                    value = arguments[idx]
                    idx += 1
                    hasValue = true
                }
                if !hasValue { throw session.flagError(ConfigMessages.needsArgument(name)) }
                do {
                    try state.set(spec, value, session: &session)
                } catch {
                    throw session.flagError(ConfigMessages.invalidValue(value, flag: name, error.message))
                }
                state.markSet(spec.name, value)
            }
        }
        if idx < arguments.count {
            throw session.verifyError(ConfigMessages.notAValidFlag(arguments[idx]))
        }

        // 2. --version.
        if state.values["version"] == .bool(true) {
            return .printVersion(PrintOut(stdout: version.versionText, stderr: session.lines))
        }

        // 3. The config file (flag, then ETCD_CONFIG_FILE) replaces flags and environment.
        var configFile = state.string("config-file")
        if configFile.isEmpty { configFile = environment["ETCD_CONFIG_FILE"] ?? "" }

        var config: EtcdConfig
        if !configFile.isEmpty {
            config = try fromFile(configFile, session: &session)
        } else {
            config = try fromCommandLine(state: &state, environment: environment, session: &session)
        }

        // 4. startEtcdOrProxyV2: default host, initial cluster from the name, data dir.
        let defaultInitialCluster = EtcdConfig().initialCluster
        if let defaultHost, !defaultHost.isEmpty {
            var used = false
            if config.initialAdvertisePeerURLs.count == 1,
               config.initialAdvertisePeerURLs[0].description == "http://localhost:2380",
               config.listenPeerURLs.first?.hostname == "0.0.0.0" {
                let ap = config.initialAdvertisePeerURLs[0]
                config.initialAdvertisePeerURLs[0] = EtcdURL(scheme: ap.scheme, host: "\(defaultHost):\(config.listenPeerURLs[0].port)")
                used = true
            }
            if config.name != "default" && config.initialCluster == defaultInitialCluster {
                config.initialCluster = config.initialClusterFromName(config.name)
            }
            if config.advertiseClientURLs.count == 1,
               config.advertiseClientURLs[0].description == "http://localhost:2379",
               config.listenClientURLs.first?.hostname == "0.0.0.0" {
                let ac = config.advertiseClientURLs[0]
                config.advertiseClientURLs[0] = EtcdURL(scheme: ac.scheme, host: "\(defaultHost):\(config.listenClientURLs[0].port)")
                used = true
            }
            if used {
                config.postParseLog.append(LogEntry(
                    .info, "etcdmain", ConfigMessages.advertisingDefaultHost(defaultHost),
                    zap: .info, ConfigMessages.zapDetectedDefaultHost, fields: [.string("host", defaultHost)],
                    caller: "etcdmain/etcd.go:100"))
            }
        } else if config.name != "default" && config.initialCluster == defaultInitialCluster {
            config.initialCluster = config.initialClusterFromName(config.name)
        }
        if config.dataDir.isEmpty {
            config.dataDir = "\(config.name).etcd"
            config.postParseLog.append(LogEntry(
                .warning, "etcdmain", ConfigMessages.noDataDir(config.dataDir),
                zap: .warn, ConfigMessages.zapNoDataDir, fields: [.string("data-dir", config.dataDir)],
                caller: "etcdmain/etcd.go:119"))
        }
        config.earlyOutput = session.lines
        return .run(config)
    }

    // MARK: command line + environment

    private static func fromCommandLine(
        state: inout FlagState, environment: [String: String], session: inout ParseSession
    ) throws(ConfigError) -> EtcdConfig {
        // flags.SetFlagsFromEnv("ETCD", fs)
        let alreadySet = Set(state.actual.keys.compactMap { FlagTable.byName[$0]?.envKey })
        var usedEnvKeys = Set<String>()
        var envError: String?
        for spec in FlagTable.sortedByName {
            let key = spec.envKey
            if alreadySet.contains(key) { continue }
            guard let val = environment[key], !val.isEmpty else { continue }
            usedEnvKeys.insert(key)
            do {
                try state.set(spec, val, session: &session)
                state.markSet(spec.name, val)
                session.log(LogEntry(.info, "pkg/flags", ConfigMessages.envRecognized(key, val)))
            } catch {
                envError = ConfigMessages.envInvalidValue(val, key: key, error.message)
            }
        }
        // verifyEnv: environment order is unspecified in Swift; etcd follows os.Environ(). swetcd sorts by name.
        for (key, val) in environment.sorted(by: { $0.key < $1.key }) {
            if usedEnvKeys.contains(key) { continue }
            if alreadySet.contains(key) {
                throw session.fatal(ConfigMessages.envConflict(key), package: "pkg/flags")
            }
            if key.hasPrefix("ETCD_") {
                session.log(LogEntry(.warning, "pkg/flags", ConfigMessages.envUnrecognized(key, val)))
            }
        }
        if let envError { throw session.verifyError(envError) }

        var config = EtcdConfig()
        for spec in FlagTable.all { spec.apply(&config, state.values[spec.name]!) }
        config.explicitlySet = state.actual

        // etcd disables the default advertise-client-urls when listen-client-urls is set.
        let missingAC = state.actual["listen-client-urls"] != nil && state.actual["advertise-client-urls"] == nil
        if !config.mayBeProxy && missingAC { config.advertiseClientURLs = [] }
        // etcd disables the default initial-cluster when discovery is used.
        if (!config.discovery.isEmpty || !config.discoverySRV.isEmpty || !config.discoverySRVName.isEmpty)
            && state.actual["initial-cluster"] == nil {
            config.initialCluster = ""
        }
        config.notHonoured = notHonoured(set: state.actual.keys, config: config, defaults: EtcdConfig())
        try validate(&config, session: &session, proxyMayExcuseUnsetAC: true)
        return config
    }

    // MARK: config file

    private static func fromFile(_ path: String, session: inout ParseSession) throws(ConfigError) -> EtcdConfig {
        let loading = LogEntry(
            .info, "etcdmain", ConfigMessages.loadingConfigFile(path),
            zap: .info, ConfigMessages.zapLoadedConfigFile, fields: [.string("path", path)], caller: "etcdmain/config.go:312")
        // etcd logs this note after reading the file, also when reading failed.
        session.noteBeforeVerifyError = loading
        defer { session.noteBeforeVerifyError = nil }
        let defaults = FlagTable.fileModeDefaults()
        var config = defaults
        config.configFile = path

        let text: String
        let json: JSONish
        var decoder = ConfigFileDecoder()
        do {
            text = try ConfigFileReader.read(path)
            json = try ConfigFileReader.yamlToJSON(text)
            try decoder.decode(json, structName: "configYAML", goValueType: "embed.configYAML")
        } catch {
            throw session.verifyError(error.message)
        }
        for (name, value) in decoder.values where FlagTable.byName[name]?.yaml?.structName != "configProxy" {
            switch name {
            case "cors", "host-whitelist", "initial-cluster-state": continue
            default: FlagTable.byName[name]!.apply(&config, value)
            }
        }
        if case .string(let s)? = decoder.values["initial-cluster-state"] { config.initialClusterState = s }
        // URL lists, in etcd's order.
        for name in ["listen-peer-urls", "listen-client-urls", "initial-advertise-peer-urls", "advertise-client-urls", "listen-metrics-urls"] {
            guard let s = decoder.urlStrings[name], !s.isEmpty else { continue }
            let spec = FlagTable.byName[name]!
            do {
                let list = try EtcdURLs.parseCommaList(s)
                spec.apply(&config, .urls(values: [], urls: list))
            } catch {
                guard case .urlString(let label) = spec.yaml!.shape else { continue }
                throw session.rawFatal(ConfigMessages.fileURLSetup(label, error.message))
            }
        }
        if case .string(let s)? = decoder.values["cors"], !s.isEmpty {
            do {
                let v = try FlagKind.urls(allowed: ["*"]).set(s, current: .urls(values: [], urls: []))
                FlagTable.byName["cors"]!.apply(&config, v)
            } catch {
                var s2 = session
                s2.log(LogEntry(.critical, "pkg/flags", ConfigMessages.uniqueURLsPanic(error.message)))
                throw s2.panic("panic: " + ConfigMessages.uniqueURLsPanic(error.message))
            }
        }
        if case .string(let s)? = decoder.values["host-whitelist"], !s.isEmpty {
            config.hostWhitelist = Array(Set(s.split(separator: ",", omittingEmptySubsequences: false).map(String.init))).sorted()
        }
        // A discovery setting clears the default initial cluster.
        if (!config.discovery.isEmpty || !config.discoverySRV.isEmpty) && config.initialCluster == defaults.initialCluster {
            config.initialCluster = ""
        }
        if config.initialClusterState.isEmpty { config.initialClusterState = "new" }

        try validate(&config, session: &session, proxyMayExcuseUnsetAC: false, fileMode: true)

        // etcdmain decodes the file a second time for its proxy settings.
        var proxyDecoder = ConfigFileDecoder()
        do {
            try proxyDecoder.decode(json, structName: "configProxy", goValueType: "etcdmain.configProxy")
        } catch {
            throw session.verifyError(error.message)
        }
        for (name, value) in proxyDecoder.values {
            let spec = FlagTable.byName[name]!
            if case .selective(let valids) = spec.kind {
                guard case .string(let s) = value, !s.isEmpty else { continue }
                if !valids.contains(s) {
                    // log.Fatalf through capnslog's hijack of Go's log package: "I | <msg>".
                    let what = name == "proxy" ? "proxyFlag" : "discovery-fallback flag"
                    var s2 = session
                    s2.lines.append(.capnslog(LogEntry(.info, "", ConfigMessages.fileSelectiveSetup(what))))
                    throw ConfigError(message: ConfigMessages.fileSelectiveSetup(what), exitCode: 1, lines: s2.lines, logSpec: session.logSpec)
                }
            }
            spec.apply(&config, value)
        }
        var explicitly = decoder.raw
        for (k, v) in proxyDecoder.raw { explicitly[k] = v }
        config.explicitlySet = explicitly
        config.notHonoured = notHonoured(set: explicitly.keys, config: config, defaults: defaults)
        config.preBannerLog = [loading]
        return config
    }

    // MARK: validation (embed.Config.Validate)

    /// - Parameter fileMode: in etcd, a config-file error loses the zap logger built
    ///   while validating (the error is returned before the config is kept), so later
    ///   errors are printed by capnslog on stderr.
    static func validate(_ c: inout EtcdConfig, session: inout ParseSession, proxyMayExcuseUnsetAC: Bool, fileMode: Bool = false) throws(ConfigError) {
        if let err = setupLogging(&c, session: &session) { throw err }
        var pendingSpec: LogSpec?
        if fileMode, session.logSpec?.logger == "zap" {
            pendingSpec = session.logSpec
            session.logSpec = nil
        }
        try validateAfterLogging(&c, session: &session, proxyMayExcuseUnsetAC: proxyMayExcuseUnsetAC)
        if let pendingSpec { session.logSpec = pendingSpec }
    }

    private static func validateAfterLogging(_ c: inout EtcdConfig, session: inout ParseSession, proxyMayExcuseUnsetAC: Bool) throws(ConfigError) {

        for list in [c.listenPeerURLs, c.listenClientURLs, c.listenMetricsURLs] {
            for u in list where u.scheme != "unix" && u.scheme != "unixs" {
                let host = goSplitHostPort(u.host)?.host ?? ""
                if host == "localhost" { continue }
                if !isIPLiteral(host) { throw session.verifyError(ConfigMessages.expectedIPForBinding(u.description)) }
            }
        }
        if let bad = c.initialAdvertisePeerURLs.first(where: { (goSplitHostPort($0.host)?.host ?? "").isEmpty }) {
            throw session.verifyError(ConfigMessages.advertisePeerHostPort(
                c.initialAdvertisePeerURLs.map(\.description).joined(separator: ","), ConfigMessages.unexpectedEmptyHost(bad.description)))
        }
        if let bad = c.advertiseClientURLs.first(where: { (goSplitHostPort($0.host)?.host ?? "").isEmpty }) {
            throw session.verifyError(ConfigMessages.advertiseClientHostPort(
                c.advertiseClientURLs.map(\.description).joined(separator: ","), ConfigMessages.unexpectedEmptyHost(bad.description)))
        }
        let nSet = [!c.discovery.isEmpty, !c.initialCluster.isEmpty, !c.discoverySRV.isEmpty].filter { $0 }.count
        if c.initialClusterState != "new" && c.initialClusterState != "existing" {
            throw session.verifyError(ConfigMessages.unexpectedClusterState(c.initialClusterState))
        }
        if nSet > 1 { throw session.verifyError(ConfigMessages.conflictBootstrapFlags) }
        if c.heartbeatIntervalMs == 0 { throw session.verifyError(ConfigMessages.heartbeatNotPositive(c.heartbeatIntervalMs)) }
        if c.electionTimeoutMs == 0 { throw session.verifyError(ConfigMessages.electionNotPositive(c.electionTimeoutMs)) }
        let (five, overflow) = c.heartbeatIntervalMs.multipliedReportingOverflow(by: 5)
        if !overflow && five > c.electionTimeoutMs || overflow {
            throw session.verifyError(ConfigMessages.electionTooShort(election: c.electionTimeoutMs, heartbeat: c.heartbeatIntervalMs))
        }
        if c.electionTimeoutMs > 50000 { throw session.verifyError(ConfigMessages.electionTooLong(c.electionTimeoutMs)) }
        if !c.listenClientURLs.isEmpty && c.advertiseClientURLs.isEmpty {
            if proxyMayExcuseUnsetAC && c.mayBeProxy { return }
            throw session.verifyError(
                ConfigMessages.unsetAdvertiseClientURLs,
                extra: [LogEntry(
                    .error, "etcdmain", ConfigMessages.unsetAdvertiseHint,
                    zap: .warn, ConfigMessages.zapUnsetAdvertise,
                    fields: [.error(ConfigMessages.unsetAdvertiseClientURLs)], caller: "etcdmain/etcd.go:73")])
        }
        switch c.autoCompactionMode {
        case "", "periodic", "revision": break
        default: throw session.verifyError(ConfigMessages.unknownCompactionMode(c.autoCompactionMode))
        }
        if !c.experimentalEnableLeaseCheckpointPersist && c.experimentalEnableLeaseCheckpoint {
            // etcd 3.4.23 crashes here with --logger=capnslog (nil zap logger); swetcd warns instead.
            c.postParseLog.append(LogEntry(.warning, "embed", ConfigMessages.checkpointWithoutPersist, caller: "embed/config.go:656"))
        }
        if c.experimentalEnableLeaseCheckpointPersist && !c.experimentalEnableLeaseCheckpoint {
            throw session.verifyError(ConfigMessages.persistRequiresCheckpoint)
        }
    }

    /// embed.Config.setupLogging: deprecation warnings (raw stderr), checks, and the logger.
    /// Returns the error to report, if any.
    private static func setupLogging(_ c: inout EtcdConfig, session: inout ParseSession) -> ConfigError? {
        var warnings: [String] = []
        func warn(_ s: String) {
            warnings.append(s)
            session.raw(s)
        }
        defer { c.loggingSetupWarnings = warnings }
        let len1 = c.deprecatedLogOutput.count
        let len2 = c.logOutputs.count
        if len1 != len2 {
            if len1 > len2 {
                warn(ConfigMessages.logOutputDeprecated)
                c.logOutputs = c.deprecatedLogOutput
            } else {
                c.deprecatedLogOutput = []
            }
        } else {
            if len1 > 1 { return session.verifyError(ConfigMessages.bothLogOutputs) }
            if len1 < 1 { return session.verifyError(ConfigMessages.noLogOutput) }
            if c.deprecatedLogOutput == c.logOutputs && c.deprecatedLogOutput[0] != "default" {
                return session.verifyError(ConfigMessages.incompatibleLogOutputs(c.deprecatedLogOutput, c.logOutputs))
            }
            if c.deprecatedLogOutput != ["default"] {
                warn(ConfigMessages.deprecatedLogOutputSet(c.deprecatedLogOutput))
                warn(ConfigMessages.pleaseUseLogOutputs)
            }
        }
        if c.debug { warn(ConfigMessages.deprecatedDebug) }
        if c.debug && c.logLevel != "debug" { warn(ConfigMessages.debugInconsistent(c.logLevel)) }
        if c.logger == "capnslog" { warn(ConfigMessages.deprecatedLogger(c.logger)) }
        if !c.logPackageLevels.isEmpty { warn(ConfigMessages.deprecatedPackageLevels(c.logPackageLevels)) }

        let knownLevels = ["debug", "info", "warn", "error", "dpanic", "panic", "fatal"]
        switch c.logger {
        case "capnslog":
            if !c.debug && !knownLevels.contains(c.logLevel) {
                return session.panic(ConfigMessages.unknownLevelPanic(c.logLevel))
            }
            if !c.logPackageLevels.isEmpty, case .failure(let err) = parsePackageLevels(c.logPackageLevels) {
                // etcd warns and skips the remaining checks (the default stderr formatter stays).
                session.log(LogEntry(.warning, "embed", ConfigMessages.packageLevelsUnparsable(err.description)))
                c.logOutputs = ["default"]
                session.logSpec = c.logSpec
                return nil
            }
            if c.logOutputs.count != 1 { return session.verifyError(ConfigMessages.capnslogOneOutput(c.logOutputs)) }
            switch c.logOutputs[0] {
            case "stderr", "stdout", "default": break
            default: return session.verifyError(ConfigMessages.unknownLogOutput(c.logOutputs[0]))
            }
            session.logSpec = c.logSpec
            return nil
        case "zap":
            if c.logOutputs.isEmpty { c.logOutputs = ["default"] }
            if c.logOutputs.count > 1 && c.logOutputs.contains("default") {
                return session.verifyError(ConfigMessages.multiDefaultOutput)
            }
            if c.logOutputs.contains("systemd/journal") && c.logOutputs.count > 1 {
                return session.verifyError(ConfigMessages.journalWithOthers(c.logOutputs))
            }
            if !knownLevels.contains(c.logLevel) {
                return session.panic(ConfigMessages.unknownLevelPanic(c.logLevel))
            }
            for target in c.logSpec.targets {
                do { _ = try FileDescriptorSink.open(target) } catch { return session.verifyError(error.message) }
            }
            session.logSpec = c.logSpec
            return nil
        default:
            return session.verifyError(ConfigMessages.unknownLogger(c.logger))
        }
    }

    /// capnslog's ParseLogLevelConfig ("pkg=LEVEL,pkg=LEVEL").
    static func parsePackageLevels(_ conf: String) -> Result<[String: CapnsLevel], PackageLevelError> {
        var out: [String: CapnsLevel] = [:]
        for setting in conf.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = setting.split(separator: "=", omittingEmptySubsequences: false)
            if parts.count != 2 { return .failure(PackageLevelError("oddly structured `pkg=level` option: \(setting)")) }
            guard let level = CapnsLevel.parse(String(parts[1])) else {
                return .failure(PackageLevelError("couldn't parse log level \(parts[1])"))
            }
            out[String(parts[0])] = level
        }
        return .success(out)
    }

    private static func notHonoured(set names: Dictionary<String, String>.Keys, config: EtcdConfig, defaults: EtcdConfig) -> [String] {
        names.compactMap { name -> String? in
            guard let spec = FlagTable.byName[name], !spec.honoured else { return nil }
            return spec.read(config) == spec.read(defaults) ? nil : name
        }.sorted()
    }
}

struct PackageLevelError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// The Go FlagSet state: current values and which flags were set.
struct FlagState {
    var values: [String: FlagValue]
    /// name → raw value, for flags set on the command line or from the environment.
    var actual: [String: String] = [:]

    init(defaults: EtcdConfig) {
        var v: [String: FlagValue] = [:]
        for spec in FlagTable.all { v[spec.name] = spec.read(defaults) }
        values = v
    }

    mutating func set(_ spec: FlagSpec, _ raw: String, session: inout ParseSession) throws(FlagSetError) {
        if spec.kind == .ignored {
            session.log(LogEntry(.warning, "pkg/flags", ConfigMessages.ignoredFlag(spec.name)))
            return
        }
        values[spec.name] = try spec.kind.set(raw, current: values[spec.name]!)
    }

    mutating func markSet(_ name: String, _ raw: String) {
        actual[name] = raw
    }

    func string(_ name: String) -> String {
        if case .string(let s)? = values[name] { return s }
        return ""
    }
}
