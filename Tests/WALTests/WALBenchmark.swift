import Foundation
import Glibc
import Testing
import EtcdProto
import FileIO
@testable import WAL

/// Must show 5, as a timing run rather than a test (Benchmarks/ is not set up yet): WAL
/// append+sync throughput at 1, 10 and 100 concurrent proposers on the real disk, printing
/// fdatasyncs per 1,000 appends (group commit made visible), and CRC-32C throughput.
/// Off by default; run with
///   SWETCD_WAL_BENCH=1 swift test -c release --filter WALBenchmark
/// (SWETCD_WAL_BENCH_DIR picks the directory, default /tmp; SWETCD_WAL_BENCH_APPENDS the
/// appends per run, default 5,000).
@Suite(.serialized) struct WALBenchmark {
    static var enabled: Bool { ProcessInfo.processInfo.environment["SWETCD_WAL_BENCH"] == "1" }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    @Test(.enabled(if: WALBenchmark.enabled))
    func appendSyncThroughput() async throws {
        let env = ProcessInfo.processInfo.environment
        let base = env["SWETCD_WAL_BENCH_DIR"] ?? "/tmp"
        let total = Int(env["SWETCD_WAL_BENCH_APPENDS"] ?? "") ?? 5000
        let payload = String(repeating: "v", count: 256)
        print("WAL append+sync, \(total) appends of one \(payload.count)-byte entry each, dir \(base)")
        print("proposers  appends  fdatasyncs  syncs/1000 appends  appends/s")
        for proposers in [1, 10, 100] {
            let dir = base + "/swetcd-wal-bench-\(getpid())-\(proposers)"
            let fs = PosixFileSystem()
            try? fs.removeAll(dir)
            let w = try WAL.create(dir: dir, metadata: Data("bench".utf8), fs: fs)
            let next = Locked(UInt64(0))
            let syncsBefore = fs.stats.counters.dataSyncs
            let t0 = Self.now()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<proposers {
                    group.addTask {
                        while true {
                            let t = try next.withLock { n -> WAL.Ticket? in
                                guard n < UInt64(total) else { return nil }
                                n += 1
                                return try w.submit(hardState: hardState(term: 1, vote: 1, commit: n - 1), entries: [entry(n, payload)])
                            }
                            guard let t else { return }
                            try await w.wait(for: t)
                        }
                    }
                }
                try await group.waitForAll()
            }
            let dt = Self.now() - t0
            let syncs = fs.stats.counters.dataSyncs - syncsBefore
            try w.close()
            try? fs.removeAll(dir)
            let line = String(format: "%9d  %7d  %10d  %18.1f  %9.0f", proposers, total, syncs, Double(syncs) * 1000 / Double(total), Double(total) / dt)
            print(line)
        }
    }

    @Test(.enabled(if: WALBenchmark.enabled))
    func crc32cThroughput() {
        var rng = SplitMix64(seed: 9)
        let data = (0..<(1 << 20)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for chunk in [64, 4096, 1 << 20] {
            var c: UInt32 = 0
            let rounds = 256
            let t0 = Self.now()
            data.withUnsafeBytes { raw in
                for _ in 0..<rounds {
                    var off = 0
                    while off < raw.count {
                        c = CRC32C.update(c, UnsafeRawBufferPointer(rebasing: raw[off..<off + chunk]))
                        off += chunk
                    }
                }
            }
            let dt = Self.now() - t0
            print(String(format: "CRC-32C, %7d-byte pieces: %.2f GB/s (crc %08x)", chunk, Double(rounds * data.count) / dt / 1e9, c))
        }
    }
}
