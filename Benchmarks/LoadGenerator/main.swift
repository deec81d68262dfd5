// swetcd-benchmark: a load generator with the commands and flags of etcd's `benchmark`
// tool (put, range, txn-put, watch-latency, lease-keepalive), speaking etcd's gRPC API
// through the small gRPC client of GRPC.swift to any etcd v3 server (swetcd or real etcd alike).
import EtcdProto
import FileIO
import Foundation
import Synchronization

/// The next request index, shared by every client of a run.
final class Ticket: Sendable {
    private let next = Atomic<Int>(0)
    func take() -> Int { next.wrappingAdd(1, ordering: .relaxed).oldValue }
}

/// One client's share of a run: its latencies (seconds) and errors by message.
struct Tally: Sendable {
    var latencies: [Double] = []
    var errors: [String: Int] = [:]

    mutating func record(since start: ContinuousClock.Instant, _ error: (any Error)?) {
        if let error {
            errors["\(error)", default: 0] += 1
        } else {
            latencies.append(Double((ContinuousClock.now - start).totalNanoseconds) / 1e9)
        }
    }

    mutating func merge(_ other: Tally) {
        latencies += other.latencies
        errors.merge(other.errors, uniquingKeysWith: +)
    }
}

func seconds(_ d: Duration) -> Double { Double(d.totalNanoseconds) / 1e9 }

/// --conns connections (spread over --endpoints), open while `body` runs.
func withConnections<R: Sendable>(
    _ opts: Options, _ body: @Sendable ([GRPCConnection]) async throws -> R
) async throws -> R {
    var connections: [GRPCConnection] = []
    for i in 0..<opts.conns {
        var endpoint = opts.endpoints[i % opts.endpoints.count]
        if let scheme = endpoint.range(of: "://") { endpoint = String(endpoint[scheme.upperBound...]) }
        guard let colon = endpoint.lastIndex(of: ":"), let port = Int(endpoint[endpoint.index(after: colon)...]) else {
            throw Options.UsageError(description: "bad endpoint \"\(endpoint)\": want host:port")
        }
        connections.append(GRPCConnection(host: String(endpoint[..<colon]), port: port))
    }
    defer { connections.forEach { $0.close() } }
    return try await body(connections)
}

/// Runs --clients tasks that share --total requests (at most --rate per second overall);
/// client i uses connection i % --conns.
func drive(
    _ opts: Options, total: Int, connections: [GRPCConnection],
    request: @escaping @Sendable (_ connection: GRPCConnection, _ client: Int, _ index: Int) async throws -> Void
) async -> Report {
    let ticket = Ticket()
    let clock = ContinuousClock()
    let start = clock.now
    let tally = await withTaskGroup(of: Tally.self) { group in
        for c in 0..<opts.clients {
            let connection = connections[c % connections.count]
            group.addTask {
                var tally = Tally()
                while true {
                    let i = ticket.take()
                    if i >= total { break }
                    if opts.rate > 0 {
                        try? await Task.sleep(until: start + .nanoseconds(Int64(i) * 1_000_000_000 / Int64(opts.rate)), clock: clock)
                    }
                    let t = clock.now
                    do {
                        try await request(connection, c, i)
                        tally.record(since: t, nil)
                    } catch {
                        tally.record(since: t, error)
                    }
                }
                return tally
            }
        }
        var all = Tally()
        for await t in group { all.merge(t) }
        return all
    }
    return Report(latencies: tally.latencies, errors: tally.errors, elapsed: seconds(clock.now - start), precise: opts.precise)
}

func randomBytes(_ n: Int) -> Data {
    var g = SystemRandomNumberGenerator()
    return Data((0..<n).map { _ in UInt8.random(in: 0...255, using: &g) })
}

func put(_ opts: Options) async throws -> Report {
    let value = randomBytes(opts.valSize)
    return try await withConnections(opts) { conns in
        await drive(opts, total: opts.total, connections: conns) { conn, _, i in
            var g = SystemRandomNumberGenerator()
            var req = Etcdserverpb_PutRequest()
            req.key = Data(opts.key(i, random: &g))
            req.value = value
            _ = try await conn.unary("/etcdserverpb.KV/Put", req, as: Etcdserverpb_PutResponse.self)
        }
    }
}

