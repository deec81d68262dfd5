import EtcdProto
import Foundation

/// The context a candidate attaches to MsgVote when it campaigns because the leader
/// asked it to (MsgTimeoutNow): voters then ignore their leader lease. etcd's bytes.
let campaignTransferContext = Data("CampaignTransfer".utf8)

enum CampaignType {
    /// The first phase when pre-vote is on: ask whether we could win, without a new term.
    case preElection
    /// A regular election (or the second phase of a pre-vote election).
    case election
    /// An election the leader asked for (leader transfer); ignores leases.
    case transfer
}

/// A message on its way out, and whether it may leave before the Ready that carries
/// it is persisted (see `Ready`).
struct Outgoing {
    var message: Raftpb_Message
    /// Produced while leader: it acknowledges nothing about our own durable state.
    var sentAsLeader: Bool
}

/// One Raft peer as a pure state machine: messages and ticks in, messages and log
/// changes out. There is one step function per role (`stepLeader`, `stepCandidate`,
/// `stepFollower`); `step` does the term bookkeeping they share.
///
/// Durability rule: the leader counts itself towards a quorum only for entries that
/// the caller has persisted (its own match moves in `advance`), so a commit index never
/// leaves this node before the entries it covers are durable here.
final class RaftCore {
    let id: UInt64
    var term: UInt64 = 0
    var vote: UInt64 = raftNone
    var readStates: [ReadState] = []
    let log: RaftLog
    let maxMsgSize: UInt64
    let maxUncommittedSize: UInt64
    var trk: ProgressTracker
    var role: RaftRole = .follower
    /// This node is a learner in the current configuration.
    var isLearner = false
    var msgs: [Outgoing] = []
    var lead: UInt64 = raftNone
    /// The peer we are handing leadership to (leader only), or none.
    var leadTransferee: UInt64 = raftNone
    /// A conf change may be proposed only once the applied index passes this.
    var pendingConfIndex: UInt64 = 0
    /// Bytes of payload in the uncommitted tail (leader only).
    var uncommittedSize: UInt64 = 0
    var readOnly: ReadOnlyQueue
    /// Ticks since the last election timeout (leader, candidate) or since we last
    /// heard from the current leader (follower).
    var electionElapsed = 0
    /// Ticks since the last heartbeat (leader only).
    var heartbeatElapsed = 0
    let checkQuorum: Bool
    let preVote: Bool
    let heartbeatTimeout: Int
    let electionTimeout: Int
    /// Drawn from [electionTimeout, 2*electionTimeout) on every role change.
    var randomizedElectionTimeout = 0
    let disableProposalForwarding: Bool
    var rng: SplitMix64
    /// ReadIndex requests that arrived before this leader committed an entry of its term.
    var pendingReadIndexMessages: [Raftpb_Message] = []

    init(config c: RaftConfig) throws {
        try c.validate()
        id = c.id
        let maxCommitted = c.maxCommittedSizePerReady == 0 ? c.maxSizePerMsg : c.maxCommittedSizePerReady
        log = RaftLog(storage: c.storage, maxNextEntriesSize: maxCommitted)
        maxMsgSize = c.maxSizePerMsg
        maxUncommittedSize = c.maxUncommittedEntriesSize == 0 ? raftNoLimit : c.maxUncommittedEntriesSize
        trk = ProgressTracker(maxInflight: c.maxInflightMsgs)
        checkQuorum = c.checkQuorum
        preVote = c.preVote
        heartbeatTimeout = c.heartbeatTick
        electionTimeout = c.electionTick
        readOnly = ReadOnlyQueue(option: c.readOnlyOption)
        disableProposalForwarding = c.disableProposalForwarding
        rng = SplitMix64(seed: c.randomSeed)

        let (hs, cs) = RaftLog.must { try c.storage.initialState() }
        precondition(cs.votersOutgoing.isEmpty && cs.learnersNext.isEmpty,
                     "joint configurations are not supported")
        restoreConfig(cs)
        if !hs.isEmpty { loadState(hs) }
        if c.applied > 0 { log.appliedTo(c.applied) }
        becomeFollower(term: term, lead: raftNone)
    }

