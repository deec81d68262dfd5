import EtcdProto
import FileIO
import Foundation
import Backend
import Crypto
import Testing

@testable import EtcdServer

@Suite struct MemberIDTests {
    // Real etcd 3.4.23 with no flags logs "starting member 8e9e05c52164694d in cluster cdf818194e3a8c32".
    @Test func defaultMemberAndClusterIDsMatchEtcd() throws {
        let cluster = InitialCluster(peerURLsByName: ["default": ["http://localhost:2380"]])
        let members = cluster.members(clusterToken: "etcd-cluster")
        #expect(members.count == 1)
        #expect(hex(members[0].id) == "8e9e05c52164694d")
        #expect(hex(MemberIDs.clusterID(memberIDs: members.map(\.id))) == "cdf818194e3a8c32")
    }

    @Test func peerURLsAreSortedBeforeHashing() {
        let a = MemberIDs.memberID(peerURLs: ["http://b:2380", "http://a:2380"], clusterToken: "t")
        let b = MemberIDs.memberID(peerURLs: ["http://a:2380", "http://b:2380"], clusterToken: "t")
        #expect(a == b)
        #expect(a != MemberIDs.memberID(peerURLs: ["http://a:2380", "http://b:2380"], clusterToken: "u"))
    }

    @Test func membersAreListedByIDWithSortedURLs() {
        let c = InitialCluster(peerURLsByName: ["a": ["http://3:2380", "http://1:2380"], "b": ["http://2:2380"]])
        let ms = c.members(clusterToken: "etcd-cluster")
        #expect(ms.map(\.id) == ms.map(\.id).sorted())
        #expect(ms.first { $0.name == "a" }?.peerURLs == ["http://1:2380", "http://3:2380"])
    }
}

/// A Range over the whole key space (optionally counting only, or at a past revision).
func wholeKeySpace(countOnly: Bool = false, at revision: Int64 = 0) -> Etcdserverpb_RangeRequest {
    var r = Etcdserverpb_RangeRequest()
    r.key = Data([0])
    r.rangeEnd = Data([0])
    r.countOnly = countOnly
    r.revision = revision
    return r
}

/// Writes acknowledged to the proposers of a crash test.
final class Acknowledged: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [(String, Int64)] = []
    func add(key: String, revision: Int64) { lock.withLock { items.append((key, revision)) } }
    var count: Int { lock.withLock { items.count } }
    var all: [(String, Int64)] { lock.withLock { items } }
}

@Suite struct RequestPathTests {
    /// Seeds 1...200, or 1...N with SWETCD_POWER_LOSS_SEEDS=N for a longer run.
    static let powerLossSeeds: [UInt64] = {
        let n = ProcessInfo.processInfo.environment["SWETCD_POWER_LOSS_SEEDS"].flatMap { UInt64($0) } ?? 200
        return Array(1...max(n, 1))
    }()

    func makeServer(
        maxRequestBytes: Int = 1_572_864, fs: FaultyFileSystem = FaultyFileSystem(seed: 1), unsafeNoFsync: Bool = false,
        configure: (inout ServerConfig) -> Void = { _ in }
    ) async throws -> EtcdServer {
        var config = ServerConfig(
            initialCluster: InitialCluster(peerURLsByName: ["default": ["http://localhost:2380"]]),
            advertiseClientURLs: ["http://localhost:2379"], maxRequestBytes: maxRequestBytes,
            dataDir: "/data", heartbeatMs: 10, electionMs: 100, unsafeNoFsync: unsafeNoFsync,
            fileSystem: fs, onFatal: { _ in })
        configure(&config)
        return try await EtcdServer.start(config: config)
    }

