import EtcdProto
import Foundation

/// Everything the caller must do after a batch of `tick`/`step`/`propose` calls.
///
/// The contract (process one Ready completely, then call `advance`, before the next `ready()`):
/// 1. `messages` may be sent at once, in parallel with persisting; they come from a leader
///    whose term and vote are already durable, and never acknowledge anything of this Ready.
/// 2. Persist `snapshot` (if any), then `entries` (overwriting any stored suffix from the
///    first one's index), then `hardState`, durably if `mustSync`; then append them to the
///    `RaftStorage`.
/// 3. Only after that, send `messagesAfterPersist` (votes, appends' acknowledgements, and
///    everything else a non-leader says).
/// 4. `committedEntries` are already durable here: apply them in order (in parallel with 2
///    if you like); call `RawNode.applyConfChange` for conf-change entries. Apply `snapshot`
///    to the state machine before any later entries.
/// 5. Call `advance(_:)` with this Ready. `step`/`tick`/`propose` may be called while a Ready
///    is being processed; what they produce comes out in the next Ready.
///
/// A crash before step 2 completes loses this Ready and nothing else: no message sent so
/// far depends on it. For every MsgSnap sent, report the outcome with `reportSnapshot`
/// (etcd sends the state machine as of its applied index in place of Raft's snapshot).
public struct Ready: Sendable {
    /// Set when leader or role changed since the previous Ready.
    public var softState: SoftState?
    /// Set when term, vote or commit changed since the last persisted hard state.
    public var hardState: Raftpb_HardState?
    /// Answers to ReadIndex requests, in request order.
    public var readStates: [ReadState] = []
    /// Entries to persist, in index order.
    public var entries: [Raftpb_Entry] = []
    /// A snapshot to persist and to load into the state machine.
    public var snapshot: Raftpb_Snapshot?
    /// Committed entries to apply, in index order; all are durable here already.
    public var committedEntries: [Raftpb_Entry] = []
    /// Messages that may be sent right away.
    public var messages: [Raftpb_Message] = []
    /// Messages that may only be sent once `entries`, `hardState` and `snapshot` are durable.
    public var messagesAfterPersist: [Raftpb_Message] = []
    /// The hard state, entries or snapshot must be written with fsync before
    /// `messagesAfterPersist` go out (false when only the commit index moved).
    public var mustSync: Bool = false

    /// Both message lists, the immediate ones first.
    public var allMessages: [Raftpb_Message] { messages + messagesAfterPersist }

    public var containsUpdates: Bool {
        softState != nil || hardState != nil || !readStates.isEmpty || !entries.isEmpty
            || snapshot != nil || !committedEntries.isEmpty || !messages.isEmpty || !messagesAfterPersist.isEmpty
    }
}

/// A peer of a cluster being bootstrapped.
public struct RaftPeer: Sendable {
    public var id: UInt64
    public var context: Data
    public init(id: UInt64, context: Data = Data()) {
        self.id = id
        self.context = context
    }
}

/// A snapshot of a node's state.
public struct RaftStatus: Sendable {
    public var id: UInt64
    public var hardState: Raftpb_HardState
    public var softState: SoftState
    public var applied: UInt64
    /// Every peer's replication progress (leader only; empty otherwise).
    public var progress: [UInt64: ProgressStatus]
    public var leadTransferee: UInt64
    public var voters: [UInt64]
    public var learners: [UInt64]

    public var term: UInt64 { hardState.term }
    public var commit: UInt64 { hardState.commit }
    public var vote: UInt64 { hardState.vote }
    public var lead: UInt64 { softState.lead }
    public var role: RaftRole { softState.role }
}

/// A Raft node driven by its caller: no threads, no clock, no I/O (etcd's `RawNode`).
/// Not thread-safe: use it from one task or thread at a time.
public final class RawNode {
    let core: RaftCore
    private var prevSoftState: SoftState
    /// The hard state last handed out and acknowledged by `advance` (i.e. persisted).
    private var prevHardState: Raftpb_HardState
    private var readyOutstanding = false