func range(_ opts: Options) async throws -> Report {
    var req = Etcdserverpb_RangeRequest()
    req.key = Data(opts.arguments[0].utf8)
    if opts.arguments.count > 1 { req.rangeEnd = Data(opts.arguments[1].utf8) }
    req.serializable = opts.consistency == "s"
    let request = req
    return try await withConnections(opts) { conns in
        await drive(opts, total: opts.total, connections: conns) { conn, _, _ in
            _ = try await conn.unary("/etcdserverpb.KV/Range", request, as: Etcdserverpb_RangeResponse.self)
        }
    }
}

func txnPut(_ opts: Options) async throws -> Report {
    let value = randomBytes(opts.valSize)
    return try await withConnections(opts) { conns in
        await drive(opts, total: opts.total, connections: conns) { conn, _, i in
            var txn = Etcdserverpb_TxnRequest()
            txn.success = (0..<opts.txnOps).map { j in
                var put = Etcdserverpb_PutRequest()
                put.key = Data(Options.varintKey((i * opts.txnOps + j) % opts.keySpaceSize, size: opts.keySize))
                put.value = value
                var op = Etcdserverpb_RequestOp()
                op.requestPut = put
                return op
            }
            _ = try await conn.unary("/etcdserverpb.KV/Txn", txn, as: Etcdserverpb_TxnResponse.self)
        }
    }
}

func leaseKeepalive(_ opts: Options) async throws -> Report {
    try await withConnections(opts) { conns in
        // One lease per client (TTL 100 s, as etcd's benchmark), granted before the clock
        // starts; a failed grant fails each of its client's keepalives.
        let leases = await withTaskGroup(of: (Int, Result<Int64, any Error>).self) { group in
            for c in 0..<opts.clients {
                group.addTask {
                    var grant = Etcdserverpb_LeaseGrantRequest()
                    grant.ttl = 100
                    do {
                        let lease = try await conns[c % conns.count].unary(
                            "/etcdserverpb.Lease/LeaseGrant", grant, as: Etcdserverpb_LeaseGrantResponse.self)
                        return (c, .success(lease.id))
                    } catch {
                        return (c, .failure(error))
                    }
                }
            }
            var ids = [Result<Int64, any Error>](repeating: .success(0), count: opts.clients)
            for await (c, id) in group { ids[c] = id }
            return ids
        }
        // Client c keeps lease c alive; clientv3's KeepAliveOnce opens a stream, sends one
        // request, reads one response, cancels.
        return await drive(opts, total: opts.total, connections: conns) { conn, c, _ in
            var req = Etcdserverpb_LeaseKeepAliveRequest()
            req.id = try leases[c].get()
            let call = try await conn.stream(
                "/etcdserverpb.Lease/LeaseKeepAlive", [req], as: Etcdserverpb_LeaseKeepAliveResponse.self)
            defer { call.cancel() }
            var ttl = Int64(-1)
            for try await answer in call.responses {
                ttl = answer.ttl
                break
            }
            if ttl <= 0 { throw Options.UsageError(description: "lease keepalive answered TTL \(ttl)") }
        }
    }
}

/// The put start times of watch-latency, by put index (carried in each put's value).
final class PutStarts: Sendable {
    private let starts: Mutex<[ContinuousClock.Instant?]>
    init(_ n: Int) { starts = Mutex(Array(repeating: nil, count: n)) }
    func mark(_ i: Int) { starts.withLock { $0[i] = ContinuousClock.now } }
    func start(_ i: Int) -> ContinuousClock.Instant? { starts.withLock { i >= 0 && i < $0.count ? $0[i] : nil } }
}