    /// A second member on the same data dir is refused while the first runs.
    @Test func dataDirIsLockedAgainstASecondMember() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swetcd-lock-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func start() async throws -> EtcdServer {
            try await EtcdServer.start(config: ServerConfig(
                initialCluster: InitialCluster(peerURLsByName: ["default": ["http://localhost:2380"]]),
                advertiseClientURLs: [], dataDir: dir, heartbeatMs: 10, electionMs: 100,
                fileSystem: PosixFileSystem(), onFatal: { _ in }))
        }
        let first = try await start()
        await #expect(throws: EtcdError.self) { _ = try await start() }
        first.stop()
        let again = try await start()
        again.stop()
    }

    /// The one test of --unsafe-no-fsync: the WAL is written but never synced.
    @Test func unsafeNoFsyncWritesWithoutSyncing() async throws {
        let fs = FaultyFileSystem(seed: 3)
        let s = try await makeServer(fs: fs, unsafeNoFsync: true)
        defer { s.stop() }
        fs.stats.reset()
        var put = Etcdserverpb_PutRequest()
        put.key = Data("k".utf8)
        for _ in 0..<20 { _ = try await s.put(put) }
        #expect(fs.stats.counters.writes > 0)
        #expect(fs.stats.counters.fileDataSyncs == 0)
    }

    /// Group commit: concurrent proposers share WAL syncs (one per Ready), and every
    /// acknowledged write was synced first (a sync per write at most).
    @Test func concurrentWritesShareSyncs() async throws {
        let fs = FaultyFileSystem(seed: 4)
        let s = try await makeServer(fs: fs)
        defer { s.stop() }
        fs.stats.reset()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<200 {
                group.addTask {
                    var put = Etcdserverpb_PutRequest()
                    put.key = Data("k\(i)".utf8)
                    _ = try await s.put(put)
                }
            }
            try await group.waitForAll()
        }
        let syncs = fs.stats.counters.fileDataSyncs
        #expect(syncs >= 1 && syncs < 200, "\(syncs) syncs for 200 concurrent writes")
    }

    @Test func freshMemberLooksLikeEtcdAfterBootstrap() async throws {
        let s = try await makeServer()
        #expect(s.raftTerm == 2)
        #expect(s.currentRevision == 1)
        let st = s.status()
        #expect(st.leader == s.memberID)
        #expect(st.raftIndex == 4)  // conf change, leader's empty entry, cluster version, attributes
        #expect(st.raftAppliedIndex == st.raftIndex)
        #expect(s.members.map(\.clientURLs) == [["http://localhost:2379"]])
        #expect(s.members.map(\.name) == ["default"])
    }

    @Test func writesAdvanceRevisionAndRaftIndexTogether() async throws {
        let s = try await makeServer()
        var put = Etcdserverpb_PutRequest()
        put.key = Data("foo".utf8)
        put.value = Data("bar".utf8)
        let r1 = try await s.put(put)
        #expect(r1.header.revision == 2)
        let r2 = try await s.put(put)
        #expect(r2.header.revision == 3)
        #expect(s.status().raftIndex == 6)
        var get = Etcdserverpb_RangeRequest()
        get.key = Data("foo".utf8)
        let g = try await s.range(get)
        #expect(g.kvs.first?.version == 2)
        var h = Etcdserverpb_ResponseHeader()
        s.fill(&h)
        #expect(h.clusterID == s.clusterID && h.memberID == s.memberID && h.raftTerm == 2 && h.revision == 3)
    }

    @Test func requestOverMaxRequestBytesIsRefusedBeforeProposing() async throws {
        let s = try await makeServer(maxRequestBytes: 200)
        var put = Etcdserverpb_PutRequest()
        put.key = Data("k".utf8)
        put.value = Data(repeating: 7, count: 300)
        await #expect(throws: EtcdError.requestTooLarge) { try await s.put(put) }
        #expect(s.status().raftIndex == 4)
        #expect(s.currentRevision == 1)
        s.stop()
    }

    @Test func applyErrorsReachTheHandler() async throws {
        let s = try await makeServer()
        var put = Etcdserverpb_PutRequest()
        put.key = Data("k".utf8)
        put.ignoreValue = true
        await #expect(throws: EtcdError.keyNotFound) { try await s.put(put) }
        var c = Etcdserverpb_CompactionRequest()
        c.revision = 5
        await #expect(throws: EtcdError.futureRevision) { try await s.compact(c) }
    }

    @Test func concurrentProposersEachGetTheirOwnResult() async throws {
        let s = try await makeServer()
        let revisions = try await withThrowingTaskGroup(of: Int64.self) { group in
            for i in 0..<50 {
                group.addTask {
                    var put = Etcdserverpb_PutRequest()
                    put.key = Data("k\(i)".utf8)
                    return try await s.put(put).header.revision
                }
            }
            return try await group.reduce(into: [Int64]()) { $0.append($1) }
        }
        #expect(Set(revisions) == Set(2...51))
    }

    @Test func unknownLocalNameIsRejected() async throws {
        await #expect(throws: EtcdError.self) {
            try await EtcdServer.start(config: ServerConfig(
                name: "other", initialCluster: InitialCluster(peerURLsByName: ["default": ["http://localhost:2380"]]),
                advertiseClientURLs: [], dataDir: "/data", fileSystem: FaultyFileSystem(seed: 1)))
        }
    }

    @Test func restartReplaysTheWALAndRaisesTheTerm() async throws {
        let fs = FaultyFileSystem(seed: 2)
        let s = try await makeServer(fs: fs)
        var put = Etcdserverpb_PutRequest()
        put.key = Data("foo".utf8)
        for v in ["a", "b", "c"] {
            put.value = Data(v.utf8)
            _ = try await s.put(put)
        }
        var del = Etcdserverpb_DeleteRangeRequest()
        del.key = Data("foo".utf8)
        _ = try await s.deleteRange(del)
        put.value = Data("d".utf8)
        _ = try await s.put(put)
        s.stop()

        let r = try await makeServer(fs: fs)
        defer { r.stop() }
        #expect(r.raftTerm == 3)
        #expect(r.currentRevision == 6)
        var get = Etcdserverpb_RangeRequest()
        get.key = Data("foo".utf8)
        let kv = try #require(try await r.range(get).kvs.first)
        #expect(kv.value == Data("d".utf8))
        #expect(kv.createRevision == 6 && kv.modRevision == 6 && kv.version == 1)
        #expect(r.members.map(\.name) == ["default"])
        var put2 = Etcdserverpb_PutRequest()
        put2.key = Data("bar".utf8)
        #expect(try await r.put(put2).header.revision == 7)
    }

    /// A power cut at a random moment while proposers write: after reboot every write that
    /// was acknowledged is there, and what is there is a prefix of the order of revisions.
    /// Seeds vary the backend batch limit (commits every 1–13 operations, or by the timer)
    /// and the snapshot count (WAL released behind snapshots every 5–41 entries, or never).
    @Test(arguments: RequestPathTests.powerLossSeeds)
    func powerLossKeepsEveryAcknowledgedWrite(seed: UInt64) async throws {
        let fs = FaultyFileSystem(seed: seed)
        let configure: (inout ServerConfig) -> Void = { c in
            if seed % 4 != 0 { c.backendBatchLimit = Int(seed % 13) + 1 }
            c.backendBatchInterval = .milliseconds(Int(seed % 3) * 10 + 5)
            if seed % 5 != 0 { c.snapshotCount = seed % 37 + 5 }
            c.walSegmentBytes = 8192
            c.maxWALs = 2
            c.maxSnapshots = 2
        }
        let s = try await makeServer(fs: fs, configure: configure)
        let acked = Acknowledged()
        await withTaskGroup(of: Void.self) { group in
            for w in 0..<4 {
                group.addTask {
                    for i in 0..<1000 {
                        var put = Etcdserverpb_PutRequest()
                        put.key = Data("w\(w)-\(i)".utf8)
                        put.value = Data("v\(i)".utf8)
                        guard let resp = try? await s.put(put) else { return }
                        acked.add(key: "w\(w)-\(i)", revision: resp.header.revision)
                    }
                }
            }
            group.addTask {
                // Cut the power after a seed-dependent number of acknowledged writes.
                let target = Int(seed % 11) * 9 + 3
                while acked.count < target { await Task.yield() }
                fs.crash()
            }
        }
        s.stop()
        let rebooted = fs.reboot()
        let r = try await makeServer(fs: rebooted, configure: configure)
        defer { r.stop() }
        for (key, revision) in acked.all {
            var get = Etcdserverpb_RangeRequest()
            get.key = Data(key.utf8)
            get.serializable = true
            let kv = try await r.range(get).kvs.first
            #expect(kv?.modRevision == revision, "acknowledged \(key)@\(revision) lost")
        }
        // Revisions continue without a gap: every revision up to the current one holds a write.
        let kvs = try await r.range(wholeKeySpace()).kvs
        #expect(r.currentRevision >= 1 + Int64(acked.count))
        #expect(Set(kvs.map(\.modRevision)) == Set((1...r.currentRevision).dropFirst()))
    }
}

