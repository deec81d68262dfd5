import Foundation
import Testing
import EtcdProto
import FileIO
@testable import WAL

/// Group commit: whatever arrives while one fdatasync runs goes into the next single write
/// and sync; one sync per batch, never one per request, and no request acknowledged before
/// a sync that covers it.
@Suite struct GroupCommitTests {
    static let metadata = Data("group-commit".utf8)

    /// Deterministic: hold the writer inside the fdatasync of save #1, submit 99 more, let it
    /// go. Exactly two syncs cover the 100 saves, and nothing of the 99 completes before the
    /// second one.
    @Test func requestsArrivingDuringASyncShareTheNextOne() async throws {
        let gated = GatedFileSystem(try faultyFS(seed: 40))
        let w = try WAL.create(dir: "/data/wal", metadata: Self.metadata, fs: gated)
        let syncsBefore = gated.stats.counters.dataSyncs
        let writesBefore = gated.stats.counters.writes
        gated.closeGate()
        let first = try w.submit(hardState: hardState(term: 1, commit: 0), entries: [entry(1, "first")])
        gated.waitUntilSyncIsHeld()
        var tickets: [WAL.Ticket] = []
        for i in 2...100 {
            tickets.append(try w.submit(hardState: hardState(term: 1, commit: UInt64(i - 1)), entries: [entry(UInt64(i), "e\(i)")]))
        }
        let early = Locked(0)
        for t in tickets { w.onComplete(t) { _ in early.withLock { $0 += 1 } } }
        #expect(early.value == 0)  // the sync they need has not even started
        gated.openGate()
        try await w.wait(for: first)
        for t in tickets { try await w.wait(for: t) }
        let c = gated.stats.counters
        #expect(c.dataSyncs - syncsBefore == 2)
        #expect(c.writes - writesBefore == 2)  // one write per batch (under the page-writer watermark)
        try w.close()
        let read = try WAL.open(dir: "/data/wal", at: snapshot(0, 0), fs: gated).readAllAndClose()
        #expect(read.entries.count == 100)
    }

    /// 100 concurrent savers, 10 saves each, on the real disk: far fewer fdatasyncs than saves.
    @Test func concurrentSaversOnRealDisk() async throws {
        let tmp = TempDir()
        let fs = PosixFileSystem()
        let w = try WAL.create(dir: tmp.path + "/wal", metadata: Self.metadata, fs: fs)
        let counter = Locked(UInt64(0))
        let before = fs.stats.counters.dataSyncs
        try await withThrowingTaskGroup(of: Void.self) { group in
            for s in 0..<100 {
                group.addTask {
                    for j in 0..<10 {
                        let ticket = try counter.withLock { n -> WAL.Ticket in
                            n += 1
                            return try w.submit(entries: [entry(n, "s\(s)-\(j)")])
                        }
                        try await w.wait(for: ticket)
                    }
                }
            }
            try await group.waitForAll()
        }
        let syncs = fs.stats.counters.dataSyncs - before
        #expect(syncs < 1000)
        #expect(syncs <= 500, "\(syncs) fdatasyncs for 1,000 saves")
        try w.close()
        let c = try WAL.open(dir: tmp.path + "/wal", at: snapshot(0, 0), fs: fs).readAllAndClose()
        #expect(c.entries.count == 1000)
        #expect(c.entries.map(\.index) == Array(1...1000))
    }

    /// Every acknowledgement comes after a sync that started after the request was written:
    /// with a file system that loses everything unsynced, a power cut right after any
    /// acknowledgement keeps all acknowledged entries.
    @Test func noAcknowledgementWithoutItsSync() async throws {
        for cutAfter in [1, 2, 5, 17, 40] {
            let fs = try faultyFS(seed: UInt64(41 + cutAfter), model: .dropUnsynced)
            let w = try WAL.create(dir: "/data/wal", metadata: Self.metadata, fs: fs)
            let acked = Locked(UInt64(0))
            let next = Locked(UInt64(0))
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        while true {
                            guard let (t, i) = next.withLock({ n -> (WAL.Ticket, UInt64)? in
                                n += 1
                                return (try? w.submit(entries: [entry(n)])).map { ($0, n) }
                            }) else { return }
                            guard (try? await w.wait(for: t)) != nil else { return }
                            let done = acked.withLock { a -> Bool in
                                a = max(a, i)
                                return a >= UInt64(cutAfter * 10)
                            }
                            if done { fs.crash() }
                        }
                    }
                }
            }
            try? w.close()
            let after = fs.reboot()
            let c = try WAL.open(dir: "/data/wal", at: snapshot(0, 0), fs: after).readAllAndClose()
            #expect(UInt64(c.entries.count) >= acked.value)
        }
    }

    /// `saveNow` writes on the caller's thread after whatever the writer still has queued
    /// (held in its fdatasync here), syncs what it saves, and the writer takes later
    /// submissions as before: with everything unsynced lost at a power cut right after the
    /// last save returns, every entry is there, in index order.
    @Test func saveNowWaitsForTheWriterAndSyncs() async throws {
        let faulty = try faultyFS(seed: 44, model: .dropUnsynced)
        let gated = GatedFileSystem(faulty)
        let w = try WAL.create(dir: "/data/wal", metadata: Self.metadata, fs: gated)
        gated.closeGate()
        let first = try w.submit(hardState: hardState(term: 1, commit: 0), entries: [entry(1, "queued")])
        gated.waitUntilSyncIsHeld()
        let second = try w.submit(entries: [entry(2, "queued too")])
        let saved = Locked(false)
        let inline = Thread {
            try? w.saveNow(hardState: hardState(term: 1, commit: 2), entries: [entry(3, "now")])
            saved.withLock { $0 = true }
        }
        inline.start()
        #expect(!saved.value)  // entry 3 cannot go before 1 and 2
        gated.openGate()
        try await w.wait(for: first)
        try await w.wait(for: second)
        while !saved.value { await Task.yield() }
        let syncs = gated.stats.counters.dataSyncs
        try w.saveNow(entries: [entry(4, "now again")])
        #expect(gated.stats.counters.dataSyncs == syncs + 1)
        try await w.wait(for: try w.submit(entries: [entry(5, "queued after")]))
        try w.saveNow(hardState: hardState(term: 1, commit: 5))  // a commit index alone: not synced
        #expect(gated.stats.counters.dataSyncs == syncs + 2)
        faulty.crash()
        try? w.close()
        let c = try WAL.open(dir: "/data/wal", at: snapshot(0, 0), fs: faulty.reboot()).readAllAndClose()
        #expect(c.entries.map(\.index) == [1, 2, 3, 4, 5])
    }
}
