import Dispatch
import EtcdProto
import FileIO
import Foundation
import Raft
import WAL

/// Runs one member's Raft node on its own serial queue: ticks on a timer, takes proposals
/// and ReadIndex requests, and handles each Ready in etcd's order for durability —
/// persist entries and hard state to the WAL (one write and one fdatasync per Ready: what
/// arrived while the previous sync ran forms the next batch, which is group commit), send
/// messages, then hand committed entries to the apply step, then advance.
/// All Raft and WAL access happens on `queue`.
final class RaftDriver: @unchecked Sendable {
    struct Callbacks {
        /// Applies committed entries in log order (on the driver's queue).
        var apply: (_ entries: [Raftpb_Entry], _ node: RawNode) -> Void
        /// Leader and term changes.
        var softState: (_ lead: UInt64, _ term: UInt64, _ commit: UInt64) -> Void
        /// The WAL cannot be written: nothing more may be acknowledged (etcd panics here).
        var failed: (_ message: String) -> Void
        /// A proposal Raft refused (no leader, ...): wake its waiter with this error.
        var dropped: (_ requestID: UInt64) -> Void
        /// The state to put in a snapshot at the applied index, once everything applied is
        /// committed to the backend (etcd: the v2 store clone and KV().Commit()).
        var snapshotData: (_ appliedIndex: UInt64) throws -> Data
        /// A snapshot was taken (for logs).
        var snapshotTaken: (_ index: UInt64, _ term: UInt64) -> Void
        /// Raft messages for other members (the peer transport; never blocks).
        var send: (_ messages: [Raftpb_Message]) -> Void
        /// A MsgSnap: send the state machine as of `snapshot` (the applied index) with it,
        /// and call `reported` with the outcome (any queue).
        var sendSnapshot: (_ m: Raftpb_Message, _ snapshot: Raftpb_Snapshot,
                           _ reported: @escaping @Sendable (Bool) -> Void) -> Void
        /// A snapshot from the leader replaces the state machine (before later entries apply).
        var applySnapshot: (_ snapshot: Raftpb_Snapshot) throws -> Void
    }

    /// When to snapshot and what to keep (etcd's --snapshot-count, --max-snapshots,
    /// --max-wals).
    struct SnapshotPolicy {
        var snapDir: SnapDirectory
        var count: UInt64 = 100_000
        var maxSnapshots = 5
        var maxWALs = 5
        /// etcd's SnapshotCatchUpEntries: entries kept in memory behind a snapshot for
        /// followers that lag a little.
        var catchUpEntries: UInt64 = 5000
    }

    private let queue = DispatchQueue(label: "swetcd.raft")
    private let node: RawNode
    private let storage: MemoryStorage
    private let wal: WAL
    private let callbacks: Callbacks
    private let policy: SnapshotPolicy
    /// The index of the last snapshot (etcd: snapshotIndex).
    private(set) var snapshotIndex: UInt64
    private var timer: DispatchSourceTimer?
    private var drainScheduled = false
    private var stopped = false
    /// ReadIndex requests waiting for their read state, by context.
    private var pendingReads: [Data: @Sendable (Result<UInt64, EtcdError>) -> Void] = [:]
    private var nextReadID: UInt64 = 0
    /// The highest index applied so far, and reads waiting for it.
    private var applied: UInt64 = 0
    private var readsWaitingForApply: [(index: UInt64, done: @Sendable (Result<UInt64, EtcdError>) -> Void)] = []

    init(node: RawNode, storage: MemoryStorage, wal: WAL, applied: UInt64, policy: SnapshotPolicy, callbacks: Callbacks) {
        self.node = node
        self.storage = storage
        self.wal = wal
        self.applied = applied
        self.snapshotIndex = applied
        self.policy = policy
        self.callbacks = callbacks
    }

    deinit {
        timer?.cancel()
    }

