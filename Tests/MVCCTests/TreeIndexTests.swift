import Foundation
import Testing
@testable import MVCC

@Suite struct TreeIndexTests {
    @Test func manyRandomKeysStaySortedAcrossChunks() throws {
        var rng = SplitMix64(seed: 7)
        var index = TreeIndex()
        var reference = Set<Data>()
        var rev: Int64 = 1
        for _ in 0..<6000 {
            let len = Int.random(in: 0...4, using: &rng)
            let key = Data((0..<len).map { _ in UInt8.random(in: 0...5, using: &rng) * 50 })
            rev += 1
            index.put(key, Revision(main: rev))
            reference.insert(key)
        }
        #expect(index.checkInvariants())
        #expect(index.count == reference.count)
        let sorted = reference.sorted { $0.lexicographicallyPrecedes($1) }
        #expect(index.all.map(\.key) == sorted)
        for key in sorted { #expect(index.keyIndex(key)?.key == key) }
        #expect(index.keyIndex(Data([1])) == nil)

        // Ranges between random bounds agree with a filter over the sorted keys.
        for _ in 0..<300 {
            let a = Data((0..<Int.random(in: 0...3, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
            let z = Data((0..<Int.random(in: 1...3, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
            var seen: [Data] = []
            index.visit(a, .before(z)) { seen.append($0.key) }
            #expect(seen == sorted.filter { !$0.lexicographicallyPrecedes(a) && $0.lexicographicallyPrecedes(z) })
            var tail: [Data] = []
            index.visit(a, .unbounded) { tail.append($0.key) }
            #expect(tail == sorted.filter { !$0.lexicographicallyPrecedes(a) })
        }

        // Delete every other key, compact: those keys leave the index entirely.
        for (i, key) in sorted.enumerated() where i % 2 == 0 {
            rev += 1
            #expect(index.tombstone(key, Revision(main: rev)))
        }
        _ = index.compact(rev)
        #expect(index.checkInvariants())
        #expect(index.all.map(\.key) == sorted.enumerated().filter { $0.offset % 2 == 1 }.map(\.element))
    }

    @Test func largeStoreStaysQuick() throws {
        // 20,000 distinct random keys, overwritten and read back; exercises chunk splits
        // and history lookups at scale (no timing assertion, just must finish promptly).
        var rng = SplitMix64(seed: 11)
        let store = KVStore()
        var keys: [String] = []
        for i in 0..<20_000 {
            let k = "key/\(UInt32.random(in: 0...UInt32.max, using: &rng))/\(i)"
            keys.append(k)
            try store.put(k, "v")
        }
        for k in keys.prefix(2_000) { try store.put(k, "w") }
        let all = try store.get("key/", "key0") { $0.countOnly = true }
        #expect(all.count == 20_000)
        let some = try store.get("key/", "key0", rev: 5_000) { $0.limit = 10 }
        #expect(some.count == 4_999)
        #expect(some.kvs.count == 10)
        #expect(store.index.checkInvariants())
        try store.compact(store.currentRevision)
        #expect(store.retainedRevisionCount == 20_000)
        #expect(store.index.checkInvariants())
    }
}
