import Foundation
import Testing
import EtcdProto
@testable import MVCC

/// Every RangeRequest option, as etcdserver/apply.go applies it.
@Suite struct RangeTests {
    /// a=1@2, b=2@3, c=3@4, d=4@5, e=5@6; then b updated @7 (version 2).
    func fixture() throws -> KVStore {
        let store = KVStore()
        for (i, k) in ["a", "b", "c", "d", "e"].enumerated() {
            try store.put(k, "\(i + 1)")
        }
        try store.put("b", "9")
        return store
    }

    @Test func rangeEndForms() throws {
        let store = try fixture()
        #expect(keys(try store.get("b")) == ["b"])                 // single key
        #expect(keys(try store.get("bb")) == [])                   // missing single key
        #expect(keys(try store.get("b", "d")) == ["b", "c"])       // [b, d)
        #expect(keys(try store.get("b", fromKey)) == ["b", "c", "d", "e"])  // >= b
        #expect(keys(try store.get(fromKey, fromKey)) == ["a", "b", "c", "d", "e"])  // everything
        #expect(keys(try store.get("c", "c")) == [])               // empty interval
        #expect(keys(try store.get("d", "b")) == [])               // inverted interval
        #expect(keys(try store.get("a", "a\u{0}")) == ["a"])
        #expect(try store.get("b", "d").count == 2)
    }

    @Test func limitMoreAndCount() throws {
        let store = try fixture()
        let r = try store.get("a", fromKey) { $0.limit = 2 }
        #expect(keys(r) == ["a", "b"])
        #expect(r.more)
        #expect(r.count == 5)

        let exact = try store.get("a", fromKey) { $0.limit = 5 }
        #expect(keys(exact).count == 5)
        #expect(!exact.more)
        #expect(exact.count == 5)

        let negative = try store.get("a", fromKey) { $0.limit = -1 }  // no limit
        #expect(keys(negative).count == 5)
        #expect(!negative.more)

        let huge = try store.get("a", fromKey) { $0.limit = .max }
        #expect(keys(huge).count == 5)
        #expect(!huge.more)
    }

    @Test func countOnlyAndKeysOnly() throws {
        let store = try fixture()
        let c = try store.get("a", fromKey) { $0.countOnly = true; $0.limit = 1 }
        #expect(c.kvs.isEmpty)
        #expect(c.count == 5)
        #expect(!c.more)  // no kvs, so never `more`
        #expect(c.header.revision == 7)

        let k = try store.get("a", "c") { $0.keysOnly = true }
        #expect(k.kvs == [kv("a", "", create: 2, mod: 2, version: 1), kv("b", "", create: 3, mod: 7, version: 2)])
    }

    @Test func countIsTakenBeforeRevisionFilters() throws {
        let store = try fixture()
        // mod revisions: a2 b7 c4 d5 e6; create: a2 b3 c4 d5 e6
        let r = try store.get("a", fromKey) { $0.minModRevision = 5 }
        #expect(keys(r) == ["b", "d", "e"])
        #expect(r.count == 5)
        #expect(keys(try store.get("a", fromKey) { $0.maxModRevision = 5 }) == ["a", "c", "d"])
        #expect(keys(try store.get("a", fromKey) { $0.minCreateRevision = 4 }) == ["c", "d", "e"])
        #expect(keys(try store.get("a", fromKey) { $0.maxCreateRevision = 3 }) == ["a", "b"])
        let both = try store.get("a", fromKey) {
            $0.minModRevision = 3; $0.maxModRevision = 6; $0.minCreateRevision = 5
        }
        #expect(keys(both) == ["d", "e"])
        #expect(both.count == 5)
        // Filters disable the early limit: limit applies to the filtered list.
        let lim = try store.get("a", fromKey) { $0.minModRevision = 5; $0.limit = 2 }
        #expect(keys(lim) == ["b", "d"])
        #expect(lim.more)
        #expect(lim.count == 5)
        // A filter that removes everything still leaves `count`.
        let none = try store.get("a", fromKey) { $0.minModRevision = 100; $0.limit = 1 }
        #expect(none.kvs.isEmpty)
        #expect(!none.more)
        #expect(none.count == 5)
    }

