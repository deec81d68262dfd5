import EtcdProto
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import EtcdServer
import FileIO
import Foundation
import Metrics
import Prometheus
import Testing

@testable import EtcdAPI

/// Runs a command to completion, bounded in time; returns exit code, stdout, stderr.
func run(_ args: [String], stdin: String? = nil, timeout: TimeInterval = 20) throws -> (code: Int32, out: String, err: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
    p.arguments = ["-k", "2", String(Int(timeout))] + args
    var env = ProcessInfo.processInfo.environment
    env["ETCDCTL_API"] = "3"
    p.environment = env
    let out = Pipe(), err = Pipe(), inp = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = inp
    try p.run()
    if let stdin { inp.fileHandleForWriting.write(Data(stdin.utf8)) }
    try inp.fileHandleForWriting.close()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

/// One Prometheus registry for this test process, bootstrapped into swift-metrics as
/// swetcd's main does (before the first member starts), so the WAL and backend timers land in it.
let testMetrics: MetricsEndpoint = {
    let m = MetricsEndpoint()
    var f = PrometheusMetricsFactory(registry: m.registry)
    for label in MetricsEndpoint.histogramLabels { f.durationHistogramBuckets[label] = MetricsEndpoint.diskBuckets }
    MetricsSystem.bootstrap(f)
    return m
}()

/// A member serving on a free port of 127.0.0.1, for the duration of `body`.
func withServer(_ body: (EtcdServer, Int) async throws -> Void) async throws {
    _ = testMetrics
    let server = try await EtcdServer.start(config: ServerConfig(
        initialCluster: InitialCluster(peerURLsByName: ["default": ["http://localhost:2380"]]),
        advertiseClientURLs: ["http://127.0.0.1:2379"], dataDir: "/data", heartbeatMs: 10, electionMs: 100,
        fileSystem: FaultyFileSystem(seed: 1)))
    defer { server.stop() }
    let client = ClientServer(server: server, host: "127.0.0.1", port: 0, metrics: testMetrics)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await client.serve() }
        guard let port = await client.boundPort else { throw EtcdError(.unavailable, "not bound") }
        do {
            try await body(server, port)
        } catch {
            client.shutDown()
            throw error
        }
        client.shutDown()
        try await group.waitForAll()
    }
}

