import Foundation
import Testing
import EtcdProto
import FileIO
@testable import WAL

@Suite struct WALTests {
    let metadata = Data("swetcd-metadata".utf8)

    @Test func createSaveReopenReadAll() async throws {
        let fs = try faultyFS(seed: 10)
        let w = try WAL.create(dir: "/data/wal", metadata: metadata, fs: fs)
        try await w.save(hardState: hardState(term: 1, vote: 1, commit: 0), entries: (1...3).map { entry($0, "e\($0)") })
        try await w.save(hardState: hardState(term: 1, vote: 1, commit: 3))
        // Raft overwrote 3 with a new term: the later record wins and drops what follows.
        try await w.save(hardState: hardState(term: 2, vote: 1, commit: 2), entries: [entry(3, term: 2, "e3'"), entry(4, term: 2, "e4")])
        try w.close()

        #expect(fs.exists("/data/wal/0000000000000000-0000000000000000.wal"))
        #expect(!fs.exists("/data/wal.tmp"))
        let r = try WAL.open(dir: "/data/wal", at: snapshot(0, 0), fs: fs)
        let c = try r.readAll()
        #expect(c.metadata == metadata)
        #expect(c.hardState == hardState(term: 2, vote: 1, commit: 2))
        #expect(c.entries.map(\.index) == [1, 2, 3, 4])
        #expect(c.entries.map { String(decoding: $0.data, as: UTF8.self) } == ["e1", "e2", "e3'", "e4"])
        #expect(c.entries[2].term == 2)
        // Appending after readAll continues the CRC chain.
        try await r.save(entries: [entry(5, term: 2, "e5")])
        try r.close()
        let c2 = try WAL.open(dir: "/data/wal", at: snapshot(0, 0), fs: fs).readAllAndClose()
        #expect(c2.entries.map(\.index) == [1, 2, 3, 4, 5])
    }

    @Test func firstSegmentLayoutIsCrcMetadataSnapshot() throws {
        let fs = try faultyFS(seed: 11)
        let w = try WAL.create(dir: "/data/wal", metadata: metadata, fs: fs)
        try w.close()
        let h = try fs.open("/data/wal/0000000000000000-0000000000000000.wal", options: .read)
        #expect(try h.size() == 64_000_000)  // preallocated as etcd does
        let f = frames(try h.read(at: 0, count: 4096))
        try h.close()
        #expect(f.map(\.record.type) == [4, 1, 5])
        #expect(f[0].record.crc == 0 && f[0].record.data == nil)
        #expect(f[1].record.data == Array(metadata))
        #expect(f[1].record.crc == CRC32C.checksum(Array(metadata)))
        #expect(f[2].record.data == [0x08, 0x00, 0x10, 0x00])
    }

