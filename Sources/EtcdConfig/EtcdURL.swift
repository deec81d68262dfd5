// etcd's URL lists (pkg/types.NewURLs) on top of a Go `net/url.Parse`-compatible
// parser, limited to what etcd accepts: scheme://[userinfo@]host:port[?query][#fragment].
// Error texts follow Go's (`parse "x": missing protocol scheme`, ...) and etcd's.

/// One URL as etcd keeps it (Go's `url.URL`), printed the way Go prints it.
public struct EtcdURL: Sendable, Hashable, CustomStringConvertible {
    /// Lower-cased scheme ("http", "https", "unix", "unixs").
    public var scheme: String
    public var opaque: String
    /// Raw userinfo (before '@'), nil when absent.
    public var user: String?
    /// "host:port" exactly as given ("[::1]:2379" keeps its brackets).
    public var host: String
    public var path: String
    public var rawQuery: String
    public var forceQuery: Bool
    public var fragment: String

    public init(scheme: String, host: String) {
        self.scheme = scheme
        self.opaque = ""
        self.user = nil
        self.host = host
        self.path = ""
        self.rawQuery = ""
        self.forceQuery = false
        self.fragment = ""
    }

    /// The host without port and brackets (Go's `URL.Hostname()`).
    public var hostname: String {
        let (h, _) = splitHostPortLoose(host)
        if h.hasPrefix("[") && h.hasSuffix("]") { return String(h.dropFirst().dropLast()) }
        return h
    }

    /// The port (Go's `URL.Port()`), "" when absent.
    public var port: String { splitHostPortLoose(host).1 }

    /// Go's `URL.String()`.
    public var description: String {
        var out = ""
        if !scheme.isEmpty { out += scheme + ":" }
        if !opaque.isEmpty {
            out += opaque
        } else {
            if !scheme.isEmpty || !host.isEmpty || user != nil {
                if !host.isEmpty || !path.isEmpty || user != nil { out += "//" }
                if let user { out += user + "@" }
                out += host
            }
            if !path.isEmpty && !path.hasPrefix("/") && !host.isEmpty { out += "/" }
            out += path
        }
        if forceQuery || !rawQuery.isEmpty { out += "?" + rawQuery }
        if !fragment.isEmpty { out += "#" + fragment }
        return out
    }

    /// Go's `url.Parse`; the error text is Go's `*url.Error` text.
    public static func goParse(_ raw: String) throws(URLParseError) -> EtcdURL {
        func fail(_ why: String) -> URLParseError { URLParseError(message: "parse \(goQuote(raw)): \(why)") }
        var u = EtcdURL(scheme: "", host: "")
        var rest = raw
        if let hashIdx = rest.firstIndex(of: "#") {
            let frag = String(rest[rest.index(after: hashIdx)...])
            rest = String(rest[..<hashIdx])
            guard percentUnescape(frag) != nil else { throw fail("invalid URL escape \(goQuote(badEscape(frag)))") }
            u.fragment = frag
        }
        if rest.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            throw fail("net/url: invalid control character in URL")
        }
        if rest == "*" {
            u.path = "*"
            return u
        }
        // scheme
        var schemeEnd: String.Index?
        for (offset, ch) in rest.unicodeScalars.enumerated() {
            let isLetter = (ch >= "a" && ch <= "z") || (ch >= "A" && ch <= "Z")
            let isOther = (ch >= "0" && ch <= "9") || ch == "+" || ch == "-" || ch == "."
            if isLetter { continue }
            if isOther {
                if offset == 0 { break }
                continue
            }
            if ch == ":" {
                if offset == 0 { throw fail("missing protocol scheme") }
                schemeEnd = rest.unicodeScalars.index(rest.unicodeScalars.startIndex, offsetBy: offset)
            }
            break
        }
        if let schemeEnd {
            u.scheme = String(rest[..<schemeEnd]).lowercased()
            rest = String(rest[rest.index(after: schemeEnd)...])
        }
        // query
        if rest.hasSuffix("?") && rest.filter({ $0 == "?" }).count == 1 {
            u.forceQuery = true
            rest.removeLast()
        } else if let q = rest.firstIndex(of: "?") {
            u.rawQuery = String(rest[rest.index(after: q)...])
            rest = String(rest[..<q])
        }
        if !rest.hasPrefix("/") {
            if !u.scheme.isEmpty {
                u.opaque = rest
                return u
            }
            let firstSegment = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            if firstSegment.contains(":") { throw fail("first path segment in URL cannot contain colon") }
        }
        if (!u.scheme.isEmpty || !rest.hasPrefix("///")) && rest.hasPrefix("//") {
            var authority = String(rest.dropFirst(2))
            var remainder = ""
            if let slash = authority.firstIndex(of: "/") {
                remainder = String(authority[slash...])
                authority = String(authority[..<slash])
            }
            var hostPart = authority
            if let at = authority.lastIndex(of: "@") {
                let userinfo = String(authority[..<at])
                if !validUserinfo(userinfo) { throw fail("net/url: invalid userinfo") }
                u.user = userinfo
                hostPart = String(authority[authority.index(after: at)...])
            }
            if hostPart.hasPrefix("[") {
                guard let close = hostPart.lastIndex(of: "]") else { throw fail("missing ']' in host") }
                let colonPort = String(hostPart[hostPart.index(after: close)...])
                if !validOptionalPort(colonPort) { throw fail("invalid port \(goQuote(colonPort)) after host") }
            } else if let colon = hostPart.lastIndex(of: ":") {
                let colonPort = String(hostPart[colon...])
                if !validOptionalPort(colonPort) { throw fail("invalid port \(goQuote(colonPort)) after host") }
            }
            if hostPart.contains("%") {
                guard percentUnescape(hostPart) != nil else { throw fail("invalid URL escape \(goQuote(badEscape(hostPart)))") }
            }
            u.host = hostPart
            rest = remainder
        }
        if !rest.isEmpty {
            guard percentUnescape(rest) != nil else { throw fail("invalid URL escape \(goQuote(badEscape(rest)))") }
        }
        u.path = rest
        return u
    }

    private static func validOptionalPort(_ port: String) -> Bool {
        if port.isEmpty { return true }
        guard port.first == ":" else { return false }
        return port.dropFirst().allSatisfy { $0 >= "0" && $0 <= "9" }
    }

    private static func validUserinfo(_ s: String) -> Bool {
        for ch in s.unicodeScalars {
            if (ch >= "a" && ch <= "z") || (ch >= "A" && ch <= "Z") || (ch >= "0" && ch <= "9") { continue }
            switch ch {
            case "-", ".", "_", ":", "~", "!", "$", "&", "'", "(", ")", "*", "+", ",", ";", "=", "%", "@": continue
            default: return false
            }
        }
        return true
    }
}

