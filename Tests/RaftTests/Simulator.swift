import EtcdProto
import Foundation
@testable import Raft

/// A deterministic, seeded simulator of a Raft cluster over `RawNode`: every node runs
/// the real code; the simulator plays network (loss, duplication, reordering, partitions),
/// disks (a crash loses everything not yet persisted per the Ready contract) and clocks.
/// After every event it checks election safety, log matching, leader completeness,
/// state-machine safety and ReadIndex linearizability; at the end it heals everything and
/// checks liveness (a leader emerges and a proposal commits everywhere).
///
/// A run is a pure function of its `SimOptions` (and so of its seed).
struct SimOptions: CustomStringConvertible {
    var seed: UInt64
    var nodes: Int = 3
    /// Chaotic events before the quiet (liveness) phase.
    var steps: Int = 1500
    var preVote = false
    var checkQuorum = false
    var lossPercent = 5
    var duplicatePercent = 3
    var electionTick = 10
    var heartbeatTick = 1
    var maxInflight = 4
    var maxSizePerMsg: UInt64 = 300
    /// How eagerly Readys are persisted (weight of the persist event): low is a slow disk.
    var diskSpeed = 200
    /// Allow crashes, partitions, compaction, leader transfer.
    var crashes = true
    var partitions = true
    var compaction = true
    var transfers = true
    /// Quiet-phase budget, in rounds (one tick of every node plus full delivery).
    var livenessRounds = 300
    /// Membership changes: the cluster starts with 3 voters (bootstrapped through
    /// ConfChange entries, as etcd does); the other nodes are spares that the leader adds
    /// as learners or voters; voters and learners are removed (a removed node stops).
    var membership = false
    var mode = Mode.three

    /// Options varied by seed (size, pre-vote, check-quorum), as the suite and script use.
    /// `mode`: 3 or 5 plain nodes, or `.membership` (5 nodes, 3 voters at first); random by seed when nil.
    enum Mode: Int { case three, five, membership }

    static func forSeed(_ seed: UInt64, mode: Mode? = nil, steps: Int = 1500) -> SimOptions {
        var r = SplitMix64(seed: seed ^ 0x5EED)
        var o = SimOptions(seed: seed)
        let m = mode ?? Mode(rawValue: r.below(3))!
        o.mode = m
        o.nodes = m == .three ? 3 : 5
        o.membership = m == .membership
        o.steps = steps
        o.preVote = r.below(2) == 0
        o.checkQuorum = r.below(2) == 0
        o.lossPercent = [0, 2, 5, 10][r.below(4)]
        o.duplicatePercent = [0, 2, 5][r.below(3)]
        o.maxInflight = [1, 4, 256][r.below(3)]
        o.maxSizePerMsg = [0, 300, raftNoLimit][r.below(3)]
        o.diskSpeed = [30, 100, 200][r.below(3)]
        o.electionTick = [3, 5, 10][r.below(3)]
        return o
    }

    var description: String {
        "seed=\(seed) nodes=\(nodes) steps=\(steps) preVote=\(preVote) checkQuorum=\(checkQuorum) election=\(electionTick) membership=\(membership) loss=\(lossPercent)% dup=\(duplicatePercent)% disk=\(diskSpeed) inflight=\(maxInflight) maxMsg=\(maxSizePerMsg == raftNoLimit ? "unlimited" : "\(maxSizePerMsg)")"
    }
}

struct SimFailure: Error, CustomStringConvertible {
    var options: SimOptions
    var step: Int
    var message: String
    var trace: [String]
    var description: String {
        "raft simulator: \(message)\n  at step \(step) with \(options)\n  reproduce: RAFT_SIM_SEED=\(options.seed) RAFT_SIM_MODE=\(options.mode.rawValue) RAFT_SIM_STEPS=\(options.steps) swift test --filter RaftSimulatorTests/replay\n  last events:\n    "
            + trace.suffix(40).joined(separator: "\n    ")
    }
}

