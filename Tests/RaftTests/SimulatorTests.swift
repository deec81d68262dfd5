import Foundation
import Testing
@testable import Raft
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// When the code under test traps (a precondition), the process dies without Swift
/// Testing saying which seed ran. This names the seeds running at that moment (one slot
/// per concurrently running test) on stderr before the process dies.
enum SimCrashReporter {
    static let slotCount = 64
    nonisolated(unsafe) static let slots: UnsafeMutablePointer<UInt64> = {
        let p = UnsafeMutablePointer<UInt64>.allocate(capacity: slotCount)
        p.initialize(repeating: 0, count: slotCount)
        return p
    }()
    static let installed: Bool = {
        for sig in [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGABRT] {
            signal(sig) { sig in
                let head: StaticString = "\nraft simulator: crashed while running seed(s):"
                _ = write(2, head.utf8Start, head.utf8CodeUnitCount)
                var buf = [UInt8](repeating: 0, count: 24)
                for i in 0..<SimCrashReporter.slotCount where SimCrashReporter.slots[i] != 0 {
                    var v = SimCrashReporter.slots[i]
                    var n = buf.count
                    repeat {
                        n -= 1
                        buf[n] = UInt8(48 + v % 10)
                        v /= 10
                    } while v > 0
                    n -= 1
                    buf[n] = 32
                    buf.withUnsafeBufferPointer { _ = write(2, $0.baseAddress! + n, buf.count - n) }
                }
                let tail: StaticString = "\n  replay one with RAFT_SIM_SEED=<seed> swift test --filter RaftSimulatorTests/replay\n"
                _ = write(2, tail.utf8Start, tail.utf8CodeUnitCount)
                signal(sig, SIG_DFL)
            }
        }
        return true
    }()

    static func running(_ seed: UInt64, slot: Int) {
        _ = installed
        slots[slot % slotCount] = seed
    }
}

/// The randomized simulator over many seeds. A failure names its seed; replay it with
/// `RAFT_SIM_SEED=<seed> swift test --filter RaftSimulatorTests/replay`, and run far more
/// seeds with Scripts/raft-sim.sh.
@Suite struct RaftSimulatorTests {
    static let batches = 20

    func runSeeds(_ seeds: some Sequence<UInt64>, mode: SimOptions.Mode, slot: Int) -> SimStats {
        var total = SimStats()
        defer { SimCrashReporter.slots[slot] = 0 }
        for seed in seeds {
            SimCrashReporter.running(seed, slot: slot)
            let sim = Simulator(SimOptions.forSeed(seed, mode: mode))
            do {
                try sim.run()
                total.add(sim.stats)
            } catch {
                Issue.record("\(error)")
                return total
            }
        }
        return total
    }

    static func seeds(base: UInt64, batch: Int, perBatch: Int) -> Range<UInt64> {
        let first = base + UInt64(batch * perBatch) + 1
        return first..<(first + UInt64(perBatch))
    }

    /// 400 seeds of a 3-node cluster (seeds 1...400).
    @Test(arguments: 0..<batches)
    func threeNodes(batch: Int) {
        let stats = runSeeds(Self.seeds(base: 0, batch: batch, perBatch: 20), mode: .three, slot: batch)
        #expect(stats.elections > 0 && stats.applied > 0)
    }

    /// 400 seeds of a 5-node cluster (seeds 100001...100400).
    @Test(arguments: 0..<batches)
    func fiveNodes(batch: Int) {
        let stats = runSeeds(Self.seeds(base: 100_000, batch: batch, perBatch: 20), mode: .five, slot: 20 + batch)
        #expect(stats.elections > 0 && stats.applied > 0)
    }

    /// 200 seeds of 5 nodes with membership changes (seeds 200001...200200).
    @Test(arguments: 0..<batches)
    func membershipChanges(batch: Int) {
        let stats = runSeeds(Self.seeds(base: 200_000, batch: batch, perBatch: 10), mode: .membership, slot: 40 + batch)
        #expect(stats.elections > 0 && stats.confChanges > 0)
    }

    /// The faults actually happen: over a batch, crashes, partitions, snapshots and reads occur.
    @Test func faultsAreExercised() {
        let stats = runSeeds(1...20, mode: .three, slot: 60)
        #expect(stats.crashes > 0 && stats.partitions > 0 && stats.compactions > 0)
        #expect(stats.snapshotsInstalled > 0 && stats.reads > 0)
    }

    /// Replays one seed (RAFT_SIM_SEED; RAFT_SIM_MODE 0/1/2 = three/five/membership when
    /// it came from the suite rather than the sweep; RAFT_SIM_STEPS), printing its trace.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["RAFT_SIM_SEED"] != nil))
    func replay() {
        let env = ProcessInfo.processInfo.environment
        let seed = UInt64(env["RAFT_SIM_SEED"]!)!
        let mode = env["RAFT_SIM_MODE"].flatMap { Int($0) }.flatMap { SimOptions.Mode(rawValue: $0) }
            ?? Self.suiteMode(seed)
        let steps = env["RAFT_SIM_STEPS"].flatMap { Int($0) } ?? 1500
        let sim = Simulator(SimOptions.forSeed(seed, mode: mode, steps: steps))
        sim.traceLimit = .max
        do {
            try sim.run()
            print("seed \(seed) passed: \(sim.o) \(sim.stats)")
        } catch {
            print(sim.trace.joined(separator: "\n"))
            Issue.record("\(error)")
        }
    }

    /// The mode the suite uses for a seed (nil: the sweep's choice by seed).
    static func suiteMode(_ seed: UInt64) -> SimOptions.Mode? {
        switch seed {
        case 1...400: return .three
        case 100_001...100_400: return .five
        case 200_001...200_200: return .membership
        default: return nil
        }
    }

    /// Many seeds: RAFT_SIM_FROM ..< RAFT_SIM_FROM + RAFT_SIM_COUNT, the mode chosen by
    /// seed (Scripts/raft-sim.sh).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["RAFT_SIM_COUNT"] != nil))
    func sweep() {
        let env = ProcessInfo.processInfo.environment
        let from = UInt64(env["RAFT_SIM_FROM"] ?? "1")!
        let count = UInt64(env["RAFT_SIM_COUNT"]!)!
        let steps = env["RAFT_SIM_STEPS"].flatMap { Int($0) } ?? 1500
        let mode = env["RAFT_SIM_MODE"].flatMap { Int($0) }.flatMap { SimOptions.Mode(rawValue: $0) }
        var failures = 0
        var total = SimStats()
        defer { SimCrashReporter.slots[62] = 0 }
        for seed in from..<(from + count) {
            SimCrashReporter.running(seed, slot: 62)
            let sim = Simulator(SimOptions.forSeed(seed, mode: mode, steps: steps))
            do {
                try sim.run()
                total.add(sim.stats)
            } catch {
                failures += 1
                print("FAIL seed \(seed): \(error)")
                Issue.record("\(error)")
            }
            if (seed - from + 1) % 1000 == 0 { print("raft-sim: \(seed - from + 1)/\(count) seeds, \(failures) failures") }
        }
        print("raft-sim: seeds \(from)..<\(from + count): \(failures) failures; \(total)")
    }
}
