import EtcdProto
import Foundation
import Testing
@testable import Raft

/// What a Ready promises about persistence, sending and applying.
@Suite struct ReadyContractTests {
    func leader(_ peers: [UInt64], learners: [UInt64] = []) -> (RawNode, MemoryStorage) {
        let s = newStorage(voters: peers, learners: learners)
        let n = try! RawNode(config: testConfig(1, storage: s))
        try! n.campaign()
        if peers.count > 1 {
            for p in peers where p != 1 {
                try! n.step(msg(.msgVoteResp, from: p, to: 1, term: n.status.term))
            }
        }
        drain(n, s)
        // Followers acknowledge the leader's first entry: they move to the replicate state.
        for p in peers where p != 1 {
            try! n.step(msg(.msgAppResp, from: p, to: 1, term: n.status.term, index: 1))
        }
        drain(n, s)
        return (n, s)
    }

    @discardableResult
    func drain(_ n: RawNode, _ s: MemoryStorage) -> [Ready] {
        var out: [Ready] = []
        while n.hasReady {
            let rd = n.ready()
            if let snap = rd.snapshot { try! s.applySnapshot(snap) }
            s.append(rd.entries)
            if let hs = rd.hardState { s.setHardState(hs) }
            n.advance(rd)
            out.append(rd)
        }
        return out
    }

    /// A follower's acknowledgement of entries is only released after persisting them.
    @Test func followerAcksWaitForPersistence() {
        let s = newStorage(voters: [1, 2])
        let n = try! RawNode(config: testConfig(2, storage: s))
        try! n.step(msg(.msgApp, from: 1, to: 2, term: 1, logTerm: 0, index: 0, commit: 0, entries: [entry(1, 1, "a")]))
        let rd = n.ready()
        #expect(rd.messages.isEmpty)
        #expect(rd.messagesAfterPersist.map(\.type) == [.msgAppResp])
        #expect(rd.entries.map(\.index) == [1])
        #expect(rd.mustSync)
        n.advance(rd)
    }

    /// Votes (and the candidate's own requests) wait for the term and vote to be durable.
    @Test func votesWaitForPersistence() {
        let s = newStorage(voters: [1, 2, 3])
        let n = try! RawNode(config: testConfig(1, storage: s))
        try! n.campaign()
        var rd = n.ready()
        #expect(rd.messages.isEmpty)
        #expect(rd.messagesAfterPersist.map(\.type) == [.msgVote, .msgVote])
        #expect(rd.hardState?.term == 1 && rd.hardState?.vote == 1)
        #expect(rd.mustSync)
        n.advance(rd)
        let v = try! RawNode(config: testConfig(2, storage: newStorage(voters: [1, 2, 3])))
        try! v.step(msg(.msgVote, from: 1, to: 2, term: 1))
        rd = v.ready()
        #expect(rd.messages.isEmpty && rd.messagesAfterPersist.map(\.type) == [.msgVoteResp])
        #expect(rd.hardState?.vote == 1 && rd.mustSync)
        v.advance(rd)
    }

    /// The leader's appends leave at once, in parallel with its own write.
    @Test func leaderAppendsLeaveBeforePersistence() {
        let (n, _) = leader([1, 2, 3])
        try! n.propose(Data("x".utf8))
        let rd = n.ready()
        #expect(rd.messages.map(\.type) == [.msgApp, .msgApp])
        #expect(rd.messagesAfterPersist.isEmpty)
        #expect(rd.entries.count == 1)
        n.advance(rd)
    }

    /// A single voter elects itself within one Ready: then even its appends wait, since
    /// the term they carry is not durable yet.
    @Test func freshSingleVoterLeaderMessagesWaitForTerm() {
        let s = newStorage(voters: [1], learners: [2])
        let n = try! RawNode(config: testConfig(1, storage: s))
        try! n.campaign()
        #expect(n.status.role == .leader)
        try! n.propose(Data("x".utf8))
        let rd = n.ready()
        #expect(rd.messages.isEmpty)
        #expect(rd.messagesAfterPersist.contains { $0.type == .msgApp && $0.to == 2 })
        n.advance(rd)
    }

    /// Committed entries handed out are always already durable: a single voter commits
    /// its entry only after the Ready that persisted it.
    @Test func committedEntriesAreAlreadyDurable() {
        let (n, s) = leader([1])
        try! n.propose(Data("x".utf8))
        let rd1 = n.ready()
        #expect(rd1.entries.count == 1)
        #expect(rd1.committedEntries.isEmpty)
        s.append(rd1.entries)
        n.advance(rd1)
        let rd2 = n.ready()
        #expect(rd2.committedEntries.map(\.data) == [Data("x".utf8)])
        #expect(rd2.hardState?.commit == rd1.entries[0].index)
        #expect(!rd2.mustSync)   // only the commit index moved
        n.advance(rd2)
        #expect(!n.hasReady)
    }