/// The identity of an entry: its term and a hash of its type and data.
struct EntryID: Equatable {
    var term: UInt64
    var content: UInt64
    init(_ e: Raftpb_Entry) {
        term = e.term
        var h = Hasher64()
        h.mix(UInt64(e.type.rawValue))
        for b in e.data { h.mix(UInt64(b)) }
        content = h.value
    }
}

/// FNV-1a style 64-bit hashing, deterministic across runs (unlike Swift's Hasher).
struct Hasher64 {
    var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func mix(_ v: UInt64) {
        value ^= v
        value &*= 0x0000_0100_0000_01B3
        value ^= value >> 29
    }
}

final class SimNode {
    let id: UInt64
    /// The disk: only what a Ready persisted.
    let storage: MemoryStorage
    var node: RawNode?
    /// A Ready taken from the node and not yet persisted.
    var pending: Ready?
    /// The state machine (volatile; rebuilt from the snapshot on restart): the applied
    /// index and a hash chain over every applied entry.
    var smIndex: UInt64 = 0
    var smHash: UInt64 = 0
    var lastSeenCommit: UInt64 = 0
    var wasLeader = false
    /// The configuration as of `smIndex` (what a snapshot at smIndex records).
    var confState = Raftpb_ConfState()
    /// Removed from the cluster: stopped for good (etcd stops a removed member).
    var removed = false
    /// The initial members, for an initial member (bootstrapped through the log).
    var bootstrapPeers: [UInt64] = []

    init(id: UInt64, storage: MemoryStorage) {
        self.id = id
        self.storage = storage
    }

    var isUp: Bool { node != nil }
}

final class Simulator {
    let o: SimOptions
    var rng: SplitMix64
    var nodes: [SimNode] = []
    var ids: [UInt64] { nodes.map(\.id) }
    /// Messages in flight, in no particular order (delivery picks at random).
    var network: [Raftpb_Message] = []
    /// Directed links that currently drop everything.
    var cut: Set<[UInt64]> = []
    var step = 0
    var trace: [String] = []
    var proposals = 0
    var reads = 0

    // What the checks remember.
    var leaderOfTerm: [UInt64: UInt64] = [:]
    var entryByKey: [UInt64: [UInt64: (content: UInt64, prevTerm: UInt64)]] = [:]   // index -> term -> ...
    var committed: [UInt64: EntryID] = [:]
    var committedTerm: [UInt64: UInt64] = [:]
    var appliedHash: [UInt64: UInt64] = [:]
    var maxCommitSeen: UInt64 = 0
    var readIssuedAt: [Data: UInt64] = [:]
    /// Nodes whose removal was applied somewhere: the transport drops their messages.
    var removedIDs = Set<UInt64>()
    var stats = SimStats()

    init(_ options: SimOptions) {
        o = options
        rng = SplitMix64(seed: options.seed)
        let all = (1...UInt64(o.nodes)).map { $0 }
        let voters = o.membership ? Array(all.prefix(3)) : all
        for id in all {
            let s = MemoryStorage()
            if !o.membership { s.currentSnapshot.metadata.confState = confState(voters: voters) }
            let n = SimNode(id: id, storage: s)
            n.bootstrapPeers = o.membership && voters.contains(id) ? voters : []
            nodes.append(n)
            start(n)
        }
    }

    func config(_ n: SimNode) -> RaftConfig {
        var c = RaftConfig(id: n.id, electionTick: o.electionTick, heartbeatTick: o.heartbeatTick,
                           storage: n.storage, randomSeed: rng.next())
        c.preVote = o.preVote
        c.checkQuorum = o.checkQuorum
        c.maxInflightMsgs = o.maxInflight
        c.maxSizePerMsg = o.maxSizePerMsg
        c.applied = n.storage.currentSnapshot.metadata.index
        return c
    }