    /// Starts (or restarts) a node from what `config.storage` holds.
    public init(config: RaftConfig) throws {
        core = try RaftCore(config: config)
        prevSoftState = core.softState
        prevHardState = core.hardState
    }

    /// Starts a brand-new cluster (etcd's `Bootstrap`/`StartNode`): the log begins with one
    /// ConfChangeAddNode entry per peer, committed at term 1. The storage must be empty.
    public func bootstrap(peers: [RaftPeer]) throws {
        guard !peers.isEmpty else { throw RaftError.invalidConfig("must provide at least one peer to Bootstrap") }
        guard RaftLog.must({ try core.log.storage.lastIndex() }) == 0 else {
            throw RaftError.invalidConfig("can't bootstrap a nonempty Storage")
        }
        prevHardState = Raftpb_HardState()
        core.becomeFollower(term: 1, lead: raftNone)
        var ents: [Raftpb_Entry] = []
        for (i, p) in peers.enumerated() {
            // Field for field what etcd (gogoproto) writes: ID 0, type, node, context if any.
            var cc = Raftpb_ConfChange()
            cc.id = 0
            cc.type = .confChangeAddNode
            cc.nodeID = p.id
            if !p.context.isEmpty { cc.context = p.context }
            ents.append(Raftpb_Entry(term: 1, index: UInt64(i + 1), type: .entryConfChange,
                                     data: try cc.serializedBytes()))
        }
        core.log.append(ents)
        core.log.committed = UInt64(ents.count)
        for p in peers {
            var cc = Raftpb_ConfChange()
            cc.type = .confChangeAddNode
            cc.nodeID = p.id
            _ = core.applyConfChange(cc)
        }
    }

    /// Advances the logical clock by one tick (elections, heartbeats, check-quorum).
    public func tick() { core.tick() }

    /// Starts an election now (if this node may campaign).
    public func campaign() throws {
        try core.step(RaftCore.message(.msgHup, to: raftNone))
    }

    /// Proposes data to be appended to the log. Throws `RaftError.proposalDropped`
    /// when it certainly will not be (no leader known, transfer in progress, ...);
    /// success does not mean it will commit.
    public func propose(_ data: Data) throws {
        var m = RaftCore.message(.msgProp, to: raftNone)
        m.from = core.id
        m.entries = [Raftpb_Entry(term: 0, index: 0, data: data)]
        try core.step(m)
    }

    /// Proposes a membership change. Only one may be pending (proposed but not applied);
    /// a second one is replaced by an empty entry.
    public func proposeConfChange(_ cc: Raftpb_ConfChange) throws {
        var m = RaftCore.message(.msgProp, to: raftNone)
        m.from = core.id
        m.entries = [Raftpb_Entry(term: 0, index: 0, type: .entryConfChange, data: try cc.serializedBytes())]
        try core.step(m)
    }

    /// Applies a committed conf change to the configuration; returns the new configuration.
    public func applyConfChange(_ cc: Raftpb_ConfChange) -> Raftpb_ConfState {
        core.applyConfChange(cc)
    }

    /// Feeds a message from a peer.
    public func step(_ m: Raftpb_Message) throws {
        if m.type.isLocal { throw RaftError.stepLocalMessage }
        if m.type.isResponse && core.trk.progress[m.from] == nil { throw RaftError.stepPeerNotFound }
        try core.step(m)
    }

    /// Asks for a read index; the answer comes as a `ReadState` carrying `context`
    /// (which should be unique) in a later Ready. Dropped silently without a leader.
    public func readIndex(_ context: Data) {
        var m = RaftCore.message(.msgReadIndex, to: raftNone)
        m.entries = [Raftpb_Entry(term: 0, index: 0, data: context)]
        try? core.step(m)
    }

