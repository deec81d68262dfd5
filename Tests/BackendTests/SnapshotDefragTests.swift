import Testing
import FileIO
@testable import Backend

/// WriteTo (etcd's snapshot stream), defragmentation and compaction.
@Suite struct SnapshotDefragTests {
    func fill(_ db: BoltDB, rounds: Int = 3) throws {
        for r in 0..<rounds {
            try db.update { tx in
                let k = try tx.createBucketIfNotExists(bytes("key"))
                k.fillPercent = 0.9
                for i in 0..<3000 { try k.put(seqKey(r * 3000 + i), value(i, size: 80)) }
                let m = try tx.createBucketIfNotExists(bytes("meta"))
                try m.put(bytes("consistent_index"), [0, 0, 0, 0, 0, 0, 0, UInt8(r)])
                let n = try tx.createBucketIfNotExists(bytes("nested"))
                let s = try n.createBucketIfNotExists(bytes("sub"))
                try s.put(seqKey(r), value(r, size: 5000))
                try s.setSequence(UInt64(r + 10))
            }
            try db.update { tx in
                let k = try tx.bucket(bytes("key"))!
                for i in stride(from: 0, to: 3000, by: 2) { try k.delete(seqKey(r * 3000 + i)) }
            }
        }
    }

    @Test(arguments: [false, true])
    func writeToIsAConsistentCopyWhileTheWriterGoesOn(noFreelistSync: Bool) throws {
        var o = BoltOptions()
        o.noFreelistSync = noFreelistSync
        let (fs, db) = try memoryDB(o)
        try fill(db)
        let reader = try db.beginRead()
        let expected = try snapshot(reader)
        var out: [UInt8] = []
        var chunks = 0
        try reader.writeTo(chunkSize: 64 << 10) { chunk in
            out.append(contentsOf: chunk)
            chunks += 1
            if chunks % 3 == 0 {
                // Commits during the copy must not change what is copied.
                try db.update { tx in
                    let k = try tx.bucket(bytes("key"))!
                    for i in 0..<300 { try k.put(seqKey(i * 11), value(chunks, size: 80)) }
                    for i in 0..<300 { try k.delete(seqKey(i * 13 + 1)) }
                }
            }
        }
        #expect(Int64(out.count) == reader.size)
        #expect(chunks > 3)
        // Meta 0 has the reader's txid, meta 1 the one before (bbolt's WriteTo).
        #expect(out.u64(64) == reader.id && out.u64(4096 + 64) == reader.id - 1)
        reader.rollback()
        try fs.writeFile("/db/copy", out)
        let copy = try BoltDB.open(path: "/db/copy", fileSystem: fs, options: o)
        #expect(try snapshot(copy) == expected)
        #expect(try copy.view { try $0.check() }.isEmpty)
        #expect(copy.metaInfo.txid == reader.id)
        // copyFile gives the same bytes.
        try db.view { tx in try tx.copyFile(to: "/db/copy2", fileSystem: fs) }
        #expect(try BoltDB.open(path: "/db/copy2", fileSystem: fs, options: o).view { try $0.check() }.isEmpty)
    }

    @Test func defragmentCopiesEverythingIntoFewerPages() throws {
        let (fs, db) = try memoryDB(.etcd)
        try fill(db)
        let before = try snapshot(db)
        let tmp = try BoltDB.open(path: "/db/tmp", fileSystem: fs, options: .etcd)
        try BoltDB.defragment(from: db, into: tmp, limit: 1000)
        #expect(try snapshot(tmp) == before)
        #expect(try tmp.view { try $0.check() }.isEmpty)
        #expect(tmp.size < db.size)
        #expect(try tmp.view { try $0.bucket(bytes("nested"))!.bucket(bytes("sub"))!.sequence } == 12)
        try tmp.close()
        // bbolt's Compact gives the same content.
        let c = try BoltDB.open(path: "/db/compact", fileSystem: fs)
        try BoltDB.compact(from: db, into: c, txMaxSize: 64 << 10)
        #expect(try snapshot(c) == before)
        #expect(try c.view { try $0.check() }.isEmpty)
    }

    @Test func defragmentFileReplacesTheFileAsEtcdDoes() throws {
        let (fs, db) = try memoryDB(.etcd)
        try fill(db, rounds: 4)
        let before = try snapshot(db)
        let sizeBefore = db.size
        let db2 = try db.defragmentFile(tempSuffix: 7)
        #expect(db.isClosed)
        #expect(try snapshot(db2) == before)
        #expect(db2.size < sizeBefore)
        #expect(db2.stats.freePageN < 10)
        #expect(try db2.view { try $0.check() }.isEmpty)
        #expect(try fs.contentsOfDirectory("/db") == ["db"])
        // The result survives a power cut right away (renamed, directory synced).
        let fs2 = fs.reboot()
        let db3 = try BoltDB.open(path: "/db/db", fileSystem: fs2, options: .etcd)
        #expect(try snapshot(db3) == before)
    }
}
