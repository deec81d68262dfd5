import Foundation
import Logging

// etcd 3.4's two log line formats, as pure functions (the handlers and the
// parse-time messages share them).
//
// capnslog (default, `--logger=capnslog`), observed from etcd 3.4.23:
//   2026-11-26 15:56:41.548307 I | etcdmain: etcd Version: 3.4.23
//   local time, microseconds (truncated), level letter, " | ", "pkg: " (omitted
//   when the package is empty, as for Go's hijacked `log` package), message,
//   one "\n" (not doubled when the message already ends in one). With --debug
//   and an explicit stdout/stderr output the caller is added: "... [file.go:118] E | ...".
//
// zap (`--logger=zap`), observed from etcd 3.4.23:
//   {"level":"warn","ts":"2026-11-26T17:00:47.407+0100","caller":"etcdmain/etcd.go:66","msg":"failed to verify flags","error":"..."}
//   keys in this order: level, ts (local time, milliseconds, "Z" for UTC or
//   "+hhmm"), caller, msg, then the fields in the order given, then "stacktrace"
//   (error level and above in real etcd; swetcd has no Go stack to print).

/// capnslog's levels and their letters.
public enum CapnsLevel: String, Sendable, Equatable, CaseIterable {
    case critical = "C", error = "E", warning = "W", notice = "N", info = "I", debug = "D", trace = "T"

    /// capnslog's order: CRITICAL(-1) < ERROR < WARNING < NOTICE < INFO < DEBUG < TRACE.
    var rank: Int {
        switch self {
        case .critical: return -1
        case .error: return 0
        case .warning: return 1
        case .notice: return 2
        case .info: return 3
        case .debug: return 4
        case .trace: return 5
        }
    }

    public init(_ level: Logger.Level) {
        switch level {
        case .trace: self = .trace
        case .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error: self = .error
        case .critical: self = .critical
        }
    }

    /// capnslog's `ParseLevel` (used by --log-package-levels).
    static func parse(_ s: String) -> CapnsLevel? {
        switch s {
        case "CRITICAL", "C": return .critical
        case "ERROR", "0", "E": return .error
        case "WARNING", "1", "W": return .warning
        case "NOTICE", "2", "N": return .notice
        case "INFO", "3", "I": return .info
        case "DEBUG", "4", "D": return .debug
        case "TRACE", "5", "T": return .trace
        default: return nil
        }
    }
}

/// zap's levels as etcd prints them.
public enum ZapLevel: String, Sendable, Equatable, CaseIterable {
    case debug, info, warn, error, dpanic, panic, fatal

    var rank: Int {
        switch self {
        case .debug: return -1
        case .info: return 0
        case .warn: return 1
        case .error: return 2
        case .dpanic: return 3
        case .panic: return 4
        case .fatal: return 5
        }
    }

    public init(_ level: Logger.Level) {
        switch level {
        case .trace, .debug: self = .debug
        case .info, .notice: self = .info
        case .warning: self = .warn
        case .error: self = .error
        case .critical: self = .fatal
        }
    }
}

/// One field of a zap line; `json` is the already-encoded JSON value.
public struct ZapField: Sendable, Equatable {
    public var key: String
    public var json: String
    public init(key: String, json: String) {
        self.key = key
        self.json = json
    }
    public static func string(_ key: String, _ value: String) -> ZapField { ZapField(key: key, json: jsonQuote(value)) }
    public static func strings(_ key: String, _ values: [String]) -> ZapField {
        ZapField(key: key, json: "[" + values.map(jsonQuote).joined(separator: ",") + "]")
    }
    /// zap.Error(err): key "error".
    public static func error(_ message: String) -> ZapField { .string("error", message) }
}

/// A message etcd logs while parsing or starting, in both of its renderings
/// (capnslog's text and zap's message + fields differ in etcd).
public struct LogEntry: Sendable, Equatable {
    public var capnsLevel: CapnsLevel
    /// capnslog package ("pkg/flags", "etcdmain", "embed"; "" for Go's `log` package).
    public var package: String
    public var message: String
    public var zapLevel: ZapLevel
    public var zapMessage: String
    public var zapFields: [ZapField]
    /// zap's caller, e.g. "etcdmain/etcd.go:66".
    public var caller: String

    public init(
        _ capnsLevel: CapnsLevel, _ package: String, _ message: String,
        zap zapLevel: ZapLevel? = nil, _ zapMessage: String? = nil, fields: [ZapField] = [], caller: String = ""
    ) {
        self.capnsLevel = capnsLevel
        self.package = package
        self.message = message
        self.zapLevel = zapLevel ?? ZapLevel(capnsLevel.swiftLevel)
        self.zapMessage = zapMessage ?? message
        self.zapFields = fields
        self.caller = caller
    }
}

