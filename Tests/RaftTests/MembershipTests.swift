import EtcdProto
import Foundation
import Testing
@testable import Raft

/// Raft paper §6 (cluster membership changes), single-step as etcd 3.4 does them.
@Suite struct MembershipTests {
    /// Bootstrapping writes one committed ConfChangeAddNode per peer at term 1.
    @Test func bootstrapCommitsInitialConfiguration() {
        let c = Cluster(bootstrapping: [1, 2, 3])
        for n in c.nodes.values {
            #expect(n.confState.voters.sorted() == [1, 2, 3])
            #expect(n.applied.count == 3 && n.applied.allSatisfy { $0.type == .entryConfChange })
            #expect(n.status.commit == 3 && n.status.term == 1)
        }
        c.elect(1)
        #expect(c.propose(1, "x"))
        #expect(c.nodes.values.allSatisfy { $0.appliedData == ["x"] })
    }

    /// A node added with ConfChangeAddNode receives the whole log and votes.
    @Test func addedNodeCatchesUpAndJoinsQuorum() {
        let c = Cluster(bootstrapping: [1, 2, 3])
        c.elect(1)
        c.propose(1, "before")
        c.addEmptyNode(4)
        c.proposeConfChange(1, .confChangeAddNode, 4)
        c.tick(1, 2)
        #expect(c[1].confState.voters.sorted() == [1, 2, 3, 4])
        #expect(c[4].confState.voters.sorted() == [1, 2, 3, 4])
        #expect(c[4].appliedData == ["before"])
        // With four voters a quorum is three: 1 and 4 alone cannot commit.
        c.isolate(2)
        c.isolate(3)
        c.cut = c.cut.filter { !($0.contains(1) && $0.contains(4)) }
        let commit = c[1].status.commit
        c.propose(1, "after")
        #expect(c[1].status.commit == commit)
        c.heal()
        c.tick(1, 2)
        #expect(c.nodes.values.allSatisfy { $0.appliedData == ["before", "after"] })
    }

    /// Removing a node shrinks the quorum: entries that waited for it commit (etcd's
    /// TestCommitAfterRemoveNode), and the rest carry on without it.
    @Test func removingNodeShrinksQuorum() {
        let c = Cluster(bootstrapping: [1, 2])
        c.elect(1)
        // 2 stops answering; the removal needs its vote still (2 of 2), so let it through
        // first, then drop everything from 2.
        c.proposeConfChange(1, .confChangeRemoveNode, 2)
        #expect(c[1].confState.voters == [1])
        c.isolate(2)
        #expect(c.propose(1, "alone"))
        #expect(c[1].appliedData == ["alone"])
    }

    /// A pending entry that was waiting on the removed node commits once the removal is applied.
    @Test func pendingEntryCommitsWhenRemovalApplied() {
        let r = newRaft(1, peers: [1, 2])
        r.becomeCandidate(); r.becomeLeader(); commitNoopEntry(r)
        r.stepOrFail(msg(.msgProp, from: 1, to: 1, entries: [Raftpb_Entry(term: 0, index: 0, type: .entryConfChange, data: try! confChange(.confChangeRemoveNode, 2).serializedBytes())]))
        r.persist()
        let ccIndex = r.log.lastIndex
        for m in r.readMessages() where m.type == .msgApp { r.stepOrFail(acceptAndReply(m)) }
        #expect(r.log.committed == ccIndex)
        r.stepOrFail(msg(.msgProp, from: 1, to: 1, entries: [entry(0, 0, "x")]))
        r.persist()
        _ = r.readMessages()
        #expect(r.log.committed == ccIndex)   // 2 has not acked "x"
        _ = r.applyConfChange(confChange(.confChangeRemoveNode, 2))
        #expect(r.log.committed == ccIndex + 1)
    }

    /// A learner receives the log but does not vote, is not counted in quorums and never campaigns.
    @Test func learnerReceivesLogButHasNoVote() {
        let c = Cluster(bootstrapping: [1, 2, 3])
        c.elect(1)
        c.addEmptyNode(4)
        c.proposeConfChange(1, .confChangeAddLearnerNode, 4)
        c.tick(1, 2)
        c.propose(1, "x")
        #expect(c[4].appliedData == ["x"])
        #expect(c[4].confState.learners == [4])
        #expect(c[1].status.progress[4]?.isLearner == true)
        // The learner never campaigns, however long it waits.
        c.isolate(4)
        c.tick(4, 100)
        #expect(c[4].status.role == .follower)
        #expect(c[4].status.term == c[1].status.term)
        // 1 + learner 4 is not a quorum.
        c.heal()
        c.isolate(2)
        c.isolate(3)
        c.cut = c.cut.filter { !($0.contains(1) && $0.contains(4)) }
        let commit = c[1].status.commit
        c.propose(1, "y")
        #expect(c[1].status.commit == commit)
        #expect(c[4].core.log.lastIndex > commit)   // it did receive the entry
    }

    /// A learner is promoted by adding it as a voter; from then on it counts and can lead.
    @Test func promotedLearnerVotesAndCanLead() {
        let c = Cluster(bootstrapping: [1, 2, 3])
        c.elect(1)
        c.addEmptyNode(4)
        c.proposeConfChange(1, .confChangeAddLearnerNode, 4)
        c.tick(1, 2)
        c.proposeConfChange(1, .confChangeAddNode, 4)
        #expect(c[4].confState.voters.sorted() == [1, 2, 3, 4])
        #expect(c[4].confState.learners.isEmpty)
        #expect(c[4].core.promotable)
        c.campaign(4)
        #expect(c.leaders == [4])
        c.propose(4, "from 4")
        #expect(c.nodes.values.allSatisfy { $0.appliedData == ["from 4"] })
    }

