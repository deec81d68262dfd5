import EtcdProto
import Foundation
import Testing
@testable import Raft

/// Raft paper §8 (client interaction): proposals, forwarding, and ReadIndex reads.
@Suite struct ClientInteractionTests {
    func ready(_ c: Cluster) -> Cluster {
        c.elect(1)
        c.propose(1, "w1")
        return c
    }

    /// A ReadIndex on the leader is answered with its commit index once a quorum has
    /// acknowledged a heartbeat carrying the request context.
    @Test func readIndexConfirmedByHeartbeatQuorum() {
        let c = ready(Cluster(voters: [1, 2, 3]))
        c.delivered = []
        c[1].node.readIndex(Data("ctx1".utf8))
        c.stabilize()
        #expect(c.delivered.contains { $0.type == .msgHeartbeat && $0.context == Data("ctx1".utf8) })
        #expect(c[1].readStates == [ReadState(index: c[1].status.commit, requestContext: Data("ctx1".utf8))])
    }

    /// Without a quorum of acknowledgements there is no answer (a deposed leader cannot
    /// serve stale reads).
    @Test func readIndexWithoutQuorumIsNotAnswered() {
        let c = ready(Cluster(voters: [1, 2, 3]))
        c.isolate(1)
        c[1].node.readIndex(Data("ctx".utf8))
        c.tick(1, 5)
        #expect(c[1].readStates.isEmpty)
        c.heal()
        c.tick(1, 1)   // the next heartbeat carries the pending context
        #expect(c[1].readStates.map(\.requestContext) == [Data("ctx".utf8)])
    }

    /// A new leader postpones reads until it has committed an entry of its own term.
    @Test func readIndexWaitsForCommitInCurrentTerm() {
        let r = newRaft(1, peers: [1, 2, 3])
        r.becomeCandidate(); r.becomeLeader()
        r.persist()
        _ = r.readMessages()
        r.stepOrFail(msg(.msgReadIndex, from: 1, to: 1, entries: [entry(0, 0, "ctx")]))
        #expect(r.pendingReadIndexMessages.count == 1)
        #expect(r.readMessages().isEmpty)
        r.bcastAppend()
        for m in r.readMessages() where m.type == .msgApp { r.stepOrFail(acceptAndReply(m)) }
        // Committed: the read goes out as a heartbeat round.
        #expect(r.pendingReadIndexMessages.isEmpty)
        let hbs = r.readMessages().filter { $0.type == .msgHeartbeat }
        #expect(hbs.count == 2 && hbs.allSatisfy { $0.context == Data("ctx".utf8) })
        r.stepOrFail(msg(.msgHeartbeatResp, from: 2, to: 1, term: r.term, context: Data("ctx".utf8)))
        #expect(r.readStates == [ReadState(index: r.log.committed, requestContext: Data("ctx".utf8))])
    }

    /// A follower forwards ReadIndex to the leader and gets the read index back.
    @Test func followerForwardsReadIndexToLeader() {
        let c = ready(Cluster(voters: [1, 2, 3]))
        c[2].node.readIndex(Data("f".utf8))
        c.stabilize()
        #expect(c[2].readStates == [ReadState(index: c[1].status.commit, requestContext: Data("f".utf8))])
        #expect(c[1].readStates.isEmpty)
    }

    /// A read index covers every write committed before the read was requested.
    @Test func readIndexCoversEarlierWrites() {
        let c = ready(Cluster(voters: [1, 2, 3, 4, 5]))
        for i in 0..<5 {
            c.propose(UInt64(i % 5 + 1), "w\(i)")
            let commit = c.nodes.values.map { $0.status.commit }.max()!
            let reader = UInt64((i + 2) % 5 + 1)
            c[reader].node.readIndex(Data("r\(i)".utf8))
            c.stabilize()
            #expect(c[reader].readStates.last?.index ?? 0 >= commit)
        }
    }

    /// Reads requested without a leader are dropped (the caller retries).
    @Test func readIndexWithoutLeaderIsDropped() {
        let c = Cluster(voters: [1, 2, 3])
        c[2].node.readIndex(Data("x".utf8))
        c.stabilize()
        #expect(c.nodes.values.allSatisfy { $0.readStates.isEmpty })
    }

    /// With a lease (lease-based reads, check-quorum on) the leader answers at once.
    @Test func leaseBasedReadAnsweredWithoutHeartbeatRound() {
        let c = ready(Cluster(voters: [1, 2, 3]) { $0.checkQuorum = true; $0.readOnlyOption = .leaseBased })
        c.delivered = []
        c[1].node.readIndex(Data("l".utf8))
        c.stabilize()
        #expect(!c.delivered.contains { $0.type == .msgHeartbeat })
        #expect(c[1].readStates.map(\.requestContext) == [Data("l".utf8)])
    }

    /// A single voter answers reads on its own (after its first commit in the term).
    @Test func singleVoterAnswersReadsAlone() {
        let c = ready(Cluster(voters: [1]))
        c[1].node.readIndex(Data("s".utf8))
        c.stabilize()
        #expect(c[1].readStates == [ReadState(index: c[1].status.commit, requestContext: Data("s".utf8))])
    }

    /// Followers forward proposals to the leader; without a leader (or with forwarding
    /// disabled) proposals are dropped with an error.
    @Test func proposalsForwardedOrDropped() {
        let c = ready(Cluster(voters: [1, 2, 3]))
        #expect(c.propose(3, "via 3"))
        #expect(c.nodes.values.allSatisfy { $0.appliedData == ["w1", "via 3"] })

        let lonely = Cluster(voters: [1, 2, 3])
        #expect(throws: RaftError.proposalDropped) { try lonely[2].node.propose(Data("x".utf8)) }

        let strict = ready(Cluster(voters: [1, 2, 3]) { $0.disableProposalForwarding = true })
        #expect(throws: RaftError.proposalDropped) { try strict[2].node.propose(Data("x".utf8)) }
        // A candidate drops proposals too.
        try? lonely[1].node.campaign()
        #expect(throws: RaftError.proposalDropped) { try lonely[1].node.propose(Data("x".utf8)) }
    }

    /// The uncommitted tail is bounded: beyond the limit proposals are dropped until
    /// entries commit.
    @Test func uncommittedTailIsBounded() {
        let r = newRaft(1, peers: [1, 2, 3]) { $0.maxUncommittedEntriesSize = 100 }
        r.becomeCandidate(); r.becomeLeader()
        let big = Data(repeating: 1, count: 60)
        var e = entry(0, 0); e.data = big
        #expect((try? r.step(msg(.msgProp, from: 1, to: 1, entries: [e]))) != nil)
        #expect(throws: RaftError.proposalDropped) { try r.step(msg(.msgProp, from: 1, to: 1, entries: [e])) }
        r.reduceUncommittedSize([e])
        #expect((try? r.step(msg(.msgProp, from: 1, to: 1, entries: [e]))) != nil)
    }
}