    /// Starts ticking every `tick`; a single voter fast-forwards its election ticks, as
    /// etcd does, so it elects itself on the first tick.
    func start(tick: DispatchTimeInterval, fastForwardTicks: Int) {
        queue.sync {
            for _ in 0..<fastForwardTicks { node.tick() }
            drain()
        }
        let t = DispatchSource.makeTimerSource(queue: queue)
        t.schedule(deadline: .now() + tick, repeating: tick, leeway: .milliseconds(1))
        // Weak: a tick already on its way when the driver goes (a member dropped without
        // stop()) finds nothing instead of reading a freed driver.
        t.setEventHandler { [weak self] in
            guard let self, !stopped else { return }
            node.tick()
            drain()
        }
        t.resume()
        timer = t
    }

    /// Proposes an entry; the outcome arrives through apply (or `dropped`).
    /// Without a known leader the proposal waits here until one is elected (etcd's node
    /// does not take proposals then); the waiter's request timeout bounds the wait.
    func propose(_ data: Data, requestID: UInt64) {
        queue.async { [self] in
            submit(Proposal(data: data, requestID: requestID, isConfChange: false, deadline: .now() + holdLimit))
        }
    }

    /// Proposes a conf change (encoded Raftpb_ConfChange); the outcome arrives through apply.
    func proposeConfChange(_ data: Data, requestID: UInt64) {
        queue.async { [self] in
            submit(Proposal(data: data, requestID: requestID, isConfChange: true, deadline: .now() + holdLimit))
        }
    }

    private struct Proposal {
        var data: Data
        var requestID: UInt64
        var isConfChange: Bool
        /// Past this its waiter has timed out: the proposal is dropped, never proposed late.
        var deadline: DispatchTime
    }

    /// How long a proposal may wait for a leader: the member's request timeout, after which
    /// its waiter has given up.
    var holdLimit: DispatchTimeInterval = .seconds(7)

    /// Proposals held while no leader is known (on the queue).
    private var awaitingLeader: [Proposal] = []

    private func submit(_ p: Proposal) {
        guard !stopped else { return callbacks.dropped(p.requestID) }
        if node.status.lead == 0 {
            awaitingLeader.append(p)
            return
        }
        do {
            if p.isConfChange {
                try node.proposeConfChange(try Raftpb_ConfChange(serializedBytes: p.data))
            } else {
                try node.propose(p.data)
            }
        } catch {
            callbacks.dropped(p.requestID)
        }
        scheduleDrain()
    }

    /// Once a leader is known, the held proposals go in, in their order.
    private func releaseAwaitingLeader() {
        guard !awaitingLeader.isEmpty, node.status.lead != 0 else { return }
        let held = awaitingLeader
        awaitingLeader = []
        let now = DispatchTime.now()
        for p in held {
            if p.deadline < now { callbacks.dropped(p.requestID) } else { submit(p) }
        }
    }

    /// A message from a peer.
    func step(_ m: Raftpb_Message) {
        queue.async { [self] in
            guard !stopped else { return }
            try? node.step(m)
            scheduleDrain()
        }
    }

    func reportUnreachable(_ id: UInt64) {
        queue.async { [self] in
            guard !stopped else { return }
            node.reportUnreachable(id)
        }
    }

    func transferLeader(to id: UInt64) {
        queue.async { [self] in
            guard !stopped else { return }
            node.transferLeader(to: id)
            scheduleDrain()
        }
    }

    /// etcd's linearizable read: the index to wait for, confirmed by ReadIndex, once the
    /// member has applied up to it.
    func readIndex(_ done: @escaping @Sendable (Result<UInt64, EtcdError>) -> Void) {
        queue.async { [self] in
            guard !stopped else { return done(.failure(.stopped)) }
            nextReadID += 1
            // Unique across members: the leader keeps one pending read per context, so two
            // followers' first reads must not share one (etcd uses its request IDs).
            let ctx = withUnsafeBytes(of: node.id.bigEndian) { Data($0) } + withUnsafeBytes(of: nextReadID.bigEndian) { Data($0) }
            pendingReads[ctx] = done
            node.readIndex(ctx)
            scheduleDrain()
        }
    }

    /// Runs `body` on the driver's queue (for membership changes that need the node).
    func sync<T>(_ body: (RawNode) -> T) -> T { queue.sync { body(node) } }

