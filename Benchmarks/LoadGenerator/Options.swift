/// The flags of etcd's `benchmark` tool (tools/benchmark in etcd 3.4), parsed by hand:
/// `--name value` or `--name=value`; boolean flags take no value.
struct Options {
    var command = ""
    var arguments: [String] = []
    var endpoints = ["127.0.0.1:2379"]
    var conns = 1
    var clients = 1
    var total = 10_000
    var keySize = 8
    var valSize = 8
    var keySpaceSize = 1
    var sequentialKeys = false
    var consistency = "l"
    var rate = 0
    var txnOps = 1
    var streams = 10
    var watchersPerStream = 10
    var putTotal = 1000
    var putRate = 100
    var precise = false

    static let usage = """
        usage: swetcd-benchmark COMMAND [flags]

        commands (as etcd's benchmark tool):
          put                 puts --total keys (--key-size, --val-size, --key-space-size, --sequential-keys)
          range KEY [END]     ranges over KEY..END, --consistency l|s
          txn-put             txns of --txn-ops puts each
          watch-latency       --streams × --watchers-per-stream watchers on one key; --put-total puts
                              at --put-rate; latency from each put's start to each watcher's event
          lease-keepalive     one lease per client, then --total keepalives (one stream each, as
                              clientv3's KeepAliveOnce)

        flags: --endpoints host:port[,…] --conns N --clients N --total N --key-size N --val-size N
               --key-space-size N --sequential-keys --consistency l|s --rate N (requests/s, 0 = no
               limit) --txn-ops N --streams N --watchers-per-stream N --put-total N --put-rate N
               --precise (latencies with 6 decimals)

        The report is etcd's (summary, histogram, latency distribution); the last line is
        `JSON {…}` with requests_per_s, p50_ms, p90_ms, p99_ms, p999_ms, total, errors, elapsed_s.
        """

    struct UsageError: Error, CustomStringConvertible {
        let description: String
    }

    init(_ argv: [String]) throws {
        var rest = argv[...]
        guard let command = rest.popFirst() else { throw UsageError(description: "no command given") }
        if command == "-h" || command == "--help" { throw UsageError(description: "") }
        guard ["put", "range", "txn-put", "watch-latency", "lease-keepalive"].contains(command) else {
            throw UsageError(description: "unknown command \"\(command)\"")
        }
        self.command = command
        while let arg = rest.popFirst() {
            guard arg.hasPrefix("--") else {
                arguments.append(arg)
                continue
            }
            var name = String(arg.dropFirst(2))
            var inlineValue: String?
            if let eq = name.firstIndex(of: "=") {
                inlineValue = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            func value() throws -> String {
                if let inlineValue { return inlineValue }
                guard let next = rest.popFirst() else { throw UsageError(description: "flag needs an argument: --\(name)") }
                return next
            }
            func int() throws -> Int {
                let text = try value()
                guard let n = Int(text), n >= 0 else {
                    throw UsageError(description: "invalid argument \"\(text)\" for \"--\(name)\" flag")
                }
                return n
            }
            switch name {
            case "endpoints": endpoints = try value().split(separator: ",").map(String.init)
            case "conns": conns = max(1, try int())
            case "clients": clients = max(1, try int())
            case "total": total = try int()
            case "key-size": keySize = try int()
            case "val-size": valSize = try int()
            case "key-space-size": keySpaceSize = max(1, try int())
            case "sequential-keys": sequentialKeys = inlineValue.map { $0 == "true" } ?? true
            case "consistency":
                consistency = try value()
                guard consistency == "l" || consistency == "s" else {
                    throw UsageError(description: "consistency must be l or s")
                }
            case "rate": rate = try int()
            case "txn-ops": txnOps = max(1, try int())
            case "streams": streams = max(1, try int())
            case "watchers-per-stream": watchersPerStream = max(1, try int())
            case "put-total": putTotal = try int()
            case "put-rate": putRate = try int()
            case "precise": precise = inlineValue.map { $0 == "true" } ?? true
            case "help", "h": throw UsageError(description: "")
            default: throw UsageError(description: "unknown flag: --\(name)")
            }
        }
        if command == "range" && arguments.isEmpty {
            throw UsageError(description: "range needs a key: swetcd-benchmark range KEY [END]")
        }
        if endpoints.isEmpty { throw UsageError(description: "no endpoints") }
    }

    /// The key of request `index`: etcd's benchmark writes the (zig-zag varint) index into
    /// a zeroed buffer of --key-size bytes; sequential or random within --key-space-size.
    func key(_ index: Int, random: inout some RandomNumberGenerator) -> [UInt8] {
        let n = sequentialKeys ? index % keySpaceSize : Int.random(in: 0..<keySpaceSize, using: &random)
        return Self.varintKey(n, size: keySize)
    }

    static func varintKey(_ n: Int, size: Int) -> [UInt8] {
        var key = [UInt8](repeating: 0, count: max(size, 1))
        var v = UInt64(bitPattern: Int64(n << 1) ^ Int64(n >> 63))
        var i = 0
        repeat {
            let byte = UInt8(v & 0x7F) | (v > 0x7F ? 0x80 : 0)
            if i < key.count { key[i] = byte }
            v >>= 7
            i += 1
        } while v > 0
        return key
    }
}
