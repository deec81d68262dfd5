import EtcdProto
import Foundation
import Testing
@testable import Raft

/// Leader transfer (Raft thesis §3.10): MsgTransferLeader, MsgTimeoutNow.
@Suite struct LeaderTransferTests {
    @Test func transferToUpToDateFollower() {
        let c = Cluster(voters: [1, 2, 3])
        c.elect(1)
        c.propose(1, "x")
        c.delivered = []
        c[1].node.transferLeader(to: 2)
        c.stabilize()
        #expect(c.delivered.contains { $0.type == .msgTimeoutNow && $0.to == 2 })
        #expect(c.leaders == [2])
        #expect(c[2].status.term == c[1].status.term)
        #expect(c.propose(2, "y"))
        #expect(c.nodes.values.allSatisfy { $0.appliedData == ["x", "y"] })
    }

    /// A lagging transferee is caught up first, then told to campaign.
    @Test func transferToLaggingFollowerCatchesItUpFirst() {
        let c = Cluster(voters: [1, 2, 3])
        c.elect(1)
        c.isolate(3)
        for i in 0..<5 { c.propose(1, "e\(i)") }
        c.heal()
        c[1].node.transferLeader(to: 3)
        c.stabilize()
        c.tick(1, 2)
        #expect(c.leaders == [3])
        #expect(c[3].appliedData.count == 5)
    }

    /// While a transfer is in progress proposals are dropped; a transfer that does not
    /// finish within an election timeout is abandoned.
    @Test func transferTimesOutAndProposalsResume() {
        let c = Cluster(voters: [1, 2, 3])
        c.elect(1)
        c.isolate(3)
        c[1].node.transferLeader(to: 3)
        c.stabilize()
        #expect(c[1].status.leadTransferee == 3)
        #expect(throws: RaftError.proposalDropped) { try c[1].node.propose(Data("x".utf8)) }
        c.tick(1, c[1].core.electionTimeout)
        #expect(c[1].status.leadTransferee == raftNone)
        #expect(c.leaders == [1])
        #expect(c.propose(1, "x"))
    }

    /// Transfers to oneself, to a learner or to a non-member are ignored; a second request
    /// for the same transferee is a no-op and one for another replaces it.
    @Test func transferRequestsThatAreIgnored() {
        let r = newRaft(1, peers: [1, 2, 3], learners: [4])
        r.becomeCandidate(); r.becomeLeader(); commitNoopEntry(r)
        r.stepOrFail(msg(.msgTransferLeader, from: 1, to: 1))
        #expect(r.leadTransferee == raftNone)
        r.stepOrFail(msg(.msgTransferLeader, from: 4, to: 1))
        #expect(r.leadTransferee == raftNone)
        r.stepOrFail(msg(.msgTransferLeader, from: 9, to: 1))
        #expect(r.leadTransferee == raftNone)
        r.trk.progress[2]!.match = 0   // 2 lags: the leader catches it up first
        r.stepOrFail(msg(.msgTransferLeader, from: 2, to: 1))
        #expect(r.leadTransferee == 2)
        r.stepOrFail(msg(.msgTransferLeader, from: 3, to: 1))
        #expect(r.leadTransferee == 3)
        #expect(r.readMessages().contains { $0.type == .msgTimeoutNow && $0.to == 3 })
    }

    /// The transferee's campaign overrides the voters' leader lease (check-quorum).
    @Test func transferCampaignIgnoresLease() {
        let c = Cluster(voters: [1, 2, 3]) { $0.checkQuorum = true }
        c.elect(1)
        c[1].node.transferLeader(to: 3)
        c.stabilize()
        #expect(c.leaders == [3])
    }

    /// A request forwarded by a peer that took us for the leader is passed on with our term.
    @Test func forwardedRequestsFromPeersArePassedOn() {
        let r = newRaft(2, peers: [1, 2, 3])
        r.becomeFollower(term: 3, lead: 1)
        r.stepOrFail(msg(.msgTransferLeader, from: 3, to: 2, term: 3))
        r.stepOrFail(msg(.msgProp, from: 3, to: 2, entries: [entry(0, 0, "x")]))
        r.stepOrFail(msg(.msgReadIndex, from: 3, to: 2, entries: [entry(0, 0, "ctx")]))
        let ms = r.readMessages()
        #expect(ms.map(\.type) == [.msgTransferLeader, .msgProp, .msgReadIndex])
        #expect(ms.allSatisfy { $0.to == 1 && $0.from == 2 })
        #expect(ms.map(\.term) == [3, 0, 0])
        // A malformed vote request without a term is ignored.
        r.stepOrFail(msg(.msgVote, from: 3, to: 2, term: 0))
        #expect(r.readMessages().isEmpty)
    }

    /// A follower forwards MsgTransferLeader to the leader (as etcd does, naming itself).
    @Test func followerForwardsTransferRequest() {
        let c = Cluster(voters: [1, 2, 3])
        c.elect(1)
        c[2].node.transferLeader(to: 2)
        c.stabilize()
        #expect(c.leaders == [2])
    }
}
