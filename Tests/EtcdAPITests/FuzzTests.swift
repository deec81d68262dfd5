import EtcdProto
import EtcdServer
import FileIO
import Foundation
import NIOHTTP1
import SwiftProtobuf
import Testing

@testable import EtcdAPI

/// The member must answer every client request, however odd, with a response or an etcd
/// error — never crash. Requests are random messages with extreme field values, and
/// random bytes decoded as requests.
@Suite struct ClientInputFuzzTests {
    static let extremes: [Int64] = [0, 1, -1, 2, 3, Int64.max, Int64.min, Int64.max - 1, 1 << 40]

    func key(_ g: inout SplitMix64) -> Data {
        switch Int.random(in: 0..<5, using: &g) {
        case 0: return Data()
        case 1: return Data([0])
        case 2: return Data([0xff, 0xff])
        default: return Data((0..<Int.random(in: 1...3, using: &g)).map { _ in UInt8.random(in: 0x61...0x64, using: &g) })
        }
    }

    func int(_ g: inout SplitMix64) -> Int64 {
        Bool.random(using: &g) ? Self.extremes.randomElement(using: &g)! : Int64.random(in: -3...12, using: &g)
    }

    func range(_ g: inout SplitMix64) -> Etcdserverpb_RangeRequest {
        var r = Etcdserverpb_RangeRequest()
        r.key = key(&g)
        r.rangeEnd = key(&g)
        r.limit = int(&g)
        r.revision = int(&g)
        r.sortOrder = .init(rawValue: Int.random(in: -1...4, using: &g)) ?? .none
        r.sortTarget = .init(rawValue: Int.random(in: -1...6, using: &g)) ?? .key
        r.keysOnly = Bool.random(using: &g)
        r.countOnly = Bool.random(using: &g)
        r.minModRevision = int(&g)
        r.maxModRevision = int(&g)
        r.minCreateRevision = int(&g)
        r.maxCreateRevision = int(&g)
        return r
    }

    func op(_ g: inout SplitMix64, depth: Int) -> Etcdserverpb_RequestOp {
        var op = Etcdserverpb_RequestOp()
        switch Int.random(in: 0..<(depth < 2 ? 5 : 4), using: &g) {
        case 0: op.requestRange = range(&g)
        case 1:
            var p = Etcdserverpb_PutRequest()
            p.key = key(&g)
            p.value = key(&g)
            p.ignoreValue = Int.random(in: 0..<4, using: &g) == 0
            p.ignoreLease = Int.random(in: 0..<4, using: &g) == 0
            p.prevKv = Bool.random(using: &g)
            op.requestPut = p
        case 2:
            var d = Etcdserverpb_DeleteRangeRequest()
            d.key = key(&g)
            d.rangeEnd = key(&g)
            d.prevKv = Bool.random(using: &g)
            op.requestDeleteRange = d
        case 3: break  // an empty op
        default: op.requestTxn = txn(&g, depth: depth + 1)
        }
        return op
    }

    func txn(_ g: inout SplitMix64, depth: Int) -> Etcdserverpb_TxnRequest {
        var t = Etcdserverpb_TxnRequest()
        for _ in 0..<Int.random(in: 0...3, using: &g) {
            var c = Etcdserverpb_Compare()
            c.key = key(&g)
            c.rangeEnd = key(&g)
            c.result = .init(rawValue: Int.random(in: -1...5, using: &g)) ?? .equal
            c.target = .init(rawValue: Int.random(in: -1...6, using: &g)) ?? .version
            switch Int.random(in: 0..<6, using: &g) {
            case 0: c.version = int(&g)
            case 1: c.createRevision = int(&g)
            case 2: c.modRevision = int(&g)
            case 3: c.value = key(&g)
            case 4: c.lease = int(&g)
            default: break
            }
            t.compare.append(c)
        }
        t.success = (0..<Int.random(in: 0...3, using: &g)).map { _ in op(&g, depth: depth) }
        t.failure = (0..<Int.random(in: 0...3, using: &g)).map { _ in op(&g, depth: depth) }
        return t
    }

