import Testing
import FileIO
@testable import Backend

/// A damaged file gives errors, never a crash; a damaged meta page falls back to the other.
@Suite struct CorruptionTests {
    /// A file with a few buckets, nested and inline buckets, overflow values, freed pages.
    func sampleFile(noFreelistSync: Bool = false) throws -> (FaultyFileSystem, [UInt8], Snapshot) {
        var o = BoltOptions()
        o.noFreelistSync = noFreelistSync
        let (fs, db) = try memoryDB(o)
        try db.update { tx in
            let k = try tx.createBucket(bytes("key"))
            for i in 0..<1500 { try k.put(seqKey(i), value(i, size: i % 100 == 0 ? 6000 : 30)) }
            let n = try tx.createBucket(bytes("nest"))
            try n.createBucket(bytes("inline")).put(bytes("a"), bytes("b"))
            let big = try n.createBucket(bytes("big"))
            for i in 0..<300 { try big.put(seqKey(i), value(i, size: 20)) }
        }
        try db.update { tx in for i in 0..<500 { try tx.bucket(bytes("key"))!.delete(seqKey(i * 3)) } }
        let snap = try snapshot(db)
        try db.close()
        return (fs, try fs.contents("/db/db"), snap)
    }

    @Test func corruptNewestMetaFallsBackToTheOther() throws {
        let (fs, _, _) = try sampleFile()
        let db = try BoltDB.open(path: "/db/db", fileSystem: fs)
        let older = try snapshot(db)
        let olderTxid = db.metaInfo.txid
        try db.update { try $0.bucket(bytes("key"))!.put(bytes("new"), bytes("value")) }
        let txid = db.metaInfo.txid
        try db.close()
        var f = try fs.contents("/db/db")
        let slot = Int(txid % 2) * 4096
        for (what, offset) in [("checksum", 72), ("magic", 16), ("version", 20), ("txid", 64)] {
            var g = f
            g[slot + offset] ^= 0x40
            try fs.setContents("/db/db", g)
            let db2 = try BoltDB.open(path: "/db/db", fileSystem: fs)
            #expect(db2.metaInfo.txid == olderTxid, "\(what)")
            #expect(try snapshot(db2) == older, "\(what)")
            #expect(try db2.view { try $0.check() }.isEmpty, "\(what)")
            try db2.close()
        }
        // Both metas bad: bbolt's error for meta 0.
        f[16] ^= 1
        f[4096 + 72] ^= 1
        try fs.setContents("/db/db", f)
        #expect(throws: BoltError.invalid) { try BoltDB.open(path: "/db/db", fileSystem: fs) }
        f[16] ^= 1
        f[72] ^= 1
        try fs.setContents("/db/db", f)
        #expect(throws: BoltError.checksum) { try BoltDB.open(path: "/db/db", fileSystem: fs) }
        f[72] ^= 1
        f[20] = 3
        try fs.setContents("/db/db", f)
        #expect(throws: BoltError.versionMismatch) { try BoltDB.open(path: "/db/db", fileSystem: fs) }
    }

    @Test func checkReportsADamagedMetaPage() throws {
        let (fs, db) = try memoryDB()
        try db.update { try $0.createBucket(bytes("b")).put(bytes("k"), bytes("v")) }
        #expect(try db.view { try $0.check() }.isEmpty)
        var f = try fs.contents("/db/db")
        let slot = Int(db.metaInfo.txid % 2) * 4096
        f[slot + 40] ^= 0xFF          // inside the checksummed meta body
        try fs.setContents("/db/db", f)
        let errs = try db.view { try $0.check() }
        #expect(errs.contains { $0.hasPrefix("meta") }, "\(errs)")
    }

    @Test func tooShortFiles() throws {
        let fs = try memoryFS()
        let f = try fs.open("/db/short", options: .createReadWrite)
        try f.write([1, 2, 3], at: 0)
        try f.close()
        #expect(throws: BoltError.invalid) { try BoltDB.open(path: "/db/short", fileSystem: fs) }
        let (fs2, bytes, _) = try sampleFile()
        try fs2.setContents("/db/db", Array(bytes[0..<(4096 + 100)]))
        #expect(throws: BoltError.fileTooSmall) { try BoltDB.open(path: "/db/db", fileSystem: fs2) }
        // Truncated in the middle: the meta says more pages than the file holds.
        let highWater = Int(min(bytes.u64(56), bytes.u64(4096 + 56)))
        try fs2.setContents("/db/db", Array(bytes[0..<(highWater / 2 * 4096)]))
        #expect(throws: BoltError.self) { try BoltDB.open(path: "/db/db", fileSystem: fs2) }
    }

