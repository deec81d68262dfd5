import EtcdProto
import Foundation
import Testing
@testable import Raft

@Suite struct StorageAndLogTests {
    func storage(_ terms: [UInt64], snapshotAt: UInt64 = 0, snapshotTerm: UInt64 = 0) -> MemoryStorage {
        let s = MemoryStorage()
        if snapshotAt > 0 {
            var snap = Raftpb_Snapshot()
            snap.metadata.index = snapshotAt
            snap.metadata.term = snapshotTerm
            try! s.applySnapshot(snap)
        }
        s.append(entries(terms: terms, from: snapshotAt + 1))
        return s
    }

    @Test func memoryStorageBounds() throws {
        let s = storage([4, 5, 5], snapshotAt: 3, snapshotTerm: 3)
        #expect(try s.firstIndex() == 4)
        #expect(try s.lastIndex() == 6)
        #expect(throws: RaftStorageError.compacted) { try s.term(2) }
        #expect(try s.term(3) == 3)
        #expect(try s.term(6) == 5)
        #expect(throws: RaftStorageError.unavailable) { try s.term(7) }
        #expect(throws: RaftStorageError.compacted) { try s.entries(3, 5, maxSize: raftNoLimit) }
        #expect(try s.entries(4, 7, maxSize: raftNoLimit).map(\.index) == [4, 5, 6])
        // maxSize limits the batch but always returns one entry.
        #expect(try s.entries(4, 7, maxSize: 0).map(\.index) == [4])
        let one = entrySize(entry(4, 4))
        #expect(try s.entries(4, 7, maxSize: 2 * one).map(\.index) == [4, 5])
    }

    @Test func memoryStorageAppendOverwritesAndIgnoresCompacted() throws {
        let s = storage([1, 1, 1])
        s.append([entry(2, 2), entry(2, 3), entry(2, 4)])
        #expect(try s.entries(1, 5, maxSize: raftNoLimit).map(\.term) == [1, 2, 2, 2])
        try s.compact(3)
        #expect(try s.firstIndex() == 4)
        s.append([entry(2, 2), entry(3, 3), entry(3, 4), entry(3, 5)])   // the compacted part is skipped
        #expect(try s.entries(4, 6, maxSize: raftNoLimit).map(\.term) == [3, 3])
        #expect(throws: RaftStorageError.compacted) { try s.compact(3) }
    }

    @Test func memoryStorageSnapshots() throws {
        let s = storage([1, 2, 3, 4, 5])
        let snap = try s.createSnapshot(4, confState: confState(voters: [1, 2]), data: Data("d".utf8))
        #expect(snap.metadata.index == 4 && snap.metadata.term == 4 && snap.data == Data("d".utf8))
        #expect(throws: RaftStorageError.snapshotOutOfDate) { try s.createSnapshot(3, confState: nil, data: Data()) }
        var older = Raftpb_Snapshot()
        older.metadata.index = 2
        #expect(throws: RaftStorageError.snapshotOutOfDate) { try s.applySnapshot(older) }
        var newer = Raftpb_Snapshot()
        newer.metadata.index = 10
        newer.metadata.term = 7
        try s.applySnapshot(newer)
        #expect(try s.firstIndex() == 11 && s.lastIndex() == 10 && s.term(10) == 7)
        let (_, cs) = try s.initialState()
        #expect(cs.voters.isEmpty)
    }

