import Foundation
import Yams

// etcd reads --config-file with sigs.k8s.io/yaml: YAML (gopkg.in/yaml.v2, YAML 1.1
// scalars) is converted to JSON, then Go's encoding/json decodes it into
// embed.configYAML (and, a second time, into etcdmain.configProxy). Because the
// JSON object is re-marshalled from a Go map, keys are visited in sorted order
// and the first type error (in that order) is the one reported. Keys match
// case-insensitively (Go's encoding/json), unknown keys are ignored, `null`
// leaves a scalar unchanged and empties a list. sigs.k8s.io/yaml would coerce
// numbers to strings for string fields, but etcd's fields are all promoted from
// embedded structs, so that coercion never applies: `name: 123` is an error.

/// The JSON value sigs.k8s.io/yaml produces from a YAML node.
indirect enum JSONish: Equatable {
    case null
    case bool(Bool)
    /// A JSON number, as its literal text ("16", "1000", "1.5", "-1").
    case number(String)
    case string(String)
    case array([JSONish])
    /// Keys sorted as Go's json.Marshal sorts map keys.
    case object([(String, JSONish)])

    static func == (a: JSONish, b: JSONish) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// The JSON type name Go's UnmarshalTypeError uses ("string", "number", "number 1.5", ...).
    func goTypeName(withLiteral: Bool = false) -> String {
        switch self {
        case .null: return "null"
        case .bool: return "bool"
        case .number(let lit): return withLiteral ? "number " + lit : "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}

struct ConfigFileError: Error, Equatable {
    let message: String
}

enum ConfigFileReader {
    /// ioutil.ReadFile with Go's error text ("open x.yaml: no such file or directory").
    static func read(_ path: String) throws(ConfigFileError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw ConfigFileError(message: "open \(path): \(goErrnoText(errno))") }
        defer { close(fd) }
        var data = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { sysRead(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ConfigFileError(message: "read \(path): \(goErrnoText(errno))")
            }
            if n == 0 { break }
            data.append(contentsOf: buf[0..<n])
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// YAML text → JSON value; errors as "error converting YAML to JSON: yaml: line N: problem".
    static func yamlToJSON(_ text: String) throws(ConfigFileError) -> JSONish {
        let root: Node?
        do {
            let parser = try Parser(yaml: text)
            root = try parser.nextRoot()
        } catch let error as YamlError {
            throw ConfigFileError(message: "error converting YAML to JSON: yaml: " + goYAMLErrorText(error))
        } catch {
            throw ConfigFileError(message: "error converting YAML to JSON: yaml: \(error)")
        }
        guard let root else { return .null }
        return convert(root)
    }

    /// yaml.v2's message: "line N: problem" where N is libyaml's 0-based line of the
    /// problem (+1 for scanner errors), or of the context when the problem is on line 0.
    private static func goYAMLErrorText(_ error: YamlError) -> String {
        func text(context: YamlError.Context?, problem: String, mark: Mark, scanner: Bool) -> String {
            var line = 0
            let problemLine0 = mark.line - 1
            if problemLine0 != 0 {
                line = scanner ? problemLine0 + 1 : problemLine0
            } else if let context, context.mark.line - 1 != 0 {
                line = context.mark.line - 1
            }
            let msg = problem.isEmpty ? "unknown problem parsing YAML content" : problem
            return line != 0 ? "line \(line): \(msg)" : msg
        }
        switch error {
        case let .scanner(context, problem, mark, _):
            return text(context: context, problem: problem, mark: mark, scanner: true)
        case let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            return text(context: context, problem: problem, mark: mark, scanner: false)
        case let .reader(problem, _, _, _):
            return problem
        case let .duplicatedKeysInMapping(duplicates, context):
            // yaml.v2 (non-strict) would keep the last value; Yams refuses.
            return "line \(context.mark.line): duplicated key(s) \(duplicates.joined(separator: ", "))"
        default:
            return "\(error)"
        }
    }

    private static func convert(_ node: Node) -> JSONish {
        switch node {
        case .scalar(let s):
            // The scalar's own (unresolved) tag: "" for an untagged plain scalar, !!str for a
            // quoted one, or the explicit tag. yaml.v2's YAML 1.1 resolution is applied here.
            switch s.tag.rawValue {
            case "", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
                 "tag:yaml.org,2002:null", "tag:yaml.org,2002:timestamp":
                return resolvePlain(s.string)
            default:
                return .string(s.string)
            }
        case .sequence(let seq):
            return .array(seq.map(convert))
        case .mapping(let map):
            var dict: [String: JSONish] = [:]
            for (k, v) in map {
                let key: String
                switch convert(k) {
                case .string(let s): key = s
                case .number(let n): key = n
                case .bool(let b): key = b ? "true" : "false"
                case .null: key = "null"
                default: key = k.string ?? ""
                }
                dict[key] = convert(v)
            }
            return .object(dict.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }.map { ($0.key, $0.value) })
        case .alias:
            return .null
        }
    }

    /// yaml.v2's resolution of a plain scalar (YAML 1.1: yes/no/on/off are booleans,
    /// 0x10 and 017 are integers, `_` separators are allowed).
    static func resolvePlain(_ s: String) -> JSONish {
        switch s {
        case "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON": return .bool(true)
        case "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF": return .bool(false)
        case "", "~", "null", "Null", "NULL": return .null
        default: break
        }
        guard let first = s.unicodeScalars.first else { return .null }
        let isDigit = first >= "0" && first <= "9"
        if first == "." {
            if let d = Double(s), d.isFinite { return .number(goJSONFloat(d)) }
            return .string(s)
        }
        if isDigit, let stamp = yamlDate(s) { return .string(stamp) }
        if isDigit || first == "+" || first == "-" {
            let plain = s.replacingOccurrences(of: "_", with: "")
            if let i = try? GoStrconv.parseInt(plain, bitSize: 64) { return .number(String(i)) }
            if let u = try? GoStrconv.parseUint(plain, bitSize: 64) { return .number(String(u)) }
            if isYAMLFloat(plain), let d = Double(plain), d.isFinite { return .number(goJSONFloat(d)) }
        }
        return .string(s)
    }

    /// yaml.v2 turns a plain date ("2006-1-2") into a time.Time, which JSON prints
    /// in RFC 3339 ("2024-01-01T00:00:00Z"). (Date-times are left as strings.)
    private static func yamlDate(_ s: String) -> String? {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, (1...2).contains(parts[1].count), (1...2).contains(parts[2].count),
              parts.allSatisfy({ $0.allSatisfy { $0 >= "0" && $0 <= "9" } }),
              let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]), (1...12).contains(m) else { return nil }
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]
        guard (1...days).contains(d) else { return nil }
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(parts[0])-\(two(m))-\(two(d))T00:00:00Z"
    }

    /// yaml.v2's `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
    private static func isYAMLFloat(_ s: String) -> Bool {
        var c = Array(s.utf8)[...]
        func digits() -> Int {
            var n = 0
            while let f = c.first, f >= 48 && f <= 57 { c = c.dropFirst(); n += 1 }
            return n
        }
        if let f = c.first, f == UInt8(ascii: "+") || f == UInt8(ascii: "-") { c = c.dropFirst() }
        if c.first == UInt8(ascii: ".") {
            c = c.dropFirst()
            if digits() == 0 { return false }
        } else {
            if digits() == 0 { return false }
            if c.first == UInt8(ascii: ".") { c = c.dropFirst(); _ = digits() }
        }
        if let f = c.first, f == UInt8(ascii: "e") || f == UInt8(ascii: "E") {
            c = c.dropFirst()
            if let g = c.first, g == UInt8(ascii: "+") || g == UInt8(ascii: "-") { c = c.dropFirst() }
            if digits() == 0 { return false }
        }
        return c.isEmpty
    }

    /// Go's encoding/json text of a float64 (integral values without exponent below 1e21).
    static func goJSONFloat(_ d: Double) -> String {
        if d == d.rounded(), abs(d) < 1e21 {
            if abs(d) < 9.0e18 { return String(Int64(d)) }
            return String(format: "%.0f", d)
        }
        let a = abs(d)
        if a < 1e-6 || a >= 1e21 {
            // Go: 'e' format with a two-digit minimum exponent cleaned to "e-07" → "e-07"
            var s = "\(d)"
            if let e = s.firstIndex(of: "e") {
                let mant = s[..<e]
                var exp = String(s[s.index(after: e)...])
                var sign = "+"
                if exp.hasPrefix("-") { sign = "-"; exp.removeFirst() } else if exp.hasPrefix("+") { exp.removeFirst() }
                if exp.count < 2 { exp = "0" + exp }
                s = mant + "e" + sign + exp
            }
            return s
        }
        return "\(d)"
    }
}