    // MARK: - State

    var softState: SoftState { SoftState(lead: lead, role: role) }
    var hardState: Raftpb_HardState { Raftpb_HardState(term: term, vote: vote, commit: log.committed) }
    var promotable: Bool { trk.progress[id].map { !$0.isLearner } ?? false }

    func loadState(_ hs: Raftpb_HardState) {
        precondition(hs.commit >= log.committed && hs.commit <= log.lastIndex,
                     "\(id) state.commit \(hs.commit) is out of range [\(log.committed), \(log.lastIndex)]")
        log.committed = hs.commit
        term = hs.term
        vote = hs.vote
    }

    // MARK: - Sending

    func send(_ message: Raftpb_Message) {
        var m = message
        m.from = id
        switch m.type {
        case .msgVote, .msgVoteResp, .msgPreVote, .msgPreVoteResp:
            // Campaign messages carry their own term (for pre-votes, a future one).
            precondition(m.term != 0, "term should be set when sending \(m.type)")
        default:
            precondition(m.term == 0, "term should not be set when sending \(m.type) (was \(m.term))")
            // Proposals and read requests are forwarded as if local: no term.
            if m.type != .msgProp && m.type != .msgReadIndex { m.term = term }
        }
        msgs.append(Outgoing(message: m, sentAsLeader: role == .leader))
    }

    static func message(_ type: Raftpb_MessageType, to: UInt64, term: UInt64 = 0) -> Raftpb_Message {
        var m = Raftpb_Message()
        m.type = type
        m.to = to
        if term != 0 { m.term = term }
        return m
    }

    func sendAppend(_ to: UInt64) { maybeSendAppend(to, sendIfEmpty: true) }

    /// Sends entries from the peer's `next` (or a snapshot when they are compacted away).
    /// With `sendIfEmpty` false nothing is sent when there are no entries to carry.
    @discardableResult
    func maybeSendAppend(_ to: UInt64, sendIfEmpty: Bool) -> Bool {
        guard let pr = trk.progress[to], !pr.isPaused else { return false }
        var m = RaftCore.message(.msgApp, to: to)
        let prevTerm = log.term(pr.next - 1)
        let ents = try? log.entries(from: pr.next, maxSize: maxMsgSize)
        if (ents ?? []).isEmpty && !sendIfEmpty { return false }

        if let prevTerm, let ents {
            m.index = pr.next - 1
            m.logTerm = prevTerm
            m.entries = ents
            m.commit = log.committed
            if let last = ents.last?.index {
                switch pr.state {
                case .replicate:
                    pr.optimisticUpdate(last)
                    pr.inflights.add(last)
                case .probe:
                    pr.probeSent = true
                case .snapshot:
                    preconditionFailure("\(id) is sending append in unhandled state \(pr.state)")
                }
            }
        } else {
            // The entries the peer needs are compacted away: send the snapshot.
            if !pr.recentActive { return false }
            let snap: Raftpb_Snapshot
            do {
                snap = try log.snapshot()
            } catch RaftStorageError.snapshotTemporarilyUnavailable {
                return false
            } catch {
                fatalError("raft storage failed: \(error)")
            }
            precondition(!snap.isEmpty, "need non-empty snapshot")
            m.type = .msgSnap
            m.snapshot = snap
            pr.becomeSnapshot(snap.metadata.index)
        }
        send(m)
        return true
    }

    func sendHeartbeat(_ to: UInt64, context: Data?) {
        // Never tell a follower to commit beyond what it is known to hold.
        var m = RaftCore.message(.msgHeartbeat, to: to)
        m.commit = min(trk.progress[to]?.match ?? 0, log.committed)
        if let context { m.context = context }
        send(m)
    }

    func bcastAppend() {
        for pid in trk.sortedIDs where pid != id { sendAppend(pid) }
    }

    func bcastHeartbeat() { bcastHeartbeat(context: readOnly.lastPendingRequestContext) }