/// A member as `withServer` gives it, and a grpc-swift client connected to it.
func withServerAndClient(_ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Void) async throws {
    try await withServer { _, port in
        let transport = try HTTP2ClientTransport.Posix(
            target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
        try await withGRPCClient(transport: transport) { client in try await body(client) }
    }
}

@Suite(.serialized) struct ClientServerTests {
    @Test func stockEtcdctlPutsAndGets() async throws {
        try await withServer { _, port in
            let ep = "--endpoints=127.0.0.1:\(port)"
            let put = try run(["etcdctl", ep, "put", "foo", "bar"])
            #expect(put.code == 0)
            #expect(put.out == "OK\n")
            let get = try run(["etcdctl", ep, "get", "foo"])
            #expect(get.out == "foo\nbar\n")
            let json = try run(["etcdctl", ep, "get", "foo", "-w", "json"])
            #expect(json.out.contains("\"revision\":2"))
            #expect(json.out.contains("\"raft_term\":2"))
            #expect(json.out.contains("\"cluster_id\":14841639068965178418"))
        }
    }

    /// A response of many round trips: gRPC-Go's client sends a BDP ping per round trip,
    /// and the server forgives pings at each DATA frame it writes (it had counted them as
    /// keepalive strikes and answered "too_many_pings", so large values could not be read).
    @Test func largeValuesAndSnapshotsReachEtcdctl() async throws {
        try await withServer { _, port in
            let ep = "--endpoints=127.0.0.1:\(port)"
            var rng = SplitMix64(seed: 5)
            let value = String((0..<1_400_000).map { _ in Character(UnicodeScalar(UInt8(97 + rng.next() % 26))) })
            let put = try run(["etcdctl", ep, "put", "big"], stdin: value)
            #expect(put.out == "OK\n", "\(put.err)")
            let get = try run(["etcdctl", ep, "get", "big", "--print-value-only"])
            #expect(get.code == 0, "\(get.err)")
            #expect(get.out == value + "\n")
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swetcd-snap-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let file = dir.appendingPathComponent("s.db").path
            let save = try run(["etcdctl", ep, "snapshot", "save", file])
            #expect(save.code == 0, "\(save.err)")
            let status = try run(["etcdctl", "snapshot", "status", file, "-w", "json"])
            #expect(status.out.contains("\"revision\":2"), "\(status.out) \(status.err)")
        }
    }

    @Test func etcdErrorsReachEtcdctlWithEtcdsText() async throws {
        try await withServer { _, port in
            let r = try run(["etcdctl", "--endpoints=127.0.0.1:\(port)", "get", "foo", "--rev=10"])
            #expect(r.code != 0)
            #expect(r.err.contains("etcdserver: mvcc: required revision is a future revision"))
        }
    }

    @Test func endpointStatusAndMemberList() async throws {
        try await withServer { server, port in
            let st = try run(["etcdctl", "--endpoints=127.0.0.1:\(port)", "endpoint", "status", "-w", "table"])
            #expect(st.code == 0)
            #expect(st.out.contains("8e9e05c52164694d"))
            #expect(st.out.contains("3.4.23"))
            #expect(st.out.contains("true"))  // IS LEADER
            let ml = try run(["etcdctl", "--endpoints=127.0.0.1:\(port)", "member", "list"])
            #expect(ml.out == "8e9e05c52164694d, started, default, http://localhost:2380, http://127.0.0.1:2379, false\n")
        }
    }

    @Test func samePortServesHTTP1() async throws {
        try await withServer { _, port in
            let v = try run(["curl", "-s", "http://127.0.0.1:\(port)/version"])
            #expect(v.out == #"{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}"#)
            let nf = try run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)/nope"])
            #expect(nf.out == "404")
        }
    }

    @Test func unimplementedMethodsSayUnimplemented() async throws {
        try await withServer { _, port in
            let r = try run(["etcdctl", "--endpoints=127.0.0.1:\(port)", "user", "list"])
            #expect(r.code != 0)
            #expect(r.err.contains("Unimplemented") || r.err.contains("not implemented"))
        }
    }

    /// /metrics in Prometheus' text format with etcd's names, parsed: every sample line is
    /// "name[{labels}] value", and the figures match what the member reports.
    @Test func metricsAreScrapedAndParsed() async throws {
        try await withServer { server, port in
            _ = try run(["etcdctl", "--endpoints=127.0.0.1:\(port)", "put", "foo", "bar"])
            // The backend commits its batch on its own schedule (every 100 ms), which changes
            // the db sizes: compare a scrape taken while the member's sizes stood still.
            var r = (code: Int32(0), out: "", err: "")
            var status = server.status()
            for _ in 0..<50 {
                let before = server.status()
                r = try run(["curl", "-s", "-D", "/dev/stderr", "http://127.0.0.1:\(port)/metrics"])
                status = server.status()
                if before.dbSize == status.dbSize && before.dbSizeInUse == status.dbSizeInUse { break }
            }
            #expect(r.code == 0)
            #expect(r.err.lowercased().contains("content-type: text/plain; version=0.0.4"))
            var samples: [String: Double] = [:]
            for line in r.out.split(separator: "\n") where !line.hasPrefix("#") {
                let parts = line.split(separator: " ")
                try #require(parts.count == 2, "not a sample line: \(line)")
                samples[String(parts[0])] = try #require(Double(parts[1]), "not a number: \(line)")
            }
            #expect(samples["etcd_server_has_leader"] == 1)
            #expect(samples["etcd_server_quota_backend_bytes"] == 2_147_483_648)
            #expect(samples["etcd_mvcc_db_total_size_in_bytes"] == Double(status.dbSize))
            #expect(samples["etcd_mvcc_db_total_size_in_use_in_bytes"] == Double(status.dbSizeInUse))
            #expect(samples["etcd_debugging_mvcc_keys_total"] == 1)
            #expect((samples["etcd_server_proposals_committed_total"] ?? 0) >= 5)
            #expect((samples["etcd_server_proposals_applied_total"] ?? 0) >= 5)
            #expect(samples["etcd_server_proposals_pending"] == 0)
            #expect(samples["etcd_server_proposals_failed_total"] == 0)
            #expect(samples["etcd_server_leader_changes_seen_total"] == 1)
            #expect((samples["process_resident_memory_bytes"] ?? 0) > 1_000_000)
            for h in ["etcd_disk_wal_fsync_duration_seconds", "etcd_disk_backend_commit_duration_seconds"] {
                #expect(r.out.contains("# TYPE \(h) histogram"), "\(h) missing (its timer records only once swift-metrics is bootstrapped, as swetcd's main does)")
            }
        }
    }

    /// Stock `etcdctl check datascale --load=s`: 10,000 puts of 1 KiB, memory read from /metrics.
    @Test func checkDatascaleRuns() async throws {
        try await withServer { _, port in
            let r = try run(["etcdctl", "--endpoints=127.0.0.1:\(port)", "check", "datascale", "--load=s"], timeout: 240)
            #expect(r.code == 0, "\(r.out.suffix(300)) \(r.err.suffix(300))")
            #expect(r.out.contains("PASS: Approximate system memory used"))
        }
    }

    /// etcd lets one connection carry any number of concurrent streams (it advertises
    /// 2^32-1); swift-nio-http2 left unset holds a connection to 100 (and grpc-go clients,
    /// told nothing, had streams refused). 150 watch streams open at once on one connection:
    /// every one gets its watcher created while all stay open.
    @Test func oneConnectionCarriesMoreThan100ConcurrentStreams() async throws {
        try await withServerAndClient { client in
            let watch = Etcdserverpb_Watch.Client(wrapping: client)
            let (created, sink) = AsyncStream<Void>.makeStream()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<150 {
                    group.addTask {
                        try await watch.watch(
                            request: StreamingClientRequest { writer in
                                var req = Etcdserverpb_WatchRequest()
                                req.createRequest.key = Data("stream-\(i)".utf8)
                                try await writer.write(req)
                                try await Task.sleep(for: .seconds(60))  // open until cancelled
                            },
                            onResponse: { response in
                                for try await message in response.messages where message.created { sink.yield() }
                            })
                    }
                }
                let timeout = Task {
                    try? await Task.sleep(for: .seconds(20))
                    sink.finish()
                }
                var n = 0
                for await _ in created {
                    n += 1
                    if n == 150 { break }
                }
                timeout.cancel()
                #expect(n == 150, "watchers created while all 150 streams are open")
                group.cancelAll()
            }
        }
    }

    /// etcd's Watch keeps sending after the client half-closes its side (recvLoop ends
    /// quietly at EOF): a watcher created, the requests closed, then a put still arrives.
    @Test func watchOutlivesTheClientsHalfClose() async throws {
        try await withServerAndClient { client in
            let kv = Etcdserverpb_KV.Client(wrapping: client)
            let watch = Etcdserverpb_Watch.Client(wrapping: client)
            let event: Data? = try await watch.watch(
                request: StreamingClientRequest { writer in
                    var req = Etcdserverpb_WatchRequest()
                    req.createRequest.key = Data("half".utf8)
                    try await writer.write(req)   // and the request stream ends here
                },
                onResponse: { response in
                    for try await message in response.messages {
                        if message.created {
                            var put = Etcdserverpb_PutRequest()
                            put.key = Data("half".utf8)
                            put.value = Data("closed".utf8)
                            _ = try await kv.put(put)
                        }
                        if let e = message.events.first { return e.kv.value }
                    }
                    return nil
                })
            #expect(event == Data("closed".utf8))
        }
    }
}