@Suite struct SnapshotTests {
    /// etcd's --snapshot-count: a snapshot every N applied entries, the WAL released behind
    /// it and old files purged (--max-snapshots, --max-wals); a restart reads the newest
    /// snapshot and only the WAL entries after it, and applies only those past the
    /// backend's consistent_index, with every key and revision intact.
    @Test func restartReadsOnlyTheWALTailAfterTheLastSnapshot() async throws {
        let fs = FaultyFileSystem(seed: 11)
        let configure: (inout ServerConfig) -> Void = { c in
            c.snapshotCount = 200
            c.walSegmentBytes = 16384
            c.maxWALs = 3
            c.maxSnapshots = 2
        }
        let s = try await RequestPathTests().makeServer(fs: fs, configure: configure)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<8 {
                group.addTask {
                    for i in 0..<250 {
                        var put = Etcdserverpb_PutRequest()
                        put.key = Data("w\(w)-\(i)".utf8)
                        put.value = Data(repeating: UInt8(i % 251), count: 40)
                        _ = try await s.put(put)
                    }
                }
            }
            try await group.waitForAll()
        }
        let applied = s.status().raftAppliedIndex
        s.stop()
        let snaps = try fs.contentsOfDirectory("/data/member/snap").filter { $0.hasSuffix(".snap") }.sorted()
        let wals = try fs.contentsOfDirectory("/data/member/wal").filter { $0.hasSuffix(".wal") }
        #expect(snaps.count == 2, "\(snaps)")
        // Purged behind the last snapshot down to --max-wals (segments written after it stay
        // until the next snapshot, as etcd's purge leaves locked segments).
        let snapIndex = UInt64(snaps.last!.dropLast(5).split(separator: "-")[1], radix: 16)!
        let behind = wals.filter { UInt64($0.dropLast(4).split(separator: "-")[1], radix: 16)! <= snapIndex }
        #expect(behind.count <= 3, "\(wals)")
        #expect(!wals.contains("0000000000000000-0000000000000000.wal"), "\(wals)")

