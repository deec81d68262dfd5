import Foundation
import Testing
import EtcdProto
@testable import MVCC

@Suite struct CompactionTests {
    @Test func errors() throws {
        let store = KVStore()
        #expect(mvccError { try store.compact(2) } == .futureRevision)
        // Before the first compaction etcd's compactMainRev is -1, so 0 is accepted once.
        #expect(mvccError { try store.compact(-1) } == .compacted)
        #expect(try store.compact(0).header.revision == 1)
        #expect(store.compactedRevision == 0)
        #expect(store.compactMainRevision == 0)
        #expect(mvccError { try store.compact(0) } == .compacted)
        #expect(try store.compact(1).header.revision == 1)  // compacting at the current revision is fine
        #expect(mvccError { try store.compact(1) } == .compacted)
        try store.put("a", "1")
        try store.put("a", "2")
        try store.compact(3)
        #expect(store.compactedRevision == 3)
        #expect(mvccError { try store.compact(2) } == .compacted)
        #expect(mvccError { try store.compact(3) } == .compacted)
        #expect(mvccError { try store.compact(4) } == .futureRevision)
    }

    @Test func keepsLatestRevisionAtOrBelowCompactRevision() throws {
        let store = KVStore()
        try store.put("a", "a1")  // 2
        try store.put("b", "b1")  // 3
        try store.put("a", "a2")  // 4
        try store.put("c", "c1")  // 5
        try store.del("c")        // 6
        try store.put("b", "b2")  // 7
        try store.put("d", "d1")  // 8
        try store.del("d")        // 9
        try store.put("d", "d2")  // 10

        // Snapshot every readable revision before compaction.
        var before: [Int64: Etcdserverpb_RangeResponse] = [:]
        for rev in Int64(1)...10 {
            before[rev] = try store.get(fromKey, fromKey, rev: rev)
        }

        let resp = try store.compact(7)
        #expect(resp.header.revision == 10)
        #expect(store.currentRevision == 10)

        for rev in Int64(1)..<7 {
            #expect(mvccError { try store.get(fromKey, fromKey, rev: rev) } == .compacted)
        }
        for rev in Int64(7)...10 {
            #expect(try store.get(fromKey, fromKey, rev: rev) == before[rev])
        }
        #expect(try store.get("a", rev: 7).kvs == [kv("a", "a2", create: 2, mod: 4, version: 2)])

        // Retained: a@4 (a's latest <= 7), b@7, and everything after 7 (d@8, d's tombstone@9,
        // d@10). c (deleted at 6 <= 7) is gone entirely, from the log and from the index.
        #expect(store.log.entries.map(\.rev.main) == [4, 7, 8, 9, 10])
        #expect(store.retainedRevisionCount == 5)
        #expect(store.index.all.map { s($0.key) } == ["a", "b", "d"])
        #expect(store.indexedKeyCount == 3)

        // Events: everything after the compact revision, and what was kept at or below it.
        #expect(try store.events(since: 8).map(\.kv.modRevision) == [8, 9, 10])
        #expect(try store.events(since: 1).map(\.kv.modRevision) == [4, 7, 8, 9, 10])
    }

    @Test func tombstoneAtCompactRevisionIsDropped() throws {
        let store = KVStore()
        try store.put("k", "1")  // 2
        try store.del("k")       // 3
        try store.compact(3)
        #expect(store.retainedRevisionCount == 0)
        #expect(store.indexedKeyCount == 0)
        #expect(try store.get("k", rev: 3).kvs.isEmpty)
        // The key can be created again from scratch.
        try store.put("k", "2")
        #expect(try store.get("k").kvs == [kv("k", "2", create: 4, mod: 4, version: 1)])
    }

    @Test func versionsSurviveCompaction() throws {
        let store = KVStore()
        for i in 1...5 { try store.put("k", "\(i)") }  // 2...6, version 5
        try store.compact(4)
        #expect(try store.get("k", rev: 4).kvs == [kv("k", "3", create: 2, mod: 4, version: 3)])
        try store.put("k", "6")
        #expect(try store.get("k").kvs == [kv("k", "6", create: 2, mod: 7, version: 6)])
        try store.compact(7)
        try store.put("k", "7")
        #expect(try store.get("k").kvs == [kv("k", "7", create: 2, mod: 8, version: 7)])
        #expect(store.retainedRevisionCount == 2)
    }

    @Test func repeatedCompactionsOfAMultiGenerationKey() throws {
        let store = KVStore()
        try store.put("k", "1")  // 2
        try store.del("k")       // 3
        try store.put("k", "2")  // 4
        try store.put("k", "3")  // 5
        try store.del("k")       // 6
        try store.put("k", "4")  // 7
        try store.compact(2)
        #expect(try store.get("k", rev: 2).kvs.first?.value == b("1"))
        #expect(try store.get("k", rev: 3).kvs.isEmpty)
        try store.compact(4)
        #expect(try store.get("k", rev: 4).kvs == [kv("k", "2", create: 4, mod: 4, version: 1)])
        #expect(try store.get("k", rev: 5).kvs == [kv("k", "3", create: 4, mod: 5, version: 2)])
        #expect(try store.get("k", rev: 6).kvs.isEmpty)
        try store.compact(6)
        #expect(try store.get("k", rev: 6).kvs.isEmpty)
        #expect(try store.get("k").kvs == [kv("k", "4", create: 7, mod: 7, version: 1)])
        #expect(store.log.entries.map(\.rev.main) == [7])
        #expect(store.index.all[0].generations.count == 1)
    }

    @Test func compactionInsideATxnRevisionIsAllowedAtTheBoundary() throws {
        let store = KVStore()
        _ = try store.txn(txnReq([], success: [.put(putReq("a", "1")), .put(putReq("b", "1"))]))  // 2.0, 2.1
        _ = try store.txn(txnReq([], success: [.put(putReq("a", "2")), .del(delReq("b"))]))       // 3.0, 3.1
        try store.compact(2)
        #expect(keys(try store.get(fromKey, fromKey, rev: 2)) == ["a", "b"])
        try store.compact(3)
        #expect(keys(try store.get(fromKey, fromKey, rev: 3)) == ["a"])
        #expect(store.log.entries.map(\.rev) == [Revision(main: 3, sub: 0)])
    }
}
