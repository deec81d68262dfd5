import Foundation
import Testing
import FileIO

/// The fault model itself: what survives a simulated power cut.
@Suite struct FaultyFileSystemTests {
    func fresh(_ model: PowerLossModel = .dropUnsynced, seed: UInt64 = 1) throws -> FaultyFileSystem {
        try faultyFS(seed: seed, model: model)
    }

    @Test func writesAreVisibleAtOnceButOnlySyncedOnesSurvive() throws {
        let fs = try fresh()
        let f = try fs.open("/data/a", options: .createReadWrite)
        try fs.syncDirectory("/data")
        try f.write(Array("hello".utf8), at: 0)
        try f.dataSync()
        try f.write(Array(" world".utf8), at: 5)
        #expect(try f.readAll() == Array("hello world".utf8))
        let after = fs.reboot()
        #expect(try after.readFile("/data/a") == Array("hello".utf8))
    }

    @Test func deadAfterCrash() throws {
        let fs = try fresh()
        let f = try fs.open("/data/a", options: .createReadWrite)
        fs.crash()
        #expect(throws: FileIOError.powerLost) { try f.write([1], at: 0) }
        #expect(throws: FileIOError.powerLost) { try fs.open("/data/b", options: .createReadWrite) }
        #expect(!fs.exists("/data"))
    }

    @Test func unsyncedNamesAreLost() throws {
        let fs = try fresh()
        try fs.writeFile("/data/synced-content-only", [1, 2, 3])  // data synced, name not
        try fs.createDirectory("/data/dir")
        let after = fs.reboot()
        #expect(!after.exists("/data/synced-content-only"))
        #expect(!after.exists("/data/dir"))

        let fs2 = try fresh()
        try fs2.writeFile("/data/x", [1, 2, 3])
        try fs2.syncDirectory("/data")
        try fs2.rename("/data/x", to: "/data/y")
        #expect(fs2.exists("/data/y") && !fs2.exists("/data/x"))
        let after2 = fs2.reboot()
        #expect(after2.exists("/data/x") && !after2.exists("/data/y"))
        #expect(try after2.readFile("/data/x") == [1, 2, 3])
    }

    @Test func directoryRenameMovesItsContents() throws {
        let fs = try fresh()
        try fs.createDirectory("/data/w.tmp")
        try fs.writeFile("/data/w.tmp/f", [9])
        try fs.syncDirectory("/data/w.tmp")
        try fs.rename("/data/w.tmp", to: "/data/w")
        try fs.syncDirectory("/data")
        let after = fs.reboot()
        #expect(try after.readFile("/data/w/f") == [9])
        #expect(!after.exists("/data/w.tmp"))
    }

    @Test func truncateAndPreallocateAreDurableOnlyAfterSync() throws {
        let fs = try fresh()
        let f = try fs.open("/data/a", options: .createReadWrite)
        try fs.syncDirectory("/data")
        try f.write([UInt8](repeating: 7, count: 100), at: 0)
        try f.sync()
        try f.truncate(to: 10)
        try f.preallocate(to: 1000, keepSize: false)
        #expect(try f.size() == 1000)
        #expect(try f.read(at: 0, count: 20) == [UInt8](repeating: 7, count: 10) + [UInt8](repeating: 0, count: 10))
        let after = fs.reboot()
        #expect(try after.readFile("/data/a") == [UInt8](repeating: 7, count: 100))
    }

    /// A torn last write keeps a prefix of whole sectors; the rest of the page keeps its old
    /// content. Over many seeds, tears happen at several different sector boundaries.
    @Test func tornLastWriteKeepsWholeSectors() throws {
        var prefixes = Set<Int>()
        for seed in UInt64(1)...60 {
            let fs = try fresh(.tornLastPage, seed: seed)
            let f = try fs.open("/data/a", options: .createReadWrite)
            try fs.syncDirectory("/data")
            try f.preallocate(to: 8192, keepSize: false)
            try f.sync()
            try f.write([UInt8](repeating: 0xAB, count: 4096), at: 0)
            let got = try fs.reboot().readFile("/data/a")
            #expect(got.count == 8192)
            let kept = got.prefix { $0 == 0xAB }.count
            #expect(kept % 512 == 0 && kept < 4096)
            #expect(got[kept...].allSatisfy { $0 == 0 })
            prefixes.insert(kept)
        }
        #expect(prefixes.count >= 4)
        #expect(prefixes.contains(0))  // not torn: lost
    }

    @Test func tearAtAnyByte() throws {
        var prefixes = Set<Int>()
        for seed in UInt64(1)...40 {
            let fs = try fresh(.tornLastPageAnyByte, seed: seed)
            let f = try fs.open("/data/a", options: .createReadWrite)
            try fs.syncDirectory("/data")
            try f.write([UInt8](repeating: 1, count: 100), at: 0)
            try f.dataSync()
            try f.write([UInt8](repeating: 2, count: 1000), at: 100)
            let got = try fs.reboot().readFile("/data/a")
            #expect(got.prefix(100).allSatisfy { $0 == 1 })
            prefixes.insert(got.count - 100)
        }
        #expect(prefixes.count >= 10)
    }