        let r = try await RequestPathTests().makeServer(fs: fs, configure: configure)
        defer { r.stop() }
        let report = r.startup
        #expect(report.snapshotIndex > applied - 200 && report.snapshotIndex <= applied)
        #expect(UInt64(report.walEntries) <= applied - report.snapshotIndex)
        #expect(report.consistentIndex >= report.snapshotIndex)
        #expect(r.currentRevision == 2001)
        let all = wholeKeySpace(countOnly: true)
        #expect(try await r.range(all).count == 2000)
        #expect(r.members.map(\.name) == ["default"])
        var put = Etcdserverpb_PutRequest()
        put.key = Data("after".utf8)
        #expect(try await r.put(put).header.revision == 2002)
    }

    /// The issue's figure: after 200,000 writes with etcd's default --snapshot-count
    /// (100,000), a restart starts from the last snapshot and reads only the WAL after it.
    @Test func restartAfter200kWritesReadsOnlyTheTail() async throws {
        let fs = FaultyFileSystem(seed: 13)
        let s = try await RequestPathTests().makeServer(fs: fs)
        let total = 200_000, writers = 100
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<writers {
                group.addTask {
                    var put = Etcdserverpb_PutRequest()
                    put.value = Data("v".utf8)
                    for i in stride(from: w, to: total, by: writers) {
                        put.key = Data("key-\(i)".utf8)
                        _ = try await s.put(put)
                    }
                }
            }
            try await group.waitForAll()
        }
        let applied = s.status().raftAppliedIndex
        s.stop()
        let r = try await RequestPathTests().makeServer(fs: fs)
        defer { r.stop() }
        let report = r.startup
        // The snapshot is taken at the end of the Ready that passes 100,000 applied entries, so
        // the tail is about 100,000 entries give or take one batch (the member's own entries
        // make it a few more than the puts after the snapshot): what matters is that only the
        // entries after the snapshot are read.
        #expect(report.snapshotIndex > 100_000)
        #expect(UInt64(report.walEntries) <= applied - report.snapshotIndex)
        let all = wholeKeySpace(countOnly: true)
        #expect(try await r.range(all).count == Int64(total))
        #expect(r.currentRevision == Int64(total) + 1)
    }

    /// What a snapshot file holds reads back; a damaged newest file is skipped for the
    /// previous one (etcd renames it .broken).
    @Test func snapFilesRoundTripAndDamagedOnesAreSkipped() throws {
        let fs = FaultyFileSystem(seed: 12)
        try fs.createDirectoriesDurably("/snap")
        let dir = SnapDirectory(dir: "/snap", fs: fs)
        var a = Raftpb_Snapshot()
        a.metadata.index = 10
        a.metadata.term = 2
        a.metadata.confState.voters = [1]
        a.data = V2Store.json(members: [Member(id: 0x8e9e05c52164694d, name: "default", peerURLs: ["http://localhost:2380"],
                                               clientURLs: ["http://localhost:2379"])],
                              clusterVersion: "3.4.0", index: 10)
        var b = a
        b.metadata.index = 20
        try dir.save(a)
        try dir.save(b)
        #expect(try dir.names() == ["0000000000000002-0000000000000014.snap", "0000000000000002-000000000000000a.snap"])
        #expect(try dir.loadNewest() == b)
        var bytes = try fs.readFile("/snap/0000000000000002-0000000000000014.snap")
        bytes[bytes.count - 3] ^= 0xff
        try fs.writeFile("/snap/0000000000000002-0000000000000014.snap", bytes)
        #expect(try dir.loadNewest() == a)
        #expect(fs.exists("/snap/0000000000000002-0000000000000014.snap.broken"))
        let parsed = try #require(V2Store.members(from: a.data))
        #expect(parsed.members == [Member(id: 0x8e9e05c52164694d, name: "default", peerURLs: ["http://localhost:2380"],
                                          clientURLs: ["http://localhost:2379"])])
        #expect(parsed.clusterVersion == "3.4.0")
    }
}