    func start(_ n: SimNode) {
        // Restart from disk: the state machine comes back from the snapshot.
        let snap = n.storage.currentSnapshot
        n.smIndex = snap.metadata.index
        n.smHash = snap.data.isEmpty ? 0 : decodeSnapshotHash(snap.data)
        n.confState = snap.metadata.confState
        n.node = try! RawNode(config: config(n))
        // Like etcd, an initial member that never persisted anything (no WAL yet)
        // bootstraps again.
        if !n.bootstrapPeers.isEmpty && (try! n.storage.lastIndex()) == 0 {
            try! n.node!.bootstrap(peers: n.bootstrapPeers.map { RaftPeer(id: $0) })
        }
        n.pending = nil
        n.lastSeenCommit = 0
        n.wasLeader = false
    }

    /// The trace keeps the last events only, unless replaying.
    var traceLimit = 400

    func log(_ s: @autoclosure () -> String) {
        trace.append("[\(step)] " + s())
        if trace.count > traceLimit { trace.removeFirst(traceLimit / 2) }
    }

    func fail(_ message: String) -> SimFailure {
        SimFailure(options: o, step: step, message: message, trace: trace)
    }

    // MARK: - Running

    func run() throws {
        for s in 0..<o.steps {
            step = s
            try chaosEvent()
            try check()
        }
        try quietPhase()
    }

    enum Event: CaseIterable {
        case deliver, tick, ready, persist, propose, read, compact, crash, restart, partition, heal, transfer, confChange
    }

    /// Relative frequencies of the chaotic events (0 when not possible now).
    func weight(_ e: Event) -> Int {
        switch e {
        case .deliver: return network.isEmpty ? 0 : 400
        case .tick: return 140
        case .ready: return nodes.contains { $0.isUp && $0.pending == nil && $0.node!.hasReady } ? 200 : 0
        case .persist: return nodes.contains { $0.pending != nil } ? o.diskSpeed : 0
        case .propose: return 80
        case .read: return 20
        case .compact: return o.compaction ? 10 : 0
        case .crash: return o.crashes && nodes.filter(\.isUp).count > 1 ? 4 : 0
        case .restart: return nodes.contains { !$0.isUp && !$0.removed } ? 30 : 0
        case .partition: return o.partitions && cut.isEmpty ? 4 : 0
        case .heal: return cut.isEmpty ? 0 : 5
        case .transfer: return o.transfers ? 5 : 0
        case .confChange: return o.membership ? 10 : 0
        }
    }

    func pick<T>(_ xs: [T]) -> T { xs[rng.below(xs.count)] }

    func chaosEvent() throws {
        let ws = Event.allCases.map { ($0, weight($0)) }
        var x = rng.below(ws.reduce(0) { $0 + $1.1 })
        var ev = Event.tick
        for (e, w) in ws {
            if x < w { ev = e; break }
            x -= w
        }
        let up = nodes.filter(\.isUp)
        switch ev {
        case .deliver:
            let i = rng.below(network.count)
            let m = network.remove(at: i)
            deliver(m)
        case .tick:
            let n = pick(up)
            log("tick \(n.id)")
            n.node!.tick()
        case .ready:
            let n = pick(nodes.filter { $0.isUp && $0.pending == nil && $0.node!.hasReady })
            takeReady(n)
        case .persist:
            let n = pick(nodes.filter { $0.pending != nil })
            try persist(n)
        case .propose:
            let n = pick(up)
            propose(n)
        case .read:
            let n = pick(up)
            reads += 1
            let ctx = Data("r\(o.seed)-\(reads)".utf8)
            readIssuedAt[ctx] = maxCommitSeen
            log("readIndex \(n.id) ctx=r\(reads) (commit seen \(maxCommitSeen))")
            n.node!.readIndex(ctx)
        case .compact:
            compact(pick(up))
        case .crash:
            // Half the time crash a node in the middle of persisting (the interesting case).
            let writing = up.filter { $0.pending != nil }
            let n = !writing.isEmpty && rng.below(2) == 0 ? pick(writing) : pick(up)
            log("CRASH \(n.id) (pending Ready lost: \(n.pending != nil))")
            stats.crashes += 1
            n.node = nil
            n.pending = nil
        case .restart:
            let n = pick(nodes.filter { !$0.isUp && !$0.removed })
            log("RESTART \(n.id)")
            start(n)
        case .partition:
            // Split the nodes in two random groups (a minority may be a single node).
            var a = Set<UInt64>()
            for id in ids where rng.below(2) == 0 { a.insert(id) }
            for x in ids { for y in ids where a.contains(x) != a.contains(y) { cut.insert([x, y]) } }
            log("PARTITION \(a.sorted()) | \(Set(ids).subtracting(a).sorted())")
            stats.partitions += 1
        case .heal:
            log("HEAL")
            cut = []
        case .transfer:
            if let l = up.first(where: { $0.node!.status.role == .leader }) {
                let to = pick(ids)
                log("transferLeader \(l.id) -> \(to)")
                l.node!.transferLeader(to: to)
            }
        case .confChange:
            if let l = up.first(where: { $0.node!.status.role == .leader }) { proposeConfChange(l) }
        }
    }