    /// Asks the leader to hand leadership to `transferee` (MsgTimeoutNow once it is caught up).
    public func transferLeader(to transferee: UInt64) {
        var m = RaftCore.message(.msgTransferLeader, to: raftNone)
        m.from = transferee
        try? core.step(m)
    }

    /// The transport could not deliver to `id`: stop optimistic pipelining to it.
    public func reportUnreachable(_ id: UInt64) {
        var m = RaftCore.message(.msgUnreachable, to: raftNone)
        m.from = id
        try? core.step(m)
    }

    /// Reports whether a MsgSnap sent to `id` was delivered.
    public func reportSnapshot(_ id: UInt64, success: Bool) {
        var m = RaftCore.message(.msgSnapStatus, to: raftNone)
        m.from = id
        if !success { m.reject = true }
        try? core.step(m)
    }

    public var hasReady: Bool {
        if core.softState != prevSoftState { return true }
        let hs = core.hardState
        if !hs.isEmpty && !hs.sameState(prevHardState) { return true }
        if core.log.unstable.snapshot != nil { return true }
        if !core.msgs.isEmpty || !core.log.unstable.entries.isEmpty || core.log.hasNextCommittedEntries { return true }
        return !core.readStates.isEmpty
    }

    /// Collects what the caller must do now. Call `advance` before the next `ready()`.
    public func ready() -> Ready {
        precondition(!readyOutstanding, "advance() must be called before the next ready()")
        readyOutstanding = true
        var rd = Ready()
        let ss = core.softState
        if ss != prevSoftState {
            rd.softState = ss
            prevSoftState = ss
        }
        let hs = core.hardState
        if !hs.isEmpty && !hs.sameState(prevHardState) { rd.hardState = hs }
        rd.entries = core.log.unstable.entries
        rd.snapshot = core.log.unstable.snapshot
        rd.committedEntries = core.log.nextCommittedEntries()
        rd.readStates = core.readStates
        core.readStates = []
        // Messages from a leader may overtake persistence, unless the term or vote this
        // leadership rests on is itself still unpersisted (a single voter elects itself
        // within one Ready).
        let termOrVoteChanged = hs.term != prevHardState.term || hs.vote != prevHardState.vote
        for o in core.msgs {
            if o.sentAsLeader && !termOrVoteChanged {
                rd.messages.append(o.message)
            } else {
                rd.messagesAfterPersist.append(o.message)
            }
        }
        core.msgs = []
        rd.mustSync = termOrVoteChanged || !rd.entries.isEmpty || rd.snapshot != nil
        return rd
    }

    /// Tells the node that `rd` was processed: persisted, sent and applied.
    public func advance(_ rd: Ready) {
        precondition(readyOutstanding, "advance() without ready()")
        readyOutstanding = false
        if let hs = rd.hardState { prevHardState = hs }
        var applied: UInt64 = 0
        if let last = rd.committedEntries.last {
            applied = last.index
        } else if let s = rd.snapshot {
            applied = s.metadata.index
        }
        // The last persisted entry that is still part of our log (a new leader may have
        // replaced a suffix meanwhile; entries with the same index and term are identical).
        let stable = rd.entries.last { core.log.term($0.index) == $0.term }
        core.advance(appliedIndex: applied, committedEntries: rd.committedEntries,
                     lastEntry: stable.map { ($0.index, $0.term) },
                     snapshotIndex: rd.snapshot?.metadata.index)
    }

    public var status: RaftStatus {
        var progress: [UInt64: ProgressStatus] = [:]
        if core.role == .leader {
            for (pid, pr) in core.trk.progress { progress[pid] = pr.status }
        }
        return RaftStatus(id: core.id, hardState: core.hardState, softState: core.softState,
                          applied: core.log.applied, progress: progress, leadTransferee: core.leadTransferee,
                          voters: core.trk.voters.sorted(), learners: core.trk.learners.sorted())
    }

    /// The node's ID.
    public var id: UInt64 { core.id }
}