    func bcastHeartbeat(context: Data?) {
        for pid in trk.sortedIDs where pid != id { sendHeartbeat(pid, context: context) }
    }

    // MARK: - Role changes

    func reset(term newTerm: UInt64) {
        if term != newTerm {
            term = newTerm
            vote = raftNone
        }
        lead = raftNone
        electionElapsed = 0
        heartbeatElapsed = 0
        randomizedElectionTimeout = electionTimeout + rng.below(electionTimeout)
        leadTransferee = raftNone
        trk.resetVotes()
        let last = log.lastIndex
        for (pid, old) in trk.progress {
            let pr = Progress(match: 0, next: last + 1, maxInflight: trk.maxInflight, isLearner: old.isLearner)
            if pid == id { pr.match = log.persistedLastIndex }
            trk.progress[pid] = pr
        }
        pendingConfIndex = 0
        uncommittedSize = 0
        readOnly = ReadOnlyQueue(option: readOnly.option)
    }

    func becomeFollower(term t: UInt64, lead l: UInt64) {
        reset(term: t)
        lead = l
        role = .follower
    }

    func becomeCandidate() {
        precondition(role != .leader, "invalid transition [leader -> candidate]")
        reset(term: term + 1)
        vote = id
        role = .candidate
    }

    func becomePreCandidate() {
        precondition(role != .leader, "invalid transition [leader -> pre-candidate]")
        // Neither the term nor the vote changes before the real election.
        trk.resetVotes()
        lead = raftNone
        role = .preCandidate
    }

    func becomeLeader() {
        precondition(role != .follower, "invalid transition [follower -> leader]")
        reset(term: term)
        lead = id
        role = .leader
        trk.progress[id]?.becomeReplicate()
        // Some entry of the log may be an unapplied conf change: refuse new ones until
        // everything up to here is applied.
        pendingConfIndex = log.lastIndex
        let ok = appendEntries([Raftpb_Entry()])
        precondition(ok, "empty entry was dropped")
    }

    func campaign(_ type: CampaignType) {
        let voteType: Raftpb_MessageType
        let voteTerm: UInt64
        if type == .preElection {
            becomePreCandidate()
            voteType = .msgPreVote
            voteTerm = term + 1   // pre-votes ask about the term we would campaign in
        } else {
            becomeCandidate()
            voteType = .msgVote
            voteTerm = term
        }
        if poll(id, granted: true) == .won {
            // A single voter wins alone.
            if type == .preElection { campaign(.election) } else { becomeLeader() }
            return
        }
        for pid in trk.voters.sorted() where pid != id {
            var m = RaftCore.message(voteType, to: pid, term: voteTerm)
            m.index = log.lastIndex
            m.logTerm = log.lastTerm
            if type == .transfer { m.context = campaignTransferContext }
            send(m)
        }
    }

    func poll(_ from: UInt64, granted: Bool) -> VoteResult {
        trk.recordVote(from, granted)
        return trk.tallyVotes().result
    }

    // MARK: - Ticks

    func tick() {
        if role == .leader { tickHeartbeat() } else { tickElection() }
    }

    func tickElection() {
        electionElapsed += 1
        if promotable && electionElapsed >= randomizedElectionTimeout {
            electionElapsed = 0
            try? step(RaftCore.message(.msgHup, to: raftNone).with { $0.from = id })
        }
    }

    func tickHeartbeat() {
        heartbeatElapsed += 1
        electionElapsed += 1
        if electionElapsed >= electionTimeout {
            electionElapsed = 0
            if checkQuorum {
                try? step(RaftCore.message(.msgCheckQuorum, to: raftNone).with { $0.from = id })
            }
            // A transfer that did not finish within an election timeout is abandoned.
            if role == .leader && leadTransferee != raftNone { leadTransferee = raftNone }
        }
        guard role == .leader else { return }
        if heartbeatElapsed >= heartbeatTimeout {
            heartbeatElapsed = 0
            try? step(RaftCore.message(.msgBeat, to: raftNone).with { $0.from = id })
        }
    }

