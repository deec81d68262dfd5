import Foundation
import Testing
import FileIO
@testable import Backend

/// The strongest check of the file format: the real bbolt (Tools/bbolt-check, built with
/// Debian's golang-go against golang-github-coreos-bbolt-dev) opens files Backend wrote, runs
/// its own tx.Check() and dumps them; and Backend reads files the real bbolt wrote. The same
/// operation script run by both gives byte-identical files whenever bbolt itself is
/// deterministic (bbolt ranges over Go maps when several buckets or several underfull pages
/// change in one transaction; then the contents are compared instead of the bytes).
@Suite(.serialized, .enabled(if: BboltTool.path != nil, "real bbolt unavailable: \(BboltTool.skipReason)"))
struct BboltInteropTests {
    func bboltCheck(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let (code, out, err) = BboltTool.call(["check", path])
        #expect(code == 0 && out == "OK\n", "bbolt tx.Check of \(path): \(out.prefix(500)) \(err.prefix(300))", sourceLocation: sourceLocation)
    }

    func bboltDump(_ path: String) -> String {
        let (code, out, err) = BboltTool.call(["dump", path])
        #expect(code == 0, "bbolt dump: \(err)")
        return out
    }

    func swiftDump(_ path: String) throws -> String {
        var o = BoltOptions()
        o.readOnly = true
        let db = try BoltDB.open(path: path, fileSystem: PosixFileSystem(), options: o)
        defer { try? db.close() }
        #expect(try db.view { try $0.check() }.isEmpty, "Backend check of \(path)")
        return try dumpDB(db)
    }

    /// A deterministic script (one changed paged bucket per transaction, deletes one key at a
    /// time): bbolt's output is a function of the script.
    static func deterministicScript(seed: UInt64, pageSize: Int, noFreelistSync: Bool, txs: Int = 60) -> String {
        var rng = SplitMix64(seed: seed)
        var s = "open \(pageSize) \(noFreelistSync ? 1 : 0)\nbegin\n"
        let buckets = ["6b6579", "6d657461", "6c65617365"]     // key, meta, lease
        for b in buckets { s += "create \(b)\n" }
        s += "create 6e\ncreate 6e/6931\nput 6e/6931 01 02\ncreate 6e/6932\ncommit\n"
        var n: [String: Int64] = [:]
        for t in 0..<txs {
            s += "begin\n"
            let b = buckets[Int(rng.next() % 3)]
            switch rng.next() % 20 {
            case 0..<11:
                let count = Int64(rng.next() % 200 + 1)
                let sizes = [0, 10, 100, 1000, 3000, 9000]
                let size = sizes[Int(rng.next() % UInt64(sizes.count))]
                let fills = ["0.5", "0.9", "1.0", "0.1"]
                s += "fill \(b) \(fills[Int(rng.next() % 4)])\n"
                s += "putn \(b) - \(n[b, default: 0]) \(count) \(size) \(rng.next() % 100_000)\n"
                n[b, default: 0] += count
            case 11..<17:
                if let k = n[b], k > 0 { s += "deln \(b) - \(Int64(rng.next() % UInt64(k))) 1 1\n" }
            case 17:
                s += "putn 6e/6932 - \(t) 7 20 \(t)\nseq 6e/6932 \(t)\n"
            case 18:
                s += "put \(b) 00 00\ncommit\nclose\nopen \(pageSize) \(noFreelistSync ? 1 : 0)\nbegin\n"
            default:
                s += "put \(b) 01 01\nrollback\nbegin\n"
            }
            s += "commit\n"
        }
        return s
    }

    /// Runs `script` with the real bbolt (into go.db) and with Backend (into swift.db) in
    /// `dir`; returns both files' bytes.
    func runBoth(_ script: String, in dir: TempDir) throws -> (bbolt: [UInt8], backend: [UInt8]) {
        try PosixFileSystem().writeFile(dir.file("script"), bytes(script))
        let (code, _, err) = BboltTool.call(["run", dir.file("script"), dir.file("go.db")])
        #expect(code == 0, "bbolt run: \(err)")
        try runScript(script, path: dir.file("swift.db"))
        return (try PosixFileSystem().readFile(dir.file("go.db")), try PosixFileSystem().readFile(dir.file("swift.db")))
    }

