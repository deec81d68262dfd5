import Foundation

/// A line etcd writes while parsing its configuration, before the server runs.
public enum OutputLine: Sendable, Equatable {
    /// Written verbatim to stderr (e.g. Go `flag` errors, the usage text,
    /// "[WARNING] Deprecated '--logger=capnslog' flag is set; ..."). Includes its "\n".
    case raw(String)
    /// A capnslog line on stderr, written before logging is configured (etcd's
    /// default formatter): e.g. "... I | pkg/flags: recognized and used environment variable ETCD_NAME=foo".
    case capnslog(LogEntry)
    /// A line through the configured logger (capnslog or zap, to --log-outputs).
    case log(LogEntry)
}

/// How the configured logger writes (derived from --logger, --log-outputs, --debug).
public struct LogSpec: Sendable, Equatable {
    /// "capnslog" or "zap".
    public var logger: String
    /// The --log-outputs values in effect.
    public var outputs: [String]
    /// capnslog adds "[file:line]" when --debug is set with an explicit stderr/stdout output.
    public var capnslogCaller: Bool

    public init(logger: String, outputs: [String], capnslogCaller: Bool = false) {
        self.logger = logger
        self.outputs = outputs
        self.capnslogCaller = capnslogCaller
    }

    /// Targets of this logger ("default" → stderr).
    public var targets: [LogTarget] {
        if logger == "zap" {
            var seen = Set<LogTarget>()
            var out: [LogTarget] = []
            let outs = outputs.contains("/dev/null") ? ["/dev/null"] : outputs
            for o in outs where o != "systemd/journal" {
                let t = LogTarget(logOutput: o)
                if seen.insert(t).inserted { out.append(t) }
            }
            return out.isEmpty ? [.stderr] : out
        }
        return [outputs.first.map { LogTarget(logOutput: $0) } ?? .stderr]
    }
}

/// A configuration error: etcd's exact text and exit code, plus every line etcd
/// writes up to and including the error (environment notes, warnings, usage).
public struct ConfigError: Error, Sendable, Equatable {
    /// The error itself, e.g. "'xxx' is not a valid flag" or
    /// "flag provided but not defined: -bogus".
    public let message: String
    /// etcd's exit code: 2 for Go `flag` syntax errors (and Go panics), 1 otherwise.
    public let exitCode: Int32
    /// What to print, in order.
    public let lines: [OutputLine]
    /// The logger configured when the error happened (nil: not yet configured).
    public let logSpec: LogSpec?

    public init(message: String, exitCode: Int32, lines: [OutputLine], logSpec: LogSpec?) {
        self.message = message
        self.exitCode = exitCode
        self.lines = lines
        self.logSpec = logSpec
    }

    /// The text per destination, rendered at `now`.
    public func render(now: Date = Date(), timeZone: TimeZone = .current) -> [(target: LogTarget, text: String)] {
        renderOutput(lines, spec: logSpec, now: now, timeZone: timeZone)
    }

    /// All text that goes to stderr, concatenated (convenient for tests).
    public func stderrText(now: Date = Date(), timeZone: TimeZone = .current) -> String {
        render(now: now, timeZone: timeZone).filter { $0.target == .stderr }.map(\.text).joined()
    }

    /// Writes every line to its destination. The caller then exits with `exitCode`.
    public func write(now: Date = Date()) {
        writeOutput(lines, spec: logSpec, now: now)
    }
}

func renderOutput(
    _ lines: [OutputLine], spec: LogSpec?, now: Date, timeZone: TimeZone
) -> [(target: LogTarget, text: String)] {
    var out: [(target: LogTarget, text: String)] = []
    for line in lines {
        switch line {
        case .raw(let text):
            out.append((.stderr, text))
        case .capnslog(let e):
            out.append((.stderr, EtcdLogFormat.capnslogLine(date: now, timeZone: timeZone, level: e.capnsLevel, package: e.package, message: e.message)))
        case .log(let e):
            let spec = spec ?? LogSpec(logger: "capnslog", outputs: ["default"])
            if spec.logger == "zap" {
                let text = EtcdLogFormat.zapLine(date: now, timeZone: timeZone, level: e.zapLevel, caller: e.caller, message: e.zapMessage, fields: e.zapFields)
                for t in spec.targets { out.append((t, text)) }
            } else {
                let caller: String? = spec.capnslogCaller ? "pkg_logger.go:118" : nil
                let text = EtcdLogFormat.capnslogLine(date: now, timeZone: timeZone, level: e.capnsLevel, package: e.package, message: e.message, caller: caller)
                for t in spec.targets { out.append((t, text)) }
            }
        }
    }
    return out
}

func writeOutput(_ lines: [OutputLine], spec: LogSpec?, now: Date) {
    for (target, text) in renderOutput(lines, spec: spec, now: now, timeZone: .current) {
        let sink = (try? FileDescriptorSink.open(target)) ?? FileDescriptorSink.standardError
        sink.write(text)
    }
}

/// What `etcd --help` / `etcd --version` print.
public struct PrintOut: Sendable, Equatable {
    /// Written to stdout.
    public var stdout: String
    /// Written to stderr first (warnings for ignored flags; for --help the usage text).
    public var stderr: [OutputLine]

    /// Writes both; the caller then exits 0.
    public func write(now: Date = Date()) {
        writeOutput(stderr, spec: nil, now: now)
        FileDescriptorSink.standardOutput.write(stdout)
    }
}

/// The result of parsing etcd's command line.
public enum ParseOutcome: Sendable, Equatable {
    /// Start the server with this configuration.
    case run(EtcdConfig)
    /// `--version`: print and exit 0.
    case printVersion(PrintOut)
    /// `-h`, `--help` (any `-h`/`-help` form): print and exit 0.
    case printHelp(PrintOut)
}