func watchLatency(_ opts: Options) async throws -> Report {
    let key = Data("watch-latency-\(UInt32.random(in: 0...UInt32.max))".utf8)
    let starts = PutStarts(opts.putTotal)
    let expected = opts.putTotal * opts.watchersPerStream
    let padding = randomBytes(max(opts.valSize - 8, 0))
    return try await withConnections(opts) { conns in
        let (ready, readyContinuation) = AsyncStream<Void>.makeStream()
        return try await withThrowingTaskGroup(of: Tally?.self) { group in
            for s in 0..<opts.streams {
                let conn = conns[s % conns.count]
                group.addTask {
                    let creates = (0..<opts.watchersPerStream).map { _ in
                        var create = Etcdserverpb_WatchCreateRequest()
                        create.key = key
                        var req = Etcdserverpb_WatchRequest()
                        req.createRequest = create
                        return req
                    }
                    var tally = Tally()
                    var created = 0
                    var seen = 0
                    do {
                        let call = try await conn.stream("/etcdserverpb.Watch/Watch", creates, as: Etcdserverpb_WatchResponse.self)
                        defer { call.cancel() }  // once every event is in
                        for try await message in call.responses {
                            if message.created {
                                created += 1
                                if created == opts.watchersPerStream { readyContinuation.yield() }
                            }
                            for event in message.events {
                                let index = event.kv.value.prefix(8).withUnsafeBytes { Int(Int64(littleEndian: $0.loadUnaligned(as: Int64.self))) }
                                if let start = starts.start(index) { tally.record(since: start, nil) }
                                seen += 1
                            }
                            if seen >= expected { break }
                        }
                    } catch {
                        tally.errors["\(error)", default: 0] += expected - seen  // its missing events, with the cause
                    }
                    if created < opts.watchersPerStream { readyContinuation.yield() }  // failed: don't wait for it
                    return tally
                }
            }
            for await _ in ready.prefix(opts.streams) {}
            let clock = ContinuousClock()
            let begin = clock.now
            var putTally = Tally()
            for i in 0..<opts.putTotal {
                if opts.putRate > 0 {
                    try? await Task.sleep(until: begin + .nanoseconds(Int64(i) * 1_000_000_000 / Int64(opts.putRate)), clock: clock)
                }
                var req = Etcdserverpb_PutRequest()
                req.key = key
                var value = withUnsafeBytes(of: Int64(i).littleEndian) { Data($0) }
                value.append(padding)
                req.value = value
                starts.mark(i)
                let t = clock.now
                do {
                    _ = try await conns[0].unary("/etcdserverpb.KV/Put", req, as: Etcdserverpb_PutResponse.self)
                    putTally.record(since: t, nil)
                } catch {
                    putTally.record(since: t, error)
                }
            }
            let putReport = Report(latencies: putTally.latencies, errors: putTally.errors, elapsed: seconds(clock.now - begin), precise: opts.precise)
            print("Put summary:\(putReport.render().components(separatedBy: "\nJSON ")[0])")
            // Every watcher's events, or what arrived within 30 s of the last put.
            group.addTask {
                try await Task.sleep(for: .seconds(30))
                return nil
            }
            var all = Tally()
            var streamsDone = 0
            while streamsDone < opts.streams, let next = try await group.next() {
                guard let tally = next else { break }
                all.merge(tally)
                streamsDone += 1
            }
            group.cancelAll()
            let missing = opts.putTotal * opts.watchersPerStream * opts.streams - all.latencies.count - all.errors.values.reduce(0, +)
            if missing > 0 { all.errors["events not received within 30 s of the last put", default: 0] += missing }
            print("\nWatch events:")
            return Report(latencies: all.latencies, errors: all.errors, elapsed: seconds(clock.now - begin), precise: opts.precise)
        }
    }
}

do {
    let opts = try Options(Array(CommandLine.arguments.dropFirst()))
    let report: Report
    switch opts.command {
    case "put": report = try await put(opts)
    case "range": report = try await range(opts)
    case "txn-put": report = try await txnPut(opts)
    case "lease-keepalive": report = try await leaseKeepalive(opts)
    default: report = try await watchLatency(opts)
    }
    print(report.render())
} catch let error as Options.UsageError {
    if !error.description.isEmpty { FileHandle.standardError.write(Data("Error: \(error.description)\n".utf8)) }
    print(Options.usage)
    exit(error.description.isEmpty ? 0 : 2)
} catch {
    FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
    exit(1)
}