    /// The leader proposes one membership change that keeps at least three voters.
    func proposeConfChange(_ l: SimNode) {
        let st = l.node!.status
        let members = Set(st.voters + st.learners)
        let spares = ids.filter { !members.contains($0) && !removedIDs.contains($0) }
        var choices: [(Raftpb_ConfChangeType, UInt64)] = []
        for x in spares { choices += [(.confChangeAddLearnerNode, x), (.confChangeAddNode, x)] }
        for x in st.learners { choices += [(.confChangeAddNode, x), (.confChangeRemoveNode, x)] }
        if st.voters.count > 3 { for x in st.voters { choices.append((.confChangeRemoveNode, x)) } }
        guard !choices.isEmpty else { return }
        let (type, x) = pick(choices)
        var cc = Raftpb_ConfChange()
        cc.type = type
        cc.nodeID = x
        do {
            try l.node!.proposeConfChange(cc)
            log("proposeConfChange \(l.id) \(type) \(x)")
        } catch {
            log("proposeConfChange \(l.id) \(type) \(x): \(error)")
        }
    }

    func send(_ ms: [Raftpb_Message], lossy: Bool) {
        let faulty = lossy && !quiet
        for var m in ms {
            if m.type == .msgSnap { m.snapshot = mergedSnapshot(m.from) }
            if faulty && rng.below(100) < o.lossPercent {
                snapshotDropped(m)
                continue
            }
            network.append(m)
            if faulty && rng.below(100) < o.duplicatePercent { network.append(m) }
        }
    }

    /// The transport reports the fate of a snapshot to its sender (etcd's rafthttp calls
    /// ReportSnapshot when the stream ends); without it the leader would wait forever.
    func snapshotDropped(_ m: Raftpb_Message) {
        guard m.type == .msgSnap, let sender = nodes.first(where: { $0.id == m.from })?.node else { return }
        log("snapshot \(m.from)->\(m.to) failed")
        sender.reportSnapshot(m.to, success: false)
    }

    /// etcd does not send Raft's stored snapshot as is: it sends the state machine as of
    /// its applied index, with that index's term and configuration (etcdserver's
    /// createMergedSnapshotMessage). Raft's snapshot only says that one is needed.
    func mergedSnapshot(_ from: UInt64) -> Raftpb_Snapshot {
        let n = nodes.first { $0.id == from }!
        var snap = Raftpb_Snapshot()
        snap.metadata.index = n.smIndex
        snap.metadata.term = n.node!.core.log.term(n.smIndex)!
        snap.metadata.confState = n.confState
        snap.data = encodeSnapshotHash(n.smHash)
        return snap
    }

