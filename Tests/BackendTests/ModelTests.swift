import Testing
import FileIO
@testable import Backend

/// A seeded random workload against a dictionary model: thousands of puts and deletes across
/// several buckets (one nested, one etcd-like with sequential keys), commits and rollbacks,
/// readers held across commits, reopens in both freelist modes, and the consistency check.
@Suite struct ModelTests {
    struct Model: Equatable {
        var buckets: [String: [[UInt8]: [UInt8]]] = [:]
    }

    static let names = ["key", "meta", "lease", "members", "nest/inner"]

    func bucket(_ tx: BoltTx, _ name: String, create: Bool) throws -> BoltBucket? {
        let parts = name.split(separator: "/").map { bytes(String($0)) }
        var b = create ? try tx.createBucketIfNotExists(parts[0]) : try tx.bucket(parts[0])
        for p in parts.dropFirst() {
            guard let cur = b else { return nil }
            b = create ? try cur.createBucketIfNotExists(p) : try cur.bucket(p)
        }
        return b
    }

    func verify(_ tx: BoltTx, _ model: Model, _ rng: inout SplitMix64) throws {
        for name in ModelTests.names {
            let b = try bucket(tx, name, create: false)
            guard let m = model.buckets[name] else {
                #expect(b == nil, "bucket \(name) should not exist")
                continue
            }
            guard let b else { Issue.record("bucket \(name) missing"); continue }
            let sorted = m.keys.sorted { $0.lexicographicallyPrecedes($1) }
            var got: [[UInt8]] = []
            let c = b.cursor()
            var e = try c.first()
            while let x = e {
                if let v = x.value {
                    got.append(x.key)
                    if m[x.key] != v { Issue.record("\(name): wrong value for \(hex(x.key))") }
                }
                e = try c.next()
            }
            #expect(got == sorted, "\(name): keys differ (\(got.count) vs \(sorted.count))")
            var back: [[UInt8]] = []
            e = try c.last()
            while let x = e { if x.value != nil { back.append(x.key) }; e = try c.prev() }
            #expect(back == sorted.reversed())
            for _ in 0..<20 {
                let k = randomKey(&rng, name)
                #expect(try b.get(k) == m[k])
                let want = sorted.first { !$0.lexicographicallyPrecedes(k) }
                let s = try c.seek(k)
                // seek may land on the nested bucket "inner" in "nest": skip it.
                var sk = s
                while let x = sk, x.value == nil { sk = try c.next() }
                #expect(sk?.key == want)
            }
        }
    }

    func randomKey(_ rng: inout SplitMix64, _ bucket: String) -> [UInt8] {
        if bucket == "key" { return seqKey(Int(rng.next() % 4000)) }
        let n = Int(rng.next() % 400)
        return bytes("k\(n)") + (n % 5 == 0 ? [0, UInt8(n % 7)] : [])
    }

    func randomValue(_ rng: inout SplitMix64) -> [UInt8] {
        let r = rng.next() % 100
        let size: Int
        switch r {
        case 0..<3: size = Int(rng.next() % 20_000) + 4096      // overflow pages
        case 3..<10: size = 0
        default: size = Int(rng.next() % 200)
        }
        return (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func randomizedAgainstDictionaryModel(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let fs = try memoryFS(seed: seed)
        var options = BoltOptions()
        options.noFreelistSync = seed % 2 == 0
        options.pageSize = seed == 3 ? 1024 : 4096
        var db = try BoltDB.open(path: "/db/db", fileSystem: fs, options: options)
        var model = Model()
        var readers: [(BoltTx, Model)] = []
        var ops = 0, commits = 0, rollbacks = 0, reopens = 0

        for step in 0..<400 {
            let tx = try db.beginWrite()
            var next = model
            let nops = Int(rng.next() % 60) + 1
            for _ in 0..<nops {
                let name = ModelTests.names[Int(rng.next() % UInt64(ModelTests.names.count))]
                let r = rng.next() % 100
                if r < 2 && name != "nest/inner" {
                    // Drop a whole bucket.
                    if next.buckets[name] != nil {
                        try tx.deleteBucket(bytes(String(name.split(separator: "/")[0])))
                        next.buckets[name] = nil
                    }
                    continue
                }
                let b = try bucket(tx, name, create: true)!
                if next.buckets[name] == nil { next.buckets[name] = [:] }
                if name == "key" { b.fillPercent = 0.9 }
                if r < 62 {
                    let k: [UInt8]
                    if name == "key" {
                        // Mostly appended revisions, as etcd writes them.
                        k = rng.next() % 4 == 0 ? randomKey(&rng, name) : seqKey((next.buckets[name]!.count + step * 7) % 4000)
                    } else {
                        k = randomKey(&rng, name)
                    }
                    let v = randomValue(&rng)
                    try b.put(k, v)
                    next.buckets[name]![k] = v
                } else if r < 92 {
                    let existing = next.buckets[name]!
                    let k = (!existing.isEmpty && rng.next() % 3 != 0)
                        ? Array(existing.keys)[Int(rng.next() % UInt64(existing.count))]
                        : randomKey(&rng, name)
                    try b.delete(k)
                    next.buckets[name]![k] = nil
                } else {
                    // A burst: a run of deletes (merges) or of sequential puts (splits).
                    let base = Int(rng.next() % 3500)
                    let del = rng.next() % 2 == 0
                    for i in 0..<100 {
                        let k = name == "key" ? seqKey(base + i) : bytes("k\((base + i) % 400)")
                        if del { try b.delete(k); next.buckets[name]![k] = nil } else {
                            let v = value(base + i, size: 40)
                            try b.put(k, v); next.buckets[name]![k] = v
                        }
                    }
                }
                ops += 1
            }
            if rng.next() % 10 == 0 {
                tx.rollback()
                rollbacks += 1
            } else {
                try tx.commit()
                model = next
                commits += 1
            }

            if rng.next() % 8 == 0 {
                let r = try db.beginRead()
                readers.append((r, model))
            }
            if readers.count > 3 || (!readers.isEmpty && rng.next() % 5 == 0) {
                let (r, m) = readers.removeFirst()
                try verify(r, m, &rng)
                r.rollback()
            }
            if step % 25 == 24 {
                try db.view { tx in try verify(tx, model, &rng) }
                let errs = try db.view { try $0.check() }
                #expect(errs.isEmpty, "step \(step): \(errs.prefix(3))")
            }
            if step % 70 == 69 {
                for (r, m) in readers { try verify(r, m, &rng); r.rollback() }
                readers = []
                try db.close()
                if rng.next() % 3 == 0 { options.noFreelistSync.toggle() }
                db = try BoltDB.open(path: "/db/db", fileSystem: fs, options: options)
                reopens += 1
                try db.view { tx in try verify(tx, model, &rng) }
                #expect(try db.view { try $0.check() }.isEmpty)
            }
        }
        for (r, m) in readers { try verify(r, m, &rng); r.rollback() }
        try db.view { tx in try verify(tx, model, &rng) }
        #expect(try db.view { try $0.check() }.isEmpty)
        #expect(ops > 5000 && commits > 300 && rollbacks > 10 && reopens >= 3)
        try db.close()
    }
}