    @Test func entriesAfterSnapshotOnly() async throws {
        let fs = try faultyFS(seed: 12)
        let w = try WAL.create(dir: "/data/wal", metadata: metadata, fs: fs)
        try await w.save(hardState: hardState(term: 1, commit: 5), entries: (1...5).map { entry($0) })
        try await w.saveSnapshot(snapshot(3, 1))
        try await w.save(entries: (6...7).map { entry($0) })
        try w.close()
        let c = try WAL.open(dir: "/data/wal", at: snapshot(3, 1), fs: fs).readAllAndClose()
        #expect(c.entries.map(\.index) == [4, 5, 6, 7])
        // A snapshot the WAL never saw.
        #expect(throws: WALError.snapshotNotFound(index: 4, term: 1)) {
            try WAL.open(dir: "/data/wal", at: snapshot(4, 1), fs: fs).readAll()
        }
        #expect(throws: WALError.self) {
            try WAL.open(dir: "/data/wal", at: snapshot(3, 2), fs: fs).readAll()
        }
        // The failed opens released their locks.
        _ = try WAL.open(dir: "/data/wal", at: snapshot(0, 0), fs: fs).readAllAndClose()
    }

    @Test func createRefusesExistingWAL() throws {
        let fs = try faultyFS(seed: 13)
        try WAL.create(dir: "/data/wal", metadata: metadata, fs: fs).close()
        #expect(throws: WALError.exists(dir: "/data/wal")) {
            try WAL.create(dir: "/data/wal", metadata: metadata, fs: fs)
        }
        #expect(throws: WALError.fileNotFound(dir: "/data/nowal")) {
            try WAL.open(dir: "/data/nowal", at: snapshot(0, 0), fs: fs)
        }
    }

    @Test func saveBeforeReadAllFails() throws {
        let fs = try faultyFS(seed: 14)
        try WAL.create(dir: "/data/wal", metadata: metadata, fs: fs).close()
        let w = try WAL.open(dir: "/data/wal", at: snapshot(0, 0), fs: fs)
        #expect(throws: WALError.notReadyForAppend) { try w.submit(entries: [entry(1)]) }
        _ = try w.readAll()
        #expect(throws: WALError.alreadyRead) { try w.readAll() }
        try w.close()
        #expect(throws: WALError.closed) { try w.submit(entries: [entry(1)]) }
        try w.close()  // idempotent
    }

    @Test func emptySaveIsANoOp() async throws {
        let fs = try faultyFS(seed: 15)
        let w = try WAL.create(dir: "/data/wal", metadata: metadata, fs: fs)
        let before = fs.stats.counters
        #expect(try w.submit() == .done)
        try await w.save()
        #expect(fs.stats.counters.writes == before.writes)
        try w.close()
    }

    /// raft.MustSync: a new term or vote or new entries are synced; a commit index alone is
    /// written without a sync (etcd does the same) and synced by the next batch that needs it.
    @Test func commitOnlyHardStateIsNotSynced() async throws {
        let fs = try faultyFS(seed: 16)
        let w = try WAL.create(dir: "/data/wal", metadata: metadata, fs: fs)
        try await w.save(hardState: hardState(term: 1, vote: 1, commit: 0), entries: [entry(1)])
        var syncs = fs.stats.counters.dataSyncs
        try await w.save(hardState: hardState(term: 1, vote: 1, commit: 1))
        #expect(fs.stats.counters.dataSyncs == syncs)
        try await w.save(hardState: hardState(term: 2, vote: 1, commit: 1))
        #expect(fs.stats.counters.dataSyncs == syncs + 1)
        syncs += 1
        try await w.sync()
        #expect(fs.stats.counters.dataSyncs == syncs + 1)
        try w.close()
    }

    @Test func cutsSegmentsAndReadsAcrossThem() async throws {
        let fs = try faultyFS(seed: 17)
        let opts = WAL.Options(segmentBytes: 4096, prepareSegmentsInBackground: false)
        let w = try WAL.create(dir: "/data/wal", metadata: metadata, fs: fs, options: opts)
        let payload = String(repeating: "x", count: 300)
        for i in 1...40 {
            try await w.save(hardState: hardState(term: 1, commit: UInt64(i - 1)), entries: [entry(UInt64(i), payload)])
        }
        try w.close()
        let names = try fs.contentsOfDirectory("/data/wal").filter { $0.hasSuffix(".wal") }
        #expect(names.count > 2)
        // Sequence increases by one; each name carries the index of its first entry.
        for (i, n) in names.enumerated() {
            let (seq, idx) = SegmentName.parse(n)!
            #expect(seq == UInt64(i))
            if i > 0 {
                let f = frames(try fs.contents("/data/wal/\(n)"))
                #expect(f.map(\.record.type).prefix(3) == [4, 1, 3])  // crc, metadata, state
                let first = f.first { $0.record.type == 2 }!
                #expect(try Raftpb_Entry(serializedBytes: first.record.data!).index == idx)
                // The crc record carries the previous segment's running CRC.
                let prev = frames(try fs.contents("/data/wal/\(names[i - 1])"))
                #expect(f[0].record.crc == prev.last!.record.crc)
            }
        }
        // Cut segments are truncated to their records; the tail stays preallocated.
        for n in names.dropLast() {
            let bytes = try fs.contents("/data/wal/\(n)")
            #expect(bytes.count == usedLength(bytes))
        }
        #expect(try fs.contents("/data/wal/\(names.last!)").count == 4096)
        #expect(!fs.exists("/data/wal/0.tmp") && !fs.exists("/data/wal/1.tmp"))

        let c = try WAL.open(dir: "/data/wal", at: snapshot(0, 0), fs: fs).readAllAndClose()
        #expect(c.entries.map(\.index) == Array(1...40))
        #expect(c.hardState.commit == 39)
        // Opening at an entry index in a later segment reads from that segment on.
        let c2 = try WAL.open(dir: "/data/wal", at: snapshot(0, 0), fs: fs)
        _ = try c2.readAll()
        try await c2.saveSnapshot(snapshot(30, 1))
        try c2.close()
        let c3 = try WAL.open(dir: "/data/wal", at: snapshot(30, 1), fs: fs)
        #expect(c3.lockedSegmentNames.count < names.count)
        #expect(try c3.readAll().entries.map(\.index) == Array(31...40))
        try c3.close()
    }

    @Test func preparesNextSegmentAhead() async throws {
        let dir = TempDir()
        let fs = PosixFileSystem()
        let w = try WAL.create(dir: dir.path + "/wal", metadata: metadata, fs: fs, options: WAL.Options(segmentBytes: 8192))
        // The pipeline prepares 0.tmp in the background; the first cut renames it.
        for i in 1...30 {
            try await w.save(hardState: hardState(term: 1, commit: UInt64(i)), entries: [entry(UInt64(i), String(repeating: "y", count: 500))])
        }
        #expect(w.lockedSegmentNames.count >= 2)
        try w.close()
        let left = try fs.contentsOfDirectory(dir.path + "/wal")
        #expect(!left.contains { $0.hasSuffix(".tmp") })
        let c = try WAL.open(dir: dir.path + "/wal", at: snapshot(0, 0), fs: fs).readAllAndClose()
        #expect(c.entries.count == 30)
    }

    @Test func releaseLockToKeepsNewestBelowIndex() async throws {
        let fs = try faultyFS(seed: 18)
        let w = try WAL.create(dir: "/data/wal", metadata: metadata, fs: fs, options: WAL.Options(segmentBytes: 1024, prepareSegmentsInBackground: false))
        for i in 1...30 {
            try await w.save(hardState: hardState(term: 1, commit: UInt64(i)), entries: [entry(UInt64(i), String(repeating: "z", count: 200))])
        }
        let names = w.lockedSegmentNames
        #expect(names.count >= 4)
        let starts = names.map { SegmentName.parse($0)!.index }
        // Release up to the start of the 3rd segment: keeps the 2nd (the newest below it).
        w.releaseLockTo(starts[2])
        #expect(w.lockedSegmentNames == Array(names.dropFirst(1)))
        w.releaseLockTo(starts[2] + 1)
        #expect(w.lockedSegmentNames == Array(names.dropFirst(2)))
        w.releaseLockTo(.max)
        #expect(w.lockedSegmentNames == [names.last!])
        // A released segment can be locked by someone else; the tail cannot.
        let h = try fs.open("/data/wal/\(names[0])", options: .readWrite)
        try h.tryLock()
        try h.close()
        let t = try fs.open("/data/wal/\(names.last!)", options: .readWrite)
        #expect(throws: FileIOError.locked(path: "/data/wal/\(names.last!)")) { try t.tryLock() }
        try t.close()
        try w.close()
    }

    @Test(arguments: [false, true])
    func secondOpenIsRefusedWhileLocked(realDisk: Bool) throws {
        let tmp = TempDir()
        let fs: any FileSystem = realDisk ? PosixFileSystem() : try faultyFS(seed: 19)
        let dir = realDisk ? tmp.path + "/wal" : "/data/wal"
        let w = try WAL.create(dir: dir, metadata: metadata, fs: fs)
        let path = dir + "/0000000000000000-0000000000000000.wal"
        #expect(throws: WALError.locked(path: path)) { try WAL.open(dir: dir, at: snapshot(0, 0), fs: fs) }
        do {
            _ = try WAL.open(dir: dir, at: snapshot(0, 0), fs: fs)
        } catch {
            #expect("\(error)".contains("locked by another process"))
        }
        try w.close()
        let again = try WAL.open(dir: dir, at: snapshot(0, 0), fs: fs)
        #expect(throws: WALError.locked(path: path)) { try WAL.open(dir: dir, at: snapshot(0, 0), fs: fs) }
        try again.close()
    }

    /// A failed fdatasync stops the WAL: the save fails, and so does everything after it.
    @Test func failedSyncStopsTheWAL() async throws {
        let fs = try faultyFS(seed: 20)
        let w = try WAL.create(dir: "/data/wal", metadata: metadata, fs: fs)
        try await w.save(entries: [entry(1)])
        fs.injectFailure(on: [.dataSync])
        await #expect(throws: WALError.self) { try await w.save(entries: [entry(2)]) }
        #expect(throws: WALError.self) { try w.submit(entries: [entry(3)]) }
        try? w.close()
        let c = try WAL.open(dir: "/data/wal", at: snapshot(0, 0), fs: fs).readAllAndClose()
        #expect(c.entries.map(\.index).first == 1)
    }

    @Test func blockingWaitAndCallbacks() throws {
        let fs = try faultyFS(seed: 21)
        let w = try WAL.create(dir: "/data/wal", metadata: metadata, fs: fs)
        let t = try w.submit(entries: [entry(1)])
        try w.waitBlocking(for: t)
        let called = Locked(false)
        w.onComplete(t) { e in called.withLock { $0 = e == nil } }
        #expect(called.value)
        try w.close()
    }
}

extension WAL {
    /// readAll, then close.
    func readAllAndClose() throws -> Contents {
        defer { try? close() }
        return try readAll()
    }
}
