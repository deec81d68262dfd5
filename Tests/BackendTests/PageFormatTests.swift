import Testing
import FileIO
@testable import Backend

/// The bytes on disk, field by field, as bbolt's page.go and db.go define them.
@Suite struct PageFormatTests {
    @Test func fnv64aMatchesGo() {
        // hash/fnv New64a test vectors.
        #expect(fnv64a(UnsafeRawBufferPointer(start: nil, count: 0)) == 0xcbf2_9ce4_8422_2325)
        let a: [UInt8] = Array("a".utf8)
        #expect(a.withUnsafeBytes { fnv64a($0) } == 0xaf63_dc4c_8601_ec8c)
        let foobar: [UInt8] = Array("foobar".utf8)
        #expect(foobar.withUnsafeBytes { fnv64a($0) } == 0x8594_4171_f739_67e8)
    }

    @Test func newFileHasBboltsFourPageLayout() throws {
        let (fs, db) = try memoryDB()
        try db.close()
        let f = try fs.contents("/db/db")
        #expect(f.count == 4 * 4096)
        for i in 0..<2 {
            let o = i * 4096
            #expect(f.u64(o) == UInt64(i))                  // page id
            #expect(f.u16(o + 8) == 0x04)                    // meta flag
            #expect(f.u32(o + 16) == 0xED0C_DAED)            // magic
            #expect(f.u32(o + 20) == 2)                      // version
            #expect(f.u32(o + 24) == 4096)                   // page size
            #expect(f.u32(o + 28) == 0)                      // flags
            #expect(f.u64(o + 32) == 3)                      // root bucket page
            #expect(f.u64(o + 40) == 0)                      // root sequence
            #expect(f.u64(o + 48) == 2)                      // freelist page
            #expect(f.u64(o + 56) == 4)                      // high-water mark
            #expect(f.u64(o + 64) == UInt64(i))              // txid
            let sum = f.withUnsafeBytes { fnv64a(UnsafeRawBufferPointer(rebasing: $0[(o + 16)..<(o + 72)])) }
            #expect(f.u64(o + 72) == sum)
            #expect(f[(o + 80)..<(o + 4096)].allSatisfy { $0 == 0 })
        }
        #expect(f.u64(2 * 4096) == 2 && f.u16(2 * 4096 + 8) == 0x10 && f.u16(2 * 4096 + 10) == 0)
        #expect(f.u64(3 * 4096) == 3 && f.u16(3 * 4096 + 8) == 0x02 && f.u16(3 * 4096 + 10) == 0)
    }

    @Test func leafAndBranchElementsAreLaidOutAsBbolt() throws {
        let (fs, db) = try memoryDB()
        try db.update { tx in
            let b = try tx.createBucket(bytes("b"))
            for i in 0..<200 { try b.put(seqKey(i), value(i, size: 40)) }
        }
        let info = db.metaInfo
        let root = try db.view { try $0.bucket(bytes("b"))!.rootPageID }
        try db.close()
        let f = try fs.contents("/db/db")
        // The root bucket's page is a leaf with one element: "b" -> bucket header.
        let r = Int(info.rootPage) * 4096
        #expect(f.u16(r + 8) == 0x02 && f.u16(r + 10) == 1)
        #expect(f.u32(r + 16) == 1)                          // element flags: bucket
        #expect(f.u32(r + 20) == 16)                         // pos: right after the element
        #expect(f.u32(r + 24) == 1 && f.u32(r + 28) == 16)   // ksize, vsize
        #expect(f[r + 32] == UInt8(ascii: "b"))
        #expect(f.u64(r + 33) == root)                       // bucket header: root page
        // 200 keys × 64 bytes do not fit one page: the bucket root is a branch page.
        let b = Int(root) * 4096
        #expect(f.u16(b + 8) == 0x01)
        let n = Int(f.u16(b + 10))
        #expect(n >= 2)
        var prevChild: UInt64 = 0
        for i in 0..<n {
            let e = b + 16 + i * 16
            let pos = Int(f.u32(e)), ksize = Int(f.u32(e + 4)), child = f.u64(e + 8)
            #expect(ksize == 16)
            #expect(child >= 2 && child < info.pgid && child != prevChild)
            prevChild = child
            // The branch key is the first key of the child leaf.
            let c = Int(child) * 4096
            #expect(f.u16(c + 8) == 0x02)
            let cpos = Int(f.u32(c + 16 + 4)), cks = Int(f.u32(c + 16 + 8)), cvs = Int(f.u32(c + 16 + 12))
            #expect(Array(f[(e + pos)..<(e + pos + ksize)]) == Array(f[(c + 16 + cpos)..<(c + 16 + cpos + cks)]))
            #expect(cvs == 40)
        }
    }

