import Foundation
import Testing
import EtcdProto
@testable import MVCC

@Suite struct TxnCompareTests {
    /// k: create 2, mod 3, version 2, value "v2", lease 0.
    func fixture() throws -> KVStore {
        let store = KVStore()
        try store.put("k", "v1")
        try store.put("k", "v2")
        return store
    }

    func holds(_ store: KVStore, _ c: Etcdserverpb_Compare) throws -> Bool {
        try store.txn(txnReq([c])).succeeded
    }

    @Test(arguments: [
        // (target value, equal, greater, less, notEqual) for k's actual attribute
        (CmpValue.version(2), true, false, false, false),
        (CmpValue.version(1), false, true, false, true),
        (CmpValue.version(3), false, false, true, true),
        (CmpValue.create(2), true, false, false, false),
        (CmpValue.create(1), false, true, false, true),
        (CmpValue.create(5), false, false, true, true),
        (CmpValue.mod(3), true, false, false, false),
        (CmpValue.mod(2), false, true, false, true),
        (CmpValue.mod(4), false, false, true, true),
        (CmpValue.value("v2"), true, false, false, false),
        (CmpValue.value("v1"), false, true, false, true),
        (CmpValue.value("v3"), false, false, true, true),
        (CmpValue.value("v"), false, true, false, true),
        (CmpValue.value("v2x"), false, false, true, true),
        (CmpValue.lease(0), true, false, false, false),
        (CmpValue.lease(1), false, false, true, true),
        (CmpValue.lease(-1), false, true, false, true),
    ])
    func everyTargetAndResult(v: CmpValue, eq: Bool, gt: Bool, lt: Bool, ne: Bool) throws {
        let store = try fixture()
        #expect(try holds(store, cmp("k", .equal, v)) == eq)
        #expect(try holds(store, cmp("k", .greater, v)) == gt)
        #expect(try holds(store, cmp("k", .less, v)) == lt)
        #expect(try holds(store, cmp("k", .notEqual, v)) == ne)
    }

    @Test func missingKeyComparesAsZeroExceptValue() throws {
        let store = try fixture()
        #expect(try holds(store, cmp("nope", .equal, .version(0))))
        #expect(try holds(store, cmp("nope", .equal, .create(0))))
        #expect(try holds(store, cmp("nope", .equal, .mod(0))))
        #expect(try holds(store, cmp("nope", .equal, .lease(0))))
        #expect(try holds(store, cmp("nope", .less, .version(1))))
        #expect(try !holds(store, cmp("nope", .greater, .create(0))))
        // VALUE on a missing key always fails, whatever the result.
        #expect(try !holds(store, cmp("nope", .equal, .value(""))))
        #expect(try !holds(store, cmp("nope", .notEqual, .value("x"))))
        #expect(try !holds(store, cmp("nope", .less, .value("x"))))
        // A deleted key is missing too.
        try store.del("k")
        #expect(try holds(store, cmp("k", .equal, .version(0))))
        #expect(try !holds(store, cmp("k", .equal, .value("v2"))))
    }

    @Test func compareOverRangeNeedsEveryKey() throws {
        let store = KVStore()
        try store.put("a1", "x")
        try store.put("a2", "x")
        try store.put("a3", "y")
        #expect(try !holds(store, cmp("a", .equal, .value("x"), end: "b")))
        #expect(try holds(store, cmp("a", .equal, .value("x"), end: "a3")))
        #expect(try holds(store, cmp("a", .greater, .create(1), end: "b")))
        #expect(try holds(store, cmp("a2", .greater, .create(2), end: fromKey)))
        #expect(try !holds(store, cmp("a2", .greater, .create(3), end: fromKey)))
        // Empty range: VALUE fails, the others compare to 0.
        #expect(try !holds(store, cmp("c", .notEqual, .value("z"), end: "d")))
        #expect(try holds(store, cmp("c", .equal, .version(0), end: "d")))
    }

    @Test func allComparesMustHold() throws {
        let store = try fixture()
        #expect(try store.txn(txnReq([cmp("k", .equal, .version(2)), cmp("k", .equal, .value("v2"))])).succeeded)
        #expect(try !store.txn(txnReq([cmp("k", .equal, .version(2)), cmp("k", .equal, .value("v1"))])).succeeded)
        #expect(try store.txn(txnReq([])).succeeded)  // no compare: success
    }

