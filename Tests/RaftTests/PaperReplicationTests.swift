import EtcdProto
import Foundation
import Testing
@testable import Raft

/// Raft paper §5.3 (log replication), after etcd's raft_paper_test.go.
@Suite struct PaperReplicationTests {
    /// §5.3: the leader appends a proposal to its log and sends AppendEntries, carrying the
    /// index and term of the preceding entry, to every follower in parallel; the entry is
    /// handed out for stable storage.
    @Test func leaderAppendsProposalAndReplicatesIt() {
        let r = newRaft(1, peers: [1, 2, 3])
        r.becomeCandidate()
        r.becomeLeader()
        commitNoopEntry(r)
        let li = r.log.lastIndex
        r.stepOrFail(msg(.msgProp, from: 1, to: 1, entries: [entry(0, 0, "some data")]))
        #expect(r.log.lastIndex == li + 1)
        #expect(r.log.committed == li)
        let want = [entry(1, li + 1, "some data")]
        #expect(describe(r.readMessages()) == describe([
            msg(.msgApp, from: 1, to: 2, term: 1, logTerm: 1, index: li, commit: li, entries: want),
            msg(.msgApp, from: 1, to: 3, term: 1, logTerm: 1, index: li, commit: li, entries: want),
        ]))
        #expect(describe(r.log.unstableEntries) == describe(want))
    }

    /// §5.3: once an entry is replicated on a majority the leader commits it, hands it out
    /// to be applied and tells followers the new commit index.
    @Test func leaderCommitsReplicatedEntryAndPropagatesCommitIndex() {
        let r = newRaft(1, peers: [1, 2, 3])
        r.becomeCandidate()
        r.becomeLeader()
        commitNoopEntry(r)
        let li = r.log.lastIndex
        r.stepOrFail(msg(.msgProp, from: 1, to: 1, entries: [entry(0, 0, "some data")]))
        r.persist()
        for m in r.readMessages() { r.stepOrFail(acceptAndReply(m)) }
        #expect(r.log.committed == li + 1)
        #expect(describe(r.log.nextCommittedEntries()) == describe([entry(1, li + 1, "some data")]))
        let ms = r.readMessages()
        #expect(ms.map(\.to).sorted() == [2, 3])
        #expect(ms.allSatisfy { $0.type == .msgApp && $0.commit == li + 1 })
    }

    /// §5.3: an entry is committed once the leader that created it has it on a majority
    /// (the leader's own copy counts once it is persisted).
    @Test func leaderAcknowledgesCommitOnlyWithMajority() {
        let cases: [(size: Int, acceptors: Set<UInt64>, committed: Bool)] = [
            (1, [], true), (3, [], false), (3, [2], true), (3, [2, 3], true),
            (5, [], false), (5, [2], false), (5, [2, 3], true), (5, [2, 3, 4], true), (5, [2, 3, 4, 5], true),
        ]
        for (i, c) in cases.enumerated() {
            let r = newRaft(1, peers: ids(c.size))
            r.becomeCandidate()
            r.becomeLeader()
            commitNoopEntry(r)
            let li = r.log.lastIndex
            r.stepOrFail(msg(.msgProp, from: 1, to: 1, entries: [entry(0, 0, "some data")]))
            r.persist()
            for m in r.readMessages() where c.acceptors.contains(m.to) { r.stepOrFail(acceptAndReply(m)) }
            #expect((r.log.committed > li) == c.committed, "case \(i)")
        }
    }

    /// §5.3: the leader's own unpersisted copy does not count: with one of three acks and
    /// nothing persisted locally nothing commits (our durability rule).
    @Test func leaderCountsItselfOnlyAfterPersisting() {
        let r = newRaft(1, peers: [1, 2, 3])
        r.becomeCandidate()
        r.becomeLeader()
        commitNoopEntry(r)
        let li = r.log.lastIndex
        r.stepOrFail(msg(.msgProp, from: 1, to: 1, entries: [entry(0, 0, "x")]))
        for m in r.readMessages() where m.to == 2 { r.stepOrFail(acceptAndReply(m)) }
        #expect(r.log.committed == li)
        r.persist()
        #expect(r.log.committed == li + 1)
    }

    /// §5.3: committing an entry commits every preceding one, including those of earlier
    /// leaders, and they are applied in log order.
    @Test func leaderCommitsPrecedingEntries() {
        let cases: [[Raftpb_Entry]] = [[], [entry(2, 1)], [entry(1, 1), entry(2, 2)], [entry(1, 1)]]
        for (i, ents) in cases.enumerated() {
            let s = newStorage(voters: [1, 2, 3], entries: ents)
            let r = newRaft(1, peers: [1, 2, 3], storage: s)
            r.loadState(Raftpb_HardState(term: 2, vote: 0, commit: 0))
            r.becomeCandidate()
            r.becomeLeader()
            r.stepOrFail(msg(.msgProp, from: 1, to: 1, entries: [entry(0, 0, "some data")]))
            r.persist()
            for m in r.readMessages() { r.stepOrFail(acceptAndReply(m)) }
            let li = UInt64(ents.count)
            #expect(describe(r.log.nextCommittedEntries()) == describe(ents + [entry(3, li + 1), entry(3, li + 2, "some data")]), "case \(i)")
        }
    }

    /// §5.3: a follower that learns an entry is committed applies it (in log order), once
    /// it is durable.
    @Test func followerAppliesEntriesOnceCommitted() {
        let cases: [([Raftpb_Entry], UInt64)] = [
            ([entry(1, 1, "some data")], 1),
            ([entry(1, 1, "some data"), entry(1, 2, "some data2")], 2),
            ([entry(1, 1, "some data2"), entry(1, 2, "some data")], 2),
            ([entry(1, 1, "some data"), entry(1, 2, "some data2")], 1),
        ]
        for (ents, commit) in cases {
            let r = newRaft(1, peers: [1, 2, 3])
            r.becomeFollower(term: 1, lead: 2)
            r.stepOrFail(msg(.msgApp, from: 2, to: 1, term: 1, commit: commit, entries: ents))
            #expect(r.log.committed == commit)
            // Not durable yet: nothing to apply.
            #expect(r.log.nextCommittedEntries().isEmpty)
            r.persist()
            #expect(describe(r.log.nextCommittedEntries()) == describe(Array(ents[..<Int(commit)])))
        }
    }

    /// §5.3: a follower refuses AppendEntries when it has no entry with the preceding index
    /// and term, and hints where the leader should continue.
    @Test func followerRejectsAppendOnLogMismatch() {
        let ents = [entry(1, 1), entry(2, 2)]
        let cases: [(term: UInt64, index: UInt64, wIndex: UInt64, reject: Bool, hint: UInt64, hintTerm: UInt64)] = [
            (0, 0, 1, false, 0, 0),          // matches committed entries
            (1, 1, 1, false, 0, 0),
            (2, 2, 2, false, 0, 0),          // matches an uncommitted entry
            (1, 2, 2, true, 1, 1),           // mismatch at an existing entry: hint below it
            (3, 3, 3, true, 2, 2),           // no such entry: hint at our last
        ]
        for (i, c) in cases.enumerated() {
            let r = newRaft(1, peers: [1, 2, 3], storage: newStorage(voters: [1, 2, 3], entries: ents))
            r.loadState(Raftpb_HardState(term: 0, vote: 0, commit: 1))
            r.becomeFollower(term: 2, lead: 2)
            r.stepOrFail(msg(.msgApp, from: 2, to: 1, term: 2, logTerm: c.term, index: c.index))
            let ms = r.readMessages()
            #expect(ms.count == 1, "case \(i)")
            #expect(ms[0].type == .msgAppResp && ms[0].index == c.wIndex && ms[0].reject == c.reject, "case \(i)")
            if c.reject {
                #expect(ms[0].rejectHint == c.hint && ms[0].logTerm == c.hintTerm, "case \(i)")
            }
        }
    }

    /// §5.3: a valid AppendEntries deletes a conflicting entry and all after it, and
    /// appends the new ones (which go to stable storage).
    @Test func followerOverwritesConflictingEntries() {
        let cases: [(index: UInt64, term: UInt64, ents: [Raftpb_Entry], want: [UInt64], unstable: [Raftpb_Entry])] = [
            (2, 2, [entry(3, 3)], [1, 2, 3], [entry(3, 3)]),
            (1, 1, [entry(3, 2), entry(4, 3)], [1, 3, 4], [entry(3, 2), entry(4, 3)]),
            (0, 0, [entry(1, 1)], [1, 2], []),
            (0, 0, [entry(3, 1)], [3], [entry(3, 1)]),
        ]
        for (i, c) in cases.enumerated() {
            let r = newRaft(1, peers: [1, 2, 3], storage: newStorage(voters: [1, 2, 3], entries: [entry(1, 1), entry(2, 2)]))
            r.becomeFollower(term: 2, lead: 2)
            r.stepOrFail(msg(.msgApp, from: 2, to: 1, term: 2, logTerm: c.term, index: c.index, entries: c.ents))
            #expect(r.entryTerms == c.want, "case \(i)")
            #expect(describe(r.log.unstableEntries) == describe(c.unstable), "case \(i)")
        }
    }

    /// §5.3, figure 7: whatever a follower's log looks like (missing entries, extra
    /// uncommitted entries, both), the new leader makes it identical to its own.
    @Test func leaderBringsFollowerLogIntoConsistency() {
        let leaderTerms: [UInt64] = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
        let followers: [[UInt64]] = [
            [1, 1, 1, 4, 4, 5, 5, 6, 6],                  // (a)
            [1, 1, 1, 4],                                  // (b)
            [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],             // (c)
            [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],          // (d)
            [1, 1, 1, 4, 4, 4, 4],                         // (e)
            [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],             // (f)
        ]
        for (i, f) in followers.enumerated() {
            let c = Cluster(voters: [1, 2, 3])
            let term: UInt64 = 8
            // Rebuild nodes 1 (leader-to-be) and 2 with the figure's logs; 3 has nothing.
            let ls = newStorage(voters: [1, 2, 3], entries: entries(terms: leaderTerms))
            ls.setHardState(Raftpb_HardState(term: term, vote: 0, commit: UInt64(leaderTerms.count)))
            c.nodes[1] = TestNode(id: 1, storage: ls)
            let fs = newStorage(voters: [1, 2, 3], entries: entries(terms: f))
            fs.setHardState(Raftpb_HardState(term: term - 1, vote: 0, commit: 0))
            c.nodes[2] = TestNode(id: 2, storage: fs)
            // Node 2 may have the longer log, so node 1 needs node 3's vote.
            c.cut.insert([2, 1])
            c.campaign(1)
            c.heal()
            #expect(c.leaders == [1], "case \(i)")
            c.tick(1, 2)   // a heartbeat response unpauses the probe of node 2
            c.propose(1, "x")
            #expect(c[1].core.entryTerms == c[2].core.entryTerms, "case \(i)")
            #expect(c[1].core.log.committed == c[2].core.log.committed, "case \(i)")
        }
    }

    /// §5.3 (optimization at the end): a rejection carries a hint (index and term) so the
    /// leader skips a whole term of divergent entries per round trip, not one entry.
    @Test func leaderBacktracksQuicklyWithRejectionHints() {
        // Follower 2 has 100 entries of an old term 2 the leader never saw.
        let c = Cluster(voters: [1, 2, 3])
        let base = entries(terms: [1, 1, 1])
        let ls = newStorage(voters: [1, 2, 3], entries: base + entries(terms: Array(repeating: 3, count: 20), from: 4))
        ls.setHardState(Raftpb_HardState(term: 3, vote: 0, commit: 3))
        c.nodes[1] = TestNode(id: 1, storage: ls)
        let fs = newStorage(voters: [1, 2, 3], entries: base + entries(terms: Array(repeating: 2, count: 100), from: 4))
        fs.setHardState(Raftpb_HardState(term: 2, vote: 0, commit: 3))
        c.nodes[2] = TestNode(id: 2, storage: fs)
        c.cut.insert([2, 1])
        c.campaign(1)
        c.heal()
        c.delivered = []
        c.tick(1, 2)
        c.propose(1, "x")
        let rejects = c.delivered.filter { $0.type == .msgAppResp && $0.reject && $0.from == 2 }
        #expect(rejects.count <= 2)
        #expect(c[1].core.entryTerms == c[2].core.entryTerms)
    }

    /// Flow control: in the probe state the leader sends one MsgApp per heartbeat until it
    /// hears back; in the replicate state it pipelines up to the in-flight limit.
    @Test func flowControlProbeThenReplicateWithinWindow() {
        let r = newRaft(1, peers: [1, 2]) { $0.maxInflightMsgs = 3; $0.maxSizePerMsg = 0 }
        r.becomeCandidate()
        r.becomeLeader()
        r.persist()
        _ = r.readMessages()
        let pr = r.trk.progress[2]!
        #expect(pr.state == .probe)
        // Probe: several proposals, but only one MsgApp outstanding.
        for _ in 0..<5 { r.stepOrFail(msg(.msgProp, from: 1, to: 1, entries: [entry(0, 0, "p")])) }
        var ms = r.readMessages()
        #expect(ms.filter { $0.type == .msgApp }.count == 1)
        #expect(pr.isPaused)
        // A heartbeat response unpauses the probe.
        r.stepOrFail(msg(.msgHeartbeatResp, from: 2, to: 1, term: r.term))
        ms = r.readMessages()
        #expect(ms.filter { $0.type == .msgApp }.count == 1)
        // Acknowledge the first entry: the follower moves to replicate and the leader
        // fills the window (3 messages of one entry each).
        r.stepOrFail(msg(.msgAppResp, from: 2, to: 1, term: r.term, index: 1))
        #expect(pr.state == .replicate)
        ms = r.readMessages()
        #expect(ms.filter { $0.type == .msgApp && !$0.entries.isEmpty }.count == 3)
        #expect(pr.inflights.isFull)
        for _ in 0..<3 { r.stepOrFail(msg(.msgProp, from: 1, to: 1, entries: [entry(0, 0, "q")])) }
        #expect(r.readMessages().filter { $0.type == .msgApp }.isEmpty)
        // An ack frees the window up to its index.
        r.stepOrFail(msg(.msgAppResp, from: 2, to: 1, term: r.term, index: 3))
        #expect(r.readMessages().filter { $0.type == .msgApp && !$0.entries.isEmpty }.count == 2)
        // A rejection in replicate state falls back to probe.
        r.stepOrFail(msg(.msgAppResp, from: 2, to: 1, term: r.term, index: 5, reject: true, rejectHint: 3))
        #expect(pr.state == .probe)
        #expect(pr.next == 4)
    }
}
