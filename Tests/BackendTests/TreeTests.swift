import Testing
import FileIO
@testable import Backend

/// Splits, merges, overflow pages, inline and nested buckets, cursors, errors.
@Suite struct TreeTests {
    func expectConsistent(_ db: BoltDB, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let errs = try db.view { try $0.check() }
        #expect(errs.isEmpty, "check: \(errs.prefix(5))", sourceLocation: sourceLocation)
    }

    @Test func splitsIntoAMultiLevelTree() throws {
        let (_, db) = try memoryDB()
        try db.update { tx in
            let b = try tx.createBucket(bytes("b"))
            for i in 0..<20_000 { try b.put(seqKey(i), value(i, size: 20)) }
        }
        try expectConsistent(db)
        let (depth, leaves) = try treeShape(db, bytes("b"))
        #expect(depth >= 3)
        #expect(leaves > 100)
        try db.view { tx in
            let b = try tx.bucket(bytes("b"))!
            #expect(try b.count() == 20_000)
            for i in stride(from: 0, to: 20_000, by: 997) { #expect(try b.get(seqKey(i)) == value(i, size: 20)) }
            #expect(try b.get(seqKey(20_000)) == nil)
        }
    }

    @Test func fillPercentPacksSequentialKeys() throws {
        var pages: [Double: Int] = [:]
        for fill in [0.5, 0.9, 1.0] {
            let (_, db) = try memoryDB()
            try db.update { tx in
                let b = try tx.createBucket(bytes("key"))
                b.fillPercent = fill
                for i in 0..<5000 { try b.put(seqKey(i), value(i, size: 50)) }
            }
            pages[fill] = try treeShape(db, bytes("key")).leaves
            try expectConsistent(db)
        }
        #expect(pages[0.9]! < pages[0.5]!)
        #expect(pages[1.0]! <= pages[0.9]!)
        // 0.5 leaves about half of each page empty: close to twice the pages of 1.0.
        #expect(Double(pages[0.5]!) > 1.6 * Double(pages[1.0]!))
    }

    @Test func mergesAfterDeletes() throws {
        let (_, db) = try memoryDB()
        try db.update { tx in
            let b = try tx.createBucket(bytes("b"))
            for i in 0..<5000 { try b.put(seqKey(i), value(i, size: 30)) }
        }
        let before = try treeShape(db, bytes("b"))
        try db.update { tx in
            let b = try tx.bucket(bytes("b"))!
            for i in 0..<5000 where i % 10 != 0 { try b.delete(seqKey(i)) }
        }
        try expectConsistent(db)
        let after = try treeShape(db, bytes("b"))
        #expect(after.leaves * 4 < before.leaves)
        let tstats = db.stats.txStats
        #expect(tstats.rebalance > 0)
        try db.update { tx in
            let b = try tx.bucket(bytes("b"))!
            for i in stride(from: 0, to: 5000, by: 10) { try b.delete(seqKey(i)) }
        }
        try expectConsistent(db)
        let empty = try treeShape(db, bytes("b"))
        #expect(empty.depth == 1 && empty.leaves == 1)
        #expect(try db.view { try $0.bucket(bytes("b"))!.count() } == 0)
    }

    @Test func overflowPagesForLargeValues() throws {
        let (fs, db) = try memoryDB()
        let big = value(7, size: 3 * 4096 + 123)
        try db.update { tx in
            let b = try tx.createBucket(bytes("b"))
            try b.put(bytes("a"), value(1, size: 10))
            try b.put(bytes("big"), big)
            try b.put(bytes("c"), value(2, size: 10))
        }
        try expectConsistent(db)
        let root = try db.view { try $0.bucket(bytes("b"))!.rootPageID }
        let f = try fs.contents("/db/db")
        #expect(f.u16(Int(root) * 4096 + 8) == 0x02)
        #expect(f.u32(Int(root) * 4096 + 12) == 3)   // overflow: 4 pages in all
        #expect(try db.view { try $0.bucket(bytes("b"))!.get(bytes("big")) } == big)
        // Replacing it with a small value frees the 4 pages (pending, then free).
        let sizeBefore = db.size
        try db.update { try $0.bucket(bytes("b"))!.put(bytes("big"), [1]) }
        try db.update { try $0.bucket(bytes("b"))!.put(bytes("d"), [2]) }
        #expect(db.stats.freePageN >= 4)
        #expect(db.size == sizeBefore)
        try expectConsistent(db)
        // A value of many megabytes.
        let huge = value(9, size: 5 << 20)
        try db.update { try $0.bucket(bytes("b"))!.put(bytes("huge"), huge) }
        #expect(try db.view { try $0.bucket(bytes("b"))!.get(bytes("huge")) } == huge)
        try expectConsistent(db)
    }

    @Test func inlineBucketsStayInlineUntilAQuarterPage() throws {
        let (_, db) = try memoryDB()
        try db.update { tx in
            let b = try tx.createBucket(bytes("small"))
            try b.put(bytes("k"), bytes("v"))
        }
        #expect(try db.view { try $0.bucket(bytes("small"))!.rootPageID } == 0)
        // Grow past pageSize/4 (1024 bytes): it gets its own page.
        try db.update { tx in
            let b = try tx.bucket(bytes("small"))!
            for i in 0..<20 { try b.put(seqKey(i), value(i, size: 50)) }
        }
        #expect(try db.view { try $0.bucket(bytes("small"))!.rootPageID } != 0)
        try expectConsistent(db)
        // Shrink: inline again, its page freed.
        try db.update { tx in
            let b = try tx.bucket(bytes("small"))!
            for i in 0..<20 { try b.delete(seqKey(i)) }
        }
        #expect(try db.view { try $0.bucket(bytes("small"))!.rootPageID } == 0)
        try expectConsistent(db)
        #expect(try db.view { try $0.bucket(bytes("small"))!.get(bytes("k")) } == bytes("v"))
        // A bucket holding a bucket is never inline.
        try db.update { tx in try tx.bucket(bytes("small"))!.createBucket(bytes("sub")) }
        #expect(try db.view { try $0.bucket(bytes("small"))!.rootPageID } != 0)
        try expectConsistent(db)
    }

    @Test func nestedBuckets() throws {
        let (_, db) = try memoryDB()
        try db.update { tx in
            let a = try tx.createBucket(bytes("a"))
            let b = try a.createBucket(bytes("b"))
            let c = try b.createBucket(bytes("c"))
            for i in 0..<3000 { try c.put(seqKey(i), value(i, size: 10)) }
            try b.put(bytes("x"), bytes("y"))
            try a.put(bytes("z"), bytes("w"))
            #expect(try c.nextSequence() == 1)
            try b.setSequence(77)
        }
        try expectConsistent(db)
        try db.view { tx in
            let a = try tx.bucket(bytes("a"))!
            #expect(try a.get(bytes("b")) == nil)                  // a bucket is not a value
            let items = try contents(a)
            #expect(items.map(\.key) == [bytes("b"), bytes("z")])
            #expect(items[0].value == nil)
            let b = try a.bucket(bytes("b"))!
            #expect(b.sequence == 77)
            let c = try b.bucket(bytes("c"))!
            #expect(c.sequence == 1)
            #expect(try c.count() == 3000)
            #expect(try a.bucket(bytes("z")) == nil)
        }
        let sizeInUse = db.sizeInUse
        try db.update { tx in try tx.deleteBucket(bytes("a")) }
        try db.update { tx in try tx.createBucket(bytes("other")) }
        try expectConsistent(db)
        #expect(try db.view { try $0.bucket(bytes("a")) } == nil)
        #expect(db.sizeInUse < sizeInUse)
    }

    @Test func bucketErrors() throws {
        let (_, db) = try memoryDB()
        try db.update { tx in
            let b = try tx.createBucket(bytes("b"))
            #expect(throws: BoltError.bucketExists) { try tx.createBucket(bytes("b")) }
            #expect(throws: BoltError.bucketNameRequired) { try tx.createBucket([]) }
            try b.put(bytes("k"), bytes("v"))
            #expect(throws: BoltError.incompatibleValue) { try b.createBucket(bytes("k")) }
            try b.createBucket(bytes("sub"))
            #expect(throws: BoltError.incompatibleValue) { try b.put(bytes("sub"), bytes("v")) }
            #expect(throws: BoltError.incompatibleValue) { try b.delete(bytes("sub")) }
            #expect(throws: BoltError.incompatibleValue) { try b.deleteBucket(bytes("k")) }
            #expect(throws: BoltError.bucketNotFound) { try b.deleteBucket(bytes("nope")) }
            #expect(throws: BoltError.keyRequired) { try b.put([], bytes("v")) }
            #expect(throws: BoltError.keyTooLarge) { try b.put([UInt8](repeating: 1, count: 32769), bytes("v")) }
            try b.put([UInt8](repeating: 1, count: 32768), bytes("v"))
            #expect(try tx.createBucketIfNotExists(bytes("b")) === b)
        }
        let r = try db.beginRead()
        #expect(throws: BoltError.txNotWritable) { try r.bucket(bytes("b"))!.put(bytes("a"), bytes("b")) }
        #expect(throws: BoltError.txNotWritable) { try r.createBucket(bytes("x")) }
        #expect(throws: BoltError.txNotWritable) { try r.commit() }
        let b = try r.bucket(bytes("b"))!
        r.rollback()
        #expect(throws: BoltError.txClosed) { try b.get(bytes("k")) }
        #expect(throws: BoltError.txClosed) { try r.bucket(bytes("b")) }
        let w = try db.beginWrite()
        try w.commit()
        #expect(throws: BoltError.txClosed) { try w.commit() }
        try db.close()
        #expect(throws: BoltError.databaseNotOpen) { try db.beginRead() }
    }

    @Test func rollbackDiscardsEverything() throws {
        let (_, db) = try memoryDB()
        try db.update { tx in try tx.createBucket(bytes("b")).put(bytes("k"), bytes("1")) }
        let before = try snapshot(db)
        let info = db.metaInfo
        let tx = try db.beginWrite()
        try tx.bucket(bytes("b"))!.put(bytes("k"), bytes("2"))
        try tx.createBucket(bytes("c"))
        try tx.deleteBucket(bytes("b"))
        tx.rollback()
        #expect(try snapshot(db) == before)
        #expect(db.metaInfo == info)
        try expectConsistent(db)
    }

    @Test(arguments: [false, true])
    func cursorsBothWays(writable: Bool) throws {
        let (_, db) = try memoryDB()
        let keys = (0..<3000).map { seqKey($0 * 2) }     // even numbers only
        try db.update { tx in
            let b = try tx.createBucket(bytes("b"))
            for (i, k) in keys.enumerated() { try b.put(k, value(i, size: 15)) }
            try b.createBucket(seqKey(1))                 // a nested bucket between keys
        }
        let tx = writable ? try db.beginWrite() : try db.beginRead()
        defer { tx.rollback() }
        let b = try tx.bucket(bytes("b"))!
        var all = keys
        all.insert(seqKey(1), at: 1)
        let c = b.cursor()
        var fwd: [[UInt8]] = []
        var e = try c.first()
        while let x = e { fwd.append(x.key); e = try c.next() }
        #expect(fwd == all)
        #expect(try c.next() == nil)
        var back: [[UInt8]] = []
        e = try c.last()
        while let x = e { back.append(x.key); e = try c.prev() }
        #expect(back == all.reversed())
        #expect(try c.prev() == nil)
        // Nested bucket: nil value.
        #expect(try c.seek(seqKey(1))! == (seqKey(1), nil))
        // Seek: exact, between keys, before all, past the end.
        #expect(try c.seek(seqKey(100))?.key == seqKey(100))
        #expect(try c.seek(seqKey(101))?.key == seqKey(102))
        #expect(try c.next()?.key == seqKey(104))
        #expect(try c.prev()?.key == seqKey(102))
        #expect(try c.prev()?.key == seqKey(100))
        #expect(try c.seek([])?.key == seqKey(0))
        #expect(try c.seek(seqKey(999_999)) == nil)
        #expect(try c.seek(seqKey(5998))?.key == seqKey(5998))
        #expect(try c.next() == nil)
        // A seek that lands past the end of one leaf continues on the next leaf.
        for k in stride(from: 3, to: 5997, by: 38) {
            #expect(try c.seek(seqKey(k))?.key == seqKey(k + 1))
        }
    }

    @Test func cursorSkipsEmptiedLeavesInAWriteTransaction() throws {
        let (_, db) = try memoryDB()
        try db.update { tx in
            let b = try tx.createBucket(bytes("b"))
            for i in 0..<2000 { try b.put(seqKey(i), value(i, size: 30)) }
        }
        try db.update { tx in
            let b = try tx.bucket(bytes("b"))!
            // Empty whole leaves at the start, the middle and the end (not yet rebalanced).
            for i in 0..<300 { try b.delete(seqKey(i)) }
            for i in 900..<1300 { try b.delete(seqKey(i)) }
            for i in 1700..<2000 { try b.delete(seqKey(i)) }
            let expect = (300..<900).map { seqKey($0) } + (1300..<1700).map { seqKey($0) }
            let c = b.cursor()
            var fwd: [[UInt8]] = []
            var e = try c.first()
            while let x = e { fwd.append(x.key); e = try c.next() }
            #expect(fwd == expect)
            var back: [[UInt8]] = []
            e = try c.last()
            while let x = e { back.append(x.key); e = try c.prev() }
            #expect(back == expect.reversed())
            #expect(try c.seek(seqKey(950))?.key == seqKey(1300))
            #expect(try c.seek(seqKey(1750)) == nil)
            // Cursor delete.
            _ = try c.seek(seqKey(300))
            try c.delete()
            #expect(try b.get(seqKey(300)) == nil)
        }
        try expectConsistent(db)
        #expect(try db.view { try $0.bucket(bytes("b"))!.count() } == 999)
    }

    @Test func updatesInsideTheTransactionAreVisibleToIt() throws {
        let (_, db) = try memoryDB()
        try db.update { tx in
            let b = try tx.createBucket(bytes("b"))
            try b.put(bytes("a"), bytes("1"))
            #expect(try b.get(bytes("a")) == bytes("1"))
            try b.put(bytes("a"), bytes("2"))
            #expect(try b.get(bytes("a")) == bytes("2"))
            try b.delete(bytes("a"))
            #expect(try b.get(bytes("a")) == nil)
            try b.put(bytes("a"), [])
            #expect(try b.get(bytes("a")) == [])
        }
        #expect(try db.view { try $0.bucket(bytes("b"))!.get(bytes("a")) } == [])
    }

    @Test func pageSizes() throws {
        for ps in [1024, 2048, 8192, 16384] {
            var o = BoltOptions()
            o.pageSize = ps
            let (fs, db) = try memoryDB(o)
            try db.update { tx in
                let b = try tx.createBucket(bytes("b"))
                for i in 0..<3000 { try b.put(seqKey(i), value(i, size: i % 7 == 0 ? ps * 2 : 20)) }
            }
            try expectConsistent(db)
            let snap = try snapshot(db)
            try db.close()
            // Reopening with another configured page size uses the file's own.
            var o2 = BoltOptions()
            o2.pageSize = 4096
            let db2 = try BoltDB.open(path: "/db/db", fileSystem: fs, options: o2)
            #expect(db2.pageSize == ps)
            #expect(try snapshot(db2) == snap)
        }
    }

    @Test func secondOpenOfTheSameFileIsLocked() throws {
        let (fs, db) = try memoryDB()
        #expect(throws: FileIOError.locked(path: "/db/db")) { try BoltDB.open(path: "/db/db", fileSystem: fs) }
        // Read-only opens take no lock (bbolt's is a shared one).
        var ro = BoltOptions()
        ro.readOnly = true
        let reader = try BoltDB.open(path: "/db/db", fileSystem: fs, options: ro)
        #expect(throws: BoltError.databaseReadOnly) { try reader.beginWrite() }
        try db.close()
        _ = try BoltDB.open(path: "/db/db", fileSystem: fs)
    }

    @Test func strictModeAndNoSync() throws {
        var o = BoltOptions()
        o.strictMode = true
        let (fs, db) = try memoryDB(o)
        for r in 0..<5 {
            try db.update { tx in
                let b = try tx.createBucketIfNotExists(bytes("b"))
                for i in 0..<500 { try b.put(seqKey(i), value(i + r, size: 60)) }
                for i in stride(from: r, to: 500, by: 4) { try b.delete(seqKey(i)) }
            }
        }
        fs.stats.reset()
        var n = BoltOptions()
        n.noSync = true
        try db.close()
        let db2 = try BoltDB.open(path: "/db/db", fileSystem: fs, options: n)
        try db2.update { try $0.bucket(bytes("b"))!.put(bytes("x"), bytes("y")) }
        #expect(fs.stats.counters.dataSyncs == 0)
        try db2.update { try $0.bucket(bytes("b"))!.put(bytes("x"), bytes("z")) }
        #expect(fs.stats.counters.dataSyncs == 0)
        try db2.close()
        // With syncs: exactly two fdatasync calls per commit (pages, then meta).
        let db3 = try BoltDB.open(path: "/db/db", fileSystem: fs)
        fs.stats.reset()
        try db3.update { try $0.bucket(bytes("b"))!.put(bytes("x"), bytes("w")) }
        #expect(fs.stats.counters.dataSyncs == 2)
    }

    /// Depth and leaf count of a bucket's tree, read from the pages.
    func treeShape(_ db: BoltDB, _ name: [UInt8]) throws -> (depth: Int, leaves: Int) {
        try db.view { tx in
            let b = try tx.bucket(name)!
            var leaves = 0, depth = 0
            func walk(_ id: UInt64, _ d: Int) throws {
                let p = try tx.page(id)
                if p.isLeaf { leaves += 1; depth = max(depth, d); return }
                for i in 0..<p.count { try walk(p.childPgid(i), d + 1) }
            }
            if b.rootPageID == 0 { return (1, 1) }
            try walk(b.rootPageID, 1)
            return (depth, leaves)
        }
    }
}