    @Test func compareTargetUnionOfAnotherKindComparesAsZero() throws {
        let store = try fixture()
        var c = cmp("k", .equal, .version(2))
        c.target = .mod
        c.targetUnion = .version(3)  // mod compares against 0, not 3
        #expect(try !holds(store, c))
        c.result = .greater
        #expect(try holds(store, c))
        // Unknown result: true.
        var u = cmp("k", .equal, .version(99))
        u.result = .UNRECOGNIZED(9)
        #expect(try holds(store, u))
    }
}

@Suite struct TxnTests {
    @Test func branchesAndResponses() throws {
        let store = KVStore()
        try store.put("k", "v")  // 2
        let t = txnReq([cmp("k", .equal, .value("v"))],
                       success: [.put(putReq("k", "w", prevKv: true)), .range(rangeReq("k")), .del(delReq("zzz"))],
                       failure: [.put(putReq("f", "x"))])
        let r = try store.txn(t)
        #expect(r.succeeded)
        #expect(r.header.revision == 3)
        #expect(r.responses.count == 3)
        #expect(r.responses[0].responsePut.header.revision == 3)
        #expect(r.responses[0].responsePut.prevKv == kv("k", "v", create: 2, mod: 2, version: 1))
        // The range sees the txn's own earlier write, and reports the txn's revision.
        #expect(r.responses[1].responseRange.kvs == [kv("k", "w", create: 2, mod: 3, version: 2)])
        #expect(r.responses[1].responseRange.header.revision == 3)
        #expect(r.responses[2].responseDeleteRange.deleted == 0)
        #expect(r.responses[2].responseDeleteRange.header.revision == 3)
        #expect(try store.get("f").kvs.isEmpty)

        let f = try store.txn(t)  // value is now "w": failure branch
        #expect(!f.succeeded)
        #expect(f.responses.count == 1)
        #expect(f.responses[0].responsePut.header.revision == 4)
        #expect(f.header.revision == 4)
        #expect(try store.get("f").kvs == [kv("f", "x", create: 4, mod: 4, version: 1)])
    }

    @Test func readsBeforeAnyWriteReportTheStartRevision() throws {
        let store = KVStore()
        try store.put("a", "1")  // 2
        let r = try store.txn(txnReq([], success: [
            .range(rangeReq("a")), .del(delReq("nothing")), .put(putReq("b", "2")), .range(rangeReq("a", fromKey)),
        ]))
        #expect(r.responses[0].responseRange.header.revision == 2)
        #expect(r.responses[1].responseDeleteRange.header.revision == 2)  // nothing changed yet
        #expect(r.responses[2].responsePut.header.revision == 3)
        #expect(r.responses[3].responseRange.header.revision == 3)
        #expect(keys(r.responses[3].responseRange) == ["a", "b"])
        #expect(r.header.revision == 3)
    }

    @Test func oneRevisionForAllWritesWithSubRevisions() throws {
        let store = KVStore()
        try store.put("x", "old")  // 2
        let r = try store.txn(txnReq([], success: [
            .put(putReq("a", "1")), .put(putReq("b", "2")), .del(delReq("x")),
        ]))
        #expect(r.header.revision == 3)
        #expect(store.currentRevision == 3)
        #expect(try store.get("a").kvs == [kv("a", "1", create: 3, mod: 3, version: 1)])
        #expect(try store.get("b").kvs == [kv("b", "2", create: 3, mod: 3, version: 1)])
        #expect(store.log.entries.suffix(3).map(\.rev) == [Revision(main: 3, sub: 0), Revision(main: 3, sub: 1), Revision(main: 3, sub: 2)])
        #expect(store.lastWriteEvents.map(\.type) == [.put, .put, .delete])
        #expect(try store.events(since: 3) == store.lastWriteEvents)
    }

