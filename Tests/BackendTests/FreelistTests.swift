import Testing
import FileIO
@testable import Backend

/// Pages freed by a transaction are reused only once no reader can still see them.
@Suite struct FreelistTests {
    @Test func allocateFindsTheFirstContiguousRun() throws {
        let f = Freelist()
        f.readIDs([3, 4, 5, 6, 9, 12, 13, 18, 19, 20, 21])
        #expect(try f.allocate(txid: 1, count: 3) == 3)
        #expect(f.ids == [6, 9, 12, 13, 18, 19, 20, 21])
        #expect(try f.allocate(txid: 1, count: 1) == 6)
        #expect(try f.allocate(txid: 1, count: 3) == 18)
        #expect(f.ids == [9, 12, 13, 21])
        #expect(try f.allocate(txid: 1, count: 2) == 12)
        #expect(try f.allocate(txid: 1, count: 2) == 0)
        #expect(f.ids == [9, 21])
    }

    @Test func pendingPagesWaitForReaders() throws {
        let f = Freelist()
        f.readIDs([])
        try f.free(txid: 100, id: 12, overflow: 0, isFreelistPage: false)
        try f.free(txid: 100, id: 9, overflow: 1, isFreelistPage: false)     // 9 and 10
        try f.free(txid: 102, id: 20, overflow: 0, isFreelistPage: false)
        #expect(f.freeCount == 0 && f.pendingCount == 4)
        #expect(f.isFreed(10))
        #expect(throws: BoltError.self) { try f.free(txid: 103, id: 10, overflow: 0, isFreelistPage: false) }
        f.release(upTo: 99)
        #expect(f.freeCount == 0)
        f.release(upTo: 101)
        #expect(f.ids == [9, 10, 12])
        #expect(f.copyAll() == [9, 10, 12, 20])
        f.rollback(txid: 102)
        #expect(f.copyAll() == [9, 10, 12])
        #expect(!f.isFreed(20))
    }

    @Test func releaseRangeFreesPagesAllocatedAndFreedBetweenReaders() throws {
        // Reader at txid 10 open. Tx 11 allocates page 50, tx 12 frees it: no reader sees it.
        let f = Freelist()
        f.readIDs([50])
        #expect(try f.allocate(txid: 11, count: 1) == 50)
        try f.free(txid: 12, id: 50, overflow: 0, isFreelistPage: false)
        f.releaseRange(11, 12)
        #expect(f.ids == [50])
        // A page allocated before the reader's txid stays pending.
        f.readIDs([60])
        #expect(try f.allocate(txid: 5, count: 1) == 60)
        try f.free(txid: 12, id: 60, overflow: 0, isFreelistPage: false)
        f.releaseRange(11, 12)
        #expect(!f.ids.contains(60))
    }

    @Test func freedPagesAreNotReusedWhileAReaderCanSeeThem() throws {
        let (_, db) = try memoryDB()
        try db.update { tx in
            let b = try tx.createBucket(bytes("b"))
            for i in 0..<2000 { try b.put(seqKey(i), value(i, size: 40)) }
        }
        let reader = try db.beginRead()
        let readerView = try snapshot(reader)
        // Rewrite everything many times: every page the reader sees gets freed.
        for round in 0..<20 {
            try db.update { tx in
                let b = try tx.bucket(bytes("b"))!
                for i in 0..<2000 { try b.put(seqKey(i), value(i &+ round, size: 40)) }
            }
            // The reader's version is intact, page for page.
            #expect(try snapshot(reader) == readerView)
        }
        // The free list is the writer's (newer) one: only structural problems count here.
        let errs = try reader.check().filter { !$0.contains("freed") && !$0.contains("unreachable") }
        #expect(errs.isEmpty)
        #expect(db.stats.openTxN == 1)
        let grownWhileReading = db.size
        reader.rollback()
        #expect(db.stats.openTxN == 0)
        // With the reader gone the pending pages come back: the file stops growing.
        for round in 0..<20 {
            try db.update { tx in
                let b = try tx.bucket(bytes("b"))!
                for i in 0..<2000 { try b.put(seqKey(i), value(i &+ round, size: 40)) }
            }
        }
        #expect(db.size == grownWhileReading)
        #expect(try db.view { try $0.check() }.isEmpty)
    }

    @Test func readersSeeTheVersionOfTheirStart() throws {
        let (_, db) = try memoryDB()
        try db.update { try $0.createBucket(bytes("b")) }
        var readers: [(BoltTx, Snapshot)] = []
        for v in 0..<30 {
            try db.update { tx in
                let b = try tx.bucket(bytes("b"))!
                for i in 0..<200 { try b.put(seqKey(i * 7 % 1000), value(v * 1000 + i, size: 60)) }
                if v % 3 == 0 { for i in 0..<50 { try b.delete(seqKey(i * 13 % 1000)) } }
            }
            if v % 4 == 0 {
                let r = try db.beginRead()
                readers.append((r, try snapshot(r)))
            }
            if v % 9 == 8, !readers.isEmpty { readers.removeFirst().0.rollback() }
        }
        for (r, s) in readers {
            #expect(try snapshot(r) == s)
            r.rollback()
        }
        #expect(try db.view { try $0.check() }.isEmpty)
    }