    func stop() {
        queue.sync {
            guard !stopped else { return }
            halt()
        }
        try? wal.close()
    }

    private func scheduleDrain() {
        guard !drainScheduled else { return }
        drainScheduled = true
        queue.async { [self] in
            drainScheduled = false
            drain()
        }
    }

    /// Handles every Ready Raft has.
    private func drain() {
        while !stopped && node.hasReady {
            let rd = node.ready()
            // A leader's appends and heartbeats go out while it writes its own WAL.
            send(rd.messages)
            do {
                if let snap = rd.snapshot {
                    // etcd: the .snap file, then the WAL record, then the state machine.
                    try policy.snapDir.save(snap)
                    var ws = Walpb_Snapshot()
                    ws.index = snap.metadata.index
                    ws.term = snap.metadata.term
                    try wal.waitBlocking(for: wal.submitSnapshot(ws))
                    try storage.applySnapshot(snap)
                    try callbacks.applySnapshot(snap)
                    applied = snap.metadata.index
                    snapshotIndex = snap.metadata.index
                }
                let hardState = rd.hardState ?? Raftpb_HardState()
                if !rd.entries.isEmpty && !rd.committedEntries.isEmpty {
                    // Committed entries are durable already (Raft hands out no others), so
                    // they are applied while the WAL's writer writes and syncs the new ones.
                    let ticket = try wal.submit(hardState: hardState, entries: rd.entries)
                    apply(rd.committedEntries)
                    try wal.waitBlocking(for: ticket)
                } else {
                    // Nothing to do meanwhile: written here, without waking the writer.
                    try wal.saveNow(hardState: hardState, entries: rd.entries)
                    apply(rd.committedEntries)
                }
            } catch {
                // etcd panics when it cannot persist: never acknowledge what is not durable.
                failStop("swetcd: cannot write the WAL: \(error)")
                return
            }
            if let hs = rd.hardState { storage.setHardState(hs) }
            storage.append(rd.entries)
            send(rd.messagesAfterPersist)
            if let ss = rd.softState ?? Optional(node.status.softState) {
                let st = node.status
                callbacks.softState(ss.lead, st.term, st.commit)
            }
            for rs in rd.readStates {
                guard let done = pendingReads.removeValue(forKey: rs.requestContext) else { continue }
                readsWaitingForApply.append((rs.index, done))
            }
            node.advance(rd)
            if rd.softState != nil { releaseAwaitingLeader() }
            releaseReads()
            if applied > snapshotIndex && applied - snapshotIndex > policy.count {
                takeSnapshot()
            }
        }
    }

    private func apply(_ entries: [Raftpb_Entry]) {
        guard let last = entries.last else { return }
        callbacks.apply(entries, node)
        applied = last.index
    }

    /// Hands messages to the transport. A MsgSnap carries the state machine as of the applied
    /// index instead of Raft's last snapshot (etcd's createMergedSnapshotMessage): on this
    /// queue nothing is being applied, so the backend matches `applied` exactly.
    private func send(_ messages: [Raftpb_Message]) {
        guard !messages.isEmpty else { return }
        var out: [Raftpb_Message] = []
        out.reserveCapacity(messages.count)
        for m in messages {
            guard m.type == .msgSnap else {
                out.append(m)
                continue
            }
            let to = m.to
            var snap = Raftpb_Snapshot()
            snap.metadata.index = applied
            snap.metadata.term = (try? storage.term(applied)) ?? m.snapshot.metadata.term
            let st = node.status
            snap.metadata.confState.voters = st.voters
            snap.metadata.confState.learners = st.learners
            callbacks.sendSnapshot(m, snap) { [weak self] ok in
                guard let self else { return }
                queue.async { [self] in
                    guard !stopped else { return }
                    node.reportSnapshot(to, success: ok)
                    scheduleDrain()
                }
            }
        }
        if !out.isEmpty { callbacks.send(out) }
    }

