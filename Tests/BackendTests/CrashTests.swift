import Testing
import FileIO
@testable import Backend

/// Power loss at random points of commits (FaultyFileSystem drops unsynced writes, tears the
/// last page written, or writes back unsynced pages out of order): after a reboot the file
/// holds exactly the last committed version or the one being committed, never a mix, and it
/// passes the consistency check. Every commit that returned is there.
@Suite struct CrashTests {
    static let models: [(String, PowerLossModel)] = [
        ("dropUnsynced", .dropUnsynced),
        ("tornLastPage", .tornLastPage),
        ("tornLastPageAnyByte", .tornLastPageAnyByte),
        ("writeback", .writeback),
    ]

    typealias State = [String: [[UInt8]: [UInt8]]]

    func read(_ db: BoltDB) throws -> State { try snapshot(db) }

    /// One transaction's worth of random changes to `state`, applied to `tx` too.
    func mutate(_ tx: BoltTx, _ state: inout State, _ rng: inout SplitMix64) throws {
        let names = ["key", "lease", "meta"]
        let n = Int(rng.next() % 40) + 1
        for _ in 0..<n {
            let name = names[Int(rng.next() % 3)]
            let b = try tx.createBucketIfNotExists(bytes(name))
            let hname = hex(bytes(name))
            if state[hname] == nil { state[hname] = [:] }
            let k = seqKey(Int(rng.next() % 1500))
            if rng.next() % 3 == 0 {
                try b.delete(k)
                state[hname]![k] = nil
            } else {
                let size = rng.next() % 50 == 0 ? 9000 : Int(rng.next() % 300)
                let v = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                try b.put(k, v)
                state[hname]![k] = v
            }
        }
    }

    @Test(arguments: 0..<4)
    func powerLossDuringCommits(modelIndex: Int) throws {
        let (name, model) = CrashTests.models[modelIndex]
        var crashes = 0, inFlightSurvived = 0
        for run in 0..<30 {
            let seed = UInt64(modelIndex * 1000 + run)
            var rng = SplitMix64(seed: seed)
            var fs = FaultyFileSystem(seed: seed, model: model)
            try fs.createDirectory("/d")
            try fs.syncDirectory("/")
            var options = BoltOptions()
            options.noFreelistSync = run % 2 == 0
            var db = try BoltDB.open(path: "/d/db", fileSystem: fs, options: options)
            var committed = try read(db)
            // Several crash/reboot cycles on the same file.
            for cycle in 0..<3 {
                for _ in 0..<Int(rng.next() % 4) {
                    let tx = try db.beginWrite()
                    var next = committed
                    try mutate(tx, &next, &rng)
                    try tx.commit()
                    committed = next
                }
                fs.crash(beforeOperation: Int(rng.next() % 40) + 1)
                var inFlight: State?
                while inFlight == nil {
                    let tx: BoltTx
                    do { tx = try db.beginWrite() } catch { inFlight = committed; break }
                    var next = committed
                    try mutate(tx, &next, &rng)
                    do {
                        try tx.commit()
                        committed = next
                    } catch {
                        #expect(error as? FileIOError == .powerLost, "\(name) run \(run): \(error)")
                        inFlight = next
                    }
                }
                crashes += 1
                fs = fs.reboot()
                db = try BoltDB.open(path: "/d/db", fileSystem: fs, options: options)
                let got = try read(db)
                if got == inFlight && got != committed { inFlightSurvived += 1 }
                #expect(got == committed || got == inFlight,
                        "\(name) run \(run) cycle \(cycle): the file holds neither the committed nor the in-flight version")
                let errs = try db.view { try $0.check() }
                #expect(errs.isEmpty, "\(name) run \(run) cycle \(cycle): \(errs.prefix(3))")
                committed = got
            }
            // The recovered file keeps working: reuse its free pages.
            for _ in 0..<3 {
                let tx = try db.beginWrite()
                var next = committed
                try mutate(tx, &next, &rng)
                try tx.commit()
                committed = next
            }
            #expect(try read(db) == committed)
            #expect(try db.view { try $0.check() }.isEmpty)
        }
        #expect(crashes == 90)
        if model == .dropUnsynced { #expect(inFlightSurvived == 0) }
    }

    @Test func tornMetaPageFallsBackToThePreviousVersion() throws {
        // Crash right after the meta page write, before its fdatasync, tearing it at any byte.
        var survivedOld = 0, survivedNew = 0
        for seed in 0..<40 as Range<UInt64> {
            let fs = FaultyFileSystem(seed: seed, model: PowerLossModel(tearGranularity: 1, tearLastWrite: 1.0))
            try fs.createDirectory("/d")
            try fs.syncDirectory("/")
            let db = try BoltDB.open(path: "/d/db", fileSystem: fs)
            try db.update { try $0.createBucket(bytes("b")).put(bytes("k"), bytes("old")) }
            // Commit = write pages, dataSync, write meta, dataSync: crash before the last one.
            let tx = try db.beginWrite()
            try tx.bucket(bytes("b"))!.put(bytes("k"), bytes("new"))
            fs.crash(beforeOperation: 2, counting: [.dataSync])
            #expect(throws: FileIOError.powerLost) { try tx.commit() }
            let fs2 = fs.reboot()
            let db2 = try BoltDB.open(path: "/d/db", fileSystem: fs2)
            let v = try db2.view { try $0.bucket(bytes("b"))!.get(bytes("k")) }
            if v == bytes("old") { survivedOld += 1 } else if v == bytes("new") { survivedNew += 1 } else {
                Issue.record("seed \(seed): \(String(describing: v))")
            }
            #expect(try db2.view { try $0.check() }.isEmpty)
        }
        // The tear keeps a prefix: only a prefix covering the whole 80-byte meta is the new one.
        #expect(survivedOld > 0)
        #expect(survivedOld + survivedNew == 40)
    }

    @Test func injectedWriteErrorLeavesTheDatabaseUsable() throws {
        // A failed page write or page fdatasync happens before the meta page is touched: the
        // commit fails, the free list is reloaded, and the next commit works.
        for kind in [FileOperation.write, .dataSync] {
            for nofl in [false, true] {
                let fs = try memoryFS()
                var o = BoltOptions()
                o.noFreelistSync = nofl
                let db = try BoltDB.open(path: "/db/db", fileSystem: fs, options: o)
                try db.update { tx in
                    let b = try tx.createBucket(bytes("b"))
                    for i in 0..<500 { try b.put(seqKey(i), value(i, size: 50)) }
                }
                let before = try snapshot(db)
                let tx = try db.beginWrite()
                for i in 0..<500 { try tx.bucket(bytes("b"))!.put(seqKey(i), value(i + 1, size: 50)) }
                fs.injectFailure(on: [kind], count: 1)
                #expect(throws: FileIOError.self) { try tx.commit() }
                #expect(try snapshot(db) == before)
                try db.update { tx in try tx.bucket(bytes("b"))!.put(bytes("z"), bytes("z")) }
                var after = before
                after[hex(bytes("b"))]![bytes("z")] = bytes("z")
                #expect(try snapshot(db) == after)
                #expect(try db.view { try $0.check() }.isEmpty)
                try db.close()
                let db2 = try BoltDB.open(path: "/db/db", fileSystem: fs, options: o)
                #expect(try snapshot(db2) == after)
            }
        }
    }
}
