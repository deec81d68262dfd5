// Micro-benchmarks of swetcd's hot paths (package-benchmark): CRC32-C, WAL append+sync,
// the B+tree, MVCC put/range, protobuf encode/decode and one gRPC round trip through the
// whole member. Built only with SWETCD_BENCHMARKS=1 (see Package.swift):
//
//     SWETCD_BENCHMARKS=1 swift package --disable-sandbox benchmark --target HotPaths
import Backend
import Benchmark
import EtcdAPI
import EtcdProto
import EtcdServer
import FileIO
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import MVCC
import SwiftProtobuf
import WAL

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 3,
        maxDuration: .seconds(1),
        maxIterations: 1_000_000)

    // CRC32-C over a WAL-sized record (the WAL's rolling checksum).
    let block = [UInt8]((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) })
    Benchmark("CRC32-C 4 KiB", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(CRC32C.checksum(block))
        }
    }

    // WAL append+sync: one save (frames, writes, fdatasync) of N 256-byte entries, on the
    // disk of the current directory: the durable part of every write.
    for batch in [1, 10, 100] {
        Benchmark("WAL save+fdatasync, \(batch) entries of 256 B") { benchmark in
            let dir = FileManager.default.currentDirectoryPath + "/.bench-wal-\(getpid())-\(batch)"
            try? FileManager.default.removeItem(atPath: dir)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let wal = try WAL.create(dir: dir, metadata: Data(), fs: PosixFileSystem())
            defer { try? wal.close() }
            var index: UInt64 = 0
            let payload = Data(repeating: 0x61, count: 256)
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                let entries = (0..<batch).map { _ -> Raftpb_Entry in
                    index += 1
                    var e = Raftpb_Entry()
                    e.index = index
                    e.term = 1
                    e.data = payload
                    return e
                }
                var hs = Raftpb_HardState()
                hs.term = 1
                hs.commit = index
                try await wal.save(hardState: hs, entries: entries)
            }
            benchmark.stopMeasurement()
        }
    }

    // The B+tree (bbolt format) in memory: puts in one write txn, point gets, a cursor scan.
    let treeKeys = (0..<100_000).map { Array(String(format: "key-%08d", $0).utf8) }
    let treeValue = [UInt8](repeating: 0x62, count: 256)
    func memoryDB() throws -> BoltDB {
        let fs = FaultyFileSystem(seed: 1)
        try fs.createDirectory("/b")
        return try BoltDB.open(path: "/b/db", fileSystem: fs, options: .etcd)
    }
    func filledTree() throws -> BoltDB {
        let db = try memoryDB()
        try db.update { tx in
            let b = try tx.createBucketIfNotExists(Array("key".utf8))
            for k in treeKeys { try b.put(k, treeValue) }
        }
        return db
    }
    Benchmark("B+tree put 1,000 keys + commit", configuration: .init(scalingFactor: .one)) { benchmark in
        let db = try memoryDB()
        var next = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            try db.update { tx in
                let b = try tx.createBucketIfNotExists(Array("key".utf8))
                for _ in 0..<1000 {
                    try b.put(Array(String(format: "key-%010d", next).utf8), treeValue)
                    next += 1
                }
            }
        }
        benchmark.stopMeasurement()
    }
    Benchmark("B+tree get (100k keys)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let db = try filledTree()
        let tx = try db.beginRead()
        defer { tx.rollback() }
        let b = try tx.bucket(Array("key".utf8))!
        var g = SplitMix64(seed: 9)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(try b.get(treeKeys[Int(g.next() % UInt64(treeKeys.count))]))
        }
        benchmark.stopMeasurement()
    }
    Benchmark("B+tree cursor scan of 100k keys", configuration: .init(scalingFactor: .one)) { benchmark in
        let db = try filledTree()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            try db.view { tx in
                let c = try tx.bucket(Array("key".utf8))!.cursor()
                var entry = try c.first()
                var n = 0
                while entry != nil {
                    n += 1
                    entry = try c.next()
                }
                blackHole(n)
            }
        }
        benchmark.stopMeasurement()
    }

    // MVCC: the apply-time put (key index + backend batch) and a point range, in memory.
    func store() throws -> KVStore {
        return try KVStore(backend: BatchedBackend(db: try memoryDB(), options: BatchedBackend.Options()))
    }
    Benchmark("MVCC put (256 B values, 10k keys)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let s = try store()
        var put = Etcdserverpb_PutRequest()
        put.value = Data(treeValue)
        var i = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            put.key = Data(treeKeys[i % 10_000])
            i += 1
            blackHole(try s.put(put))
        }
        benchmark.stopMeasurement()
    }
    Benchmark("MVCC range of one key (10k keys)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let s = try store()
        var put = Etcdserverpb_PutRequest()
        put.value = Data(treeValue)
        for k in treeKeys.prefix(10_000) {
            put.key = Data(k)
            _ = try s.put(put)
        }
        var range = Etcdserverpb_RangeRequest()
        var g = SplitMix64(seed: 3)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            range.key = Data(treeKeys[Int(g.next() % 10_000)])
            blackHole(try s.range(range))
        }
        benchmark.stopMeasurement()
    }

    // Protobuf: what the gRPC layer decodes and encodes for every Put and Range.
    var putRequest = Etcdserverpb_PutRequest()
    putRequest.key = Data("key-00000001".utf8)
    putRequest.value = Data(treeValue)
    var rangeResponse = Etcdserverpb_RangeResponse()
    rangeResponse.header.clusterID = 14_841_639_068_965_178_418
    rangeResponse.header.memberID = 10_276_657_743_932_975_437
    rangeResponse.header.revision = 100_000
    rangeResponse.header.raftTerm = 2
    var kv = Mvccpb_KeyValue()
    kv.key = putRequest.key
    kv.value = putRequest.value
    kv.createRevision = 5
    kv.modRevision = 99_999
    kv.version = 12
    rangeResponse.kvs = [kv]
    rangeResponse.count = 1
    let putBytes: Data = try! putRequest.serializedData()
    let rangeBytes: Data = try! rangeResponse.serializedData()
    Benchmark("protobuf PutRequest encode", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try putRequest.serializedData() as Data) }
    }
    Benchmark("protobuf PutRequest decode", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try Etcdserverpb_PutRequest(serializedBytes: putBytes)) }
    }
    Benchmark("protobuf RangeResponse encode", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try rangeResponse.serializedData() as Data) }
    }
    Benchmark("protobuf RangeResponse decode", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try Etcdserverpb_RangeResponse(serializedBytes: rangeBytes)) }
    }

    // One gRPC round trip through the whole member (in-memory file system, so no fsync):
    // a serializable Range (gRPC + services + MVCC) and a Put (gRPC + Raft + WAL + apply).
    // One member and one connection serve every sample.
    Benchmark("gRPC round trip: serializable Range", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let kv = try await SharedMember.client()
        var range = Etcdserverpb_RangeRequest()
        range.key = putRequest.key
        range.serializable = true
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(try await kv.range(range)) }
        benchmark.stopMeasurement()
    }
    Benchmark("gRPC round trip: Put", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let kv = try await SharedMember.client()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(try await kv.put(putRequest)) }
        benchmark.stopMeasurement()
    }
}