@Suite struct MaintenanceTests {
    /// Maintenance.Snapshot: the file as of the moment it was asked for, streamed while
    /// writes go on, followed by its sha256; the bytes open as an etcd db with those keys.
    @Test func snapshotStreamsAConsistentFileWhileWritesGoOn() async throws {
        let s = try await RequestPathTests().makeServer(fs: FaultyFileSystem(seed: 22))
        defer { s.stop() }
        var put = Etcdserverpb_PutRequest()
        put.value = Data(repeating: 1, count: 2000)
        for i in 0..<300 {
            put.key = Data("before\(i)".utf8)
            _ = try await s.put(put)
        }
        let (size, pieces) = try s.backendSnapshot()
        var it = pieces.makeAsyncIterator()
        var bytes = Data()
        guard case .chunk(let first)? = try await it.next() else { Issue.record("no first chunk"); return }
        bytes += first
        for i in 0..<100 {   // the snapshot's read transaction is open: writes still go through
            put.key = Data("during\(i)".utf8)
            _ = try await s.put(put)
        }
        var checksum: Data?
        while let piece = try await it.next() {
            switch piece {
            case .chunk(let d): bytes += d
            case .checksum(let c): checksum = c
            }
        }
        #expect(Int64(bytes.count) == size)
        #expect(bytes.count % 512 == 0)
        #expect(checksum == Data(SHA256.hash(data: bytes)))
        let fs = FaultyFileSystem(seed: 23)
        try fs.createDirectoriesDurably("/snap")
        try fs.writeFile("/snap/db", Array(bytes))
        let db = try BoltDB.open(path: "/snap/db", fileSystem: fs, options: .etcd)
        let keys = try db.view { tx in try tx.bucket(Array("key".utf8))?.count() ?? -1 }
        #expect(keys == 300)
        #expect(s.currentRevision == 401)
    }

    /// Defragment after deletes and a compaction: the file shrinks (Status db_size and
    /// db_size_in_use), every key and revision stays, and the member keeps serving reads and
    /// acknowledging writes while the copy is made.
    @Test func defragmentShrinksTheFileAndKeepsServing() async throws {
        let s = try await RequestPathTests().makeServer(fs: FaultyFileSystem(seed: 21))
        defer { s.stop() }
        var put = Etcdserverpb_PutRequest()
        put.value = Data(repeating: 7, count: 1000)
        for i in 0..<3000 {
            put.key = Data("k\(i)".utf8)
            _ = try await s.put(put)
        }
        var del = Etcdserverpb_DeleteRangeRequest()
        del.key = Data("k1".utf8)
        del.rangeEnd = Data("k9".utf8)
        _ = try await s.deleteRange(del)
        var c = Etcdserverpb_CompactionRequest()
        c.revision = s.currentRevision
        _ = try await s.compact(c)
        _ = try s.hash()  // commits the backend, so the sizes below are the file's
        put.key = Data("k0".utf8)
        _ = try await s.put(put)
        _ = try s.hash()  // a second commit: pages freed by the first become free (bbolt)
        let before = s.status()
        #expect(before.dbSizeInUse < before.dbSize)

        // Writes and reads while the defragmentation runs.
        async let defrag: Void = s.defragment()
        var get = Etcdserverpb_RangeRequest()
        get.key = Data("k0".utf8)
        get.rangeEnd = Data("k1".utf8)
        var worst = Duration.zero
        let clock = ContinuousClock()
        for i in 0..<50 {
            put.key = Data("during\(i)".utf8)
            let t0 = clock.now
            _ = try await s.put(put)
            _ = try await s.range(get)
            worst = max(worst, clock.now - t0)
        }
        try await defrag
        _ = try s.hash()
        let after = s.status()
        #expect(after.dbSize < before.dbSize, "db size \(before.dbSize) -> \(after.dbSize)")
        #expect(after.dbSize - after.dbSizeInUse <= 2 * 4096)
        let all = wholeKeySpace(countOnly: true)
        let kept = (0..<3000).filter { i in let k = "k\(i)"; return !(k >= "k1" && k < "k9") }.count
        #expect(try await s.range(all).count == Int64(kept + 50))
        print("defragment: db \(before.dbSize) -> \(after.dbSize) bytes; slowest put+range during it \(worst)")
    }
}