extension CapnsLevel {
    var swiftLevel: Logger.Level {
        switch self {
        case .critical: return .critical
        case .error: return .error
        case .warning: return .warning
        case .notice: return .notice
        case .info: return .info
        case .debug: return .debug
        case .trace: return .trace
        }
    }
}

extension ZapLevel {
    var swiftLevel: Logger.Level {
        switch self {
        case .debug: return .debug
        case .info: return .info
        case .warn: return .warning
        case .error: return .error
        case .dpanic, .panic, .fatal: return .critical
        }
    }
}

/// Broken-down local time for a Date in a time zone, with microseconds.
struct LocalTime: Equatable {
    var year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int
    var microsecond: Int
    /// Offset from UTC in seconds.
    var offset: Int

    init(_ date: Date, timeZone: TimeZone) {
        // nearest microsecond (a Double holds ~0.25µs at today's epoch)
        let totalMicros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        var secs = Int(totalMicros / 1_000_000)
        var micros = Int(totalMicros % 1_000_000)
        if micros < 0 { micros += 1_000_000; secs -= 1 }
        offset = timeZone.secondsFromGMT(for: date)
        let local = secs + offset
        var days = local / 86_400
        var rem = local % 86_400
        if rem < 0 { rem += 86_400; days -= 1 }
        hour = rem / 3600
        minute = (rem % 3600) / 60
        second = rem % 60
        microsecond = micros
        // civil-from-days (Howard Hinnant's algorithm)
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        day = doy - (153 * mp + 2) / 5 + 1
        month = mp < 10 ? mp + 3 : mp - 9
        year = yoe + era * 400 + (month <= 2 ? 1 : 0)
    }
}

private func pad(_ v: Int, _ width: Int) -> String {
    let s = String(v)
    return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
}

enum EtcdLogFormat {
    /// capnslog's timestamp: "2006-01-02 15:04:05.000000" in local time.
    static func capnslogTime(_ date: Date, timeZone: TimeZone) -> String {
        let t = LocalTime(date, timeZone: timeZone)
        return "\(pad(t.year, 4))-\(pad(t.month, 2))-\(pad(t.day, 2)) \(pad(t.hour, 2)):\(pad(t.minute, 2)):\(pad(t.second, 2)).\(pad(t.microsecond, 6))"
    }

    /// zap's ISO8601TimeEncoder: "2006-01-02T15:04:05.000Z0700" in local time.
    static func zapTime(_ date: Date, timeZone: TimeZone) -> String {
        let t = LocalTime(date, timeZone: timeZone)
        var zone = "Z"
        if t.offset != 0 {
            let sign = t.offset < 0 ? "-" : "+"
            let a = abs(t.offset)
            zone = sign + pad(a / 3600, 2) + pad((a % 3600) / 60, 2)
        }
        return "\(pad(t.year, 4))-\(pad(t.month, 2))-\(pad(t.day, 2))T\(pad(t.hour, 2)):\(pad(t.minute, 2)):\(pad(t.second, 2)).\(pad(t.microsecond / 1000, 3))\(zone)"
    }

    /// One capnslog line, ending in "\n".
    static func capnslogLine(
        date: Date, timeZone: TimeZone, level: CapnsLevel, package: String, message: String, caller: String? = nil
    ) -> String {
        var line = capnslogTime(date, timeZone: timeZone)
        if let caller { line += " [\(caller)]" }
        line += " \(level.rawValue) | "
        if !package.isEmpty { line += package + ": " }
        line += message
        if !message.hasSuffix("\n") { line += "\n" }
        return line
    }

    /// One zap JSON line, ending in "\n".
    static func zapLine(
        date: Date, timeZone: TimeZone, level: ZapLevel, caller: String, message: String, fields: [ZapField],
        loggerName: String = ""
    ) -> String {
        var line = "{\"level\":\"\(level.rawValue)\",\"ts\":\"\(zapTime(date, timeZone: timeZone))\""
        if !loggerName.isEmpty { line += ",\"logger\":" + jsonQuote(loggerName) }
        if !caller.isEmpty { line += ",\"caller\":" + jsonQuote(caller) }
        line += ",\"msg\":" + jsonQuote(message)
        for f in fields { line += "," + jsonQuote(f.key) + ":" + f.json }
        line += "}\n"
        return line
    }
}

/// zap's JSON string encoding: `\` and `"` escaped, \n \r \t, other control
/// characters as \u00XX; everything else (including non-ASCII) verbatim.
public func jsonQuote(_ s: String) -> String {
    var out = "\""
    out.reserveCapacity(s.utf8.count + 2)
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\\": out += "\\\\"
        case "\"": out += "\\\""
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                let h = String(scalar.value, radix: 16)
                out += "\\u00" + (h.count < 2 ? "0" + h : h)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    out += "\""
    return out
}