    func deliver(_ m: Raftpb_Message) {
        // The transport refuses messages from and to removed members.
        guard let n = nodes.first(where: { $0.id == m.to }), let node = n.node, !cut.contains([m.from, m.to]),
              !removedIDs.contains(m.from), !removedIDs.contains(m.to) else {
            snapshotDropped(m)
            return
        }
        log("deliver \(m.summary)")
        if m.type == .msgSnap { nodes.first { $0.id == m.from }?.node?.reportSnapshot(m.to, success: true) }
        do {
            try node.step(m)
        } catch {
            log("  step: \(error)")
        }
    }

    func propose(_ n: SimNode) {
        proposals += 1
        let data = Data("p\(o.seed)-\(proposals)".utf8)
        do {
            try n.node!.propose(data)
            log("propose \(n.id) p\(proposals)")
        } catch {
            log("propose \(n.id) p\(proposals): \(error)")
        }
    }

    func takeReady(_ n: SimNode) {
        let rd = n.node!.ready()
        log("ready \(n.id): entries=\(rd.entries.map { "\($0.term)/\($0.index)" }) hs=\(rd.hardState.map { "\($0.term)/\($0.vote)/\($0.commit)" } ?? "-") snap=\(rd.snapshot.map { "\($0.metadata.index)" } ?? "-") commit=\(rd.committedEntries.map(\.index)) early=\(rd.messages.count) late=\(rd.messagesAfterPersist.count)")
        // Messages allowed to overtake persistence leave now.
        send(rd.messages, lossy: true)
        n.pending = rd
    }

    func persist(_ n: SimNode) throws {
        guard let rd = n.pending, let node = n.node else { return }
        log("persist \(n.id)")
        if let snap = rd.snapshot {
            try! n.storage.applySnapshot(snap)
            n.smIndex = snap.metadata.index
            n.smHash = decodeSnapshotHash(snap.data)
            n.confState = snap.metadata.confState
            try checkApplied(n, index: n.smIndex, hash: n.smHash, what: "snapshot")
            stats.snapshotsInstalled += 1
        }
        n.storage.append(rd.entries)
        if let hs = rd.hardState { n.storage.setHardState(hs) }
        send(rd.messagesAfterPersist, lossy: true)
        for e in rd.committedEntries {
            guard e.index == n.smIndex + 1 else {
                if e.index <= n.smIndex { continue }
                throw fail("node \(n.id) applies \(e.index) after \(n.smIndex): gap")
            }
            var h = Hasher64()
            h.mix(n.smHash)
            h.mix(e.index)
            h.mix(e.term)
            h.mix(EntryID(e).content)
            n.smHash = h.value
            n.smIndex = e.index
            try checkApplied(n, index: e.index, hash: n.smHash, what: "entry \(e.term)/\(e.index)")
            stats.applied = max(stats.applied, e.index)
            if e.type == .entryConfChange {
                let cc = try Raftpb_ConfChange(serializedBytes: e.data)
                n.confState = node.applyConfChange(cc)
                log("apply conf change on \(n.id): \(cc.type) \(cc.nodeID) -> voters \(n.confState.voters) learners \(n.confState.learners)")
                if cc.type == .confChangeRemoveNode && cc.nodeID != raftNone { removedIDs.insert(cc.nodeID) }
                stats.confChanges += 1
            }
        }
        for rs in rd.readStates {
            guard let issued = readIssuedAt[rs.requestContext] else { throw fail("unknown read state") }
            let name = String(decoding: rs.requestContext, as: UTF8.self)
            log("readState \(n.id) \(name) index=\(rs.index)")
            if rs.index < issued {
                throw fail("ReadIndex \(name) answered with \(rs.index) < commit index \(issued) seen before it was issued")
            }
            stats.reads += 1
        }
        node.advance(rd)
        n.pending = nil
        if removedIDs.contains(n.id) && n.confState.voters.contains(n.id) == false && n.confState.learners.contains(n.id) == false
            && !n.confState.voters.isEmpty {
            // It applied its own removal: stop for good.
            log("STOP \(n.id) (removed)")
            n.node = nil
            n.pending = nil
            n.removed = true
        }
    }

