import Foundation
import Logging

/// Metadata keys the two handlers give a meaning to.
public enum EtcdLogMetadata {
    /// capnslog package name (defaults to the logger's label), e.g. "etcdserver". Never printed as a zap field.
    public static let package = "pkg"
    /// zap caller override, e.g. "etcdserver/server.go:2036" (default: the swift-log call site).
    public static let caller = "caller"
    /// The order in which `ZapJSONHandler` prints fields (an array of key strings);
    /// keys not listed follow, sorted. Use `Logger.Metadata.zapOrdered(_:)`.
    public static let fieldOrder = "zap.field-order"
    /// The message zap prints instead of the capnslog text, where etcd's two loggers word
    /// a milestone differently ("published local member to cluster through raft"). Other
    /// modules, which do not import EtcdConfig, use the literal key.
    public static let zapMessage = "zap.msg"
}

/// A metadata value that `ZapJSONHandler` writes verbatim as JSON.
public struct RawJSON: CustomStringConvertible, Sendable {
    public let json: String
    public init(_ json: String) { self.json = json }
    public var description: String { json }
}

extension Logger.Metadata {
    /// Metadata whose fields a `ZapJSONHandler` prints in the given order, as zap
    /// prints fields in call order: `logger.info("msg", metadata: .zapOrdered(["a": "1", "b": "2"]))`.
    public static func zapOrdered(_ pairs: KeyValuePairs<String, Logger.MetadataValue>) -> Logger.Metadata {
        var m: Logger.Metadata = [:]
        for (k, v) in pairs { m[k] = v }
        m[EtcdLogMetadata.fieldOrder] = .array(pairs.map { .string($0.key) })
        return m
    }
}

/// The swift-log level etcd's --log-level (and --debug) select.
public func swiftLogLevel(etcdLogLevel: String, debug: Bool = false, logger: String = "capnslog") -> Logger.Level {
    if debug && logger == "capnslog" { return .debug }
    switch etcdLogLevel {
    case "debug": return .debug
    case "info": return .info
    case "warn": return .warning
    case "error": return .error
    default: return .critical // dpanic, panic, fatal
    }
}

/// etcd 3.4's default text format (capnslog's PrettyFormatter):
/// `2026-11-26 15:55:30.618599 I | embed: ready to serve client requests`.
/// The package is the "pkg" metadata or the logger's label. Metadata is not
/// printed (capnslog has no fields; etcd writes values into its messages).
public struct CapnslogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level

    private let label: String
    private let writer: any LogLineWriter
    private let clock: @Sendable () -> Date
    private let timeZone: TimeZone
    private let includeCaller: Bool
    private let globalLevel: Logger.Level
    private let packageLevels: [String: CapnsLevel]

    /// - Parameters:
    ///   - includeCaller: add "[file:line]" (etcd does with --debug and an explicit stderr/stdout output).
    ///   - packageLevels: --log-package-levels ("*" sets every package).
    public init(
        label: String, logLevel: Logger.Level = .info, writer: any LogLineWriter = FileDescriptorSink.standardError,
        includeCaller: Bool = false, packageLevels: [String: CapnsLevel] = [:],
        timeZone: TimeZone = .current, clock: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.label = label
        self.writer = writer
        self.clock = clock
        self.timeZone = timeZone
        self.includeCaller = includeCaller
        self.packageLevels = packageLevels
        var global = logLevel
        if let all = packageLevels["*"] { global = all.swiftLevel }
        self.globalLevel = global
        self.logLevel = packageLevels[label]?.swiftLevel ?? global
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var pkg = label
        if case .string(let p)? = event.metadata?[EtcdLogMetadata.package] ?? metadata[EtcdLogMetadata.package] {
            pkg = p
        } else if case .stringConvertible(let p)? = event.metadata?[EtcdLogMetadata.package] ?? metadata[EtcdLogMetadata.package] {
            pkg = p.description
        }
        if pkg != label {
            // the package's own level applies (capnslog filters per package)
            let threshold = packageLevels[pkg]?.swiftLevel ?? globalLevel
            if event.level < threshold { return }
        }
        var caller: String?
        if includeCaller {
            let file = event.file.split(separator: "/").last.map(String.init) ?? event.file
            caller = "\(file):\(event.line)"
        }
        writer.write(EtcdLogFormat.capnslogLine(
            date: clock(), timeZone: timeZone, level: CapnsLevel(event.level), package: pkg,
            message: event.message.description, caller: caller))
    }
}