    @Test func samKeyTwiceInOneTxn() throws {
        // The gRPC layer rejects duplicate keys, but the store follows etcd's mvcc.
        let store = KVStore()
        let r = try store.txn(txnReq([], success: [.put(putReq("k", "1")), .put(putReq("k", "2", prevKv: true))]))
        #expect(r.responses[1].responsePut.prevKv == kv("k", "1", create: 2, mod: 2, version: 1))
        #expect(try store.get("k").kvs == [kv("k", "2", create: 2, mod: 2, version: 2)])
        // delete then put in one txn: a new generation at the same main revision
        let d = try store.txn(txnReq([], success: [.del(delReq("k")), .put(putReq("k", "3")), .range(rangeReq("k"))]))
        #expect(d.responses[2].responseRange.kvs == [kv("k", "3", create: 3, mod: 3, version: 1)])
        #expect(try store.get("k", rev: 2).kvs == [kv("k", "2", create: 2, mod: 2, version: 2)])
    }

    @Test func txnWithoutWritesKeepsRevision() throws {
        let store = KVStore()
        try store.put("a", "1")
        let ro = try store.txn(txnReq([cmp("a", .equal, .value("1"))], success: [.range(rangeReq("a"))]))
        #expect(ro.header.revision == 2)
        let noop = try store.txn(txnReq([], success: [.del(delReq("missing"))]))
        #expect(noop.header.revision == 2)
        let empty = try store.txn(txnReq([cmp("a", .equal, .value("2"))]))
        #expect(!empty.succeeded)
        #expect(empty.responses.isEmpty)
        #expect(empty.header.revision == 2)
        #expect(store.currentRevision == 2)
        #expect(store.lastWriteEvents.isEmpty)
    }

    @Test func nestedTxnsDecideOnTheStateBeforeTheTxn() throws {
        let store = KVStore()
        try store.put("k", "0")  // 2
        // The outer txn writes k=1; the nested compare still sees k=0.
        let inner = txnReq([cmp("k", .equal, .value("0"))],
                           success: [.put(putReq("inner", "saw0")), .range(rangeReq("k"))],
                           failure: [.put(putReq("inner", "saw1"))])
        let outer = txnReq([], success: [.put(putReq("k", "1")), .txn(inner), .range(rangeReq("inner"))])
        let r = try store.txn(outer)
        #expect(r.succeeded)
        #expect(r.header.revision == 3)
        let nested = r.responses[1].responseTxn
        #expect(nested.succeeded)
        #expect(nested.hasHeader)
        #expect(nested.header == Etcdserverpb_ResponseHeader())  // etcd leaves nested headers empty
        #expect(nested.responses.count == 2)
        #expect(nested.responses[0].responsePut.header.revision == 3)
        #expect(nested.responses[1].responseRange.kvs.first?.value == b("1"))  // reads do see the write
        #expect(r.responses[2].responseRange.kvs == [kv("inner", "saw0", create: 3, mod: 3, version: 1)])
    }

    @Test func deeplyNestedFailureBranch() throws {
        let store = KVStore()
        let lvl2 = txnReq([cmp("x", .greater, .version(0))], success: [.put(putReq("s", "1"))], failure: [.put(putReq("f2", "1"))])
        let lvl1 = txnReq([cmp("x", .equal, .version(0))], success: [.txn(lvl2), .txn(lvl2)], failure: [])
        let r = try store.txn(txnReq([cmp("x", .equal, .value("nope"))], success: [], failure: [.txn(lvl1)]))
        #expect(!r.succeeded)
        let l1 = r.responses[0].responseTxn
        #expect(l1.succeeded)
        #expect(l1.responses.map { $0.responseTxn.succeeded } == [false, false])
        #expect(l1.responses[0].responseTxn.responses[0].responsePut.header.revision == 2)
        #expect(try store.get("f2").kvs == [kv("f2", "1", create: 2, mod: 2, version: 2)])
    }

