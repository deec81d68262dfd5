import EtcdProto
import Foundation

@inline(__always)
func varintSize(_ v: UInt64) -> UInt64 {
    var v = v
    var n: UInt64 = 1
    while v >= 0x80 {
        v >>= 7
        n += 1
    }
    return n
}

/// The encoded size of an entry as gogoproto computes it (etcd's `Entry.Size()`).
func entrySize(_ e: Raftpb_Entry) -> UInt64 {
    var n = 1 + varintSize(e.term) + 1 + varintSize(e.index) + 1 + varintSize(UInt64(e.type.rawValue))
    if e.hasData {
        let l = UInt64(e.data.count)
        n += 1 + l + varintSize(l)
    }
    return n
}

/// The size of an entry's payload (etcd's `PayloadSize`), used for the uncommitted-size quota.
func payloadSize(_ e: Raftpb_Entry) -> UInt64 { UInt64(e.data.count) }

/// The longest prefix of `ents` within `maxSize` bytes, but always at least one entry.
/// Takes from `ents` only the entries it returns and the one that passes the limit (storage
/// rebuilds its entries lazily through it).
func limitSize(_ ents: some Sequence<Raftpb_Entry>, _ maxSize: UInt64) -> [Raftpb_Entry] {
    var out: [Raftpb_Entry] = []
    out.reserveCapacity(min(ents.underestimatedCount, 1024))
    var size: UInt64 = 0
    for e in ents {
        size += entrySize(e)
        if !out.isEmpty && size > maxSize { break }
        out.append(e)
    }
    return out
}

extension Raftpb_MessageType {
    /// Messages a node only ever creates for itself; `RawNode.step` refuses them.
    public var isLocal: Bool {
        switch self {
        case .msgHup, .msgBeat, .msgUnreachable, .msgSnapStatus, .msgCheckQuorum: return true
        default: return false
        }
    }

    /// Responses; `RawNode.step` drops them when the sender is not in the configuration.
    public var isResponse: Bool {
        switch self {
        case .msgAppResp, .msgVoteResp, .msgHeartbeatResp, .msgUnreachable, .msgPreVoteResp: return true
        default: return false
        }
    }

    var voteResponseType: Raftpb_MessageType {
        switch self {
        case .msgVote: return .msgVoteResp
        case .msgPreVote: return .msgPreVoteResp
        default: preconditionFailure("not a vote message: \(self)")
        }
    }
}

extension Raftpb_Entry {
    init(term: UInt64, index: UInt64, type: Raftpb_EntryType = .entryNormal, data: Data? = nil) {
        self.init()
        self.term = term
        self.index = index
        self.type = type
        if let data { self.data = data }
    }

    var isConfChange: Bool { type == .entryConfChange || type == .entryConfChangeV2 }
}

extension Raftpb_HardState {
    /// True when nothing was ever recorded (term, vote and commit all zero).
    public var isEmpty: Bool { term == 0 && vote == 0 && commit == 0 }

    init(term: UInt64, vote: UInt64, commit: UInt64) {
        self.init()
        self.term = term
        self.vote = vote
        self.commit = commit
    }

    func sameState(_ o: Raftpb_HardState) -> Bool {
        term == o.term && vote == o.vote && commit == o.commit
    }
}

extension Raftpb_Snapshot {
    /// A snapshot with index 0 stands for "no snapshot".
    public var isEmpty: Bool { metadata.index == 0 }
}

extension Raftpb_Message {
    /// A compact one-line rendering for logs and failing tests.
    public var summary: String {
        var s = "\(from)->\(to) \(type) term=\(term)"
        switch type {
        case .msgApp:
            s += " logTerm=\(logTerm) index=\(index) commit=\(commit) entries=\(entries.map { "\($0.term)/\($0.index)" })"
        case .msgAppResp:
            s += " index=\(index)" + (reject ? " REJECT hint=\(rejectHint) hintTerm=\(logTerm)" : "")
        case .msgVote, .msgPreVote:
            s += " lastTerm=\(logTerm) lastIndex=\(index)"
        case .msgVoteResp, .msgPreVoteResp:
            s += reject ? " REJECT" : " GRANT"
        case .msgHeartbeat:
            s += " commit=\(commit)"
        case .msgSnap:
            s += " snap=\(snapshot.metadata.term)/\(snapshot.metadata.index)"
        case .msgReadIndexResp:
            s += " index=\(index)"
        default:
            break
        }
        return s
    }
}
