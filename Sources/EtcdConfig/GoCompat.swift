// Small re-implementations of the Go standard library behaviour that etcd's
// command line exposes to users: strconv number/bool parsing (with the
// `flag` package's error texts), time.ParseDuration / Duration.String, and
// strconv.Quote (Go's %q). Written from the Go documentation and observed
// behaviour of etcd 3.4.23 (built with go1.19.8); no Go code is copied.

/// Errors of Go's `strconv` number parsing.
enum GoNumError: Error, Equatable {
    case syntax
    case range

    /// The text Go's `flag` package reports for a numeric flag (`numError`).
    var flagText: String {
        switch self {
        case .syntax: return "parse error"
        case .range: return "value out of range"
        }
    }

    /// The text of the raw `*strconv.NumError` (used by etcd's own uint32 flag value).
    func strconvText(function: String, input: String) -> String {
        switch self {
        case .syntax: return "strconv.\(function): parsing \(goQuote(input)): invalid syntax"
        case .range: return "strconv.\(function): parsing \(goQuote(input)): value out of range"
        }
    }
}

enum GoStrconv {
    /// `strconv.ParseUint(s, 0, bitSize)`: base prefixes 0x/0o/0b/0 and `_` separators.
    static func parseUint(_ s: String, bitSize: Int = 64) throws(GoNumError) -> UInt64 {
        let bytes = Array(s.utf8)
        if bytes.isEmpty { throw .syntax }
        var i = 0
        var base: UInt64 = 10
        if bytes[0] == UInt8(ascii: "0") {
            if bytes.count >= 3 {
                switch bytes[1] | 0x20 {
                case UInt8(ascii: "b"): base = 2; i = 2
                case UInt8(ascii: "o"): base = 8; i = 2
                case UInt8(ascii: "x"): base = 16; i = 2
                default: base = 8; i = 1
                }
            } else {
                base = 8; i = 1
            }
        }
        let maxVal: UInt64 = bitSize >= 64 ? UInt64.max : (UInt64(1) << UInt64(bitSize)) - 1
        var n: UInt64 = 0
        var underscores = false
        var overflow = false
        while i < bytes.count {
            let c = bytes[i]
            i += 1
            if c == UInt8(ascii: "_") {
                underscores = true
                continue
            }
            let d: UInt64
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt64(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): d = UInt64(c - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): d = UInt64(c - UInt8(ascii: "A")) + 10
            default: throw .syntax
            }
            if d >= base { throw .syntax }
            if overflow { continue }
            let (m, o1) = n.multipliedReportingOverflow(by: base)
            let (a, o2) = m.addingReportingOverflow(d)
            if o1 || o2 || a > maxVal {
                overflow = true
                continue
            }
            n = a
        }
        if underscores && !underscoreOK(bytes) { throw .syntax }
        if overflow { throw .range }
        return n
    }

    /// `strconv.ParseInt(s, 0, bitSize)`.
    static func parseInt(_ s: String, bitSize: Int = 64) throws(GoNumError) -> Int64 {
        if s.isEmpty { throw .syntax }
        var body = Substring(s)
        var negative = false
        if body.first == "+" { body = body.dropFirst() } else if body.first == "-" { negative = true; body = body.dropFirst() }
        let un: UInt64
        do {
            un = try parseUint(String(body), bitSize: bitSize)
        } catch .range {
            throw .range
        } catch {
            throw .syntax
        }
        let cutoff = UInt64(1) << UInt64(bitSize - 1)
        if !negative && un >= cutoff { throw .range }
        if negative && un > cutoff { throw .range }
        if negative {
            return un == cutoff ? Int64.min >> Int64(64 - bitSize) : -Int64(un)
        }
        return Int64(un)
    }

    /// Go's `underscoreOK`: underscores only between digits or after a base prefix.
    private static func underscoreOK(_ input: [UInt8]) -> Bool {
        var s = input[...]
        var saw: UInt8 = UInt8(ascii: "^")
        if let f = s.first, f == UInt8(ascii: "-") || f == UInt8(ascii: "+") { s = s.dropFirst() }
        var hex = false
        var i = s.startIndex
        if s.count >= 2, s[i] == UInt8(ascii: "0") {
            let p = s[i + 1] | 0x20
            if p == UInt8(ascii: "b") || p == UInt8(ascii: "o") || p == UInt8(ascii: "x") {
                i += 2
                saw = UInt8(ascii: "0")
                hex = p == UInt8(ascii: "x")
            }
        }
        while i < s.endIndex {
            let c = s[i]
            let lower = c | 0x20
            if (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || (hex && lower >= UInt8(ascii: "a") && lower <= UInt8(ascii: "f")) {
                saw = UInt8(ascii: "0")
            } else if c == UInt8(ascii: "_") {
                if saw != UInt8(ascii: "0") { return false }
                saw = UInt8(ascii: "_")
            } else {
                if saw == UInt8(ascii: "_") { return false }
                saw = UInt8(ascii: "!")
            }
            i += 1
        }
        return saw != UInt8(ascii: "_")
    }

    /// `strconv.ParseBool`.
    static func parseBool(_ s: String) -> Bool? {
        switch s {
        case "1", "t", "T", "TRUE", "true", "True": return true
        case "0", "f", "F", "FALSE", "false", "False": return false
        default: return nil
        }
    }
}

/// Go's `time.Duration` arithmetic on a signed nanosecond count.
/// Go's time.ParseDuration (nanoseconds), for flags and for the executable.
public enum GoDuration {
    private static let units: [String: UInt64] = [
        "ns": 1,
        "us": 1_000,
        "\u{00B5}s": 1_000, // micro sign
        "\u{03BC}s": 1_000, // Greek letter mu
        "ms": 1_000_000,
        "s": 1_000_000_000,
        "m": 60 * 1_000_000_000,
        "h": 3600 * 1_000_000_000,
    ]

