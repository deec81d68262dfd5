import EtcdProto
import Foundation
import Testing
@testable import Raft

/// Raft paper §5.1 (terms) and §5.2 (leader election), after etcd's raft_paper_test.go.
@Suite struct PaperElectionTests {
    /// §5.1: a server whose term is smaller than another's updates it; a candidate or
    /// leader that learns its term is stale reverts to follower.
    @Test(arguments: [RaftRole.follower, .candidate, .leader])
    func serverUpdatesTermFromMessage(role: RaftRole) {
        let r = newRaft(1, peers: [1, 2, 3])
        switch role {
        case .follower: r.becomeFollower(term: 1, lead: 2)
        case .candidate: r.becomeCandidate()
        case .leader: r.becomeCandidate(); r.becomeLeader()
        case .preCandidate: break
        }
        r.stepOrFail(msg(.msgApp, from: 2, to: 1, term: 2))
        #expect(r.term == 2)
        #expect(r.role == .follower)
        #expect(r.lead == 2)
    }

    /// §5.1: a request with a stale term is ignored (etcd's reading of "rejects").
    @Test func staleTermMessageIsIgnored() {
        let r = newRaft(1, peers: [1, 2, 3])
        r.loadState(Raftpb_HardState(term: 2, vote: 0, commit: 0))
        r.stepOrFail(msg(.msgApp, from: 2, to: 1, term: 1, entries: [entry(1, 1)]))
        #expect(r.log.lastIndex == 0)
        #expect(r.readMessages().isEmpty)
        #expect(r.term == 2)
    }

    /// §5.2: servers start as followers.
    @Test func startsAsFollower() {
        let r = newRaft(1, peers: [1, 2, 3])
        #expect(r.role == .follower)
        #expect(r.term == 0)
    }