    @Test(arguments: [(4096, false), (4096, true), (1024, false), (8192, true), (2048, true)])
    func sameScriptSameBytes(pageSize: Int, noFreelistSync: Bool) throws {
        let dir = TempDir("interop")
        defer { dir.cleanup() }
        for seed in 0..<2 as Range<UInt64> {
            let script = BboltInteropTests.deterministicScript(seed: seed * 31 + UInt64(pageSize), pageSize: pageSize, noFreelistSync: noFreelistSync)
            let (g, s) = try runBoth(script, in: dir)
            #expect(g.count == s.count, "file sizes: bbolt \(g.count), Backend \(s.count)")
            if g != s {
                let first = zip(g, s).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(g.count, s.count)
                Issue.record("seed \(seed): files differ first at byte \(first) (page \(first / pageSize))")
            }
            bboltCheck(dir.file("swift.db"))
            #expect(bboltDump(dir.file("go.db")) == (try swiftDump(dir.file("swift.db"))))
            try? FileManager.default.removeItem(atPath: dir.file("go.db"))
            try? FileManager.default.removeItem(atPath: dir.file("swift.db"))
        }
    }

    /// One transaction that appends 100,000 keys (as a large delete's tombstones do) splits
    /// one node into thousands of pages: at bbolt's split points, byte for byte, in linear time
    /// (the split once copied the rest of the node at every cut: quadratic time and memory).
    @Test(arguments: ["0.5", "1.0"])
    func oneBatchOfManyAppendedKeysSplitsAsBbolt(fill: String) throws {
        let dir = TempDir("interop")
        defer { dir.cleanup() }
        let script = "open 4096 1\nbegin\ncreate 6b6579\ncommit\nbegin\nfill 6b6579 \(fill)\nputn 6b6579 - 0 100000 40 7\ncommit\n"
        let (g, s) = try runBoth(script, in: dir)
        #expect(g == s, "files differ: bbolt \(g.count) bytes, Backend \(s.count)")
        bboltCheck(dir.file("swift.db"))
    }

    @Test func hugeKeysOverflowBranchPages() throws {
        let dir = TempDir("interop")
        defer { dir.cleanup() }
        let p = String(repeating: "ab", count: 3000), q = String(repeating: "cd", count: 20000)
        let script = """
            open 4096 0
            begin
            create 61
            putn 61 \(p) 0 200 10 1
            commit
            begin
            putn 61 \(q) 0 50 5000 2
            commit
            begin
            deln 61 \(p) 0 1 1
            commit
            begin
            create 62
            putn 62 \(p) 0 3 10 1
            commit

            """
        try PosixFileSystem().writeFile(dir.file("script"), bytes(script))
        #expect(BboltTool.call(["run", dir.file("script"), dir.file("go.db")]).0 == 0)
        try runScript(script, path: dir.file("swift.db"))
        #expect(try PosixFileSystem().readFile(dir.file("go.db")) == PosixFileSystem().readFile(dir.file("swift.db")))
        bboltCheck(dir.file("swift.db"))
        let stats = BboltTool.call(["stats", dir.file("swift.db")]).1
        #expect(stats.contains("branchOverflow=") && !stats.contains("branchOverflow=0 leaf=123"))
        #expect(try swiftDump(dir.file("go.db")) == bboltDump(dir.file("go.db")))
    }