    func checkApplied(_ n: SimNode, index: UInt64, hash: UInt64, what: String) throws {
        if let h = appliedHash[index] {
            if h != hash { throw fail("state machine safety: node \(n.id) applied a different \(what) at index \(index)") }
        } else {
            appliedHash[index] = hash
        }
    }

    func compact(_ n: SimNode) {
        let s = n.storage
        let snapIndex = s.currentSnapshot.metadata.index
        guard n.smIndex > snapIndex + 2 else { return }
        let at = n.smIndex
        try! s.createSnapshot(at, confState: n.confState, data: encodeSnapshotHash(n.smHash))
        let keep = UInt64(rng.below(3))
        if at - keep > snapIndex { try! s.compact(at - keep) }
        log("compact \(n.id) at \(at) keep \(keep)")
        stats.compactions += 1
    }

    func encodeSnapshotHash(_ h: UInt64) -> Data { withUnsafeBytes(of: h.littleEndian) { Data($0) } }
    func decodeSnapshotHash(_ d: Data) -> UInt64 {
        d.count == 8 ? d.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian : 0
    }

    // MARK: - Invariants

    func check() throws {
        for n in nodes {
            guard let node = n.node else { continue }
            let core = node.core
            let log = core.log
            // Election safety: at most one leader per term.
            if core.role == .leader {
                if let l = leaderOfTerm[core.term], l != n.id {
                    throw fail("election safety: \(l) and \(n.id) both lead term \(core.term)")
                }
                leaderOfTerm[core.term] = n.id
            }
            // Log matching: an (index, term) pair always names the same entry with the
            // same predecessor term. Every entry passes through the unstable tail.
            var prevTerm = log.term(log.unstable.offset - 1) ?? 0
            for e in log.unstable.entries {
                let id = EntryID(e)
                if let seen = entryByKey[e.index]?[e.term] {
                    if seen.content != id.content || seen.prevTerm != prevTerm {
                        throw fail("log matching: node \(n.id) has a different entry \(e.term)/\(e.index) (prev term \(prevTerm) vs \(seen.prevTerm))")
                    }
                } else {
                    entryByKey[e.index, default: [:]][e.term] = (id.content, prevTerm)
                }
                prevTerm = e.term
            }
            // Commit: a committed index never changes its entry; remember in which term
            // it was known committed, for leader completeness.
            if log.committed > n.lastSeenCommit {
                for i in (n.lastSeenCommit + 1)...log.committed {
                    guard i >= log.firstIndex, let e = try? log.slice(i, i + 1, maxSize: raftNoLimit).first else { continue }
                    let id = EntryID(e)
                    if let c = committed[i] {
                        if c != id { throw fail("committed entry \(i) changed on node \(n.id): \(c) vs \(id)") }
                    } else {
                        committed[i] = id
                    }
                    if committedTerm[i].map({ core.term < $0 }) ?? true { committedTerm[i] = core.term }
                    try checkLeadersHave(index: i)
                }
                n.lastSeenCommit = log.committed
                maxCommitSeen = max(maxCommitSeen, log.committed)
            }
            // Leader completeness: a new leader holds every entry committed in earlier terms.
            let isLeader = core.role == .leader
            if isLeader && !n.wasLeader {
                stats.elections += 1
                for (i, t) in committedTerm.sorted(by: { $0.key < $1.key }) where t <= core.term {
                    try checkLeaderHas(n, index: i)
                }
            }
            n.wasLeader = isLeader
        }
    }

    func checkLeadersHave(index i: UInt64) throws {
        guard let t = committedTerm[i] else { return }
        for n in nodes where n.node?.core.role == .leader && n.node!.core.term >= t {
            try checkLeaderHas(n, index: i)
        }
    }

