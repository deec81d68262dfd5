import EtcdProto

/// How the leader replicates to one follower (etcd's `tracker.StateType`).
public enum ProgressState: UInt64, Sendable, CustomStringConvertible {
    /// One MsgApp per heartbeat interval until the follower's match is found.
    case probe = 0
    /// Optimistic pipelining of MsgApp, bounded by the in-flight window.
    case replicate = 1
    /// A snapshot was sent; nothing else until it is acknowledged or fails.
    case snapshot = 2

    public var description: String {
        switch self {
        case .probe: return "StateProbe"
        case .replicate: return "StateReplicate"
        case .snapshot: return "StateSnapshot"
        }
    }
}

/// The window of MsgApp sent but not yet acknowledged, by the last index each carried.
struct Inflights {
    let capacity: Int
    private var buffer: [UInt64] = []
    private var start = 0
    private(set) var count = 0

    init(capacity: Int) { self.capacity = capacity }

    var isFull: Bool { count == capacity }

    mutating func add(_ last: UInt64) {
        precondition(!isFull, "cannot add into a full inflights")
        if buffer.isEmpty { buffer = Array(repeating: 0, count: capacity) }
        buffer[(start + count) % capacity] = last
        count += 1
    }

    /// Frees every in-flight message whose last index is <= `to`.
    mutating func freeLE(_ to: UInt64) {
        guard count > 0, to >= buffer[start] else { return }
        var i = 0
        var idx = start
        while i < count {
            if to < buffer[idx] { break }
            i += 1
            idx = (idx + 1) % capacity
        }
        count -= i
        start = count == 0 ? 0 : idx
    }

    mutating func freeFirstOne() {
        guard count > 0 else { return }
        freeLE(buffer[start])
    }

    mutating func reset() {
        count = 0
        start = 0
    }
}

/// The leader's view of one peer's log (etcd's `tracker.Progress`).
final class Progress {
    /// The highest index known to be replicated on the peer.
    var match: UInt64
    /// The next index to send.
    var next: UInt64
    var state: ProgressState = .probe
    /// The index of the snapshot in flight (state == .snapshot).
    var pendingSnapshot: UInt64 = 0
    /// The peer was heard from since the last check-quorum round.
    var recentActive: Bool
    /// In the probe state: a MsgApp went out and we wait for its answer (or a heartbeat response).
    var probeSent = false
    var inflights: Inflights
    var isLearner: Bool

    init(match: UInt64, next: UInt64, maxInflight: Int, isLearner: Bool, recentActive: Bool = false) {
        self.match = match
        self.next = next
        self.inflights = Inflights(capacity: maxInflight)
        self.isLearner = isLearner
        self.recentActive = recentActive
    }

    private func resetState(_ s: ProgressState) {
        probeSent = false
        pendingSnapshot = 0
        state = s
        inflights.reset()
    }

    func becomeProbe() {
        if state == .snapshot {
            // The snapshot may have been applied: probe from after it.
            let pending = pendingSnapshot
            resetState(.probe)
            next = max(match + 1, pending + 1)
        } else {
            resetState(.probe)
            next = match + 1
        }
    }

    func becomeReplicate() {
        resetState(.replicate)
        next = match + 1
    }

    func becomeSnapshot(_ index: UInt64) {
        resetState(.snapshot)
        pendingSnapshot = index
    }

    /// The peer acknowledged `n`; returns true when that moved `match`.
    @discardableResult
    func maybeUpdate(_ n: UInt64) -> Bool {
        var updated = false
        if match < n {
            match = n
            updated = true
            probeSent = false
        }
        next = max(next, n + 1)
        return updated
    }

    func optimisticUpdate(_ n: UInt64) { next = n + 1 }

    /// The peer rejected the MsgApp that followed `rejected`; `matchHint` is the highest
    /// index that may still match. Returns false when the rejection is stale.
    func maybeDecrTo(rejected: UInt64, matchHint: UInt64) -> Bool {
        if state == .replicate {
            // Stale unless it concerns something beyond what we know matches.
            if rejected <= match { return false }
            next = match + 1
            return true
        }
        // In probe state only the answer to the outstanding probe counts.
        if next - 1 != rejected { return false }
        next = max(min(rejected, matchHint + 1), 1)
        probeSent = false
        return true
    }

    /// Whether sending is throttled for this peer.
    var isPaused: Bool {
        switch state {
        case .probe: return probeSent
        case .replicate: return inflights.isFull
        case .snapshot: return true
        }
    }

    var status: ProgressStatus {
        ProgressStatus(match: match, next: next, state: state, pendingSnapshot: pendingSnapshot,
                       recentActive: recentActive, probeSent: probeSent, inflight: inflights.count,
                       isPaused: isPaused, isLearner: isLearner)
    }
}

/// A copy of a peer's progress, for `Status`.
public struct ProgressStatus: Equatable, Sendable {
    public var match: UInt64
    public var next: UInt64
    public var state: ProgressState
    public var pendingSnapshot: UInt64
    public var recentActive: Bool
    public var probeSent: Bool
    public var inflight: Int
    public var isPaused: Bool
    public var isLearner: Bool
}

enum VoteResult {
    case pending, lost, won
}

/// The configuration (voters, learners) and everyone's progress and votes.
struct ProgressTracker {
    var voters: Set<UInt64> = []
    var learners: Set<UInt64> = []
    var progress: [UInt64: Progress] = [:]
    var votes: [UInt64: Bool] = [:]
    let maxInflight: Int

    init(maxInflight: Int) { self.maxInflight = maxInflight }

    var confState: Raftpb_ConfState {
        var cs = Raftpb_ConfState()
        cs.voters = voters.sorted()
        cs.learners = learners.sorted()
        return cs
    }

    var isSingleton: Bool { voters.count == 1 }

    var quorum: Int { voters.count / 2 + 1 }

    /// Peer IDs (voters and learners) in increasing order, so that output is deterministic.
    var sortedIDs: [UInt64] { progress.keys.sorted() }

    /// The largest index replicated on a quorum of voters.
    func committed() -> UInt64 {
        if voters.isEmpty { return 0 }
        let matches = voters.map { progress[$0]?.match ?? 0 }.sorted(by: >)
        return matches[quorum - 1]
    }

    func voteResult(_ v: [UInt64: Bool]) -> VoteResult {
        if voters.isEmpty { return .won }
        var yes = 0, missing = 0
        for id in voters {
            switch v[id] {
            case .some(true): yes += 1
            case .some(false): break
            case .none: missing += 1
            }
        }
        if yes >= quorum { return .won }
        if yes + missing >= quorum { return .pending }
        return .lost
    }

    /// True when a quorum of voters was recently active.
    func quorumActive() -> Bool {
        var v: [UInt64: Bool] = [:]
        for (id, pr) in progress where !pr.isLearner { v[id] = pr.recentActive }
        return voteResult(v) == .won
    }

    mutating func resetVotes() { votes = [:] }

    mutating func recordVote(_ id: UInt64, _ granted: Bool) {
        if votes[id] == nil { votes[id] = granted }
    }

    func tallyVotes() -> (granted: Int, rejected: Int, result: VoteResult) {
        var g = 0, r = 0
        for id in voters {
            if let v = votes[id] { if v { g += 1 } else { r += 1 } }
        }
        return (g, r, voteResult(votes))
    }
}