@Suite struct AutoCompactorTests {
    final class Recorder: @unchecked Sendable {
        let lock = NSLock()
        var rev: Int64 = 0
        var compactions: [Int64] = []
    }

    @Test func retentionIsParsedAsEtcdParsesIt() throws {
        let parse = { (m: String, r: String) throws(EtcdError) -> AutoCompactor.Mode? in
            try AutoCompactor.parse(mode: m, retention: r, parseDuration: { $0 == "5m" ? 300_000_000_000 : ($0 == "1.5h" ? 5_400_000_000_000 : nil) })
        }
        #expect(try parse("periodic", "0") == nil)
        #expect(try parse("periodic", "1") == .periodic(.seconds(3600)))
        #expect(try parse("periodic", "5m") == .periodic(.seconds(300)))
        #expect(try parse("periodic", "1.5h") == .periodic(.seconds(5400)))
        #expect(try parse("revision", "1000") == .revision(1000))
        #expect(throws: EtcdError(.invalidArgument, "error parsing CompactionRetention: time: invalid duration \"abc\"")) {
            _ = try parse("periodic", "abc")
        }
    }

    /// Periodic, 1 h: samples every 6 minutes; the first compaction after an hour goes to the
    /// revision of an hour before, then one every hour.
    @Test func periodicCompactsToTheRevisionOneRetentionAgo() {
        let r = Recorder()
        let c = AutoCompactor(mode: .periodic(.seconds(3600)), currentRevision: { r.lock.withLock { r.rev } }) { rev in
            r.lock.withLock { r.compactions.append(rev) }
        }
        #expect(c.interval == .seconds(360))
        let t0 = ContinuousClock.now
        for minute in stride(from: 0, through: 150, by: 6) {
            r.lock.withLock { r.rev = 1000 + Int64(minute) * 10 }   // ten revisions a minute
            c.tick(now: t0 + .seconds(minute * 60))
        }
        // At minute 60 the sample of minute 0; at minute 120 the oldest of the 11 samples
        // kept, that of minute 54 (etcd's loop samples before it waits).
        #expect(r.compactions == [1000, 1540])
    }

    /// Revision, 1,000: compact to current - 1,000 when positive and new.
    @Test func revisionModeKeepsTheLastRetentionRevisions() {
        let r = Recorder()
        let c = AutoCompactor(mode: .revision(1000), currentRevision: { r.lock.withLock { r.rev } }) { rev in
            r.lock.withLock { r.compactions.append(rev) }
        }
        #expect(c.interval == .seconds(300))
        for rev in [500, 1000, 1500, 1500, 4000] as [Int64] {
            r.lock.withLock { r.rev = rev }
            c.tick(now: .now)
        }
        #expect(r.compactions == [500, 3000])
    }
}