    // MARK: - Step

    func step(_ m: Raftpb_Message) throws {
        if m.term == 0 {
            // Local message (or a forwarded proposal / read request).
        } else if m.term > term {
            if m.type == .msgVote || m.type == .msgPreVote {
                let force = m.context == campaignTransferContext
                let inLease = checkQuorum && lead != raftNone && electionElapsed < electionTimeout
                // Within the lease of a live leader, ignore disruptive candidates (§6 of the thesis).
                if !force && inLease { return }
            }
            if m.type == .msgPreVote {
                // A pre-vote never changes our term.
            } else if m.type == .msgPreVoteResp && !m.reject {
                // The future term of our own pre-campaign; the real election bumps the term.
            } else {
                let fromLeader = m.type == .msgApp || m.type == .msgHeartbeat || m.type == .msgSnap
                becomeFollower(term: m.term, lead: fromLeader ? m.from : raftNone)
            }
        } else if m.term < term {
            if (checkQuorum || preVote) && (m.type == .msgHeartbeat || m.type == .msgApp) {
                // A stale leader (or a node that was partitioned away and is behind):
                // tell it our term so it steps down, since with check-quorum/pre-vote our
                // vote requests may never reach it.
                send(RaftCore.message(.msgAppResp, to: m.from))
            } else if m.type == .msgPreVote {
                // Reject so that a pre-candidate with a stale term learns ours.
                var r = RaftCore.message(.msgPreVoteResp, to: m.from, term: term)
                r.reject = true
                send(r)
            }
            return
        }

        switch m.type {
        case .msgHup:
            hup()
        case .msgVote, .msgPreVote:
            handleVoteRequest(m)
        default:
            switch role {
            case .leader: try stepLeader(m)
            case .candidate, .preCandidate: try stepCandidate(m)
            case .follower: try stepFollower(m)
            }
        }
    }

    func hup() {
        if role == .leader { return }
        guard promotable else { return }
        if log.committed > log.applied {
            // A committed but unapplied conf change may remove us or change the quorum.
            let lo = max(log.applied + 1, log.firstIndex)
            if lo <= log.committed,
               let ents = try? log.slice(lo, log.committed + 1, maxSize: raftNoLimit),
               ents.contains(where: { $0.isConfChange }) {
                return
            }
        }
        campaign(preVote ? .preElection : .election)
    }

    func handleVoteRequest(_ m: Raftpb_Message) {
        guard m.term != 0 else { return }   // malformed: campaign messages always carry a term
        // We can vote for a repeat of our vote, when we have not voted and know of no
        // leader in this term, or for a pre-vote for a future term...
        let canVote = vote == m.from
            || (vote == raftNone && lead == raftNone)
            || (m.type == .msgPreVote && m.term > term)
        // ...if the candidate's log is at least as up to date as ours (§5.4.1).
        if canVote && log.isUpToDate(lastIndex: m.index, term: m.logTerm) {
            // Answer with the term of the request: for pre-votes ours may be older.
            send(RaftCore.message(m.type.voteResponseType, to: m.from, term: m.term))
            if m.type == .msgVote {
                electionElapsed = 0
                vote = m.from
            }
        } else if term != 0 {
            // (At term 0 our log is empty and every candidate is up to date.)
            var r = RaftCore.message(m.type.voteResponseType, to: m.from, term: term)
            r.reject = true
            send(r)
        }
    }

    // MARK: Leader