/// A URL error; `message` is the exact text etcd prints.
public struct URLParseError: Error, Equatable, Sendable {
    public let message: String
}

/// Returns nil if `s` has a malformed %-escape.
private func percentUnescape(_ s: String) -> String? {
    let b = Array(s.utf8)
    var i = 0
    while i < b.count {
        if b[i] == UInt8(ascii: "%") {
            if i + 2 >= b.count || !isHex(b[i + 1]) || !isHex(b[i + 2]) { return nil }
            i += 3
        } else {
            i += 1
        }
    }
    return s
}

private func badEscape(_ s: String) -> String {
    let b = Array(s.utf8)
    var i = 0
    while i < b.count {
        if b[i] == UInt8(ascii: "%") {
            if i + 2 >= b.count || !isHex(b[i + 1]) || !isHex(b[i + 2]) {
                let end = min(b.count, i + 3)
                return String(decoding: b[i..<end], as: UTF8.self)
            }
            i += 3
        } else {
            i += 1
        }
    }
    return ""
}

private func isHex(_ c: UInt8) -> Bool {
    (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102)
}

/// Go's `net.SplitHostPort`; nil on error (etcd replaces the text with its own).
func goSplitHostPort(_ hostport: String) -> (host: String, port: String)? {
    guard let lastColon = hostport.lastIndex(of: ":") else { return nil }
    var host: String
    if hostport.hasPrefix("[") {
        guard let close = hostport.firstIndex(of: "]") else { return nil }
        let afterClose = hostport.index(after: close)
        if afterClose == hostport.endIndex { return nil }
        if afterClose != lastColon { return nil }
        host = String(hostport[hostport.index(after: hostport.startIndex)..<close])
        if host.contains("[") || host.contains("]") { return nil }
    } else {
        host = String(hostport[..<lastColon])
        if host.contains(":") { return nil }
        if host.contains("[") || host.contains("]") { return nil }
    }
    let port = String(hostport[hostport.index(after: lastColon)...])
    if port.contains("[") || port.contains("]") { return nil }
    return (host, port)
}

private func splitHostPortLoose(_ host: String) -> (String, String) {
    if host.hasPrefix("[") {
        if let close = host.firstIndex(of: "]") {
            let h = String(host[...close])
            let rest = host[host.index(after: close)...]
            if rest.hasPrefix(":") { return (h, String(rest.dropFirst())) }
            return (h, "")
        }
        return (host, "")
    }
    if let colon = host.lastIndex(of: ":") {
        return (String(host[..<colon]), String(host[host.index(after: colon)...]))
    }
    return (host, "")
}

/// Is `s` an IP literal (Go's `net.ParseIP(s) != nil`)?
func isIPLiteral(_ s: String) -> Bool {
    isIPv4(s) || isIPv6(s)
}