@Suite struct LeaseTests {
    /// A lease left to expire: the leader revokes it through the log, and its keys are
    /// deleted exactly once, all at one revision.
    @Test func expiryDeletesTheKeysOnceAtOneRevision() async throws {
        let s = try await RequestPathTests().makeServer(fs: FaultyFileSystem(seed: 31))
        defer { s.stop() }
        var g = Etcdserverpb_LeaseGrantRequest()
        g.ttl = 0
        // etcd's minimum for a 100 ms election timeout: 1 s (a request below it gets it).
        #expect(try await s.leaseGrant(g).ttl == 1)
        // The lease under test lives 4 s, so that its keys are written before it expires.
        // On a loaded machine (the whole suite runs at once on 2 cores) the writes can be
        // held up longer than that: the expiry then refuses one of them ("requested lease
        // not found", the keys written so far deleted), and the keys go again under a new
        // lease.
        g.ttl = 4
        var lease = Etcdserverpb_LeaseGrantResponse()
        var written = false
        for _ in 0..<5 where !written {
            lease = try await s.leaseGrant(g)
            written = true
            for k in ["a", "b", "c"] {
                var p = Etcdserverpb_PutRequest()
                p.key = Data(k.utf8)
                p.lease = lease.id
                do {
                    _ = try await s.put(p)
                } catch {
                    guard error == .leaseNotFound else { throw error }
                    written = false
                    break
                }
            }
        }
        try #require(written, "the keys were not written before their lease expired, 5 times")
        var p = Etcdserverpb_PutRequest()
        p.key = Data("kept".utf8)
        let before = try await s.put(p).header.revision
        let watcher = s.watchSession()
        var wc = Etcdserverpb_WatchCreateRequest()
        wc.key = Data([0])
        wc.rangeEnd = Data([0])
        // From the revision after the writes: on a loaded machine the 1 s lease may expire
        // before the watcher exists; the deletes then come from the store.
        wc.startRevision = before + 1
        watcher.create(wc)
        let deadline = ContinuousClock.now + .seconds(40)
        var ttl = Etcdserverpb_LeaseTimeToLiveRequest()
        ttl.id = lease.id
        while try await s.leaseTimeToLive(ttl).ttl != -1 {
            try #require(ContinuousClock.now < deadline, "lease not revoked in time")
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(s.currentRevision == before + 1)
        #expect(try await s.range(wholeKeySpace()).kvs.map { String(decoding: $0.key, as: UTF8.self) } == ["kept"])
        #expect(try await s.range(wholeKeySpace(at: before)).kvs.count == 4)
        #expect(try await s.leaseLeases().leases.isEmpty)
        // A watcher saw the three deletes, together, once.
        let seen = await WatchTests.collect(watcher, until: before + 1).filter { !$0.events.isEmpty }
        watcher.close()
        #expect(seen.count == 1)
        #expect(seen.first?.events.map(\.type) == [.delete, .delete, .delete])
        #expect(seen.first?.events.map(\.kv.modRevision) == [before + 1, before + 1, before + 1])
    }

    /// Leases and their keys persist: after a restart the lease is there with its keys and a
    /// fresh TTL (etcd extends leases on a new leader), and revoking it deletes them.
    @Test func leasesSurviveARestart() async throws {
        let fs = FaultyFileSystem(seed: 32)
        let s = try await RequestPathTests().makeServer(fs: fs)
        var g = Etcdserverpb_LeaseGrantRequest()
        g.ttl = 600
        let lease = try await s.leaseGrant(g)
        var p = Etcdserverpb_PutRequest()
        p.key = Data("k".utf8)
        p.lease = lease.id
        _ = try await s.put(p)
        s.stop()
        let restarted = ContinuousClock.now
        let r = try await RequestPathTests().makeServer(fs: fs)
        defer { r.stop() }
        var ttl = Etcdserverpb_LeaseTimeToLiveRequest()
        ttl.id = lease.id
        ttl.keys = true
        let t = try await r.leaseTimeToLive(ttl)
        #expect(t.grantedTtl == 600)
        // Counted from the new leader's promotion, truncated to whole seconds: a loaded
        // machine may take seconds between the restart and this read.
        let since = (ContinuousClock.now - restarted).components.seconds
        #expect(t.ttl >= 599 - since)
        #expect(t.keys == [Data("k".utf8)])
        var rv = Etcdserverpb_LeaseRevokeRequest()
        rv.id = lease.id
        _ = try await r.leaseRevoke(rv)
        var get = Etcdserverpb_RangeRequest()
        get.key = Data("k".utf8)
        #expect(try await r.range(get).kvs.isEmpty)
    }
}

@Suite struct WatchTests {
    /// Everything a watch stream has delivered so far: a progress request is answered after
    /// every event already applied (events are queued at apply time), so its answer (watch
    /// ID -1) ends the collection.
    /// Bounded by 60 s: what arrived by then is returned (and the test's checks then fail).
    static func collect(_ session: WatchSession, until last: Int64) async -> [Etcdserverpb_WatchResponse] {
        session.progress()
        return await withTaskGroup(of: [Etcdserverpb_WatchResponse]?.self) { group in
            group.addTask {
                var out: [Etcdserverpb_WatchResponse] = []
                for await r in session.responses {
                    if r.watchID == -1 && !r.created { break }
                    out.append(r)
                }
                return out
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(60))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? []
        }
    }