/// Decodes the JSON value of a config file into flag values, with Go's errors.
struct ConfigFileDecoder {
    /// Decoded values by flag name, and their raw texts.
    var values: [String: FlagValue] = [:]
    var raw: [String: String] = [:]
    /// Values of the comma-separated URL keys, decoded later in etcd's order.
    var urlStrings: [String: String] = [:]

    /// Decodes one pass ("configYAML" or "configProxy"). Throws the first type error.
    mutating func decode(_ root: JSONish, structName: String, goValueType: String) throws(ConfigFileError) {
        let prefix = "error unmarshaling JSON: while decoding JSON: "
        let fields: [(key: String, value: JSONish)]
        switch root {
        case .null: return
        case .object(let pairs): fields = pairs.map { (key: $0.0, value: $0.1) }
        default:
            throw ConfigFileError(message: prefix + "json: cannot unmarshal \(root.goTypeName()) into Go value of type \(goValueType)")
        }
        let specs = FlagTable.all.filter { $0.yaml?.structName == structName && $0.yaml?.parent == nil }
        let nestedParents = structName == "configYAML" ? ["client-transport-security", "peer-transport-security"] : []
        var firstError: ConfigFileError?
        func record(_ e: ConfigFileError) { if firstError == nil { firstError = e } }

        for (key, value) in fields {
            if let parent = Self.match(key, among: nestedParents) {
                switch value {
                case .null: continue
                case .object(let inner):
                    let nestedSpecs = FlagTable.all.filter { $0.yaml?.parent == parent }
                    for (ik, iv) in inner {
                        guard let spec = Self.match(ik, among: nestedSpecs) else { continue }
                        do { try assign(spec, iv, fieldPath: "\(parent).\(spec.yaml!.key)", structName: "securityConfig") } catch { record(error) }
                    }
                default:
                    record(ConfigFileError(message: prefix + "json: cannot unmarshal \(value.goTypeName()) into Go struct field \(structName).\(parent) of type embed.securityConfig"))
                }
                continue
            }
            guard let spec = Self.match(key, among: specs) else { continue }
            do { try assign(spec, value, fieldPath: spec.yaml!.key, structName: structName) } catch { record(error) }
        }
        if let firstError { throw firstError }
    }