    /// Several buckets changed per transaction, mass deletes and bucket deletes: bbolt's own
    /// layout varies run to run, so compare contents and checks both ways.
    static func randomScript(seed: UInt64, noFreelistSync: Bool) -> String {
        var rng = SplitMix64(seed: seed)
        var s = "open 4096 \(noFreelistSync ? 1 : 0)\nbegin\n"
        let buckets = ["61", "62", "63", "64/65", "64/66"]
        s += "create 61\ncreate 62\ncreate 63\ncreate 64\ncreate 64/65\ncreate 64/66\ncommit\n"
        var n: [String: Int64] = [:]
        var dropped = false
        for _ in 0..<40 {
            s += "begin\n"
            for _ in 0..<Int(rng.next() % 4 + 1) {
                let b = buckets[Int(rng.next() % UInt64(buckets.count))]
                if dropped && b.hasPrefix("64") { continue }
                if rng.next() % 3 == 0, let k = n[b], k > 10 {
                    let count = Int64(rng.next() % UInt64(k / 2)) + 1
                    s += "deln \(b) - 0 \(count) \(rng.next() % 3 + 1)\n"
                } else {
                    let count = Int64(rng.next() % 500 + 1)
                    s += "putn \(b) - \(n[b, default: 0]) \(count) \(rng.next() % 2 == 0 ? 30 : 1500) \(rng.next() % 1000)\n"
                    n[b, default: 0] += count
                }
            }
            if !dropped && rng.next() % 30 == 0 {
                s += "delbucket 64\n"
                dropped = true
            }
            s += "commit\n"
        }
        return s
    }

    @Test(arguments: [false, true])
    func bothWaysWithManyKeys(noFreelistSync: Bool) throws {
        let dir = TempDir("interop")
        defer { dir.cleanup() }
        for seed in 0..<2 as Range<UInt64> {
            let script = BboltInteropTests.randomScript(seed: seed + (noFreelistSync ? 100 : 0), noFreelistSync: noFreelistSync)
            try PosixFileSystem().writeFile(dir.file("script"), bytes(script))
            // bbolt writes, Backend reads.
            let (code, _, err) = BboltTool.call(["run", dir.file("script"), dir.file("go.db")])
            #expect(code == 0, "bbolt run: \(err)")
            let goDump = bboltDump(dir.file("go.db"))
            #expect(goDump.count > 100_000)
            #expect(try swiftDump(dir.file("go.db")) == goDump)
            // Backend writes, bbolt reads.
            try runScript(script, path: dir.file("swift.db"))
            bboltCheck(dir.file("swift.db"))
            #expect(bboltDump(dir.file("swift.db")) == goDump)
            // Backend continues a file bbolt wrote, and bbolt one Backend wrote.
            let more = "open 4096 \(noFreelistSync ? 1 : 0)\nbegin\nputn 61 - 100000 700 200 5\ndeln 61 - 0 300 1\ncommit\n"
            try PosixFileSystem().writeFile(dir.file("more"), bytes(more))
            try runScript(more, path: dir.file("go.db"))
            bboltCheck(dir.file("go.db"))
            #expect(BboltTool.call(["run", dir.file("more"), dir.file("swift.db")]).0 == 0)
            #expect(try swiftDump(dir.file("swift.db")) == bboltDump(dir.file("go.db")))
            for f in ["go.db", "swift.db"] { try? FileManager.default.removeItem(atPath: dir.file(f)) }
        }
    }

