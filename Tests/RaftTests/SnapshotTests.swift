import EtcdProto
import Foundation
import Testing
@testable import Raft

/// Raft paper §7 (log compaction): snapshots and followers behind the first index.
@Suite struct SnapshotTests {
    func snapshot(index: UInt64, term: UInt64, voters: [UInt64]) -> Raftpb_Snapshot {
        var s = Raftpb_Snapshot()
        s.metadata.index = index
        s.metadata.term = term
        s.metadata.confState = confState(voters: voters)
        s.data = Data("snap".utf8)
        return s
    }

    /// A follower behind the leader's first index receives MsgSnap, restores, and catches up.
    @Test func followerBehindFirstIndexGetsSnapshot() {
        let c = Cluster(voters: [1, 2, 3])
        c.elect(1)
        c.isolate(3)
        for i in 0..<10 { c.propose(1, "e\(i)") }
        let applied = c[1].status.applied
        try! c[1].storage.createSnapshot(applied, confState: c[1].confState, data: Data("state".utf8))
        try! c[1].storage.compact(applied)
        c.heal()
        c.delivered = []
        c.tick(1, 3)
        #expect(c.delivered.contains { $0.type == .msgSnap && $0.to == 3 })
        #expect(c[3].storage.currentSnapshot.metadata.index == applied)
        #expect(c[3].status.commit == c[1].status.commit)
        #expect(c[1].status.progress[3]?.state == .replicate)
        c.propose(1, "after")
        #expect(c[3].appliedData == ["after"])
    }

    /// Restoring: the log is replaced, commit jumps to the snapshot, configuration follows it.
    @Test func followerRestoresFromSnapshot() {
        let r = newRaft(1, peers: [1, 2])
        r.becomeFollower(term: 2, lead: 2)
        r.stepOrFail({ var m = msg(.msgSnap, from: 2, to: 1, term: 2); m.snapshot = snapshot(index: 11, term: 2, voters: [1, 2, 3]); return m }())
        #expect(r.log.committed == 11)
        #expect(r.log.lastIndex == 11)
        #expect(r.trk.voters == [1, 2, 3])
        #expect(r.log.unstable.snapshot?.metadata.index == 11)
        let ms = r.readMessages()
        #expect(ms.count == 1 && ms[0].type == .msgAppResp && ms[0].index == 11)
        // A stale snapshot is ignored and answered with our commit index.
        r.persist()
        r.stepOrFail({ var m = msg(.msgSnap, from: 2, to: 1, term: 2); m.snapshot = snapshot(index: 5, term: 1, voters: [1, 2]); return m }())
        #expect(r.log.committed == 11)
        #expect(r.readMessages().first?.index == 11)
    }

    /// A snapshot whose last entry we already have only fast-forwards the commit index.
    @Test func snapshotMatchingOurLogFastForwardsCommit() {
        let r = newRaft(1, peers: [1, 2], storage: newStorage(voters: [1, 2], entries: entries(terms: [1, 1, 1])))
        r.becomeFollower(term: 1, lead: 2)
        r.stepOrFail({ var m = msg(.msgSnap, from: 2, to: 1, term: 1); m.snapshot = snapshot(index: 2, term: 1, voters: [1, 2]); return m }())
        #expect(r.log.committed == 2)
        #expect(r.log.unstable.snapshot == nil)
        #expect(r.log.lastIndex == 3)
    }

    /// A node restarted from storage with a snapshot starts after it.
    @Test func restartFromSnapshotStorage() {
        let s = newStorage(voters: [1, 2])
        try! s.applySnapshot(snapshot(index: 11, term: 11, voters: [1, 2]))
        s.append([entry(11, 12), entry(11, 13)])
        s.setHardState(Raftpb_HardState(term: 11, vote: 0, commit: 12))
        let n = try! RawNode(config: testConfig(1, storage: s))
        #expect(n.status.commit == 12)
        #expect(n.status.applied == 11)
        let rd = n.ready()
        #expect(rd.committedEntries.map(\.index) == [12])
        #expect(rd.snapshot == nil && rd.entries.isEmpty)
    }

    /// While a snapshot is in flight the leader sends nothing else; a failure report makes
    /// it probe again after a heartbeat, a success makes it wait for the follower's answer.
    @Test func snapshotInFlightPausesAndFailureResumesProbing() {
        let s = newStorage(voters: [1, 2])
        try! s.applySnapshot(snapshot(index: 11, term: 11, voters: [1, 2]))
        let r = newRaft(1, peers: [1, 2], storage: s)
        r.becomeCandidate(); r.becomeLeader(); r.persist()
        let pr = r.trk.progress[2]!
        pr.next = 1   // the follower needs what was compacted
        pr.recentActive = true
        r.sendAppend(2)
        #expect(r.readMessages().map(\.type) == [.msgSnap])
        #expect(pr.state == .snapshot && pr.pendingSnapshot == 11)
        r.stepOrFail(msg(.msgProp, from: 1, to: 1, entries: [entry(0, 0, "x")]))
        #expect(r.readMessages().isEmpty)
        r.stepOrFail(msg(.msgSnapStatus, from: 2, to: 1, reject: true))
        #expect(pr.state == .probe && pr.next == 1 && pr.probeSent)
        r.stepOrFail(msg(.msgHeartbeatResp, from: 2, to: 1, term: r.term))
        #expect(r.readMessages().map(\.type) == [.msgSnap])
        r.stepOrFail(msg(.msgSnapStatus, from: 2, to: 1))
        #expect(pr.state == .probe && pr.next == 12 && pr.probeSent)
    }

    /// The leader does not send a snapshot to a peer that was not recently active.
    @Test func noSnapshotToInactivePeer() {
        let s = newStorage(voters: [1, 2])
        try! s.applySnapshot(snapshot(index: 11, term: 11, voters: [1, 2]))
        let r = newRaft(1, peers: [1, 2], storage: s)
        r.becomeCandidate(); r.becomeLeader(); r.persist()
        let pr = r.trk.progress[2]!
        pr.next = 1
        pr.recentActive = false
        r.sendAppend(2)
        #expect(r.readMessages().isEmpty)
    }
}