    func stepLeader(_ m: Raftpb_Message) throws {
        switch m.type {
        case .msgBeat:
            bcastHeartbeat()
            return
        case .msgCheckQuorum:
            trk.progress[id]?.recentActive = true
            if !trk.quorumActive() {
                becomeFollower(term: term, lead: raftNone)
            }
            for (pid, pr) in trk.progress where pid != id { pr.recentActive = false }
            return
        case .msgProp:
            if m.entries.isEmpty { throw RaftError.proposalDropped }
            if trk.progress[id] == nil { throw RaftError.proposalDropped }   // we were removed
            if leadTransferee != raftNone { throw RaftError.proposalDropped }
            var ents = m.entries
            for i in ents.indices where ents[i].isConfChange {
                if pendingConfIndex > log.applied {
                    // One conf change at a time: refuse this one, keep the slot in the log.
                    ents[i] = Raftpb_Entry()
                    ents[i].type = .entryNormal
                } else {
                    pendingConfIndex = log.lastIndex + UInt64(i) + 1
                }
            }
            if !appendEntries(ents) { throw RaftError.proposalDropped }
            bcastAppend()
            return
        case .msgReadIndex:
            // Postpone until an entry of this term is committed: only then is our commit
            // index known to be at least that of every earlier leader.
            if !committedEntryInCurrentTerm {
                pendingReadIndexMessages.append(m)
                return
            }
            answerReadIndex(m)
            return
        default:
            break
        }

        // Everything else comes from a peer that must be in the configuration.
        guard let pr = trk.progress[m.from] else { return }
        switch m.type {
        case .msgAppResp:
            pr.recentActive = true
            if m.reject {
                var matchHint = m.rejectHint
                if m.logTerm > 0 {
                    // The peer told us the term at its hint: skip every entry of ours
                    // above the hint with a larger term, which cannot match.
                    matchHint = log.findConflictByTerm(m.rejectHint, m.logTerm)
                }
                if pr.maybeDecrTo(rejected: m.index, matchHint: matchHint) {
                    if pr.state == .replicate { pr.becomeProbe() }
                    sendAppend(m.from)
                }
            } else {
                let wasPaused = pr.isPaused
                guard pr.maybeUpdate(m.index) else { return }
                switch pr.state {
                case .probe:
                    pr.becomeReplicate()
                case .snapshot where pr.match >= pr.pendingSnapshot:
                    pr.becomeProbe()
                    pr.becomeReplicate()
                case .replicate:
                    pr.inflights.freeLE(m.index)
                default:
                    break
                }
                if maybeCommit() {
                    releasePendingReadIndexMessages()
                    bcastAppend()
                } else if wasPaused {
                    // The peer may be missing our latest commit index.
                    sendAppend(m.from)
                }
                // Fill the window opened by the ack.
                while maybeSendAppend(m.from, sendIfEmpty: false) {}
                if m.from == leadTransferee && pr.match == log.lastIndex {
                    send(RaftCore.message(.msgTimeoutNow, to: m.from))
                }
            }
        case .msgHeartbeatResp:
            pr.recentActive = true
            pr.probeSent = false
            // Let one more MsgApp go out if the window is stuck full.
            if pr.state == .replicate && pr.inflights.isFull { pr.inflights.freeFirstOne() }
            if pr.match < log.lastIndex { sendAppend(m.from) }

            guard readOnly.option == .safe, !m.context.isEmpty,
                  let acks = readOnly.recvAck(from: m.from, context: m.context) else { return }
            var votes: [UInt64: Bool] = [:]
            for a in acks { votes[a] = true }
            guard trk.voteResult(votes) == .won else { return }
            for rs in readOnly.advance(context: m.context) {
                if let resp = responseToReadIndex(rs.request, index: rs.index) { send(resp) }
            }
        case .msgSnapStatus:
            guard pr.state == .snapshot else { return }
            if m.reject {
                // Probe from what is known to match, not from the failed snapshot.
                pr.pendingSnapshot = 0
            }
            pr.becomeProbe()
            // Wait for the MsgAppResp (success) or a heartbeat interval (failure).
            pr.probeSent = true
        case .msgUnreachable:
            // An optimistic MsgApp was probably lost.
            if pr.state == .replicate { pr.becomeProbe() }
        case .msgTransferLeader:
            if pr.isLearner { return }
            let transferee = m.from
            if leadTransferee != raftNone {
                if leadTransferee == transferee { return }
                leadTransferee = raftNone
            }
            if transferee == id { return }
            // The transfer must finish within one election timeout.
            electionElapsed = 0
            leadTransferee = transferee
            if pr.match == log.lastIndex {
                send(RaftCore.message(.msgTimeoutNow, to: transferee))
            } else {
                sendAppend(transferee)
            }
        default:
            break
        }
    }