    @Test func largeEtcdLikeDatabaseAndItsSnapshotAndDefrag() throws {
        let dir = TempDir("interop")
        defer { dir.cleanup() }
        let fs = PosixFileSystem()
        var db = try BoltDB.open(path: dir.file("db"), fileSystem: fs, options: .etcd)
        // etcd's schema; revisions as 17-byte keys, appended with fill percent 0.9.
        try db.update { tx in
            for name in ["key", "meta", "lease", "members", "members_removed", "cluster", "alarm", "auth", "authUsers", "authRoles"] {
                try tx.createBucket(bytes(name))
            }
        }
        var rev: UInt64 = 1
        for batch in 0..<40 {
            try db.update { tx in
                let k = try tx.bucket(bytes("key"))!
                k.fillPercent = 0.9
                for _ in 0..<1000 {
                    rev += 1
                    var key = [UInt8](repeating: 0, count: 17)
                    key.setU64(0, rev.byteSwapped)
                    key[8] = UInt8(ascii: "_")
                    try k.put(key, value(Int(rev), size: batch % 10 == 0 ? 5000 : 120))
                }
                try tx.bucket(bytes("meta"))!.put(bytes("consistent_index"), withUnsafeBytes(of: rev.bigEndian) { Array($0) })
            }
            if batch % 5 == 4 {
                // Compaction: remove old revisions.
                try db.update { tx in
                    let k = try tx.bucket(bytes("key"))!
                    let c = k.cursor()
                    var e = try c.first()
                    var n = 0
                    while let x = e, n < 2500 { if n % 3 != 0 { try c.delete(); e = try c.seek(x.key) } else { e = try c.next() }; n += 1 }
                }
            }
        }
        try db.close()
        bboltCheck(dir.file("db"))
        #expect(bboltDump(dir.file("db")) == (try swiftDump(dir.file("db"))))
        let stats = BboltTool.call(["stats", dir.file("db")]).1
        #expect(stats.contains("6b6579 branch="))     // "key": a multi-level tree
        db = try BoltDB.open(path: dir.file("db"), fileSystem: fs, options: .etcd)
        // Snapshot stream, opened by bbolt.
        try db.view { tx in try tx.copyFile(to: dir.file("snap.db"), fileSystem: fs) }
        bboltCheck(dir.file("snap.db"))
        #expect(bboltDump(dir.file("snap.db")) == (try swiftDump(dir.file("db"))))
        // Defragmented file, opened by bbolt.
        let sizeBefore = db.size
        db = try db.defragmentFile()
        #expect(db.size < sizeBefore)
        try db.close()
        bboltCheck(dir.file("db"))
        #expect(bboltDump(dir.file("db")) == bboltDump(dir.file("snap.db")))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/etcdctl"), "etcdctl not installed"))
    func etcdctlSnapshotStatusReadsOurFile() throws {
        let dir = TempDir("interop")
        defer { dir.cleanup() }
        let db = try BoltDB.open(path: dir.file("snap.db"), fileSystem: PosixFileSystem(), options: .etcd)
        var crc = CRC32C()
        var total = 0
        let lastRev: UInt64 = 5000
        try db.update { tx in
            for name in ["alarm", "auth", "key", "meta"] { try tx.createBucket(bytes(name)) }
            let k = try tx.bucket(bytes("key"))!
            k.fillPercent = 0.9
            for r in 2...lastRev {
                var key = [UInt8](repeating: 0, count: 17)
                key.setU64(0, r.byteSwapped)
                key[8] = UInt8(ascii: "_")
                try k.put(key, value(Int(r), size: 50))
            }
            try tx.bucket(bytes("meta"))!.put(bytes("consistent_index"), [0, 0, 0, 0, 0, 0, 0, 9])
        }
        // etcdctl's hash: CRC-32C over bucket names, keys and values in order.
        try db.view { tx in
            try tx.forEachBucket { name, b in
                crc.update(name)
                try b.forEach { key, v in crc.update(key); crc.update(v ?? []); total += 1 }
            }
        }
        let size = db.size
        try db.close()
        let (code, out, err) = BboltTool.run("/usr/bin/etcdctl", ["snapshot", "status", dir.file("snap.db"), "-w", "json"])
        #expect(code == 0, "etcdctl: \(err)")
        #expect(out.contains("\"hash\":\(crc.value)"), "\(out)")
        #expect(out.contains("\"revision\":\(lastRev)"), "\(out)")
        #expect(out.contains("\"totalKey\":\(total)"), "\(out)")
        #expect(out.contains("\"totalSize\":\(size)"), "\(out)")
    }
}

struct CRC32C {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }
    private var crc: UInt32 = 0xFFFF_FFFF
    mutating func update(_ b: [UInt8]) {
        for x in b { crc = CRC32C.table[Int((crc ^ UInt32(x)) & 0xFF)] ^ (crc >> 8) }
    }
    var value: UInt32 { crc ^ 0xFFFF_FFFF }
}