/// etcd's `--logger=zap` JSON lines:
/// `{"level":"info","ts":"2026-11-26T15:56:43.893Z","caller":"embed/etcd.go:117","msg":"...","key":"value"}`.
/// Keys: level, ts (local time, ms, zone "Z"/"+hhmm"), caller ("Module/File.swift:line",
/// like zap's short caller, or the "caller" metadata), msg, then fields: the
/// metadata (handler, provider, then call site), in `zap.field-order` order then
/// sorted, and the event's error as "error".
public struct ZapJSONHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level

    private let label: String
    private let writers: [any LogLineWriter]
    private let clock: @Sendable () -> Date
    private let timeZone: TimeZone

    public init(
        label: String, logLevel: Logger.Level = .info, writers: [any LogLineWriter] = [FileDescriptorSink.standardError],
        timeZone: TimeZone = .current, clock: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.label = label
        self.logLevel = logLevel
        self.writers = writers
        self.clock = clock
        self.timeZone = timeZone
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let m = event.metadata { merged.merge(m) { _, new in new } }

        var caller = Self.shortCaller(file: event.file, line: event.line)
        if let c = merged.removeValue(forKey: EtcdLogMetadata.caller) { caller = Self.plain(c) }
        let message = merged.removeValue(forKey: EtcdLogMetadata.zapMessage).map(Self.plain) ?? event.message.description
        merged.removeValue(forKey: EtcdLogMetadata.package)
        var order: [String] = []
        if case .array(let keys)? = merged.removeValue(forKey: EtcdLogMetadata.fieldOrder) {
            order = keys.map(Self.plain)
        }
        var fields: [ZapField] = []
        var done = Set<String>()
        for key in order where !done.contains(key) {
            if let v = merged[key] {
                fields.append(ZapField(key: key, json: Self.json(v)))
                done.insert(key)
            }
        }
        for key in merged.keys.sorted() where !done.contains(key) {
            fields.append(ZapField(key: key, json: Self.json(merged[key]!)))
        }
        if let error = event.error, !done.contains("error"), merged["error"] == nil {
            fields.append(.error("\(error)"))
        }
        let line = EtcdLogFormat.zapLine(
            date: clock(), timeZone: timeZone, level: ZapLevel(event.level), caller: caller,
            message: message, fields: fields)
        for w in writers { w.write(line) }
    }

    /// zap's ShortCallerEncoder applied to a Swift file: "Module/File.swift:42".
    static func shortCaller(file: String, line: UInt) -> String {
        let parts = file.split(separator: "/")
        let short = parts.suffix(2).joined(separator: "/")
        return "\(short):\(line)"
    }

    private static func plain(_ v: Logger.MetadataValue) -> String {
        switch v {
        case .string(let s): return s
        case .stringConvertible(let c): return c.description
        default: return "\(v)"
        }
    }

    /// A metadata value as zap would encode the corresponding Go value.
    static func json(_ v: Logger.MetadataValue) -> String {
        switch v {
        case .string(let s):
            return jsonQuote(s)
        case .stringConvertible(let c):
            switch c {
            case let raw as RawJSON: return raw.json
            case let b as Bool: return b ? "true" : "false"
            case let i as any BinaryInteger: return "\(i)"
            case let d as Double: return zapFloat(d)
            case let f as Float: return zapFloat(Double(f))
            case let d as Duration: return jsonQuote(GoDuration.format(nanoseconds(d)))
            default: return jsonQuote(c.description)
            }
        case .array(let items):
            return "[" + items.map(json).joined(separator: ",") + "]"
        case .dictionary(let dict):
            return "{" + dict.keys.sorted().map { jsonQuote($0) + ":" + json(dict[$0]!) }.joined(separator: ",") + "}"
        }
    }

    private static func zapFloat(_ d: Double) -> String {
        if d.isNaN { return "\"NaN\"" }
        if d.isInfinite { return d > 0 ? "\"+Inf\"" : "\"-Inf\"" }
        return ConfigFileReader.goJSONFloat(d)
    }
}

/// The swift-log handler factory for the configured logger, for `LoggingSystem.bootstrap`.
/// Opens the --log-outputs files (appending) once; all handlers share them.
public func makeLogHandlerFactory(
    config: EtcdConfig, timeZone: TimeZone = .current, clock: @escaping @Sendable () -> Date = { Date() }
) throws(ConfigError) -> @Sendable (String) -> any LogHandler {
    let spec = config.logSpec
    var writers: [any LogLineWriter] = []
    for target in spec.targets { writers.append(try FileDescriptorSink.open(target)) }
    return makeLogHandlerFactory(config: config, writers: writers, timeZone: timeZone, clock: clock)
}