    /// Opens, reads everything, checks and writes; any error is fine, a trap is not.
    func exercise(_ fs: FaultyFileSystem, _ o: BoltOptions) -> String {
        do {
            let db = try BoltDB.open(path: "/db/db", fileSystem: fs, options: o)
            defer { try? db.close() }
            var stage = "read"
            do {
                _ = try snapshot(db)
                stage = "check"
                _ = try db.view { try $0.check() }
                stage = "reverse"
                try db.view { tx in
                    try tx.forEachBucket { _, b in
                        let c = b.cursor()
                        var e = try c.last()
                        while e != nil { e = try c.prev() }
                        _ = try c.seek(seqKey(700))
                    }
                }
                stage = "write"
                try db.update { tx in
                    let b = try tx.createBucketIfNotExists(bytes("key"))
                    for i in 0..<200 { try b.put(seqKey(i * 5), value(i, size: 40)) }
                    for i in 0..<200 { try b.delete(seqKey(i * 7)) }
                    try tx.deleteBucket(bytes("nest"))
                }
                stage = "writeTo"
                _ = try db.view { try $0.writeTo { _ in } }
                return "ok"
            } catch {
                return "\(stage) error"
            }
        } catch {
            return "open error"
        }
    }

    @Test(arguments: [false, true])
    func randomDamageNeverCrashes(noFreelistSync: Bool) throws {
        let (fs, original, _) = try sampleFile(noFreelistSync: noFreelistSync)
        var o = BoltOptions()
        o.noFreelistSync = noFreelistSync
        let pages = original.count / 4096
        var outcomes: [String: Int] = [:]
        for seed in 0..<150 as Range<UInt64> {
            var rng = SplitMix64(seed: seed)
            var f = original
            switch seed % 5 {
            case 0:   // flip a few bytes anywhere in the data pages
                for _ in 0..<Int(rng.next() % 8 + 1) {
                    let i = 2 * 4096 + Int(rng.next() % UInt64(f.count - 2 * 4096))
                    f[i] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
                }
            case 1:   // damage page headers and element headers
                let p = 2 + Int(rng.next() % UInt64(pages - 2))
                for _ in 0..<4 { f[p * 4096 + Int(rng.next() % 64)] = UInt8(truncatingIfNeeded: rng.next()) }
            case 2:   // a page full of garbage
                let p = 2 + Int(rng.next() % UInt64(pages - 2))
                for i in 0..<4096 { f[p * 4096 + i] = UInt8(truncatingIfNeeded: rng.next()) }
            case 3:   // a zeroed page
                let p = 2 + Int(rng.next() % UInt64(pages - 2))
                for i in 0..<4096 { f[p * 4096 + i] = 0 }
            default:  // a page copied over another (duplicate references, wrong ids)
                let a = 2 + Int(rng.next() % UInt64(pages - 2)), b = 2 + Int(rng.next() % UInt64(pages - 2))
                f.replaceSubrange(a * 4096..<(a + 1) * 4096, with: f[b * 4096..<(b + 1) * 4096])
                if rng.next() % 2 == 0 { f.setU64(a * 4096, UInt64(a)) }
            }
            try fs.setContents("/db/db", f)
            outcomes[exercise(fs, o), default: 0] += 1
        }
        // Most damage is detected somewhere; none of it may crash the process.
        #expect(outcomes.values.reduce(0, +) == 150)
        #expect(outcomes["ok", default: 0] < 150)
    }

    @Test func hostileMetaWithValidChecksum() throws {
        let (fs, original, _) = try sampleFile()
        for (field, v) in [(48, UInt64.max - 1), (56, UInt64(1) << 60), (32, UInt64(1)), (32, UInt64(1) << 40), (48, 1)] {
            var f = original
            for slot in [0, 4096] {
                f.setU64(slot + field, v)
                let sum = f.withUnsafeBytes { fnv64a(UnsafeRawBufferPointer(rebasing: $0[(slot + 16)..<(slot + 72)])) }
                f.setU64(slot + 72, sum)
            }
            try fs.setContents("/db/db", f)
            let outcome = exercise(fs, BoltOptions())
            #expect(outcome != "ok", "field \(field) = \(v)")
        }
    }

    @Test func cyclicBranchIsAnError() throws {
        let (fs, original, _) = try sampleFile()
        let db = try BoltDB.open(path: "/db/db", fileSystem: fs)
        let root = try db.view { try $0.bucket(bytes("key"))!.rootPageID }
        try db.close()
        var f = original
        let r = Int(root) * 4096
        #expect(f.u16(r + 8) == 0x01)
        // Point the branch's second child at the branch itself.
        f.setU64(r + 16 + 16 + 8, root)
        try fs.setContents("/db/db", f)
        var o = BoltOptions()
        o.readOnly = true
        let db2 = try BoltDB.open(path: "/db/db", fileSystem: fs, options: o)
        #expect(throws: BoltError.self) { try snapshot(db2) }
        let errs = try db2.view { try $0.check() }
        #expect(errs.contains { $0.contains("multiple references") })
        // With NoFreelistSync the scan that rebuilds the free list finds it at open.
        var o2 = BoltOptions()
        o2.noFreelistSync = true
        let (fs3, orig3, _) = try sampleFile(noFreelistSync: true)
        let db3 = try BoltDB.open(path: "/db/db", fileSystem: fs3, options: o2)
        let root3 = try db3.view { try $0.bucket(bytes("key"))!.rootPageID }
        try db3.close()
        var g = orig3
        g.setU64(Int(root3) * 4096 + 16 + 16 + 8, root3)
        try fs3.setContents("/db/db", g)
        #expect(throws: BoltError.self) { try BoltDB.open(path: "/db/db", fileSystem: fs3, options: o2) }
    }
}