    private static func match(_ key: String, among names: [String]) -> String? {
        if names.contains(key) { return key }
        return names.first { $0.lowercased() == key.lowercased() }
    }

    private static func match(_ key: String, among specs: [FlagSpec]) -> FlagSpec? {
        if let exact = specs.first(where: { $0.yaml!.key == key }) { return exact }
        return specs.first { $0.yaml!.key.lowercased() == key.lowercased() }
    }

    private mutating func assign(_ spec: FlagSpec, _ value: JSONish, fieldPath: String, structName: String) throws(ConfigFileError) {
        let binding = spec.yaml!
        func typeError(_ v: JSONish, _ goType: String, literal: Bool = false) -> ConfigFileError {
            ConfigFileError(message: "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal \(v.goTypeName(withLiteral: literal)) into Go struct field \(structName).\(fieldPath) of type \(goType)")
        }
        switch binding.shape {
        case .string, .urlString:
            switch value {
            case .null: return
            case .string(let s):
                if case .urlString = binding.shape {
                    urlStrings[spec.name] = s
                } else {
                    values[spec.name] = .string(s)
                }
                raw[spec.name] = s
            default: throw typeError(value, "string")
            }
        case .bool:
            switch value {
            case .null: return
            case .bool(let b):
                values[spec.name] = .bool(b)
                raw[spec.name] = b ? "true" : "false"
            default: throw typeError(value, "bool")
            }
        case .number(let goType):
            switch value {
            case .null: return
            case .number(let lit):
                let v: FlagValue?
                switch goType {
                case "uint", "uint64": v = (try? GoStrconv.parseUint10(lit, bitSize: 64)).map(FlagValue.uint)
                case "uint32": v = (try? GoStrconv.parseUint10(lit, bitSize: 32)).map(FlagValue.uint)
                case "time.Duration": v = (try? GoStrconv.parseInt10(lit)).map(FlagValue.duration)
                default: v = (try? GoStrconv.parseInt10(lit)).map(FlagValue.int)
                }
                guard let v else { throw typeError(value, goType, literal: true) }
                values[spec.name] = v
                raw[spec.name] = lit
            default: throw typeError(value, goType)
            }
        case .stringList:
            switch value {
            case .null:
                values[spec.name] = .strings([])
                raw[spec.name] = ""
            case .array(let items):
                var out: [String] = []
                var bad: JSONish?
                for item in items {
                    switch item {
                    case .string(let s): out.append(s)
                    case .null: out.append("")
                    default: if bad == nil { bad = item }
                    }
                }
                if let bad { throw typeError(bad, "string") }
                if spec.kind == .uniqueStrings { out = Array(Set(out)).sorted() }
                values[spec.name] = .strings(out)
                raw[spec.name] = out.joined(separator: ",")
            default: throw typeError(value, "[]string")
            }
        }
    }
}

extension GoStrconv {
    /// strconv.ParseUint(s, 10, bitSize) as encoding/json uses it for numbers.
    static func parseUint10(_ s: String, bitSize: Int) throws(GoNumError) -> UInt64 {
        guard !s.isEmpty, s.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { throw .syntax }
        guard let v = UInt64(s) else { throw .range }
        if bitSize < 64 && v > (UInt64(1) << UInt64(bitSize)) - 1 { throw .range }
        return v
    }

    /// strconv.ParseInt(s, 10, 64).
    static func parseInt10(_ s: String) throws(GoNumError) -> Int64 {
        var body = Substring(s)
        if body.first == "-" || body.first == "+" { body = body.dropFirst() }
        guard !body.isEmpty, body.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { throw .syntax }
        guard let v = Int64(s) else { throw .range }
        return v
    }
}

private func sysRead(_ fd: Int32, _ p: UnsafeMutableRawPointer?, _ n: Int) -> Int {
    #if canImport(Darwin)
    return Darwin.read(fd, p, n)
    #elseif canImport(Musl)
    return Musl.read(fd, p, n)
    #else
    return Glibc.read(fd, p, n)
    #endif
}