    /// Only the LAST unsynced write may be torn; earlier unsynced writes are lost whole.
    @Test func earlierUnsyncedWritesAreLost() throws {
        for seed in UInt64(1)...30 {
            let fs = try fresh(.tornLastPage, seed: seed)
            let f = try fs.open("/data/a", options: .createReadWrite)
            try fs.syncDirectory("/data")
            try f.write([UInt8](repeating: 1, count: 4096), at: 0)
            try f.write([UInt8](repeating: 2, count: 4096), at: 4096)
            let got = try fs.reboot().readFile("/data/a")
            #expect(!got.contains(1))
        }
    }

    /// Writeback: some unsynced pages reach the disk, out of order.
    @Test func writebackKeepsSomePagesOutOfOrder() throws {
        var sawHole = false
        for seed in UInt64(1)...40 {
            let fs = try fresh(.writeback, seed: seed)
            let f = try fs.open("/data/a", options: .createReadWrite)
            try fs.syncDirectory("/data")
            try f.preallocate(to: 4096 * 8, keepSize: false)
            try f.sync()
            for p in 0..<8 { try f.write([UInt8](repeating: UInt8(p + 1), count: 4096), at: Int64(p * 4096)) }
            let got = try fs.reboot().readFile("/data/a")
            let pages = (0..<8).map { got[$0 * 4096] != 0 }
            if let firstMissing = pages.firstIndex(of: false), pages[firstMissing...].contains(true) { sawHole = true }
        }
        #expect(sawHole)
    }

    @Test func locksExcludeOtherHandlesUntilClose() throws {
        let fs = try fresh()
        let a = try fs.open("/data/l", options: .createReadWrite)
        try a.tryLock()
        let b = try fs.open("/data/l", options: .readWrite)
        #expect(throws: FileIOError.locked(path: "/data/l")) { try b.tryLock() }
        try a.close()
        try b.tryLock()
        let d = try fs.lockDirectory("/data")
        #expect(throws: FileIOError.locked(path: "/data")) { try fs.lockDirectory("/data") }
        try d.unlock()
        _ = try fs.lockDirectory("/data")
    }

    @Test func crashBeforeOperationCountsAndInjectedFailures() throws {
        let fs = try fresh()
        let f = try fs.open("/data/a", options: .createReadWrite)
        fs.injectFailure(on: [.dataSync])
        #expect(throws: FileIOError.injected(operation: "dataSync", path: "/data/a")) { try f.dataSync() }
        try f.dataSync()
        fs.crash(beforeOperation: 2, counting: [.write])
        try f.write([1], at: 0)
        #expect(throws: FileIOError.powerLost) { try f.write([2], at: 1) }
        #expect(fs.isCrashed)
    }

    /// The real file system honours the same interface.
    @Test func posixBasics() throws {
        let tmp = TempDir()
        let fs = PosixFileSystem()
        let dir = tmp.path + "/d/e"
        try fs.createDirectories(dir)
        #expect(fs.isDirectory(dir))
        let f = try fs.open(dir + "/f", options: .createReadWrite)
        try f.write(Array("abc".utf8), at: 0)
        try f.append(Array("def".utf8))
        try f.dataSync()
        try f.preallocate(to: 4096, keepSize: false)
        #expect(try f.size() == 4096)
        try f.preallocate(to: 8192, keepSize: true)
        #expect(try f.size() == 4096)
        try f.truncate(to: 6)
        #expect(try f.readAll() == Array("abcdef".utf8))
        try f.tryLock()
        let g = try fs.open(dir + "/f", options: .readWrite)
        #expect(throws: FileIOError.locked(path: dir + "/f")) { try g.tryLock() }
        try g.close()
        try f.close()
        #expect(throws: FileIOError.closed(path: dir + "/f")) { try f.size() }
        try fs.rename(dir + "/f", to: dir + "/g")
        try fs.syncDirectory(dir)
        #expect(try fs.contentsOfDirectory(dir) == ["g"])
        #expect(throws: FileIOError.alreadyExists(path: dir + "/g")) {
            try fs.open(dir + "/g", options: [.write, .create, .exclusive])
        }
        #expect(throws: FileIOError.notFound(path: dir + "/nope")) { try fs.open(dir + "/nope", options: .read) }
        let l = try fs.lockDirectory(dir)
        #expect(throws: FileIOError.locked(path: dir)) { try fs.lockDirectory(dir) }
        try l.unlock()
        try fs.removeAll(tmp.path + "/d")
        #expect(!fs.exists(tmp.path + "/d"))
        #expect(fs.stats.counters.dataSyncs >= 1 && fs.stats.counters.directorySyncs >= 1)
    }
}