    /// MemoryStorage packs its entries; against a plain array of the same appends,
    /// overwrites and compactions it must read back equal entries (unset fields stay unset,
    /// payloads larger than a chunk and empty ones included).
    @Test(arguments: [1, 2, 3, 4]) func memoryStorageMatchesAnArrayModel(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let s = MemoryStorage()
        var model: [Raftpb_Entry] = []   // model[k] has index offset + 1 + k
        var offset: UInt64 = 0, offsetTerm: UInt64 = 0, term: UInt64 = 1
        func randomEntry(_ index: UInt64) -> Raftpb_Entry {
            var e = Raftpb_Entry()
            e.term = term
            e.index = index
            switch rng.below(8) {
            case 0: break
            case 1: e.data = Data()
            case 2: e.data = Data((0..<(PackedEntries.chunkSize + rng.below(5000))).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            default: e.data = Data((0..<rng.below(3000)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            }
            if rng.below(3) == 0 { e.type = Raftpb_EntryType(rawValue: rng.below(3))! }
            return e
        }
        for _ in 0..<400 {
            let last = offset + UInt64(model.count)
            switch rng.below(10) {
            case 0..<6:   // append, maybe overwriting a suffix (or starting before the offset)
                if rng.below(4) == 0 { term += 1 }
                let from = max(1, last + 1 - UInt64(rng.below(min(Int(last), 6) + 1)))
                let batch = (0..<UInt64(1 + rng.below(8))).map { randomEntry(from + $0) }
                s.append(batch)
                for (k, e) in batch.enumerated() where from + UInt64(k) > offset {
                    let at = Int(from + UInt64(k) - offset - 1)
                    if at < model.count { model.removeSubrange(at...) }
                    model.append(e)
                }
            case 6 where model.count > 1:
                let to = offset + 1 + UInt64(rng.below(model.count))
                offsetTerm = model[Int(to - offset - 1)].term
                try s.compact(to)
                model.removeFirst(Int(to - offset))
                offset = to
            default:
                break
            }
            let now = offset + UInt64(model.count)
            #expect(try s.firstIndex() == offset + 1 && s.lastIndex() == now)
            #expect(try s.term(offset) == offsetTerm)
            guard !model.isEmpty else { continue }
            let lo = offset + 1 + UInt64(rng.below(model.count))
            let hi = lo + 1 + UInt64(rng.below(Int(now - lo) + 1))
            let want = Array(model[Int(lo - offset - 1)..<Int(hi - offset - 1)])
            #expect(try s.entries(lo, hi, maxSize: raftNoLimit) == want)
            let maxSize = UInt64(rng.below(8000))
            #expect(try s.entries(lo, hi, maxSize: maxSize) == limitSize(want, maxSize))
            #expect(try s.term(hi - 1) == want.last!.term)
        }
    }

    @Test func unstableLogTruncateAndAppend() {
        var u = UnstableLog(offset: 5)
        u.truncateAndAppend([entry(1, 5), entry(1, 6)])
        u.truncateAndAppend([entry(1, 7)])
        #expect(u.entries.map(\.index) == [5, 6, 7])
        u.truncateAndAppend([entry(2, 6), entry(2, 7)])
        #expect(u.entries.map(\.term) == [1, 2, 2])
        u.truncateAndAppend([entry(3, 4)])
        #expect(u.offset == 4 && u.entries.map(\.term) == [3])
        u.stableTo(4, 2)   // wrong term: ignored
        #expect(u.entries.count == 1)
        u.stableTo(4, 3)
        #expect(u.entries.isEmpty && u.offset == 5)
    }

    /// findConflictByTerm: the largest index at or below `index` with term <= `term`.
    @Test func findConflictByTerm() {
        let s = storage([1, 1, 3, 3, 3, 5, 5])
        let log = RaftLog(storage: s, maxNextEntriesSize: raftNoLimit)
        #expect(log.findConflictByTerm(7, 5) == 7)
        #expect(log.findConflictByTerm(7, 4) == 5)
        #expect(log.findConflictByTerm(7, 2) == 2)
        #expect(log.findConflictByTerm(7, 0) == 0)
        #expect(log.findConflictByTerm(9, 4) == 9)   // beyond our log: unchanged
        let compacted = RaftLog(storage: storage([3, 3, 5], snapshotAt: 4, snapshotTerm: 3), maxNextEntriesSize: raftNoLimit)
        #expect(compacted.findConflictByTerm(7, 2) == 3)   // stops below the snapshot
    }

    @Test func isUpToDate() {
        let log = RaftLog(storage: storage([1, 2, 3]), maxNextEntriesSize: raftNoLimit)
        #expect(log.isUpToDate(lastIndex: 2, term: 4))
        #expect(log.isUpToDate(lastIndex: 3, term: 3))
        #expect(log.isUpToDate(lastIndex: 4, term: 3))
        #expect(!log.isUpToDate(lastIndex: 2, term: 3))
        #expect(!log.isUpToDate(lastIndex: 9, term: 2))
    }

    @Test func inflightsWindow() {
        var f = Inflights(capacity: 3)
        f.add(1); f.add(2); f.add(3)
        #expect(f.isFull)
        f.freeLE(1)
        #expect(f.count == 2)
        f.add(4)
        f.freeLE(3)
        #expect(f.count == 1)
        f.add(5); f.add(6)
        f.freeFirstOne()
        #expect(f.count == 2)
        f.freeLE(10)
        #expect(f.count == 0)
    }

    @Test func seededRandomIsReproducible() {
        var a = SplitMix64(seed: 42), b = SplitMix64(seed: 42)
        #expect((0..<10).map { _ in a.next() } == (0..<10).map { _ in b.next() })
        var c = SplitMix64(seed: 7)
        #expect((0..<1000).allSatisfy { _ in (0..<10).contains(c.below(10)) })
    }
}
