import Foundation
import Glibc
import Testing
import EtcdProto
import FileIO
@testable import WAL

/// The format against real etcd 3.4.23:
/// - reading segments etcd wrote (recorded fixtures) gives what etcd's own reader gives;
/// - writing the same records with this WAL gives the same bytes, byte for byte;
/// - etcd's own wal package (built from Debian's golang-etcd-server-dev when Go is there)
///   reads a multi-segment WAL written by this code, and a WAL this code repaired.
///
/// The fixtures were recorded with this script (ports are any free ones):
///   etcd --name fix --data-dir live.etcd --listen-client-urls http://127.0.0.1:$C \
///     --advertise-client-urls http://127.0.0.1:$C --listen-peer-urls http://127.0.0.1:$P \
///     --initial-advertise-peer-urls http://127.0.0.1:$P --initial-cluster fix=http://127.0.0.1:$P \
///     --initial-cluster-token fixtoken & echo $! > etcd.pid
///   for i in 1..7: ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:$C put key$i "value-$i-x…x"
///   etcdctl del key3; etcdctl snapshot save snap.db; kill $(cat etcd.pid)
///   etcdctl snapshot restore snap.db --name fix --data-dir restored.etcd \
///     --initial-cluster fix=http://127.0.0.1:2380 --initial-cluster-token fixtoken \
///     --initial-advertise-peer-urls http://127.0.0.1:2380
/// then each member/wal/0000000000000000-0000000000000000.wal cut after its last record.
@Suite struct EtcdFormatTests {
    static let segmentName = "0000000000000000-0000000000000000.wal"
    static var live: [UInt8] { [UInt8](Data(base64Encoded: EtcdFixtures.liveSegmentBase64)!) }
    static var restored: [UInt8] { [UInt8](Data(base64Encoded: EtcdFixtures.restoredSegmentBase64)!) }

    /// What etcd's wal.ReadAll returned, in the Go dump's format.
    static func dump(_ c: WAL.Contents) -> String {
        var lines = ["metadata \(hex(c.metadata))", "hardstate \(c.hardState.term) \(c.hardState.vote) \(c.hardState.commit)"]
        for e in c.entries {
            lines.append("entry \(e.index) \(e.term) \(e.type.rawValue) \(hex(e.data))")
        }
        return lines.joined(separator: "\n")
    }

    static func install(_ segment: [UInt8], in fs: any FileSystem, dir: String) throws {
        try fs.createDirectories(dir)
        try fs.writeFile(Paths.join(dir, segmentName), segment)
        try fs.syncDirectory(dir)
    }

    @Test(arguments: [false, true])
    func readsSegmentsEtcdWrote(realDisk: Bool) throws {
        let tmp = TempDir()
        let fs: any FileSystem = realDisk ? PosixFileSystem() : try faultyFS(seed: 50)
        let base = realDisk ? tmp.path : "/data"
        try Self.install(Self.live, in: fs, dir: base + "/live")
        try Self.install(Self.restored, in: fs, dir: base + "/restored")
        let live = try WAL.open(dir: base + "/live", at: snapshot(0, 0), fs: fs).readAllAndClose()
        #expect(Self.dump(live) == EtcdFixtures.liveDump)
        let restored = try WAL.open(dir: base + "/restored", at: snapshot(0, 0), fs: fs).readAllAndClose()
        #expect(Self.dump(restored) == EtcdFixtures.restoredDump)
        // etcdctl snapshot restore saved a snapshot record at the restored index (1, term 1).
        let fromSnap = try WAL.open(dir: base + "/restored", at: snapshot(1, 1), fs: fs).readAllAndClose()
        #expect(fromSnap.entries.isEmpty)
        #expect(fromSnap.hardState.commit == 1)
        // The first entry is the ConfChange adding the member.
        #expect(restored.entries[0].type == .entryConfChange)
        let cc = try Raftpb_ConfChange(serializedBytes: restored.entries[0].data)
        #expect(cc.type == .confChangeAddNode)
        #expect(String(decoding: cc.context, as: UTF8.self).contains("\"name\":\"fix\""))
    }

    /// A segment etcd wrote can be appended to; the result still reads back (our CRC chain
    /// continues etcd's).
    @Test func appendsToEtcdSegment() async throws {
        let fs = try faultyFS(seed: 51)
        try Self.install(Self.live, in: fs, dir: "/data/wal")
        let w = try WAL.open(dir: "/data/wal", at: snapshot(0, 0), fs: fs)
        let c = try w.readAll()
        try await w.save(hardState: hardState(term: 2, vote: c.hardState.vote, commit: 13), entries: [entry(13, term: 2, "appended")])
        try w.close()
        let again = try WAL.open(dir: "/data/wal", at: snapshot(0, 0), fs: fs).readAllAndClose()
        #expect(again.entries.count == 13)
        #expect(again.entries.last?.data == Data("appended".utf8))
        // etcd's bytes are untouched in front of ours.
        let h = try fs.open("/data/wal/" + Self.segmentName, options: .read)
        #expect(try h.read(at: 0, count: Self.live.count) == Self.live)
        try h.close()
    }

