import EtcdProto
import Foundation
import Testing
@testable import Raft

/// Raft paper §5.4 (safety), after etcd's raft_paper_test.go.
@Suite struct PaperSafetyTests {
    /// §5.4.1: RequestVote carries the candidate's last log index and term, to all others.
    @Test func voteRequestCarriesLastEntry() {
        for (ents, wantTerm) in [([entry(1, 1)], UInt64(2)), ([entry(1, 1), entry(2, 2)], 3)] {
            let r = newRaft(1, peers: [1, 2, 3])
            r.stepOrFail(msg(.msgApp, from: 2, to: 1, term: wantTerm - 1, entries: ents))
            _ = r.readMessages()
            for _ in 1..<(2 * r.electionTimeout) { r.tick() }
            let ms = r.readMessages().filter { $0.type == .msgVote }.sorted { $0.to < $1.to }
            #expect(ms.map(\.to) == [2, 3])
            for m in ms {
                #expect(m.term == wantTerm)
                #expect(m.index == ents.last!.index)
                #expect(m.logTerm == ents.last!.term)
            }
        }
    }

    /// §5.4.1: a voter denies its vote when its own log is more up to date.
    @Test func voterRejectsCandidateWithLessUpToDateLog() {
        let cases: [([Raftpb_Entry], UInt64, UInt64, Bool)] = [
            // same last term
            ([entry(1, 1)], 1, 1, false),
            ([entry(1, 1)], 1, 2, false),
            ([entry(1, 1), entry(1, 2)], 1, 1, true),
            // candidate has the higher last term
            ([entry(1, 1)], 2, 1, false),
            ([entry(1, 1)], 2, 2, false),
            ([entry(1, 1), entry(1, 2)], 2, 1, false),
            // voter has the higher last term
            ([entry(2, 1)], 1, 1, true),
            ([entry(2, 1)], 1, 2, true),
            ([entry(2, 1), entry(1, 2)], 1, 1, true),
        ]
        for (i, (ents, logTerm, index, reject)) in cases.enumerated() {
            let r = newRaft(1, peers: [1, 2], storage: newStorage(voters: [1, 2], entries: ents))
            r.stepOrFail(msg(.msgVote, from: 2, to: 1, term: 3, logTerm: logTerm, index: index))
            let ms = r.readMessages()
            #expect(ms.count == 1 && ms[0].type == .msgVoteResp && ms[0].reject == reject, "case \(i)")
        }
    }

    /// §5.4.2: only entries of the leader's current term are committed by counting replicas.
    @Test func leaderOnlyCommitsCurrentTermEntriesByCounting() {
        for (index, wantCommit) in [(UInt64(1), UInt64(0)), (2, 0), (3, 3)] {
            let r = newRaft(1, peers: [1, 2], storage: newStorage(voters: [1, 2], entries: [entry(1, 1), entry(2, 2)]))
            r.loadState(Raftpb_HardState(term: 2, vote: 0, commit: 0))
            r.becomeCandidate()
            r.becomeLeader()
            r.persist()
            _ = r.readMessages()
            r.stepOrFail(msg(.msgProp, from: 1, to: 1, entries: [entry(0, 0)]))
            r.persist()
            r.stepOrFail(msg(.msgAppResp, from: 2, to: 1, term: r.term, index: index))
            #expect(r.log.committed == wantCommit, "ack \(index)")
        }
    }

