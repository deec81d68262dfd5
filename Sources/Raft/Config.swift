import EtcdProto
import Foundation

/// The node ID that stands for "nobody" (no leader, no vote).
public let raftNone: UInt64 = 0

/// Unlimited size (for `RaftConfig.maxSizePerMsg` and friends).
public let raftNoLimit: UInt64 = .max

/// The role of a node. The raw values are etcd's `raft.StateType`.
public enum RaftRole: UInt64, Sendable, CustomStringConvertible {
    case follower = 0
    case candidate = 1
    case leader = 2
    case preCandidate = 3

    public var description: String {
        switch self {
        case .follower: return "StateFollower"
        case .candidate: return "StateCandidate"
        case .leader: return "StateLeader"
        case .preCandidate: return "StatePreCandidate"
        }
    }
}

/// How a leader serves ReadIndex requests (etcd's `ReadOnlyOption`).
public enum ReadOnlyOption: Sendable {
    /// Confirm leadership with a quorum of heartbeat acknowledgements (default).
    case safe
    /// Rely on the leader lease (needs `checkQuorum`); unsafe under clock drift.
    case leaseBased
}

/// Volatile state that the application may want to observe: who leads, and our role.
public struct SoftState: Equatable, Sendable {
    public var lead: UInt64
    public var role: RaftRole
    public init(lead: UInt64, role: RaftRole) {
        self.lead = lead
        self.role = role
    }
}

/// The answer to a ReadIndex request: once the state machine has applied `index`,
/// a read issued with `requestContext` may be served linearizably.
public struct ReadState: Equatable, Sendable {
    public var index: UInt64
    public var requestContext: Data
    public init(index: UInt64, requestContext: Data) {
        self.index = index
        self.requestContext = requestContext
    }
}

/// Errors returned to the caller of `RawNode`.
public enum RaftError: Error, Equatable, Sendable {
    /// The proposal was ignored (no leader, leader transfer in progress, the
    /// uncommitted tail is over its limit, forwarding disabled, or we were removed).
    case proposalDropped
    /// `step` was handed a message type that only the node itself may create (MsgHup, MsgBeat, ...).
    case stepLocalMessage
    /// `step` was handed a response from a node that is not in the configuration.
    case stepPeerNotFound
    /// The configuration is unusable.
    case invalidConfig(String)
}

/// The parameters of one Raft node (etcd's `raft.Config`).
public struct RaftConfig {
    /// The identity of this node; never 0.
    public var id: UInt64
    /// Ticks a follower waits without hearing from a leader before it campaigns.
    /// The actual timeout is randomized in `[electionTick, 2*electionTick)`.
    public var electionTick: Int
    /// Ticks between the leader's heartbeats.
    public var heartbeatTick: Int
    /// The log the caller persists into. Read at start-up for hard state, conf state and entries.
    public var storage: any RaftStorage
    /// The last index the application has applied (set on restart); committed entries
    /// up to here are not handed out again.
    public var applied: UInt64 = 0
    /// Maximum bytes of entries in one MsgApp (0: one entry per message).
    public var maxSizePerMsg: UInt64 = 1024 * 1024
    /// Maximum bytes of committed entries handed out in one Ready (0: the same as maxSizePerMsg).
    public var maxCommittedSizePerReady: UInt64 = 0
    /// Maximum bytes of the uncommitted tail of the leader's log; proposals beyond it
    /// are dropped (0: no limit).
    public var maxUncommittedEntriesSize: UInt64 = 0
    /// Maximum number of MsgApp in flight to one follower in the replicate state.
    public var maxInflightMsgs: Int = 256
    /// A leader that has not heard from a quorum within an election timeout steps down;
    /// a follower that heard from a leader within the timeout ignores vote requests.
    public var checkQuorum: Bool = false
    /// Run the pre-vote phase (Raft thesis §9.6) before incrementing the term. Off by default, as in etcd 3.4.
    public var preVote: Bool = false
    /// How ReadIndex requests are served.
    public var readOnlyOption: ReadOnlyOption = .safe
    /// Followers drop proposals instead of forwarding them to the leader.
    public var disableProposalForwarding: Bool = false
    /// The only source of randomness (the randomized election timeout). Seed it from
    /// the system's generator in production and from a test's seed in tests.
    public var randomSeed: UInt64

    public init(id: UInt64, electionTick: Int = 10, heartbeatTick: Int = 1,
                storage: any RaftStorage, randomSeed: UInt64? = nil) {
        self.id = id
        self.electionTick = electionTick
        self.heartbeatTick = heartbeatTick
        self.storage = storage
        self.randomSeed = randomSeed ?? id
    }

    func validate() throws {
        if id == raftNone { throw RaftError.invalidConfig("cannot use none as id") }
        if heartbeatTick <= 0 { throw RaftError.invalidConfig("heartbeat tick must be greater than 0") }
        if electionTick <= heartbeatTick {
            throw RaftError.invalidConfig("election tick must be greater than heartbeat tick")
        }
        if maxInflightMsgs <= 0 { throw RaftError.invalidConfig("max inflight messages must be greater than 0") }
        if readOnlyOption == .leaseBased && !checkQuorum {
            throw RaftError.invalidConfig("CheckQuorum must be enabled when ReadOnlyOption is ReadOnlyLeaseBased")
        }
    }
}

/// A small, fast, seedable generator (SplitMix64). Raft draws its randomized election
/// timeouts from one of these, so a run is reproducible from its seed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// A uniformly distributed value in `0..<n` (n > 0).
    public mutating func below(_ n: Int) -> Int {
        precondition(n > 0)
        return Int(next() % UInt64(n))
    }
}