    @Test func checksRunBeforeAnythingIsApplied() throws {
        let store = KVStore()
        try store.put("a", "1")  // 2
        // ignore_value on a missing key fails the whole txn, even after a good put.
        let bad = txnReq([], success: [.put(putReq("b", "x")), .put(putReq("missing", "", ignoreValue: true))])
        #expect(mvccError { try store.txn(bad) } == .keyNotFound)
        #expect(store.currentRevision == 2)
        #expect(try store.get("b").kvs.isEmpty)
        // ...also inside a nested txn on the taken path...
        let nestedBad = txnReq([], success: [.txn(txnReq([], success: [.put(putReq("missing", "", ignoreLease: true))]))])
        #expect(mvccError { try store.txn(nestedBad) } == .keyNotFound)
        // ...but not on a branch that is not taken.
        let untaken = txnReq([], success: [.put(putReq("c", "1"))], failure: [.put(putReq("missing", "", ignoreValue: true))])
        #expect(try store.txn(untaken).succeeded)
        // The check uses the state before the txn: a key put earlier in the same txn does not count.
        let sameTxn = txnReq([], success: [.put(putReq("new", "1")), .txn(txnReq([], success: [.put(putReq("new", "", ignoreValue: true))]))])
        #expect(mvccError { try store.txn(sameTxn) } == .keyNotFound)
        // Leases.
        #expect(mvccError { try store.txn(txnReq([], success: [.put(putReq("a", "1", lease: 9))])) } == .leaseNotFound)
        // In a txn the ignore check comes before the lease check.
        #expect(mvccError { try store.txn(txnReq([], success: [.put(putReq("zz", "", lease: 9, ignoreValue: true))])) } == .keyNotFound)
    }

    @Test func rangeRevisionChecks() throws {
        let store = KVStore()
        try store.put("a", "1")  // 2
        try store.put("a", "2")  // 3
        #expect(mvccError { try store.txn(txnReq([], success: [.range(rangeReq("a", rev: 4))])) } == .futureRevision)
        // A revision the txn's own write will create is still "future": checked before the txn.
        #expect(mvccError { try store.txn(txnReq([], success: [.put(putReq("b", "1")), .range(rangeReq("a", rev: 4))])) } == .futureRevision)
        #expect(store.currentRevision == 3)
        let past = try store.txn(txnReq([], success: [.put(putReq("b", "1")), .range(rangeReq("a", rev: 2))]))
        #expect(past.responses[1].responseRange.kvs.first?.value == b("1"))
        #expect(past.responses[1].responseRange.header.revision == 4)
        // A put error is reported before a range error.
        let both = txnReq([], success: [.range(rangeReq("a", rev: 99)), .put(putReq("nope", "", ignoreValue: true))])
        #expect(mvccError { try store.txn(both) } == .keyNotFound)
        // Read-only txn with a future range.
        #expect(mvccError { try store.txn(txnReq([], success: [.range(rangeReq("a", rev: 5))])) } == .futureRevision)

        // Negative revision: current state before any compaction (compactMainRev is -1)...
        #expect(try store.txn(txnReq([], success: [.range(rangeReq("a", rev: -1))])).responses[0].responseRange.kvs.count == 1)
        // ...but "compacted" for -2 (< -1), and for any negative revision after a compaction (etcd quirk).
        #expect(mvccError { try store.txn(txnReq([], success: [.range(rangeReq("a", rev: -2))])) } == .compacted)
        try store.compact(3)
        #expect(mvccError { try store.txn(txnReq([], success: [.range(rangeReq("a", rev: -1))])) } == .compacted)
        #expect(mvccError { try store.txn(txnReq([], success: [.range(rangeReq("a", rev: 2))])) } == .compacted)
        #expect(try store.txn(txnReq([], success: [.range(rangeReq("a", rev: 3))])).responses[0].responseRange.kvs.count == 1)
        // The plain range treats negative revisions as "current".
        #expect(try store.get("a", rev: -1).kvs.count == 1)
    }

    @Test func emptyRequestOpGetsAnEmptyResponse() throws {
        let store = KVStore()
        let r = try store.txn(txnReq([], success: [Etcdserverpb_RequestOp()]))
        #expect(r.responses == [Etcdserverpb_ResponseOp()])
        #expect(r.header.revision == 1)
    }

    @Test func ignoreValueAfterDeleteInSameTxnDoesNotCrash() throws {
        // etcd panics here (the gRPC duplicate-key check normally prevents it, except for a
        // from-key delete); swetcd writes the put without the ignore flags.
        let store = KVStore()
        try store.put("a", "1")
        let r = try store.txn(txnReq([], success: [.del(delReq("a", fromKey)), .put(putReq("a", "", ignoreValue: true))]))
        #expect(r.header.revision == 3)
        #expect(try store.get("a").kvs == [kv("a", "", create: 3, mod: 3, version: 1)])
    }
}