    /// §5.4.2, figure 8: an entry of an old term stored on a majority is not committed
    /// and may still be overwritten (d); once the leader commits an entry of its own term,
    /// the old entry is committed with it and survives every later leader (e).
    @Test(arguments: [false, true])
    func figure8OldTermEntryOnMajorityIsNotCommitted(leaderCommitsOwnTerm: Bool) {
        // State (c) of figure 8: S1, S2, S3 hold index 2 from term 2 ("a"); S5 holds a
        // different index 2 from term 3 ("b"); S4 has only index 1. Nothing past 1 committed.
        let c = Cluster(voters: [1, 2, 3, 4, 5])
        let logs: [UInt64: [Raftpb_Entry]] = [
            1: [entry(1, 1), entry(2, 2, "a")], 2: [entry(1, 1), entry(2, 2, "a")],
            3: [entry(1, 1), entry(2, 2, "a")], 4: [entry(1, 1)], 5: [entry(1, 1), entry(3, 2, "b")],
        ]
        for (id, ents) in logs {
            let s = newStorage(voters: [1, 2, 3, 4, 5], entries: ents)
            s.setHardState(Raftpb_HardState(term: 4, vote: 0, commit: 1))
            c.nodes[id] = TestNode(id: id, storage: s)
        }
        if leaderCommitsOwnTerm {
            // (e) S1 is elected (by S2, S3) and commits an entry of its term, which commits "a".
            c.isolate(4)
            c.isolate(5)
            c.campaign(1)
            #expect(c.leaders == [1])
            c.propose(1, "c")
            #expect(c[1].appliedData == ["a", "c"])
            c.heal()
            c.isolate(1)
            // S5 (last term 3) cannot win against S2, S3 (last term 5).
            c.campaign(5)
            #expect(c[5].status.role != .leader)
        } else {
            // (d) S1 never commits; S5 wins with S2, S3, S4 and overwrites index 2.
            c.isolate(1)
            c.campaign(5)
            #expect(c[5].status.role == .leader)
            c.propose(5, "d")
            #expect(c[2].core.log.allEntries()[1].data == Data("b".utf8))
        }
        c.heal()
        c.tickAll(60)
        let want = leaderCommitsOwnTerm ? ["a", "c"] : ["b", "d"]
        for n in c.nodes.values {
            #expect(Array(n.appliedData.prefix(2)) == want, "node \(n.id)")
        }
    }

    /// §5.4.3 leader completeness: an entry committed in one term is in the log of every
    /// leader of later terms, whoever wins.
    @Test func committedEntryIsInEveryLaterLeadersLog() {
        for winner: UInt64 in [2, 3, 4, 5] {
            let c = Cluster(voters: [1, 2, 3, 4, 5])
            c.campaign(1)
            // Only 2 and 3 receive the entry; with 1 that is a majority, so it commits.
            c.cut = [[1, 4], [1, 5]]
            c.propose(1, "committed")
            #expect(c[1].appliedData == ["committed"])
            // 1 fails. Candidates without the entry cannot win.
            c.isolate(1)
            c.campaign(winner)
            if let l = c.leaders.first(where: { $0 != 1 }) {
                #expect(c[l].core.log.allEntries().contains { $0.data == Data("committed".utf8) }, "winner \(winner)")
                #expect(winner == 2 || winner == 3 || l != winner)
            }
            // Eventually someone leads and everyone applies the entry.
            c.heal()
            c.isolate(1)
            c.tickAll(60)
            c.heal()
            c.tickAll(30)
            for n in c.nodes.values { #expect(n.appliedData.first == "committed", "winner \(winner) node \(n.id)") }
        }
    }

    /// §5.2 + §5.4: a node that voted in a term and restarts from storage does not vote
    /// again in that term (the vote is part of the persisted hard state).
    @Test func voteSurvivesRestart() {
        let c = Cluster(voters: [1, 2, 3])
        try? c[2].node.step(msg(.msgVote, from: 1, to: 2, term: 5, logTerm: 0, index: 0))
        _ = c[2].processReady()
        #expect(c[2].storage.hardState.vote == 1)
        c.nodes[2] = TestNode(id: 2, storage: c[2].storage)
        try? c[2].node.step(msg(.msgVote, from: 3, to: 2, term: 5, logTerm: 0, index: 0))
        let ms = c[2].processReady()
        #expect(ms.count == 1 && ms[0].type == .msgVoteResp && ms[0].reject)
    }
}