    // MARK: Candidate

    func stepCandidate(_ m: Raftpb_Message) throws {
        // Only responses to our current kind of campaign count (a candidate may still
        // receive pre-vote responses from its pre-candidacy).
        let myResponse: Raftpb_MessageType = role == .preCandidate ? .msgPreVoteResp : .msgVoteResp
        switch m.type {
        case .msgProp:
            throw RaftError.proposalDropped
        case .msgApp:
            becomeFollower(term: m.term, lead: m.from)   // m.term == term: someone won
            handleAppendEntries(m)
        case .msgHeartbeat:
            becomeFollower(term: m.term, lead: m.from)
            handleHeartbeat(m)
        case .msgSnap:
            becomeFollower(term: m.term, lead: m.from)
            handleSnapshot(m)
        case myResponse:
            switch poll(m.from, granted: !m.reject) {
            case .won:
                if role == .preCandidate {
                    campaign(.election)
                } else {
                    becomeLeader()
                    bcastAppend()
                }
            case .lost:
                // A rejected pre-vote carries the rejecter's (maybe larger) term; keep ours.
                becomeFollower(term: term, lead: raftNone)
            case .pending:
                break
            }
        default:
            break   // MsgTimeoutNow and others are ignored while campaigning.
        }
    }

    // MARK: Follower

    func stepFollower(_ m: Raftpb_Message) throws {
        switch m.type {
        case .msgProp:
            if lead == raftNone || disableProposalForwarding { throw RaftError.proposalDropped }
            forward(m)
        case .msgApp:
            electionElapsed = 0
            lead = m.from
            handleAppendEntries(m)
        case .msgHeartbeat:
            electionElapsed = 0
            lead = m.from
            handleHeartbeat(m)
        case .msgSnap:
            electionElapsed = 0
            lead = m.from
            handleSnapshot(m)
        case .msgTransferLeader:
            guard lead != raftNone else { return }
            forward(m)
        case .msgTimeoutNow:
            // Leadership transfers skip pre-vote: we know the leader is alive.
            if promotable { campaign(.transfer) }
        case .msgReadIndex:
            guard lead != raftNone else { return }
            forward(m)
        case .msgReadIndexResp:
            guard m.entries.count == 1 else { return }
            readStates.append(ReadState(index: m.index, requestContext: m.entries[0].data))
        default:
            break
        }
    }

    /// Passes a request on to the leader (as etcd does, in our name). A request a peer
    /// forwarded to us carries its term; ours replaces it.
    func forward(_ m: Raftpb_Message) {
        var f = m
        f.to = lead
        f.term = 0
        send(f)
    }

    func handleAppendEntries(_ m: Raftpb_Message) {
        if m.index < log.committed {
            // Everything up to our commit index matches by definition.
            var r = RaftCore.message(.msgAppResp, to: m.from)
            r.index = log.committed
            send(r)
            return
        }
        if let lastNew = log.maybeAppend(index: m.index, logTerm: m.logTerm, committed: m.commit, entries: m.entries) {
            var r = RaftCore.message(.msgAppResp, to: m.from)
            r.index = lastNew
            send(r)
        } else {
            // Hint where the leader should probe next: the last of our entries that could
            // match, i.e. whose term is not above the term the leader has at m.index.
            let hint = log.findConflictByTerm(min(m.index, log.lastIndex), m.logTerm)
            var r = RaftCore.message(.msgAppResp, to: m.from)
            r.index = m.index
            r.reject = true
            r.rejectHint = hint
            r.logTerm = log.term(hint) ?? 0
            send(r)
        }
    }

    func handleHeartbeat(_ m: Raftpb_Message) {
        log.commitTo(m.commit)
        var r = RaftCore.message(.msgHeartbeatResp, to: m.from)
        if m.hasContext { r.context = m.context }
        send(r)
    }