private func isIPv4(_ s: String) -> Bool {
    let parts = s.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 4 else { return false }
    for p in parts {
        guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0 >= "0" && $0 <= "9" }) else { return false }
        if p.count > 1 && p.first == "0" { return false } // Go 1.17+ rejects leading zeros
        guard let v = Int(p), v <= 255 else { return false }
    }
    return true
}

private func isIPv6(_ s: String) -> Bool {
    guard s.contains(":") else { return false }
    var groups = 0
    var sawDoubleColon = false
    var rest = Substring(s)
    if rest.hasPrefix("::") {
        sawDoubleColon = true
        rest = rest.dropFirst(2)
        if rest.isEmpty { return true }
    }
    while !rest.isEmpty {
        // an embedded IPv4 tail
        if rest.contains("."), !rest.contains(":") {
            guard isIPv4(String(rest)) else { return false }
            groups += 2
            rest = ""
            break
        }
        var group = Substring("")
        if let colon = rest.firstIndex(of: ":") {
            group = rest[..<colon]
            rest = rest[colon...]
        } else {
            group = rest
            rest = ""
        }
        guard !group.isEmpty, group.count <= 4, group.allSatisfy({ $0.isHexDigit }) else { return false }
        groups += 1
        if rest.hasPrefix("::") {
            if sawDoubleColon { return false }
            sawDoubleColon = true
            rest = rest.dropFirst(2)
        } else if rest.hasPrefix(":") {
            rest = rest.dropFirst()
            if rest.isEmpty { return false }
        }
    }
    return sawDoubleColon ? groups < 8 : groups == 8
}

enum EtcdURLs {
    /// etcd's `types.NewURLs`: every element must be http/https/unix/unixs with host:port and no path.
    /// The result is sorted by its string form, as etcd sorts it.
    static func parseList(_ elements: [String]) throws(URLParseError) -> [EtcdURL] {
        if elements.isEmpty { throw URLParseError(message: "no valid URLs given") }
        var all: [EtcdURL] = []
        for element in elements {
            let trimmed = element.trimmingGoSpace()
            let u = try EtcdURL.goParse(trimmed)
            if !["http", "https", "unix", "unixs"].contains(u.scheme) {
                throw URLParseError(message: "URL scheme must be http, https, unix, or unixs: \(trimmed)")
            }
            if goSplitHostPort(u.host) == nil {
                throw URLParseError(message: "URL address does not have the form \"host:port\": \(trimmed)")
            }
            if !u.path.isEmpty {
                throw URLParseError(message: "URL must not contain a path: \(trimmed)")
            }
            all.append(u)
        }
        return all.sorted { $0.description < $1.description }
    }

    /// `types.NewURLs(strings.Split(s, ","))`.
    static func parseCommaList(_ s: String) throws(URLParseError) -> [EtcdURL] {
        try parseList(s.split(separator: ",", omittingEmptySubsequences: false).map(String.init))
    }
}

/// etcd's `types.URLsMap`: "name=url,name=url" → name → sorted URLs.
public struct InitialClusterMap: Sendable, Equatable {
    public var members: [String: [EtcdURL]]

    /// `types.NewURLsMap`.
    public static func parse(_ s: String) throws(URLParseError) -> InitialClusterMap {
        var raw: [String: [String]] = [:]
        var order: [String] = []
        for item in s.split(separator: ",", omittingEmptySubsequences: false) where !item.isEmpty {
            var key = String(item)
            var value = ""
            if let eq = key.firstIndex(of: "=") {
                value = String(key[key.index(after: eq)...])
                key = String(key[..<eq])
            }
            if raw[key] == nil { order.append(key) }
            raw[key, default: []].append(value)
        }
        var out: [String: [EtcdURL]] = [:]
        for key in order {
            out[key] = try EtcdURLs.parseList(raw[key]!)
        }
        return InitialClusterMap(members: out)
    }

    /// `URLsMap.String()`: sorted "name=url" pairs joined by ",".
    public var description: String {
        var pairs: [String] = []
        for (name, urls) in members {
            for u in urls { pairs.append("\(name)=\(u)") }
        }
        return pairs.sorted().joined(separator: ",")
    }
}

extension String {
    /// Go's `strings.TrimSpace` (ASCII and Unicode white space).
    func trimmingGoSpace() -> String {
        let scalars = self.unicodeScalars
        var start = scalars.startIndex
        var end = scalars.endIndex
        while start < end, scalars[start].properties.isWhitespace { start = scalars.index(after: start) }
        while end > start, scalars[scalars.index(before: end)].properties.isWhitespace { end = scalars.index(before: end) }
        return String(scalars[start..<end])
    }
}