    @Test(arguments: 1...4)
    func randomRequestsNeverCrashTheMember(seed: UInt64) async throws {
        var g = SplitMix64(seed: seed)
        let server = try await EtcdServer.start(config: ServerConfig(
            initialCluster: InitialCluster(peerURLsByName: ["default": ["http://localhost:2380"]]),
            advertiseClientURLs: [], maxTxnOps: 8, dataDir: "/data", heartbeatMs: 10, electionMs: 100,
            fileSystem: FaultyFileSystem(seed: seed)))
        defer { server.stop() }
        let kv = KVService(server: server)
        var answered = 0
        for _ in 0..<3000 {
            do {
                switch Int.random(in: 0..<5, using: &g) {
                case 0: _ = try await kv.range(range(&g))
                case 1:
                    guard case .requestPut(let p)? = op(&g, depth: 9).request else { continue }
                    _ = try await kv.put(p)
                case 2:
                    var d = Etcdserverpb_DeleteRangeRequest()
                    d.key = key(&g)
                    d.rangeEnd = key(&g)
                    _ = try await kv.deleteRange(d)
                case 3: _ = try await kv.txn(txn(&g, depth: 0))
                default:
                    var c = Etcdserverpb_CompactionRequest()
                    c.revision = int(&g)
                    _ = try await kv.compact(c)
                }
                answered += 1
            } catch let error as EtcdError {
                #expect(!error.message.isEmpty)
                answered += 1
            }
        }
        #expect(answered > 0)
    }

    @Test func randomBytesDecodeToAnErrorOrARequest() async throws {
        var g = SplitMix64(seed: 7)
        let server = try await EtcdServer.start(config: ServerConfig(
            initialCluster: InitialCluster(peerURLsByName: ["default": ["http://localhost:2380"]]),
            advertiseClientURLs: [], dataDir: "/data", heartbeatMs: 10, electionMs: 100,
            fileSystem: FaultyFileSystem(seed: 7)))
        defer { server.stop() }
        let kv = KVService(server: server)
        for _ in 0..<5000 {
            let bytes = Data((0..<Int.random(in: 0...64, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) })
            if let r = try? Etcdserverpb_TxnRequest(serializedBytes: bytes) {
                _ = try? await kv.txn(r)
            }
            if let r = try? Etcdserverpb_RangeRequest(serializedBytes: bytes) {
                _ = try? await kv.range(r)
            }
        }
    }

    /// The peer URL's decoders and handlers: random bodies get a 4xx/5xx answer, never a
    /// crash; bodies that do decode to a Raft message are not stepped (a peer's Raft
    /// messages are trusted as etcd trusts them, behind the cluster ID check).
    @Test func randomPeerRequestsAreRefusedCleanly() async throws {
        var g = SplitMix64(seed: 11)
        let transport = HTTPPeerTransport()
        var config = ServerConfig(
            initialCluster: InitialCluster(peerURLsByName: ["default": ["http://localhost:2380"]]),
            advertiseClientURLs: [], dataDir: "/data", heartbeatMs: 10, electionMs: 100,
            fileSystem: FaultyFileSystem(seed: 11))
        config.peerTransport = transport
        let server = try await EtcdServer.start(config: config)
        defer {
            transport.stop()
            server.stop()
        }
        let endpoints = PeerListener.endpoints(transport)
        let paths = ["/raft", "/raft/snapshot", "/leases", "/leases/internal", "/members/promote/12", "/members/promote/x", "/members"]
        var refused = 0
        for _ in 0..<3000 {
            let bytes = (0..<Int.random(in: 0...80, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) }
            let path = paths[Int.random(in: 0..<paths.count, using: &g)]
            if path == "/raft", (try? Raftpb_Message(serializedBytes: bytes)) != nil { continue }
            if path == "/raft/snapshot", SnapshotWire.decode(bytes) != nil { continue }
            #expect(PeerMembersJSON.decode(bytes) == nil || bytes.first == UInt8(ascii: "["))
            let head = HTTPRequestHead(version: .http1_1, method: path == "/members" ? .GET : .POST, uri: path)
            let r = await endpoints.handle(head, bytes)
            if r.status.code >= 400 { refused += 1 }
        }
        #expect(refused > 0)
        // The decoders agree with the encoders.
        var m = Raftpb_Message()
        m.type = .msgSnap
        m.to = 2
        let wire = SnapshotWire.encode(m, db: [1, 2, 3])!
        let (back, db) = SnapshotWire.decode(wire)!
        #expect(back == m && db == [1, 2, 3])
        let members = [Member(id: 5, name: "a", peerURLs: ["http://x:1"], clientURLs: ["http://x:2"], isLearner: true)]
        #expect(PeerMembersJSON.decode(Array(PeerMembersJSON.encode(members).utf8)) == members)
    }
}