    @Test func readersAndAWriterOnSeveralThreads() async throws {
        let (_, db) = try memoryDB()
        try db.update { tx in
            let b = try tx.createBucket(bytes("b"))
            for i in 0..<500 { try b.put(seqKey(i), value(0, size: 30)) }
        }
        // Each version v sets every key to value(v): a reader must see one version only.
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for v in 1...60 {
                    try db.update { tx in
                        let b = try tx.bucket(bytes("b"))!
                        for i in 0..<500 { try b.put(seqKey(i), value(v, size: 30)) }
                    }
                }
            }
            for _ in 0..<2 {
                group.addTask {
                    for _ in 0..<40 {
                        try db.view { tx in
                            let vals = Set(try contents(try tx.bucket(bytes("b"))!).map { $0.value! })
                            #expect(vals.count == 1)
                        }
                    }
                }
            }
            // One read transaction shared by several tasks (as etcd 3.4 shares its read tx).
            let shared = try db.beginRead()
            let sharedView = try snapshot(shared)
            for _ in 0..<2 {
                group.addTask {
                    for _ in 0..<30 {
                        let s = try snapshot(shared)
                        let v = try shared.bucket(bytes("b"))!.get(seqKey(7))
                        #expect(s == sharedView)
                        #expect(v == sharedView[hex(bytes("b"))]![seqKey(7)])
                    }
                }
            }
            try await group.waitForAll()
            shared.rollback()
        }
        #expect(try db.view { try $0.check() }.isEmpty)
    }

    @Test(arguments: [false, true])
    func reopenRebuildsTheFreelist(noFreelistSync: Bool) throws {
        var o = BoltOptions()
        o.noFreelistSync = noFreelistSync
        let (fs, db) = try memoryDB(o)
        for round in 0..<5 {
            try db.update { tx in
                let b = try tx.createBucketIfNotExists(bytes("b"))
                for i in 0..<1000 { try b.put(seqKey(i), value(round, size: 100)) }
                for i in stride(from: round, to: 1000, by: 3) { try b.delete(seqKey(i)) }
            }
        }
        let freeBefore = db.stats.freePageN + db.stats.pendingPageN
        let snap = try snapshot(db)
        let sizeBefore = db.size
        try db.close()
        let db2 = try BoltDB.open(path: "/db/db", fileSystem: fs, options: o)
        // Everything pending at close is free after a reopen (scanned or read from the page).
        let reopened = db2.stats.freePageN
        #expect(reopened == freeBefore - (noFreelistSync ? 0 : 1) || reopened == freeBefore)
        #expect(try snapshot(db2) == snap)
        #expect(try db2.view { try $0.check() }.isEmpty)
        // Writing reuses those pages instead of growing.
        try db2.update { tx in
            let b = try tx.bucket(bytes("b"))!
            for i in 0..<100 { try b.put(seqKey(i), value(99, size: 100)) }
        }
        #expect(db2.size == sizeBefore)
        #expect(try db2.view { try $0.check() }.isEmpty)
    }

    @Test func switchingBetweenFreelistModes() throws {
        let fs = try memoryFS()
        var o = BoltOptions.etcd
        var db = try BoltDB.open(path: "/db/db", fileSystem: fs, options: o)
        try db.update { tx in
            let b = try tx.createBucket(bytes("key"))
            for i in 0..<3000 { try b.put(seqKey(i), value(i, size: 50)) }
        }
        try db.update { tx in for i in 0..<2000 { try tx.bucket(bytes("key"))!.delete(seqKey(i)) } }
        let snap = try snapshot(db)
        try db.close()
        // A synced-freelist open of a NoFreelistSync file writes a freelist at once, as bbolt.
        o.noFreelistSync = false
        db = try BoltDB.open(path: "/db/db", fileSystem: fs, options: o)
        #expect(db.metaInfo.freelistPage != nil)
        #expect(try db.view { try $0.check() }.isEmpty)
        try db.close()
        o.noFreelistSync = true
        db = try BoltDB.open(path: "/db/db", fileSystem: fs, options: o)
        try db.update { try $0.bucket(bytes("key"))!.put(bytes("x"), bytes("y")) }
        #expect(db.metaInfo.freelistPage == nil)
        var s2 = snap
        s2[hex(bytes("key"))]![bytes("x")] = bytes("y")
        #expect(try snapshot(db) == s2)
        #expect(try db.view { try $0.check() }.isEmpty)
    }

    @Test func statsAndSizes() throws {
        let (_, db) = try memoryDB(.etcd)
        try db.update { tx in
            let b = try tx.createBucket(bytes("b"))
            for i in 0..<2000 { try b.put(seqKey(i), value(i, size: 100)) }
        }
        #expect(db.size == Int64(db.metaInfo.pgid) * 4096)
        try db.update { tx in for i in 0..<2000 { try tx.bucket(bytes("b"))!.delete(seqKey(i)) } }
        try db.update { try $0.bucket(bytes("b"))!.put(bytes("a"), bytes("b")) }
        let s = db.stats
        #expect(s.freePageN > 50)
        #expect(db.sizeInUse == db.size - Int64(s.freePageN) * 4096)
        #expect(s.txStats.write > 0)
        let r = try db.beginRead()
        #expect(db.stats.openTxN == 1)
        #expect(r.size == db.size)
        r.rollback()
    }
}
