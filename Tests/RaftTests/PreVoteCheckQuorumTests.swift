import EtcdProto
import Foundation
import Testing
@testable import Raft

/// Pre-vote (thesis §9.6) and check-quorum / leader lease (thesis §6.2).
@Suite struct PreVoteCheckQuorumTests {
    @Test func preVoteAndCheckQuorumAreOffByDefault() {
        let c = RaftConfig(id: 1, storage: MemoryStorage())
        #expect(!c.preVote && !c.checkQuorum)
        #expect(c.electionTick == 10 && c.heartbeatTick == 1)
    }

    /// Without pre-vote a partitioned node keeps raising its term and, when it returns,
    /// deposes the leader (the disruption pre-vote exists to prevent).
    @Test func withoutPreVotePartitionedNodeDisruptsOnReturn() {
        let c = Cluster(voters: [1, 2, 3])
        c.elect(1)
        let term = c[1].status.term
        c.isolate(3)
        c.tick(3, 50)
        #expect(c[3].status.term > term + 1)
        c.heal()
        c.tickAll(30)
        #expect(c[1].status.term > term)
    }

    /// With pre-vote the partitioned node never raises its term and the leader survives.
    @Test func preVotePartitionedNodeDoesNotDisrupt() {
        let c = Cluster(voters: [1, 2, 3]) { $0.preVote = true }
        c.elect(1)
        c.propose(1, "x")
        let term = c[1].status.term
        c.isolate(3)
        c.tick(3, 50)
        #expect(c[3].status.term == term)
        #expect(c[3].status.role == .preCandidate)
        c.heal()
        c.tick(1, 2)
        c.tickAll(30)
        #expect(c.leaders == [1])
        #expect(c[1].status.term == term)
        #expect(c[3].status.role == .follower)
    }

    /// Pre-vote elects normally: pre-candidate, then candidate in term+1, then leader.
    @Test func preVoteElection() {
        let r = newRaft(1, peers: [1, 2, 3]) { $0.preVote = true }
        r.stepOrFail(msg(.msgHup, from: 1, to: 1))
        #expect(r.role == .preCandidate && r.term == 0 && r.vote == raftNone)
        let pv = r.readMessages()
        #expect(pv.allSatisfy { $0.type == .msgPreVote && $0.term == 1 })
        r.stepOrFail(msg(.msgPreVoteResp, from: 2, to: 1, term: 1))
        #expect(r.role == .candidate && r.term == 1 && r.vote == 1)
        r.stepOrFail(msg(.msgVoteResp, from: 2, to: 1, term: 1))
        #expect(r.role == .leader)
    }

    /// A pre-vote is granted for a future term without changing the voter's term or vote.
    @Test func preVoteGrantDoesNotChangeVoter() {
        let r = newRaft(2, peers: [1, 2, 3]) { $0.preVote = true }
        r.loadState(Raftpb_HardState(term: 3, vote: 3, commit: 0))
        r.stepOrFail(msg(.msgPreVote, from: 1, to: 2, term: 4, logTerm: 0, index: 0))
        let ms = r.readMessages()
        #expect(ms.count == 1 && ms[0].type == .msgPreVoteResp && !ms[0].reject && ms[0].term == 4)
        #expect(r.term == 3 && r.vote == 3)
    }

    /// Check-quorum: a leader that hears from no quorum for an election timeout steps down.
    @Test func checkQuorumLeaderStepsDown() {
        let c = Cluster(voters: [1, 2, 3]) { $0.checkQuorum = true }
        c.elect(1)
        c.isolate(1)
        // One check finds the peers active (they were); the next one does not.
        c.tick(1, c[1].core.electionTimeout)
        #expect(c[1].status.role == .leader)
        c.tick(1, c[1].core.electionTimeout)
        #expect(c[1].status.role == .follower)
        // With a quorum it stays.
        let d = Cluster(voters: [1, 2, 3]) { $0.checkQuorum = true }
        d.elect(1)
        d.isolate(3)
        d.tick(1, 3 * d[1].core.electionTimeout)
        #expect(d[1].status.role == .leader)
    }

    /// Leader lease: a follower that heard from its leader within the election timeout
    /// ignores a vote request with a higher term.
    @Test func leaseIgnoresDisruptiveVotes() {
        let c = Cluster(voters: [1, 2, 3]) { $0.checkQuorum = true }
        c.elect(1)
        let term = c[1].status.term
        try? c[2].node.step(msg(.msgVote, from: 3, to: 2, term: term + 5, logTerm: 100, index: 100))
        #expect(c[2].status.term == term)
        #expect(c[2].processReady().isEmpty)
    }

    /// With check-quorum a stale leader's append is answered so it learns the new term.
    @Test func staleLeaderLearnsTermWithCheckQuorum() {
        let r = newRaft(2, peers: [1, 2, 3]) { $0.checkQuorum = true }
        r.loadState(Raftpb_HardState(term: 5, vote: 0, commit: 0))
        r.stepOrFail(msg(.msgApp, from: 1, to: 2, term: 3))
        let ms = r.readMessages()
        #expect(ms.count == 1 && ms[0].type == .msgAppResp && ms[0].term == 5)
    }

    /// A candidate that is rejected by pre-vote from a higher-term node learns that term.
    @Test func preVoteRejectionFromLowerTermCandidate() {
        let r = newRaft(2, peers: [1, 2, 3]) { $0.preVote = true }
        r.loadState(Raftpb_HardState(term: 5, vote: 0, commit: 0))
        r.stepOrFail(msg(.msgPreVote, from: 1, to: 2, term: 3, logTerm: 0, index: 0))
        let ms = r.readMessages()
        #expect(ms.count == 1 && ms[0].type == .msgPreVoteResp && ms[0].reject && ms[0].term == 5)
    }
}