    @Test func sortOrders() throws {
        let store = try fixture()
        func sorted(_ order: Etcdserverpb_RangeRequest.SortOrder, _ target: Etcdserverpb_RangeRequest.SortTarget,
                    limit: Int64 = 0) throws -> [String] {
            keys(try store.get("a", fromKey) { $0.sortOrder = order; $0.sortTarget = target; $0.limit = limit })
        }
        #expect(try sorted(.none, .key) == ["a", "b", "c", "d", "e"])
        #expect(try sorted(.ascend, .key) == ["a", "b", "c", "d", "e"])
        #expect(try sorted(.descend, .key) == ["e", "d", "c", "b", "a"])
        // Mod: a2 b7 c4 d5 e6
        #expect(try sorted(.ascend, .mod) == ["a", "c", "d", "e", "b"])
        #expect(try sorted(.descend, .mod) == ["b", "e", "d", "c", "a"])
        // NONE with a target other than KEY means ascending.
        #expect(try sorted(.none, .mod) == ["a", "c", "d", "e", "b"])
        // Value: a1 b9 c3 d4 e5
        #expect(try sorted(.descend, .value) == ["b", "e", "d", "c", "a"])
        #expect(try sorted(.ascend, .create) == ["a", "b", "c", "d", "e"])
        #expect(try sorted(.descend, .create) == ["e", "d", "c", "b", "a"])
        // Version: b2, others 1 — ties keep key order for short lists (Go insertion sort).
        #expect(try sorted(.ascend, .version) == ["a", "c", "d", "e", "b"])
        #expect(try sorted(.descend, .version) == ["b", "a", "c", "d", "e"])
        // Limit applies after sorting, and `more` is set.
        let top = try store.get("a", fromKey) { $0.sortOrder = .descend; $0.sortTarget = .mod; $0.limit = 2 }
        #expect(keys(top) == ["b", "e"])
        #expect(top.more)
        #expect(top.count == 5)
    }

    @Test func sortWithoutOrderOnlySortsTheFirstLimitPlusOneKeys() throws {
        // etcd quirk (checked on etcd 3.4.23): with sort_order NONE the limit is not lifted,
        // so a target other than KEY sorts only the first limit+1 keys.
        let store = KVStore()
        for (k, v) in [("a", "3"), ("b", "1"), ("c", "2"), ("d", "0")] { try store.put(k, v) }
        let none = try store.get("a", fromKey) { $0.limit = 2; $0.sortTarget = .value }
        #expect(keys(none) == ["b", "c"])
        #expect(none.more)
        #expect(none.count == 4)
        let asc = try store.get("a", fromKey) { $0.limit = 2; $0.sortTarget = .value; $0.sortOrder = .ascend }
        #expect(keys(asc) == ["d", "b"])
        #expect(asc.more)
    }

    @Test func revisionRules() throws {
        let store = try fixture()  // current 7
        #expect(keys(try store.get("a", fromKey, rev: 4)) == ["a", "b", "c"])
        #expect(try store.get("b", rev: 4).kvs.first?.value == b("2"))
        #expect(try store.get("a", fromKey, rev: 4).header.revision == 7)
        #expect(try store.get("a", fromKey, rev: 7).kvs.count == 5)
        #expect(mvccError { try store.get("a", rev: 8) } == .futureRevision)
        // A negative revision reads the current state.
        #expect(try store.get("b", rev: -5).kvs.first?.value == b("9"))

        try store.compact(4)
        #expect(mvccError { try store.get("a", rev: 3) } == .compacted)
        // The compacted revision itself is still readable.
        #expect(keys(try store.get("a", fromKey, rev: 4)) == ["a", "b", "c"])
        #expect(try store.get("b", rev: 4).kvs.first?.value == b("2"))
        #expect(keys(try store.get("a", fromKey, rev: 5)) == ["a", "b", "c", "d"])
        // future is checked before compacted; negative still means current
        #expect(mvccError { try store.get("a", rev: 100) } == .futureRevision)
        #expect(try store.get("a", rev: -1).kvs.count == 1)
    }

    @Test func serializableIsIgnored() throws {
        let store = try fixture()
        #expect(try store.get("a", fromKey) { $0.serializable = true } == (try store.get("a", fromKey)))
    }

    @Test func binaryKeysSortByUnsignedBytes() throws {
        let store = KVStore()
        var r = Etcdserverpb_PutRequest()
        for bytes: [UInt8] in [[0xff], [0x00, 0x01], [0x7f], [0x80], [0x01]] {
            r.key = Data(bytes)
            _ = try store.put(r)
        }
        var q = Etcdserverpb_RangeRequest()
        q.key = Data([0x00])
        q.rangeEnd = Data([0x00])
        #expect(try store.range(q).kvs.map { [UInt8]($0.key) } == [[0x00, 0x01], [0x01], [0x7f], [0x80], [0xff]])
        q.key = Data([0x7f])
        q.rangeEnd = Data([0xff])
        #expect(try store.range(q).kvs.map { [UInt8]($0.key) } == [[0x7f], [0x80]])
    }
}
