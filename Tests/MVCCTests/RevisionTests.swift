import Foundation
import Testing
import EtcdProto
@testable import MVCC

/// Revisions, versions, generations and events of plain puts and deletes.
@Suite struct RevisionTests {
    @Test func freshStoreIsAtRevisionOne() throws {
        let store = KVStore()
        #expect(store.currentRevision == 1)
        #expect(store.compactedRevision == 0)
        #expect(store.compactMainRevision == -1)
        let r = try store.get("a", fromKey)
        #expect(r.header.revision == 1)
        #expect(r.hasHeader)
        #expect(r.kvs.isEmpty)
        #expect(r.count == 0)
        #expect(!r.more)
    }

    @Test func putCreatesThenUpdates() throws {
        let store = KVStore()
        let p1 = try store.put("foo", "bar")
        #expect(p1.header.revision == 2)
        #expect(!p1.hasPrevKv)
        #expect(store.currentRevision == 2)
        #expect(try store.get("foo").kvs == [kv("foo", "bar", create: 2, mod: 2, version: 1)])

        let p2 = try store.put("foo", "baz")
        #expect(p2.header.revision == 3)
        #expect(try store.get("foo").kvs == [kv("foo", "baz", create: 2, mod: 3, version: 2)])

        try store.put("other", "x")
        try store.put("foo", "qux")
        #expect(try store.get("foo").kvs == [kv("foo", "qux", create: 2, mod: 5, version: 3)])
    }

    @Test func deleteEndsGenerationAndRecreateResetsVersion() throws {
        let store = KVStore()
        try store.put("k", "v1")  // 2
        try store.put("k", "v2")  // 3
        let d = try store.del("k")  // 4
        #expect(d.deleted == 1)
        #expect(d.header.revision == 4)
        #expect(try store.get("k").kvs.isEmpty)
        #expect(try store.get("k").count == 0)

        try store.put("k", "v3")  // 5
        #expect(try store.get("k").kvs == [kv("k", "v3", create: 5, mod: 5, version: 1)])
        try store.put("k", "v4")  // 6
        #expect(try store.get("k").kvs == [kv("k", "v4", create: 5, mod: 6, version: 2)])

        // The history is readable at every revision.
        #expect(try store.get("k", rev: 1).kvs.isEmpty)
        #expect(try store.get("k", rev: 2).kvs == [kv("k", "v1", create: 2, mod: 2, version: 1)])
        #expect(try store.get("k", rev: 3).kvs == [kv("k", "v2", create: 2, mod: 3, version: 2)])
        #expect(try store.get("k", rev: 4).kvs.isEmpty)
        #expect(try store.get("k", rev: 5).kvs == [kv("k", "v3", create: 5, mod: 5, version: 1)])
        #expect(try store.get("k", rev: 6).kvs == [kv("k", "v4", create: 5, mod: 6, version: 2)])
        // The header always carries the current revision, not the requested one.
        #expect(try store.get("k", rev: 3).header.revision == 6)
    }

    @Test func deletingNothingDoesNotBumpRevision() throws {
        let store = KVStore()
        try store.put("a", "1")
        let d = try store.del("zzz")
        #expect(d.deleted == 0)
        #expect(d.header.revision == 2)
        #expect(store.currentRevision == 2)
        #expect(store.lastWriteEvents.isEmpty)
        // Deleting an already deleted key does nothing either.
        try store.del("a")
        #expect(store.currentRevision == 3)
        let again = try store.del("a")
        #expect(again.deleted == 0)
        #expect(again.header.revision == 3)
        #expect(store.currentRevision == 3)
    }

    @Test func multiKeyDeleteUsesSubRevisionsOfOneRevision() throws {
        let store = KVStore()
        try store.put("a", "1")
        try store.put("b", "2")
        try store.put("c", "3")
        let d = try store.del("a", fromKey)
        #expect(d.deleted == 3)
        #expect(d.header.revision == 5)
        #expect(store.currentRevision == 5)
        let evs = store.lastWriteEvents
        #expect(evs.map(\.type) == [.delete, .delete, .delete])
        #expect(evs.map { s($0.kv.key) } == ["a", "b", "c"])
        #expect(evs.allSatisfy { $0.kv.modRevision == 5 && $0.kv.createRevision == 0 && $0.kv.version == 0 })
        // Internally the tombstones are 5.0, 5.1, 5.2.
        #expect(store.log.entries.suffix(3).map(\.rev) == [Revision(main: 5, sub: 0), Revision(main: 5, sub: 1), Revision(main: 5, sub: 2)])
        #expect(store.log.entries.suffix(3).allSatisfy { $0.isTombstone })
    }

    @Test func eventsRecordEveryChangeInOrder() throws {
        let store = KVStore()
        try store.put("a", "1")   // 2
        try store.put("a", "2")   // 3
        try store.del("a")        // 4
        try store.put("b", "x")   // 5

        let all = try store.events(since: 1)
        #expect(all.count == 4)
        #expect(all.map(\.type) == [.put, .put, .delete, .put])
        #expect(all[0].kv == kv("a", "1", create: 2, mod: 2, version: 1))
        #expect(all[1].kv == kv("a", "2", create: 2, mod: 3, version: 2))
        var tomb = Mvccpb_KeyValue()
        tomb.key = b("a")
        tomb.modRevision = 4
        #expect(all[2].kv == tomb)
        #expect(!all[2].hasPrevKv)
        #expect(all[3].kv == kv("b", "x", create: 5, mod: 5, version: 1))

        #expect(try store.events(since: 4).map(\.type) == [.delete, .put])
        #expect(try store.events(since: 5).count == 1)
        #expect(try store.events(since: 6).isEmpty)
        #expect(try store.events(since: 0).count == 4)
        #expect(store.lastWriteEvents == [all[3]])
    }

    @Test func failedWriteLeavesNoEventsAndNoRevision() throws {
        let store = KVStore()
        try store.put("a", "1")
        #expect(mvccError { try store.put("missing", "", ignoreValue: true) } == .keyNotFound)
        #expect(store.lastWriteEvents.isEmpty)
        #expect(store.currentRevision == 2)
        #expect(try store.events(since: 1).count == 1)
    }

    @Test func keyIndexGenerationsMatchEtcdLayout() throws {
        // etcd key_index.go example: put(1..) ... as seen through KeyIndex directly.
        let ki = KeyIndex(key: b("foo"))
        ki.put(Revision(main: 2))
        ki.put(Revision(main: 4))
        #expect(ki.tombstone(Revision(main: 6)))
        #expect(!ki.tombstone(Revision(main: 7)))  // not live: etcd ErrRevisionNotFound
        ki.put(Revision(main: 8))
        ki.put(Revision(main: 10))
        #expect(ki.generations.count == 2)
        #expect(ki.generations[0].revs.map(\.main) == [2, 4, 6])
        #expect(ki.generations[1].revs.map(\.main) == [8, 10])
        #expect(ki.get(atRev: 1) == nil)
        #expect(ki.get(atRev: 3)?.modified.main == 2)
        #expect(ki.get(atRev: 5)?.version == 2)
        #expect(ki.get(atRev: 6) == nil)
        #expect(ki.get(atRev: 7) == nil)
        #expect(ki.get(atRev: 9)?.created.main == 8)
        #expect(ki.get(atRev: 100)?.version == 2)
        #expect(ki.since(5).map(\.main) == [6, 8, 10])
    }
}