    /// etcd's triggerSnapshot: the state at the applied index goes to a .snap file and the
    /// WAL (snapshot record), the WAL segments before it are released, the in-memory log is
    /// compacted, and old .snap and .wal files beyond the limits are removed.
    private func takeSnapshot() {
        let index = applied
        do {
            let data = try callbacks.snapshotData(index)
            let st = node.status
            var cs = Raftpb_ConfState()
            cs.voters = st.voters
            cs.learners = st.learners
            let snap = try storage.createSnapshot(index, confState: cs, data: data)
            var ws = Walpb_Snapshot()
            ws.index = index
            ws.term = snap.metadata.term
            try wal.waitBlocking(for: wal.submitSnapshot(ws))
            try policy.snapDir.save(snap)
            wal.releaseLockTo(index)
            if index > policy.catchUpEntries {
                try? storage.compact(index - policy.catchUpEntries)
            }
            snapshotIndex = index
            callbacks.snapshotTaken(index, snap.metadata.term)
        } catch {
            failStop("swetcd: cannot save the snapshot at index \(index): \(error)")
            return
        }
        policy.snapDir.purge(keep: policy.maxSnapshots)
        purgeWAL()
    }

    /// After an encryption migration: a snapshot at the applied index now, a cut, and every
    /// WAL segment and `.snap` (and received `.snap.db`) file below it removed whatever
    /// --max-wals and --max-snapshots say, so no file keeps a value as it was before. Returns
    /// false when entries past the applied index kept the older segments (try again later).
    func snapshotAndPurgeEverythingBelow() -> Bool {
        queue.sync {
            // Only when every entry in the WAL is applied: the segments before the cut then
            // hold nothing past the snapshot.
            guard !stopped, (try? storage.lastIndex()) == applied else { return false }
            do {
                // The new segment is named at the applied index and gets the snapshot record.
                try wal.waitBlocking(for: wal.submitCut(namedAt: applied))
            } catch {
                failStop("swetcd: cannot write the WAL: \(error)")
                return false
            }
            takeSnapshot()
            guard snapshotIndex == applied, wal.releaseAllButTail(coveredBy: applied) else { return false }
            let locked = Set(wal.lockedSegmentNames)
            for name in (try? wal.fs.contentsOfDirectory(wal.dir)) ?? [] where name.hasSuffix(".wal") && !locked.contains(name) {
                try? wal.fs.remove(wal.dir + "/" + name)
            }
            policy.snapDir.purge(keep: 1)
            policy.snapDir.removeReceivedDatabases()
            try? wal.fs.syncDirectory(wal.dir)
            return true
        }
    }

    /// etcd's PurgeFile on the WAL dir: the oldest segments go while more than --max-wals
    /// remain, stopping at the first one the WAL still holds (locked).
    private func purgeWAL() {
        guard policy.maxWALs > 0,
              var names = try? wal.fs.contentsOfDirectory(wal.dir).filter({ $0.hasSuffix(".wal") }).sorted()
        else { return }
        let locked = Set(wal.lockedSegmentNames)
        while names.count > policy.maxWALs, !locked.contains(names[0]) {
            try? wal.fs.remove(wal.dir + "/" + names[0])
            names.removeFirst()
        }
    }

    /// Stops everything on the queue after a persistence failure.
    private func failStop(_ message: String) {
        halt()
        callbacks.failed(message)
    }

    /// Stops ticking and fails every waiting read (on the queue).
    private func halt() {
        stopped = true
        timer?.cancel()
        for (_, done) in pendingReads { done(.failure(.stopped)) }
        pendingReads.removeAll()
        for r in readsWaitingForApply { r.done(.failure(.stopped)) }
        readsWaitingForApply.removeAll()
        for p in awaitingLeader { callbacks.dropped(p.requestID) }
        awaitingLeader.removeAll()
    }

    private func releaseReads() {
        guard !readsWaitingForApply.isEmpty else { return }
        var waiting: [(index: UInt64, done: @Sendable (Result<UInt64, EtcdError>) -> Void)] = []
        for r in readsWaitingForApply {
            if r.index <= applied { r.done(.success(r.index)) } else { waiting.append(r) }
        }
        readsWaitingForApply = waiting
    }
}