    @Test func metaPagesAlternateByTxid() throws {
        let (fs, db) = try memoryDB()
        for t in 2...5 {
            try db.update { try $0.createBucketIfNotExists(bytes("b")).put(bytes("k"), [UInt8(t)]) }
            let f = try fs.contents("/db/db")
            let slot = t % 2, other = 1 - slot
            #expect(f.u64(slot * 4096 + 64) == UInt64(t))
            #expect(f.u64(other * 4096 + 64) == UInt64(t - 1))
            #expect(db.metaInfo.txid == UInt64(t))
        }
    }

    @Test func freelistPageWithMoreThan65535Ids() throws {
        let fl = Freelist()
        let ids = (0..<70_000).map { UInt64(10 + 2 * $0) }
        fl.readIDs(ids)
        #expect(fl.size() == 16 + 8 * 70_001)
        var page = [UInt8](repeating: 0, count: (fl.size() / 4096 + 1) * 4096)
        page.setU64(0, 5)
        fl.write(into: &page)
        #expect(page.u16(8) == 0x10)
        #expect(page.u16(10) == 0xFFFF)
        #expect(page.u64(16) == 70_000)
        #expect(page.u64(24) == 10)
        let back = try Freelist.readPage(page, pageID: 5, highWater: 1 << 20)
        #expect(back == ids)
    }

    @Test func freelistPageRejectsBadIds() throws {
        var page = [UInt8](repeating: 0, count: 4096)
        page.setU16(8, 0x10)
        page.setU16(10, 2)
        page.setU64(16, 7)
        page.setU64(24, 7)
        #expect(throws: BoltError.self) { try Freelist.readPage(page, pageID: 2, highWater: 100) }
        page.setU64(24, 1000)
        #expect(throws: BoltError.self) { try Freelist.readPage(page, pageID: 2, highWater: 100) }
        page.setU16(8, 0x02)
        #expect(throws: BoltError.self) { try Freelist.readPage(page, pageID: 2, highWater: 100) }
    }

    @Test func noFreelistSyncWritesTheNoFreelistMarker() throws {
        var o = BoltOptions()
        o.noFreelistSync = true
        let (fs, db) = try memoryDB(o)
        #expect(db.metaInfo.freelistPage == 2)  // a new file has bbolt's initial freelist page
        try db.update { try $0.createBucket(bytes("b")) }
        #expect(db.metaInfo.freelistPage == nil)
        let f = try fs.contents("/db/db")
        #expect(f.u64(48) == 0xFFFF_FFFF_FFFF_FFFF)   // meta 0 holds txid 2
        #expect(f.u64(64) == 2)
    }

    @Test func fileGrowsAsBboltGrowsIt() throws {
        // With a written freelist bbolt grows the file to its mmap size (32 KiB, 64 KiB, ...);
        // with etcd's options (NoFreelistSync) only page writes extend it.
        let (_, db) = try memoryDB()
        try db.update { tx in
            let b = try tx.createBucket(bytes("b"))
            for i in 0..<100 { try b.put(seqKey(i), value(i, size: 100)) }
        }
        #expect(try db.fileSize() == 65536)   // as real bbolt (checked with bbolt-check run)
        try db.update { tx in
            let b = try tx.bucket(bytes("b"))!
            for i in 100..<400 { try b.put(seqKey(i), value(i, size: 100)) }
        }
        #expect(try db.fileSize() == 262144)

        let (_, edb) = try memoryDB(.etcd)
        try edb.update { tx in
            let b = try tx.createBucket(bytes("b"))
            for i in 0..<100 { try b.put(seqKey(i), value(i, size: 100)) }
        }
        #expect(try edb.fileSize() == edb.size)
    }
}
