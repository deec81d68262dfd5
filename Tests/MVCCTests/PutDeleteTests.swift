import Foundation
import Testing
import EtcdProto
@testable import MVCC

@Suite struct PutTests {
    @Test func prevKv() throws {
        let store = KVStore()
        let first = try store.put("k", "v1", prevKv: true)
        #expect(!first.hasPrevKv)  // nothing before
        let second = try store.put("k", "v2", prevKv: true)
        #expect(second.prevKv == kv("k", "v1", create: 2, mod: 2, version: 1))
        try store.del("k")
        let third = try store.put("k", "v3", prevKv: true)
        #expect(!third.hasPrevKv)  // deleted keys have no previous value
        #expect(try store.put("k", "v4").hasPrevKv == false)  // not asked for
    }

    @Test func ignoreValueKeepsValueAndBumpsVersion() throws {
        let store = KVStore()
        try store.put("k", "keep")
        let r = try store.put("k", "", prevKv: true, ignoreValue: true)
        #expect(r.header.revision == 3)
        #expect(r.prevKv == kv("k", "keep", create: 2, mod: 2, version: 1))
        #expect(try store.get("k").kvs == [kv("k", "keep", create: 2, mod: 3, version: 2)])
    }

    @Test func ignoreFlagsOnMissingKeyFail() throws {
        let store = KVStore()
        try store.put("other", "x")
        #expect(mvccError { try store.put("k", "", ignoreValue: true) } == .keyNotFound)
        #expect(mvccError { try store.put("k", "v", ignoreLease: true) } == .keyNotFound)
        try store.put("k", "v")
        try store.del("k")
        #expect(mvccError { try store.put("k", "", ignoreValue: true) } == .keyNotFound)
        #expect(store.currentRevision == 4)
    }

    @Test func ignoreLeaseKeepsLease() throws {
        let store = KVStore()
        store.leaseExists = { $0 == 77 }
        try store.put("k", "v1", lease: 77)
        #expect(try store.get("k").kvs.first?.lease == 77)
        try store.put("k", "v2", ignoreLease: true)
        #expect(try store.get("k").kvs == [kv("k", "v2", create: 2, mod: 3, version: 2, lease: 77)])
        try store.put("k", "v3")  // a plain put drops the lease
        #expect(try store.get("k").kvs.first?.lease == 0)
    }

    @Test func leaseNotFound() throws {
        let store = KVStore()
        #expect(mvccError { try store.put("k", "v", lease: 1) } == .leaseNotFound)
        #expect(store.currentRevision == 1)
        // For a plain put the lease is checked before the ignore flags.
        #expect(mvccError { try store.put("k", "", lease: 5, ignoreValue: true) } == .leaseNotFound)
    }

    @Test func emptyValueIsAValue() throws {
        let store = KVStore()
        try store.put("k", "")
        #expect(try store.get("k").kvs == [kv("k", "", create: 2, mod: 2, version: 1)])
    }
}

@Suite struct DeleteRangeTests {
    @Test func deleteSingleRangeAndFromKey() throws {
        let store = KVStore()
        for k in ["a", "b", "c", "d", "e"] { try store.put(k, k.uppercased()) }  // 2...6
        let one = try store.del("b", prevKv: true)
        #expect(one.deleted == 1)
        #expect(one.prevKvs == [kv("b", "B", create: 3, mod: 3, version: 1)])
        #expect(one.header.revision == 7)

        let rng = try store.del("a", "d", prevKv: true)  // a, c (b already gone)
        #expect(rng.deleted == 2)
        #expect(rng.prevKvs.map { s($0.key) } == ["a", "c"])
        #expect(rng.header.revision == 8)

        let rest = try store.del("d", fromKey)
        #expect(rest.deleted == 2)
        #expect(rest.prevKvs.isEmpty)  // not asked for
        #expect(rest.header.revision == 9)
        #expect(try store.get(fromKey, fromKey).count == 0)

        let nothing = try store.del("a", fromKey, prevKv: true)
        #expect(nothing.deleted == 0)
        #expect(nothing.prevKvs.isEmpty)
        #expect(nothing.header.revision == 9)
        #expect(store.currentRevision == 9)
    }
}