/// The same with explicit writers (tests, or a caller that manages outputs).
public func makeLogHandlerFactory(
    config: EtcdConfig, writers: [any LogLineWriter], timeZone: TimeZone = .current,
    clock: @escaping @Sendable () -> Date = { Date() }
) -> @Sendable (String) -> any LogHandler {
    let spec = config.logSpec
    let level = swiftLogLevel(etcdLogLevel: config.logLevel, debug: config.debug, logger: config.logger)
    if spec.logger == "zap" {
        return { label in ZapJSONHandler(label: label, logLevel: level, writers: writers, timeZone: timeZone, clock: clock) }
    }
    var parsedLevels: [String: CapnsLevel] = [:]
    if !config.logPackageLevels.isEmpty, case .success(let levels) = EtcdConfig.parsePackageLevels(config.logPackageLevels) {
        parsedLevels = levels
    }
    let packageLevels = parsedLevels
    let writer = writers.first ?? FileDescriptorSink.standardError
    let includeCaller = spec.capnslogCaller
    return { label in
        CapnslogHandler(
            label: label, logLevel: level, writer: writer, includeCaller: includeCaller,
            packageLevels: packageLevels, timeZone: timeZone, clock: clock)
    }
}

extension LogEntry {
    /// Logs this entry through swift-log with the configured logger's rendering
    /// ("capnslog": level letter + package + message; "zap": zap level, message,
    /// fields and etcd's caller).
    /// - Parameter factory: the handler factory to use instead of the bootstrapped one (tests).
    public func emit(logger kind: String, factory: (@Sendable (String) -> any LogHandler)? = nil) {
        let label = package.isEmpty ? "etcdmain" : package
        let logger = factory.map { Logger(label: label, factory: $0) } ?? Logger(label: label)
        if kind == "zap" {
            var md: Logger.Metadata = [:]
            var order: [Logger.MetadataValue] = []
            for f in zapFields {
                md[f.key] = .stringConvertible(RawJSON(f.json))
                order.append(.string(f.key))
            }
            md[EtcdLogMetadata.fieldOrder] = .array(order)
            if !caller.isEmpty { md[EtcdLogMetadata.caller] = .string(caller) }
            logger.log(level: zapLevel.swiftLevel, "\(zapMessage)", metadata: md)
        } else {
            logger.log(level: capnsLevel.swiftLevel, "\(message)", metadata: [EtcdLogMetadata.package: .string(package)])
        }
    }
}

extension EtcdConfig {
    /// What etcd logs after parsing and before starting the server, in order:
    /// the config-file note, (capnslog only) the version banner, then the notes
    /// of `postParseLog` (default host, default data dir, ...). Log each with
    /// `entry.emit(logger: config.logger)` after bootstrapping swift-log.
    public func startupLog(version: VersionInfo = VersionInfo(), cpus: Int, availableCPUs: Int) -> [LogEntry] {
        var out = preBannerLog
        if logger != "zap" {
            out += [
                LogEntry(.info, "etcdmain", "etcd Version: \(version.etcdVersion)\n"),
                LogEntry(.info, "etcdmain", "Git SHA: \(version.gitSHA)\n"),
                LogEntry(.info, "etcdmain", "Swift Version: \(version.swiftVersion)\n"),
                LogEntry(.info, "etcdmain", "OS/Arch: \(version.osArch)\n"),
                LogEntry(.info, "etcdmain", "swetcd Version: \(version.swetcdVersion)\n"),
                LogEntry(.info, "etcdmain", "setting maximum number of CPUs to \(cpus), total number of available CPUs is \(availableCPUs)"),
            ]
        }
        return out + postParseLog
    }
}

extension EtcdConfig {
    /// One warning per flag in `notHonoured` (swetcd never ignores a setting silently):
    /// capnslog "W | etcdmain: --enable-v2 is set but swetcd does not implement it yet; ignoring it",
    /// zap {"level":"warn",...,"msg":"flag not implemented by swetcd; ignoring it","flag":"enable-v2","value":"true"}.
    public var notHonouredLog: [LogEntry] {
        notHonoured.map { name in
            let value = explicitlySet[name] ?? ""
            return LogEntry(
                .warning, "etcdmain", "--\(name) is set but swetcd does not implement it yet; ignoring it",
                zap: .warn, "flag not implemented by swetcd; ignoring it",
                fields: [.string("flag", name), .string("value", value)])
        }
    }
}