    /// A learner asked to vote does vote (it may have been promoted without knowing yet).
    @Test func learnerGrantsVoteWhenAsked() {
        let r = newRaft(2, peers: [1], learners: [2])
        #expect(r.isLearner)
        r.stepOrFail(msg(.msgVote, from: 1, to: 2, term: 2, logTerm: 0, index: 0))
        let ms = r.readMessages()
        #expect(ms.count == 1 && ms[0].type == .msgVoteResp && !ms[0].reject)
    }

    /// Only one conf change may be pending: a second proposal before the first is applied
    /// becomes an empty normal entry; after applying, the next one is accepted.
    @Test func onlyOneConfChangePending() {
        let r = newRaft(1, peers: [1, 2])
        r.becomeCandidate(); r.becomeLeader(); commitNoopEntry(r)
        let cc = Raftpb_Entry(term: 0, index: 0, type: .entryConfChange, data: try! confChange(.confChangeAddNode, 3).serializedBytes())
        r.stepOrFail(msg(.msgProp, from: 1, to: 1, entries: [cc]))
        r.stepOrFail(msg(.msgProp, from: 1, to: 1, entries: [cc]))
        let tail = r.log.unstableEntries
        #expect(tail.map(\.type) == [.entryConfChange, .entryNormal])
        #expect(tail[1].data.isEmpty)
        // Commit and apply the first: now another is accepted.
        r.persist()
        for m in r.readMessages() where m.type == .msgApp { r.stepOrFail(acceptAndReply(m)) }
        r.log.appliedTo(r.log.committed)
        r.stepOrFail(msg(.msgProp, from: 1, to: 1, entries: [cc]))
        #expect(r.log.unstableEntries.last?.type == .entryConfChange)
    }

    /// A new leader refuses conf changes until it has applied everything in its log (any
    /// of it might be an unapplied conf change).
    @Test func newLeaderRefusesConfChangeUntilLogApplied() {
        let s = newStorage(voters: [1, 2], entries: [entry(1, 1), entry(1, 2)])
        let r = newRaft(1, peers: [1, 2], storage: s)
        r.loadState(Raftpb_HardState(term: 1, vote: 0, commit: 0))
        r.becomeCandidate(); r.becomeLeader()
        #expect(r.pendingConfIndex == 2)
        let cc = Raftpb_Entry(term: 0, index: 0, type: .entryConfChange, data: try! confChange(.confChangeAddNode, 3).serializedBytes())
        r.stepOrFail(msg(.msgProp, from: 1, to: 1, entries: [cc]))
        #expect(r.log.unstableEntries.last?.type == .entryNormal)
    }

    /// A node with a committed but unapplied conf change does not campaign.
    @Test func noCampaignWithUnappliedConfChange() {
        let cc = Raftpb_Entry(term: 1, index: 1, type: .entryConfChange, data: try! confChange(.confChangeAddNode, 3).serializedBytes())
        let s = newStorage(voters: [1, 2], entries: [cc])
        s.setHardState(Raftpb_HardState(term: 1, vote: 0, commit: 1))
        let r = newRaft(1, peers: [1, 2], storage: s)
        r.stepOrFail(msg(.msgHup, from: 1, to: 1))
        #expect(r.role == .follower)
        r.log.appliedTo(1)
        r.stepOrFail(msg(.msgHup, from: 1, to: 1))
        #expect(r.role == .candidate)
    }

    /// A leader that removed itself drops proposals; removing the last voter is ignored.
    @Test func removedLeaderDropsProposalsAndLastVoterStays() {
        let r = newRaft(1, peers: [1, 2])
        r.becomeCandidate(); r.becomeLeader()
        _ = r.applyConfChange(confChange(.confChangeRemoveNode, 1))
        #expect(throws: RaftError.proposalDropped) {
            try r.step(msg(.msgProp, from: 1, to: 1, entries: [entry(0, 0, "x")]))
        }
        let cs = r.applyConfChange(confChange(.confChangeRemoveNode, 2))
        #expect(cs.voters == [2])
    }

    /// Learners can be demoted to and from, and the ConfState reports both sets.
    @Test func confStateTracksVotersAndLearners() {
        let r = newRaft(1, peers: [1, 2, 3])
        var cs = r.applyConfChange(confChange(.confChangeAddLearnerNode, 4))
        #expect(cs.voters == [1, 2, 3] && cs.learners == [4])
        cs = r.applyConfChange(confChange(.confChangeAddNode, 4))
        #expect(cs.voters == [1, 2, 3, 4] && cs.learners.isEmpty)
        cs = r.applyConfChange(confChange(.confChangeAddLearnerNode, 3))
        #expect(cs.voters == [1, 2, 4] && cs.learners == [3])
        cs = r.applyConfChange(confChange(.confChangeRemoveNode, 3))
        #expect(cs.voters == [1, 2, 4] && cs.learners.isEmpty)
        cs = r.applyConfChange(confChange(.confChangeUpdateNode, 2))
        #expect(cs.voters == [1, 2, 4])
    }
}