    /// Replays an etcd segment's records through this WAL's API (create with the metadata,
    /// then saves and snapshot saves in the same order) and compares the bytes.
    static func rewrite(_ segment: [UInt8], seed: UInt64) async throws -> [UInt8] {
        let fs = try faultyFS(seed: seed)
        let f = frames(segment)
        #expect(f.prefix(3).map(\.record.type) == [4, 1, 5])
        let w = try WAL.create(dir: "/data/wal", metadata: Data(f[1].record.data!), fs: fs)
        var pending: [Raftpb_Entry] = []
        for (_, _, rec) in f.dropFirst(3) {
            switch RecordType(rawValue: rec.type)! {
            case .entry:
                pending.append(try Raftpb_Entry(serializedBytes: rec.data!))
            case .state:
                try await w.save(hardState: try Raftpb_HardState(serializedBytes: rec.data!), entries: pending)
                pending = []
            case .snapshot:
                if !pending.isEmpty { try await w.save(entries: pending) }
                pending = []
                try await w.saveSnapshot(try Walpb_Snapshot(serializedBytes: rec.data!))
            case .metadata, .crc:
                Issue.record("unexpected record in a single segment")
            }
        }
        if !pending.isEmpty { try await w.save(entries: pending) }
        try w.close()
        let h = try fs.open("/data/wal/" + segmentName, options: .read)
        defer { try? h.close() }
        #expect(try h.size() == 64_000_000)
        let bytes = try h.read(at: 0, count: 64 * 1024)
        return Array(bytes.prefix(usedLength(bytes)))
    }

    @Test func writesTheSameBytesAsEtcd() async throws {
        #expect(try await Self.rewrite(Self.restored, seed: 52) == Self.restored)
        #expect(try await Self.rewrite(Self.live, seed: 53) == Self.live)
    }

    // MARK: - etcd's own reader

    /// Go program reading a WAL dir with etcd 3.4's wal package (wal.Verify, wal.Open,
    /// ReadAll) and printing what it holds in the format of `dump`.
    static let goVerifierSource = #"""
    package main

    import (
    	"encoding/hex"
    	"fmt"
    	"os"
    	"strconv"

    	"go.etcd.io/etcd/wal"
    	"go.etcd.io/etcd/wal/walpb"
    	"go.uber.org/zap"
    )