    func handleSnapshot(_ m: Raftpb_Message) {
        var r = RaftCore.message(.msgAppResp, to: m.from)
        if restore(m.snapshot) {
            r.index = log.lastIndex
        } else {
            r.index = log.committed
        }
        send(r)
    }

    /// Replaces the log with a snapshot (when it is newer than our commit index).
    func restore(_ s: Raftpb_Snapshot) -> Bool {
        let md = s.metadata
        if md.index <= log.committed { return false }
        if role != .follower {
            // Defense in depth; callers only restore as followers.
            becomeFollower(term: term + 1, lead: raftNone)
            return false
        }
        // We must be in the snapshot's configuration.
        if !md.confState.voters.contains(id) && !md.confState.learners.contains(id) { return false }
        if log.matchTerm(md.index, md.term) {
            // We already hold the snapshot's last entry: just fast-forward the commit.
            log.commitTo(md.index)
            return false
        }
        log.restore(s)
        restoreConfig(md.confState)
        trk.progress[id]?.maybeUpdate(log.lastIndex)
        return true
    }

    func restoreConfig(_ cs: Raftpb_ConfState) {
        precondition(cs.votersOutgoing.isEmpty && cs.learnersNext.isEmpty, "joint configurations are not supported")
        trk = ProgressTracker(maxInflight: trk.maxInflight)
        let next = max(log.lastIndex, 1)
        for v in cs.voters {
            trk.voters.insert(v)
            trk.progress[v] = Progress(match: 0, next: next, maxInflight: trk.maxInflight, isLearner: false, recentActive: true)
        }
        for l in cs.learners where trk.progress[l] == nil {
            trk.learners.insert(l)
            trk.progress[l] = Progress(match: 0, next: next, maxInflight: trk.maxInflight, isLearner: true, recentActive: true)
        }
        isLearner = trk.progress[id]?.isLearner ?? false
    }

    // MARK: - Log

    /// Appends entries of the current term to the leader's log.
    func appendEntries(_ es: [Raftpb_Entry]) -> Bool {
        var es = es
        let li = log.lastIndex
        for i in es.indices {
            es[i].type = es[i].type   // always present on the wire, as gogoproto writes it
            es[i].term = term
            es[i].index = li + 1 + UInt64(i)
        }
        if !increaseUncommittedSize(es) { return false }
        log.append(es)
        // Our own match moves when the caller has persisted the entries (advance).
        _ = maybeCommit()
        return true
    }

    func maybeCommit() -> Bool {
        log.maybeCommit(trk.committed(), term: term)
    }

    var committedEntryInCurrentTerm: Bool {
        (log.term(log.committed) ?? 0) == term
    }

    func increaseUncommittedSize(_ es: [Raftpb_Entry]) -> Bool {
        let s = es.reduce(UInt64(0)) { $0 + payloadSize($1) }
        // An empty tail admits one proposal of any size.
        if uncommittedSize > 0 && (s > maxUncommittedSize || uncommittedSize > maxUncommittedSize - s) { return false }
        uncommittedSize += s
        return true
    }

    func reduceUncommittedSize(_ es: [Raftpb_Entry]) {
        if uncommittedSize == 0 { return }
        let s = es.reduce(UInt64(0)) { $0 + payloadSize($1) }
        uncommittedSize = s > uncommittedSize ? 0 : uncommittedSize - s
    }

    /// The caller persisted and applied what a Ready carried.
    func advance(appliedIndex: UInt64, committedEntries: [Raftpb_Entry],
                 lastEntry: (index: UInt64, term: UInt64)?, snapshotIndex: UInt64?) {
        if appliedIndex > 0 { log.appliedTo(appliedIndex) }
        reduceUncommittedSize(committedEntries)
        if let e = lastEntry { log.stableTo(e.index, e.term) }
        if let s = snapshotIndex { log.stableSnapTo(s) }
        // Now that our entries are durable, they count towards the quorum.
        if role == .leader, let pr = trk.progress[id], pr.maybeUpdate(log.persistedLastIndex) {
            if maybeCommit() {
                releasePendingReadIndexMessages()
                bcastAppend()
            }
        }
    }