    func checkLeaderHas(_ n: SimNode, index i: UInt64) throws {
        let log = n.node!.core.log
        guard let want = committed[i] else { return }
        if i < log.firstIndex { return }   // inside its snapshot (checked by state-machine hashes)
        guard i <= log.lastIndex, let e = try? log.slice(i, i + 1, maxSize: raftNoLimit).first else {
            throw fail("leader completeness: leader \(n.id) (term \(n.node!.core.term)) lacks committed entry \(i)")
        }
        if EntryID(e) != want {
            throw fail("leader completeness: leader \(n.id) (term \(n.node!.core.term)) has a different entry at committed index \(i)")
        }
    }

    // MARK: - Liveness

    /// Heal everything, restart every node, stop losing messages: a leader must emerge
    /// and a new proposal must be applied by every node.
    func quietPhase() throws {
        step = o.steps
        log("QUIET: heal, restart all, no loss")
        cut = []
        for n in nodes where removedIDs.contains(n.id) {
            n.node = nil
            n.pending = nil
            n.removed = true
        }
        for n in nodes where !n.isUp && !n.removed { start(n) }
        var leader: SimNode?
        var round = 0
        while round < o.livenessRounds {
            round += 1
            try quietRound()
            let ups = nodes.compactMap { $0.node?.status }
            if let l = ups.first(where: { $0.role == .leader }) {
                let members = Set(l.voters + l.learners)
                if ups.filter({ members.contains($0.id) }).allSatisfy({ $0.lead == l.id && $0.term == l.term }) {
                    leader = nodes.first { $0.id == l.id }
                    break
                }
            }
        }
        guard let leader else { throw fail("liveness: no leader after \(round) quiet rounds") }
        proposals += 1
        let data = Data("final-\(o.seed)".utf8)
        try? leader.node!.propose(data)
        log("final proposal on \(leader.id)")
        let target = leader.node!.core.log.lastIndex
        let startRound = round
        // Every member (of the leader's configuration once it applied the final entry).
        func members() -> [SimNode] {
            let st = leader.node?.status
            let ms = Set((st?.voters ?? []) + (st?.learners ?? []))
            return nodes.filter { ms.contains($0.id) && !$0.removed }
        }
        while round < startRound + o.livenessRounds {
            round += 1
            try quietRound()
            if members().allSatisfy({ $0.smIndex >= target }) { break }
        }
        if leader.node == nil || !members().allSatisfy({ $0.smIndex >= target }) {
            throw fail("liveness: proposal at \(target) not applied everywhere after \(round - startRound) rounds: \(nodes.map { "\($0.id):\($0.smIndex)" })")
        }
        stats.quietRounds = round
    }

    /// One tick of every node, then Readys and messages until nothing moves.
    func quietRound() throws {
        for n in nodes { n.node?.tick() }
        for _ in 0..<1000 {
            var moved = false
            for n in nodes {
                if n.pending != nil { try persist(n); moved = true }
                if let node = n.node, node.hasReady {
                    takeReady(n)
                    try persist(n)
                    moved = true
                }
            }
            let msgs = network
            network = []
            for m in msgs { deliver(m); moved = true }
            step += 1
            try check()
            if !moved { return }
        }
        throw fail("quiet round did not settle")
    }
}

extension Simulator {
    /// send() in the quiet phase must not lose or duplicate.
    var quiet: Bool { step >= o.steps }
}

struct SimStats {
    var elections = 0
    var applied: UInt64 = 0
    var reads = 0
    var crashes = 0
    var partitions = 0
    var compactions = 0
    var snapshotsInstalled = 0
    var quietRounds = 0
    var confChanges = 0

    mutating func add(_ o: SimStats) {
        elections += o.elections
        applied += o.applied
        reads += o.reads
        crashes += o.crashes
        partitions += o.partitions
        compactions += o.compactions
        snapshotsInstalled += o.snapshotsInstalled
        quietRounds += o.quietRounds
        confChanges += o.confChanges
    }
}