    /// Random writes (puts, deletes, multi-key txns) and compactions; a watcher from
    /// revision 1 records the whole history; watchers created later at random start
    /// revisions and ranges must see exactly that history from their start on — in order,
    /// never twice, every revision whole in one response — or, below the compaction, be
    /// canceled with the compact revision.
    @Test(arguments: [UInt64(1), 2, 3, 4, 5])
    func watchersSeeTheHistoryFromAnyRevision(seed: UInt64) async throws {
        let s = try await RequestPathTests().makeServer(fs: FaultyFileSystem(seed: 40 + seed))
        defer { s.stop() }
        var rng = SplitMix64(seed: seed)
        func rand(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        let keys = (0..<12).map { Data("k\($0)".utf8) }
        let full = s.watchSession()
        var create = Etcdserverpb_WatchCreateRequest()
        create.key = Data([0])
        create.rangeEnd = Data([0])
        create.startRevision = 1
        full.create(create)
        struct Later { let session: WatchSession; let start: Int64; let key: Data; let end: Data; let compactedAt: Int64 }
        var later: [Later] = []
        for step in 0..<300 {
            switch rand(10) {
            case 0..<5:
                var p = Etcdserverpb_PutRequest()
                p.key = keys[rand(keys.count)]
                p.value = Data("v\(step)".utf8)
                _ = try await s.put(p)
            case 5..<7:
                var d = Etcdserverpb_DeleteRangeRequest()
                d.key = keys[rand(keys.count)]
                if rand(2) == 0 { d.rangeEnd = Data("k5".utf8) }
                _ = try await s.deleteRange(d)
            case 7..<9:
                var t = Etcdserverpb_TxnRequest()
                for _ in 0..<(1 + rand(3)) {
                    var op = Etcdserverpb_RequestOp()
                    var p = Etcdserverpb_PutRequest()
                    p.key = keys[rand(keys.count)]
                    op.requestPut = p
                    if !t.success.contains(where: { $0.requestPut.key == p.key }) { t.success.append(op) }
                }
                _ = try await s.txn(t)
            default:
                if rand(3) == 0 && s.currentRevision > 5 {
                    var c = Etcdserverpb_CompactionRequest()
                    c.revision = s.currentRevision - Int64(rand(5))
                    _ = try? await s.compact(c)
                }
            }
            if rand(15) == 0 {
                let session = s.watchSession()
                var c = Etcdserverpb_WatchCreateRequest()
                let lo = rand(keys.count)
                c.key = keys[lo]
                c.rangeEnd = rand(2) == 0 ? Data() : Data([0])
                c.startRevision = Int64(1 + rand(Int(s.currentRevision)))
                // Exactly at the compaction only what compaction kept remains (no DELETE at
                // it), as in etcd: start just above it instead.
                if c.startRevision == s.compactedRevision { c.startRevision += 1 }
                session.create(c)
                later.append(Later(session: session, start: c.startRevision, key: c.key, end: c.rangeEnd,
                                   compactedAt: s.compactedRevision))
            }
        }
        // A last write at the end of the key space.
        var p = Etcdserverpb_PutRequest()
        p.key = Data([0xff])
        _ = try await s.put(p)
        let last = s.currentRevision
        let history = await Self.collect(full, until: last)
        #expect(history.first?.created == true)
        var events: [Mvccpb_Event] = []
        for r in history.dropFirst() {
            // Live responses hold exactly one revision each.
            #expect(Set(r.events.map(\.kv.modRevision)).count == 1)
            events += r.events
        }
        #expect(events.map(\.kv.modRevision) == events.map(\.kv.modRevision).sorted())
        #expect(events.last?.kv.modRevision == last)
        full.close()
        var checked = 0, canceled = 0
        for l in later {
            let got = await Self.collect(l.session, until: last)
            l.session.close()
            guard got.count > 1 else { continue }
            if got[1].canceled {
                #expect(got[1].compactRevision > l.start, "canceled without cause")
                canceled += 1
                continue
            }
            func inRange(_ k: Data) -> Bool {
                if l.end.isEmpty { return k == l.key }
                return !k.lexicographicallyPrecedes(l.key)
            }
            let want = events.filter { $0.kv.modRevision >= l.start && inRange($0.kv.key) }
            let seen = got.dropFirst().flatMap(\.events)
            #expect(seen == want, "seed \(seed): watcher from \(l.start)")
            for r in got.dropFirst() {
                // A revision is never split across responses.
                for rev in Set(r.events.map(\.kv.modRevision)) {
                    #expect(r.events.filter { $0.kv.modRevision == rev }.count == want.filter { $0.kv.modRevision == rev }.count)
                }
            }
            checked += 1
        }
        #expect(checked > 0)
        print("watch seed \(seed): \(events.count) events up to revision \(last); \(checked) later watchers matched, \(canceled) canceled by compaction")
    }
}