    // MARK: - ReadIndex

    func answerReadIndex(_ m: Raftpb_Message) {
        if trk.isSingleton || readOnly.option == .leaseBased {
            // Alone (or trusting the lease): our commit index is the read index.
            if let resp = responseToReadIndex(m, index: log.committed) { send(resp) }
            return
        }
        // Confirm leadership with a round of heartbeats carrying the request context.
        let ctx = m.entries[0].data
        readOnly.addRequest(index: log.committed, m)
        _ = readOnly.recvAck(from: id, context: ctx)
        bcastHeartbeat(context: ctx)
    }

    func releasePendingReadIndexMessages() {
        guard committedEntryInCurrentTerm, !pendingReadIndexMessages.isEmpty else { return }
        let pending = pendingReadIndexMessages
        pendingReadIndexMessages = []
        for m in pending { answerReadIndex(m) }
    }

    /// A ReadState for our own request, or the MsgReadIndexResp for a follower's.
    func responseToReadIndex(_ req: Raftpb_Message, index: UInt64) -> Raftpb_Message? {
        if req.from == raftNone || req.from == id {
            readStates.append(ReadState(index: index, requestContext: req.entries[0].data))
            return nil
        }
        var r = RaftCore.message(.msgReadIndexResp, to: req.from)
        r.index = index
        r.entries = req.entries
        return r
    }

    // MARK: - Membership

    /// Applies one single-step change: add a voter (or promote a learner), add a learner
    /// (or demote a voter), remove a node. Changes that would leave no voter are ignored.
    func applyConfChange(_ cc: Raftpb_ConfChange) -> Raftpb_ConfState {
        let nid = cc.nodeID
        if nid != raftNone {
            var voters = trk.voters
            var learners = trk.learners
            switch cc.type {
            case .confChangeAddNode:
                voters.insert(nid)
                learners.remove(nid)
            case .confChangeAddLearnerNode:
                if voters.remove(nid) != nil || trk.progress[nid] == nil { learners.insert(nid) }
            case .confChangeRemoveNode:
                voters.remove(nid)
                learners.remove(nid)
            case .confChangeUpdateNode:
                break
            }
            if !voters.isEmpty { switchConfig(voters: voters, learners: learners) }
        }
        return trk.confState
    }

    private func switchConfig(voters: Set<UInt64>, learners: Set<UInt64>) {
        let next = max(log.lastIndex, 1)
        for nid in voters.union(learners) {
            if let pr = trk.progress[nid] {
                pr.isLearner = learners.contains(nid)
            } else {
                // Probe a new peer from our last index.
                trk.progress[nid] = Progress(match: 0, next: next, maxInflight: trk.maxInflight,
                                             isLearner: learners.contains(nid), recentActive: true)
            }
        }
        for nid in trk.progress.keys where !voters.contains(nid) && !learners.contains(nid) {
            trk.progress[nid] = nil
            trk.votes[nid] = nil
        }
        trk.voters = voters
        trk.learners = learners
        isLearner = trk.progress[id]?.isLearner ?? false

        // A removed (or demoted) leader keeps its role until the application stops it.
        guard role == .leader, trk.progress[id] != nil, !isLearner else { return }
        if maybeCommit() {
            // The quorum shrank: more may be committed now.
            releasePendingReadIndexMessages()
            bcastAppend()
        } else {
            for pid in trk.sortedIDs where pid != id { maybeSendAppend(pid, sendIfEmpty: false) }
        }
        if leadTransferee != raftNone && trk.progress[leadTransferee] == nil { leadTransferee = raftNone }
    }
}

extension Raftpb_Message {
    func with(_ f: (inout Raftpb_Message) -> Void) -> Raftpb_Message {
        var m = self
        f(&m)
        return m
    }
}