/// A member on an in-memory file system with a client listener on a free port and one
/// grpc-swift client connection to it, started by the first round-trip sample and kept
/// until the process exits.
enum SharedMember {
    typealias KV = Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix>
    nonisolated(unsafe) private static var started: Task<KV, any Error>?
    private static let lock = NSLock()

    static func client() async throws -> KV {
        let task = lock.withLock {
            if let started { return started }
            let t = Task { try await start() }
            started = t
            return t
        }
        return try await task.value
    }

    private static func start() async throws -> KV {
        let server = try await EtcdServer.start(config: ServerConfig(
            initialCluster: InitialCluster(peerURLsByName: ["default": ["http://localhost:2380"]]),
            advertiseClientURLs: ["http://127.0.0.1:2379"], dataDir: "/data", heartbeatMs: 10, electionMs: 100,
            fileSystem: FaultyFileSystem(seed: 1)))
        let listener = ClientServer(server: server, host: "127.0.0.1", port: 0, metrics: MetricsEndpoint())
        Task { try await listener.serve() }
        guard let port = await listener.boundPort else { throw CancellationError() }
        let transport = try HTTP2ClientTransport.Posix(
            target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
        let client = GRPCClient(transport: transport)
        Task { try await client.runConnections() }
        let kv = KV(wrapping: client)
        var put = Etcdserverpb_PutRequest()
        put.key = Data("warm-up".utf8)
        _ = try await kv.put(put)  // waits for the leader; opens the connection
        return kv
    }
}