    /// A follower receives entries and their commit in one message: it applies them in
    /// the Ready after the one that persists them.
    @Test func followerAppliesOnlyPersistedEntries() {
        let s = newStorage(voters: [1, 2])
        let n = try! RawNode(config: testConfig(2, storage: s))
        try! n.step(msg(.msgApp, from: 1, to: 2, term: 1, logTerm: 0, index: 0, commit: 2, entries: [entry(1, 1, "a"), entry(1, 2, "b")]))
        let rd1 = n.ready()
        #expect(rd1.committedEntries.isEmpty && rd1.hardState?.commit == 2)
        s.append(rd1.entries)
        s.setHardState(rd1.hardState!)
        n.advance(rd1)
        let rd2 = n.ready()
        #expect(rd2.committedEntries.map(\.index) == [1, 2])
        n.advance(rd2)
    }

    /// Messages stepped between ready() and advance() appear in the next Ready; entries
    /// replaced meanwhile are handed out again.
    @Test func stepBetweenReadyAndAdvance() {
        let s = newStorage(voters: [1, 2, 3])
        let n = try! RawNode(config: testConfig(2, storage: s))
        try! n.step(msg(.msgApp, from: 1, to: 2, term: 1, logTerm: 0, index: 0, entries: [entry(1, 1), entry(1, 2)]))
        let rd1 = n.ready()
        // A new leader (term 2) overwrites index 2 before rd1 is persisted.
        try! n.step(msg(.msgApp, from: 3, to: 2, term: 2, logTerm: 1, index: 1, entries: [entry(2, 2)]))
        s.append(rd1.entries)
        s.setHardState(rd1.hardState!)
        n.advance(rd1)
        let rd2 = n.ready()
        #expect(rd2.entries.map(\.term) == [2])   // 1/1 was persisted and still matches
        #expect(rd2.hardState?.term == 2)
        #expect(rd2.messagesAfterPersist.map(\.to) == [3])
        s.append(rd2.entries)
        n.advance(rd2)
        #expect(try! s.term(2) == 2)
    }

    /// A crash before persisting loses the Ready, but nothing in it was acknowledged.
    @Test func crashBeforePersistLosesOnlyUnacknowledgedState() {
        let s = newStorage(voters: [1, 2])
        var n = try! RawNode(config: testConfig(2, storage: s))
        try! n.step(msg(.msgApp, from: 1, to: 2, term: 1, logTerm: 0, index: 0, entries: [entry(1, 1)]))
        let rd = n.ready()
        #expect(rd.messages.isEmpty)   // nothing left before persisting
        n = try! RawNode(config: testConfig(2, storage: s))   // crash: rd never persisted
        #expect(n.status.term == 0)
        #expect(n.core.log.lastIndex == 0)
    }

    /// Read states, soft state and hasReady.
    @Test func softStateReadStatesAndHasReady() {
        let s = newStorage(voters: [1])
        let n = try! RawNode(config: testConfig(1, storage: s))
        #expect(!n.hasReady)
        try! n.campaign()
        #expect(n.hasReady)
        var rds = drain(n, s)
        #expect(rds.first?.softState == SoftState(lead: 1, role: .leader))
        n.readIndex(Data("r".utf8))
        rds = drain(n, s)
        #expect(rds.flatMap(\.readStates).map(\.requestContext) == [Data("r".utf8)])
        #expect(!n.hasReady)
    }

    /// RawNode refuses local message types and responses from strangers.
    @Test func stepRefusesLocalMessagesAndStrangers() {
        let n = try! RawNode(config: testConfig(1, storage: newStorage(voters: [1, 2])))
        #expect(throws: RaftError.stepLocalMessage) { try n.step(msg(.msgHup, from: 1, to: 1)) }
        #expect(throws: RaftError.stepLocalMessage) { try n.step(msg(.msgBeat, from: 1, to: 1)) }
        #expect(throws: RaftError.stepPeerNotFound) { try n.step(msg(.msgAppResp, from: 9, to: 1, term: 1)) }
    }

    /// Invalid configurations are refused.
    @Test func invalidConfigurations() {
        let s = MemoryStorage()
        #expect(throws: RaftError.self) { try RawNode(config: RaftConfig(id: 0, storage: s)) }
        #expect(throws: RaftError.self) { try RawNode(config: RaftConfig(id: 1, electionTick: 1, heartbeatTick: 1, storage: s)) }
        var c = RaftConfig(id: 1, storage: s)
        c.readOnlyOption = .leaseBased
        #expect(throws: RaftError.self) { try RawNode(config: c) }
        let n = try! RawNode(config: RaftConfig(id: 1, storage: newStorage(voters: [1], entries: [entry(1, 1)])))
        #expect(throws: RaftError.self) { try n.bootstrap(peers: [RaftPeer(id: 1)]) }
    }

    /// Status reports the hard state, role and (on the leader) everyone's progress.
    @Test func statusReportsProgress() {
        let (n, _) = leader([1, 2, 3])
        let st = n.status
        #expect(st.role == .leader && st.lead == 1 && st.term == 1 && st.vote == 1)
        #expect(st.voters == [1, 2, 3] && st.learners.isEmpty)
        #expect(Set(st.progress.keys) == [1, 2, 3])
        #expect(st.progress[1]?.match == 1)
    }
}
