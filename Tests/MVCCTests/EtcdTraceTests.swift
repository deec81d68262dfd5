import Foundation
import Testing
import EtcdProto
import SwiftProtobuf
@testable import MVCC

/// Replays request traces recorded against a real etcd 3.4.23 (fresh single member,
/// random puts / deletes / ranges / txns with nested txns / compactions over 45 keys)
/// and checks every response and error of swetcd's store against etcd's, byte for byte
/// after dropping the header fields the caller fills (cluster_id, member_id, raft_term).
/// Requests etcd's gRPC layer refused (APIERR, e.g. duplicate keys in a txn) never
/// reached its store and are skipped. The generator is Tools/etcd-trace-generator/main.go.
@Suite struct EtcdTraceTests {
    @Test func trace1() throws { try replay(etcdTrace1, name: "trace1") }
    @Test func trace2() throws { try replay(etcdTrace2, name: "trace2") }

    static func error(_ message: Substring) -> MVCCError? {
        switch message {
        case "etcdserver: mvcc: required revision has been compacted": return .compacted
        case "etcdserver: mvcc: required revision is a future revision": return .futureRevision
        case "etcdserver: key not found": return .keyNotFound
        case "etcdserver: requested lease not found": return .leaseNotFound
        default: return nil
        }
    }

    func replay(_ trace: String, name: String) throws {
        let store = KVStore()
        var checked = 0
        for (n, line) in trace.split(separator: "\n").enumerated() {
            let f = line.split(separator: "\t", maxSplits: 2, omittingEmptySubsequences: false)
            guard f.count == 3 else { continue }  // header comment lines
            let op = f[0], req = String(f[1]), outcome = f[2]
            if outcome.hasPrefix("APIERR:") { continue }
            let ctx = "\(name) line \(n + 1): \(op) \(req)"
            switch op {
            case "put":
                try check(result { try store.put(try! .init(jsonString: req)) }, outcome, ctx)
            case "delete":
                try check(result { try store.deleteRange(try! .init(jsonString: req)) }, outcome, ctx)
            case "range":
                try check(result { try store.range(try! .init(jsonString: req)) }, outcome, ctx)
            case "txn":
                try check(result { try store.txn(try! .init(jsonString: req)) }, outcome, ctx)
            case "compact":
                try check(result { try store.compact(try! Etcdserverpb_CompactionRequest(jsonString: req)) }, outcome, ctx)
            default:
                Issue.record("unknown op \(op)")
            }
            checked += 1
        }
        #expect(checked > 1000)
    }

    func check<R: SwiftProtobuf.Message & Equatable>(_ got: Result<R, MVCCError>, _ outcome: Substring,
                                                     _ ctx: String) throws {
        if outcome.hasPrefix("ERR:") {
            let want = Self.error(outcome.dropFirst(4))
            #expect(want != nil, "unknown etcd error in \(ctx)")
            switch got {
            case .success(let r): Issue.record("\(ctx): expected \(outcome), got \(r)")
            case .failure(let e): #expect(e == want, "\(ctx)")
            }
            return
        }
        #expect(outcome.hasPrefix("OK:"))
        var want = try R(jsonString: String(outcome.dropFirst(3)))
        // Drop what the server (not the store) fills in: the top-level header's ids and term.
        guard var header = want.headerField else { Issue.record("no header"); return }
        header.clusterID = 0
        header.memberID = 0
        header.raftTerm = 0
        want.headerField = header
        switch got {
        case .success(let r):
            if r != want {
                Issue.record("\(ctx)\n got: \((try? r.jsonString()) ?? "")\nwant: \((try? want.jsonString()) ?? "")")
            }
        case .failure(let e):
            Issue.record("\(ctx): expected \(outcome), got \(e)")
        }
    }
}

protocol HasHeader {
    var headerField: Etcdserverpb_ResponseHeader? { get set }
}

extension SwiftProtobuf.Message {
    var headerField: Etcdserverpb_ResponseHeader? {
        get { (self as? HasHeader)?.headerField }
        set {
            guard var h = self as? HasHeader else { return }
            h.headerField = newValue
            self = h as! Self
        }
    }
}

extension Etcdserverpb_PutResponse: HasHeader {
    var headerField: Etcdserverpb_ResponseHeader? { get { header } set { header = newValue! } }
}
extension Etcdserverpb_DeleteRangeResponse: HasHeader {
    var headerField: Etcdserverpb_ResponseHeader? { get { header } set { header = newValue! } }
}
extension Etcdserverpb_RangeResponse: HasHeader {
    var headerField: Etcdserverpb_ResponseHeader? { get { header } set { header = newValue! } }
}
extension Etcdserverpb_TxnResponse: HasHeader {
    var headerField: Etcdserverpb_ResponseHeader? { get { header } set { header = newValue! } }
}
extension Etcdserverpb_CompactionResponse: HasHeader {
    var headerField: Etcdserverpb_ResponseHeader? { get { header } set { header = newValue! } }
}