    /// §5.2: the leader sends heartbeats (no entries, index and log term 0) every heartbeat tick.
    @Test func leaderBroadcastsHeartbeats() {
        let r = newRaft(1, peers: [1, 2, 3], election: 10, heartbeat: 1)
        r.becomeCandidate()
        r.becomeLeader()
        for i in 0..<10 { _ = r.appendEntries([entry(0, UInt64(i) + 1)]) }
        _ = r.readMessages()
        r.tick()
        let ms = r.readMessages()
        #expect(describe(ms) == describe([
            msg(.msgHeartbeat, from: 1, to: 2, term: 1),
            msg(.msgHeartbeat, from: 1, to: 3, term: 1),
        ]))
    }

    /// §5.2: a follower that hears nothing for an election timeout becomes a candidate
    /// in a new term, votes for itself and asks everyone else for votes; a candidate
    /// that does not win in time starts another election.
    @Test(arguments: [RaftRole.follower, .candidate])
    func nonLeaderStartsElectionOnTimeout(role: RaftRole) {
        let r = newRaft(1, peers: [1, 2, 3])
        if role == .follower { r.becomeFollower(term: 1, lead: 2) } else { r.becomeCandidate() }
        for _ in 1..<(2 * r.electionTimeout) { r.tick() }
        #expect(r.term == 2)
        #expect(r.role == .candidate)
        #expect(r.trk.votes[1] == true)
        #expect(r.vote == 1)
        #expect(describe(r.readMessages().filter { $0.type == .msgVote }) == describe([
            msg(.msgVote, from: 1, to: 2, term: 2),
            msg(.msgVote, from: 1, to: 3, term: 2),
        ]))
    }

    /// §5.2: in one round of RequestVote a candidate wins with a majority, loses to a
    /// majority of rejections, or stays a candidate.
    @Test func leaderElectionInOneRoundRPC() {
        let cases: [(size: Int, votes: [UInt64: Bool], want: RaftRole)] = [
            (1, [:], .leader),
            (3, [2: true, 3: true], .leader),
            (3, [2: true], .leader),
            (5, [2: true, 3: true, 4: true, 5: true], .leader),
            (5, [2: true, 3: true, 4: true], .leader),
            (5, [2: true, 3: true], .leader),
            (3, [2: false, 3: false], .follower),
            (5, [2: false, 3: false, 4: false, 5: false], .follower),
            (5, [2: true, 3: false, 4: false, 5: false], .follower),
            (3, [:], .candidate),
            (5, [2: true], .candidate),
            (5, [2: false, 3: false], .candidate),
            (5, [:], .candidate),
        ]
        for (i, c) in cases.enumerated() {
            let r = newRaft(1, peers: ids(c.size))
            r.stepOrFail(msg(.msgHup, from: 1, to: 1))
            for (id, granted) in c.votes.sorted(by: { $0.key < $1.key }) {
                r.stepOrFail(msg(.msgVoteResp, from: id, to: 1, term: r.term, reject: !granted))
            }
            #expect(r.role == c.want, "case \(i)")
            #expect(r.term == 1, "case \(i)")
        }
    }

    /// §5.2: each follower votes for at most one candidate per term, first come first served.
    @Test func followerVotesOncePerTerm() {
        let cases: [(vote: UInt64, nvote: UInt64, reject: Bool)] = [
            (0, 1, false), (0, 2, false), (1, 1, false), (2, 2, false), (1, 2, true), (2, 1, true),
        ]
        for c in cases {
            let r = newRaft(1, peers: [1, 2, 3])
            r.loadState(Raftpb_HardState(term: 1, vote: c.vote, commit: 0))
            r.stepOrFail(msg(.msgVote, from: c.nvote, to: 1, term: 1))
            #expect(describe(r.readMessages()) == describe([
                msg(.msgVoteResp, from: 1, to: c.nvote, term: 1, reject: c.reject),
            ]))
        }
    }

    /// §5.2: a candidate that receives AppendEntries from a leader of at least its term
    /// returns to follower.
    @Test func candidateFallsBackToLeaderOfSameOrLaterTerm() {
        for term: UInt64 in [1, 2] {
            let r = newRaft(1, peers: [1, 2, 3])
            r.stepOrFail(msg(.msgHup, from: 1, to: 1))
            #expect(r.role == .candidate)
            r.stepOrFail(msg(.msgApp, from: 2, to: 1, term: term))
            #expect(r.role == .follower)
            #expect(r.term == term)
            #expect(r.lead == 2)
        }
    }

    /// §5.2: election timeouts are randomized in [electionTimeout, 2*electionTimeout).
    @Test(arguments: [RaftRole.follower, .candidate])
    func electionTimeoutIsRandomized(role: RaftRole) {
        let et = 10
        let r = newRaft(1, peers: [1, 2, 3], election: et)
        var seen = Set<Int>()
        for round in 0..<(50 * et) {
            if role == .follower { r.becomeFollower(term: r.term + 1, lead: 2) } else { r.becomeCandidate() }
            var t = 0
            _ = r.readMessages()
            while !r.readMessages().contains(where: { $0.type == .msgVote }) {
                r.tick()
                t += 1
                precondition(t < 2 * et + 1, "round \(round)")
            }
            seen.insert(t)
        }
        #expect(seen == Set(et..<(2 * et)))
    }

    /// §5.2: randomized timeouts make it rare that two followers (or candidates) time
    /// out together.
    @Test(arguments: [RaftRole.follower, .candidate])
    func electionTimeoutsRarelyCollide(role: RaftRole) {
        let et = 10
        let size = 5
        let rs = ids(size).map { newRaft($0, peers: ids(size), election: et) { $0.randomSeed = 1000 + $0.id } }
        var conflicts = 0
        for _ in 0..<1000 {
            for r in rs {
                if role == .follower { r.becomeFollower(term: r.term + 1, lead: raftNone) } else { r.becomeCandidate() }
            }
            var timeouts = 0
            while timeouts == 0 {
                for r in rs {
                    r.tick()
                    if r.readMessages().contains(where: { $0.type == .msgVote }) { timeouts += 1 }
                }
            }
            if timeouts > 1 { conflicts += 1 }
        }
        #expect(Double(conflicts) / 1000 <= 0.3)
    }

    /// §5.2: split votes resolve: five nodes that all time out together eventually elect
    /// exactly one leader, thanks to randomized timeouts.
    @Test func splitVotesResolveWithRandomizedTimeouts() {
        for seed: UInt64 in 1...20 {
            let c = Cluster(voters: ids(4)) { $0.randomSeed = seed &* 31 &+ $0.id }
            // Everyone campaigns at once: with 4 voters nobody can win alone.
            for id in ids(4) { try? c[id].node.campaign() }
            c.stabilize()
            var ticks = 0
            while c.leaders.count != 1 && ticks < 200 {
                c.tickAll()
                ticks += 1
            }
            #expect(c.leaders.count == 1, "seed \(seed)")
            let term = c[c.leaders[0]].status.term
            #expect(c.nodes.values.allSatisfy { $0.status.term == term && $0.status.lead == c.leaders[0] })
        }
    }

    /// §5.2: a fresh three-node cluster elects a leader by ticking alone and every
    /// member learns who it is.
    @Test func clusterElectsLeaderByTicking() {
        let c = Cluster(voters: [1, 2, 3])
        var ticks = 0
        while c.leaders.isEmpty && ticks < 100 {
            c.tickAll()
            ticks += 1
        }
        #expect(c.leaders.count == 1)
        #expect(ticks >= 10 && ticks < 20)
        let lead = c.leaders[0]
        #expect(c.nodes.values.allSatisfy { $0.status.lead == lead })
    }
}
