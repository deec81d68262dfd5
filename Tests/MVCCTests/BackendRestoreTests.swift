import Backend
import EtcdProto
import FileIO
import Foundation
import Testing
@testable import MVCC

/// The store on a bbolt file through power cuts: writes are applied as Raft entries (index i
/// for the i-th request, recorded as the consistent index), the backend commits at random
/// points, the power fails at random points (unsynced writes lost, last page torn), and the
/// store reopened on the rebooted file must hold exactly a prefix of the entries (up to its
/// consistent_index); replaying the rest (the WAL's job) must give back a store that answers
/// every read at every revision, and the event history, like a store that never crashed.
@Suite struct BackendRestoreTests {
    enum Request {
        case put(Etcdserverpb_PutRequest)
        case delete(Etcdserverpb_DeleteRangeRequest)
        case txn(Etcdserverpb_TxnRequest)
        case compact(Int64)
    }

    static func openStore(_ fs: any FileSystem) throws -> KVStore {
        let db = try BoltDB.open(path: "/d/db", fileSystem: fs, options: .etcd)
        var o = BatchedBackend.Options()
        o.batchLimit = 1 << 30  // commits only where the test says, so a seed replays exactly
        return try KVStore(backend: BatchedBackend(db: db, options: o))
    }

    static func apply(_ r: Request, _ s: KVStore) {
        switch r {
        case .put(let p): _ = try? s.put(p)
        case .delete(let d): _ = try? s.deleteRange(d)
        case .txn(let t): _ = try? s.txn(t)
        case .compact(let at):
            var c = Etcdserverpb_CompactionRequest()
            c.revision = at
            _ = try? s.compact(c)
        }
    }

    @Test(arguments: 1...16)
    func powerCutsThenReplayGiveTheSameStore(seed: Int) throws {
        var fs = FaultyFileSystem(seed: UInt64(seed))
        try fs.createDirectoriesDurably("/d")
        var store = try Self.openStore(fs)
        let reference = KVStore()
        var gen = RequestGen(rng: SplitMix64(seed: UInt64(seed) &* 7919), model: ReferenceModel())
        var log: [Request] = []
        var crashes = 0, replayed = 0
        for step in 0..<1500 {
            let r: Request
            switch gen.int(100) {
            case 0..<45: r = .put(gen.putReq(inTxn: false))
            case 45..<60: r = .delete(gen.delReq())
            case 60..<97: r = .txn(gen.txnReq(0))
            default: r = .compact(max(reference.compactedRevision, 1) + Int64(gen.int(Int(reference.currentRevision - reference.compactedRevision) / 2 + 1)))
            }
            log.append(r)
            store.setConsistentIndex(UInt64(log.count))  // before applying, as the server does
            Self.apply(r, store)
            Self.apply(r, reference)
            if gen.chance(4) { try store.backend.commit() }
            if gen.chance(1) || step == 1499 {
                // Power cut: what the last commit made durable survives, nothing else.
                fs.crash()
                try? store.backend.stop()
                fs = fs.reboot()
                store = try Self.openStore(fs)
                let ci = Int(store.consistentIndex)
                if ProcessInfo.processInfo.environment["DEBUG_RESTORE"] != nil {
                    print("seed \(seed) step \(step): ci \(ci) of \(log.count), restored rev \(store.currentRevision) compact \(store.compactedRevision), reference rev \(reference.currentRevision) compact \(reference.compactedRevision)")
                }
                #expect(ci <= log.count, "seed \(seed): consistent index past the log")
                try #require(try store.backend.db.view { try $0.check() }.isEmpty, "seed \(seed): bbolt invariants")
                for i in ci..<log.count {
                    store.setConsistentIndex(UInt64(i + 1))
                    Self.apply(log[i], store)
                    replayed += 1
                }
                crashes += 1
                try Self.expectSame(store, reference, "seed \(seed) step \(step)")
            }
        }
        // The next write lands on the same revision with the same versions.
        var p = Etcdserverpb_PutRequest()
        p.key = Data("k1".utf8)
        p.value = Data("probe".utf8)
        p.prevKv = true
        #expect(try store.put(p) == reference.put(p), "seed \(seed): next put")
        #expect(crashes >= 2)
        #expect(replayed > 0)
    }

    /// Every revision from the compaction on, in full, plus the events after it.
    static func expectSame(_ a: KVStore, _ b: KVStore, _ context: String) throws {
        #expect(a.currentRevision == b.currentRevision, "\(context): revision")
        #expect(a.compactedRevision == b.compactedRevision, "\(context): compacted revision")
        let first = max(b.compactedRevision, 1)
        for at in first...b.currentRevision {
            let r = wholeKeySpace(at: at)
            #expect(try a.range(r) == b.range(r), "\(context): keys at revision \(at)")
        }
        #expect(try a.events(since: b.compactedRevision + 1) == b.events(since: b.compactedRevision + 1), "\(context): events")
    }

    @Test func restoreKeepsVersionsOfCompactedKeys() throws {
        let fs = FaultyFileSystem(seed: 9)
        try fs.createDirectoriesDurably("/d")
        let s = try Self.openStore(fs)
        var p = Etcdserverpb_PutRequest()
        p.key = Data("a".utf8)
        for v in 0..<5 { p.value = Data("\(v)".utf8); _ = try s.put(p) }   // versions 1...5, rev 2...6
        var c = Etcdserverpb_CompactionRequest()
        c.revision = 5
        _ = try s.compact(c)
        try s.backend.stop()
        try s.backend.db.close()
        let r = try Self.openStore(fs)
        #expect(r.currentRevision == 6)
        #expect(r.compactedRevision == 5)
        p.value = Data("next".utf8)
        let resp = try r.put(p)
        #expect(resp.header.revision == 7)
        var get = Etcdserverpb_RangeRequest()
        get.key = Data("a".utf8)
        #expect(try r.range(get).kvs.first?.version == 6)
        #expect(try r.range(get).kvs.first?.createRevision == 2)
    }
}