    func main() {
    	dir := os.Args[1]
    	index, _ := strconv.ParseUint(os.Args[2], 10, 64)
    	term, _ := strconv.ParseUint(os.Args[3], 10, 64)
    	lg := zap.NewNop()
    	if err := wal.Verify(lg, dir, walpb.Snapshot{Index: index, Term: term}); err != nil {
    		fmt.Println("ERR verify", err)
    		os.Exit(1)
    	}
    	w, err := wal.Open(lg, dir, walpb.Snapshot{Index: index, Term: term})
    	if err != nil {
    		fmt.Println("ERR open", err)
    		os.Exit(1)
    	}
    	md, st, ents, err := w.ReadAll()
    	if err != nil {
    		fmt.Println("ERR readall", err)
    		os.Exit(1)
    	}
    	fmt.Printf("metadata %s\n", hex.EncodeToString(md))
    	fmt.Printf("hardstate %d %d %d\n", st.Term, st.Vote, st.Commit)
    	for _, e := range ents {
    		fmt.Printf("entry %d %d %d %s\n", e.Index, e.Term, int(e.Type), hex.EncodeToString(e.Data))
    	}
    	if err := w.Close(); err != nil {
    		fmt.Println("ERR close", err)
    		os.Exit(1)
    	}
    }
    """#

    static let gopath = "/usr/share/gocode"
    static var goAvailable: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/go")
            && FileManager.default.fileExists(atPath: gopath + "/src/go.etcd.io/etcd/wal/wal.go")
    }

    static func run(_ exe: String, _ args: [String], env: [String: String] = [:], cwd: String? = nil) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        var e = ProcessInfo.processInfo.environment
        for (k, v) in env { e[k] = v }
        p.environment = e
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Builds the verifier once (cached in the temp dir, keyed by the source's CRC).
    static let verifier: Result<String, Error> = Result {
        let cache = NSTemporaryDirectory() + "swetcd-walverify"
        let exe = cache + "/walverify-" + String(CRC32C.checksum(Array(goVerifierSource.utf8)), radix: 16)
        if FileManager.default.isExecutableFile(atPath: exe) { return exe }
        let dir = cache + "/build-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try goVerifierSource.write(toFile: dir + "/main.go", atomically: true, encoding: .utf8)
        var env = ["GO111MODULE": "off", "GOPATH": gopath, "GOFLAGS": ""]
        if ProcessInfo.processInfo.environment["HOME"] == nil { env["GOCACHE"] = NSTemporaryDirectory() + "swetcd-gocache" }
        let (rc, out) = try run("/usr/bin/go", ["build", "-o", dir + "/walverify", "main.go"], env: env, cwd: dir)
        guard rc == 0 else { throw WALError.stopped(cause: "go build failed: \(out)") }
        if rename(dir + "/walverify", exe) != 0 && !FileManager.default.isExecutableFile(atPath: exe) {
            throw WALError.stopped(cause: "cannot install \(exe)")
        }
        return exe
    }

    @Test(.enabled(if: EtcdFormatTests.goAvailable, "needs Go and golang-etcd-server-dev"))
    func etcdReadsOurMultiSegmentWAL() async throws {
        let exe = try Self.verifier.get()
        let tmp = TempDir()
        let fs = PosixFileSystem()
        let dir = tmp.path + "/wal"
        let w = try WAL.create(dir: dir, metadata: Data("member-metadata".utf8), fs: fs, options: WAL.Options(segmentBytes: 2048))
        for i in UInt64(1)...60 {
            var e = entry(i, term: 1 + i / 20, "payload-\(i)-" + String(repeating: "p", count: Int(i * 7 % 200)))
            if i == 1 { e.type = .entryConfChange }
            if i % 10 == 0 { e.clearData() }  // raft's empty entries
            try await w.save(hardState: hardState(term: 1 + i / 20, vote: 3, commit: i - 1), entries: [e])
        }
        try await w.saveSnapshot(snapshot(25, 2))
        // A conflicting suffix replaced, as after a leader change.
        try await w.save(hardState: hardState(term: 4, vote: 5, commit: 55), entries: [entry(58, term: 4, "new-58")])
        try w.close()
        #expect(try fs.contentsOfDirectory(dir).filter { $0.hasSuffix(".wal") }.count > 3)

        for snap in [snapshot(0, 0), snapshot(25, 2)] {
            let ours = Self.dump(try WAL.open(dir: dir, at: snap, fs: fs).readAllAndClose())
            let (rc, etcd) = try Self.run(exe, [dir, "\(snap.index)", "\(snap.term)"])
            #expect(rc == 0, "\(etcd)")
            #expect(etcd.trimmingCharacters(in: .newlines) == ours)
        }
    }

    @Test(.enabled(if: EtcdFormatTests.goAvailable, "needs Go and golang-etcd-server-dev"))
    func etcdReadsAWALWeRepaired() async throws {
        let exe = try Self.verifier.get()
        let tmp = TempDir()
        let fs = PosixFileSystem()
        let dir = tmp.path + "/wal"
        let opts = WAL.Options(segmentBytes: 16 * 1024)
        let w = try WAL.create(dir: dir, metadata: Data("m".utf8), fs: fs, options: opts)
        try await w.save(hardState: hardState(term: 1, commit: 1), entries: (1...5).map { entry($0, "e\($0)") })
        try w.close()
        // Tear the last record, let us repair and append, then ask etcd.
        let path = dir + "/" + Self.segmentName
        var bytes = try fs.readFile(path)
        let last = frames(bytes).last!
        for i in last.offset + 12..<bytes.count { bytes[i] = 0 }
        try fs.writeFile(path, bytes)
        let r = try WAL.open(dir: dir, at: snapshot(0, 0), fs: fs, options: opts)
        let c = try r.readAll()
        #expect(c.entries.count == 5 && c.hardState.commit == 0)
        try await r.save(hardState: hardState(term: 1, commit: 6), entries: [entry(6, "after")])
        try r.close()
        try fs.remove(path + ".broken")
        let (rc, etcd) = try Self.run(exe, [dir, "0", "0"])
        #expect(rc == 0, "\(etcd)")
        #expect(etcd.trimmingCharacters(in: .newlines) == Self.dump(try WAL.open(dir: dir, at: snapshot(0, 0), fs: fs).readAllAndClose()))
        #expect(etcd.contains("hardstate 1 0 6"))
    }
}