    /// `time.ParseDuration`; nil on any error (the `flag` package reports "parse error").
    public static func parse(_ input: String) -> Int64? {
        var s = Array(input.unicodeScalars)
        var negative = false
        if let c = s.first, c == "-" || c == "+" {
            negative = c == "-"
            s.removeFirst()
        }
        if s == ["0"] { return 0 }
        if s.isEmpty { return nil }
        let limit: UInt64 = 1 << 63
        var total: UInt64 = 0
        var idx = 0
        func isDigit(_ c: Unicode.Scalar) -> Bool { c >= "0" && c <= "9" }
        while idx < s.count {
            guard s[idx] == "." || isDigit(s[idx]) else { return nil }
            // integer part
            var v: UInt64 = 0
            let preStart = idx
            while idx < s.count, isDigit(s[idx]) {
                if v > limit / 10 { return nil }
                v = v * 10 + UInt64(s[idx].value - 48)
                if v > limit { return nil }
                idx += 1
            }
            let pre = idx != preStart
            var f: UInt64 = 0
            var scale: Double = 1
            var post = false
            if idx < s.count, s[idx] == "." {
                idx += 1
                let postStart = idx
                var overflow = false
                while idx < s.count, isDigit(s[idx]) {
                    if !overflow {
                        if f > (UInt64.max >> 1) / 10 {
                            overflow = true
                        } else {
                            let y = f * 10 + UInt64(s[idx].value - 48)
                            if y > limit {
                                overflow = true
                            } else {
                                f = y
                                scale *= 10
                            }
                        }
                    }
                    idx += 1
                }
                post = idx != postStart
            }
            if !pre && !post { return nil }
            let unitStart = idx
            while idx < s.count, s[idx] != ".", !isDigit(s[idx]) { idx += 1 }
            if idx == unitStart { return nil }
            let unitName = String(String.UnicodeScalarView(s[unitStart..<idx]))
            guard let unit = units[unitName] else { return nil }
            if v > limit / unit { return nil }
            v *= unit
            if f > 0 {
                v += UInt64(Double(f) * (Double(unit) / scale))
                if v > limit { return nil }
            }
            total += v
            if total > limit { return nil }
        }
        if negative { return total == limit ? Int64.min : -Int64(total) }
        if total > limit - 1 { return nil }
        return Int64(total)
    }

    /// `time.Duration.String()`, e.g. "2h0m0s", "100ms", "1.5s", "0s".
    public static func format(_ d: Int64) -> String {
        var u = d.magnitude
        let neg = d < 0
        if u < 1_000_000_000 {
            // sub-second: ns, µs, ms
            if u == 0 { return "0s" }
            var prec = 0
            var suffix = ""
            if u < 1_000 {
                return (neg ? "-" : "") + String(u) + "ns"
            } else if u < 1_000_000 {
                prec = 3; suffix = "\u{00B5}s"
            } else {
                prec = 6; suffix = "ms"
            }
            return (neg ? "-" : "") + fraction(u, prec: prec) + suffix
        }
        var out = ""
        let secPart = fraction(u % 60_000_000_000, prec: 9)
        u /= 60_000_000_000 // minutes
        out = secPart + "s"
        if u > 0 {
            out = String(u % 60) + "m" + out
            u /= 60
            if u > 0 { out = String(u) + "h" + out }
        }
        return (neg ? "-" : "") + out
    }

    /// value / 10^prec printed with trailing zeros of the fraction removed.
    private static func fraction(_ v: UInt64, prec: Int) -> String {
        var p: UInt64 = 1
        for _ in 0..<prec { p *= 10 }
        let whole = v / p
        var frac = v % p
        if frac == 0 { return String(whole) }
        var digits = prec
        while frac % 10 == 0 { frac /= 10; digits -= 1 }
        let fs = String(frac)
        return String(whole) + "." + String(repeating: "0", count: digits - fs.count) + fs
    }
}

/// Go's `strconv.Quote` (the `%q` verb) for the strings etcd puts in messages.
func goQuote(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\u{07}": out += "\\a"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{0B}": out += "\\v"
        default:
            let v = scalar.value
            if v < 0x20 || v == 0x7F {
                out += "\\x" + hex2(v)
            } else if v >= 0x80 && v < 0xA0 {
                out += "\\u00" + hex2(v)
            } else if v == 0xFFFD || (v >= 0xE000 && v <= 0xF8FF) || scalar.properties.generalCategory == .format {
                out += v > 0xFFFF ? "\\U" + hexN(v, 8) : "\\u" + hexN(v, 4)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
func goQuoteList(_ list: [String]) -> String {
    "[" + list.map(goQuote).joined(separator: " ") + "]"
}

private func hex2(_ v: UInt32) -> String { hexN(v, 2) }
private func hexN(_ v: UInt32, _ n: Int) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, n - s.count)) + s
}

/// Go's error text for an errno, as `os.PathError` prints it ("no such file or directory").
func goErrnoText(_ code: Int32) -> String {
    switch code {
    case 1: return "operation not permitted"
    case 2: return "no such file or directory"
    case 5: return "input/output error"
    case 13: return "permission denied"
    case 20: return "not a directory"
    case 21: return "is a directory"
    case 24: return "too many open files"
    case 28: return "no space left on device"
    case 30: return "read-only file system"
    case 36: return "file name too long"
    case 40: return "too many levels of symbolic links"
    default: return "errno \(code)"
    }
}
