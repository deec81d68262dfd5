import Backend
import Dispatch
import EtcdProto
import Lease
import MVCC
import Foundation
import Raft

/// What the member needs from its peer side (etcd's rafthttp and peer handlers); EtcdAPI
/// implements it over HTTP on the peer URLs.
public protocol PeerTransport: Sendable {
    /// The member messages arrive for and unreachable peers are reported to; called by
    /// `EtcdServer.start` before Raft runs.
    func attach(_ server: EtcdServer)
    /// Sends Raft messages without waiting; messages to a peer that cannot take them are
    /// dropped (Raft sends again) and the peer is reported unreachable.
    func send(_ messages: [Raftpb_Message])
    /// The other members and their peer URLs (after every membership change).
    func setPeers(_ peers: [UInt64: [String]])
    /// `--initial-cluster-state existing`: the cluster ID and members, asked of a running member.
    func fetchCluster(from peerURLs: [String]) async throws(EtcdError) -> (clusterID: UInt64, members: [Member])
    /// etcd's lease forwarding: a follower renews and reads TTLs on the leader.
    func forwardLeaseRenew(_ r: Etcdserverpb_LeaseKeepAliveRequest, to peerURLs: [String]) async throws(EtcdError)
        -> Etcdserverpb_LeaseKeepAliveResponse
    func forwardLeaseTimeToLive(_ r: Etcdserverpb_LeaseTimeToLiveRequest, to peerURLs: [String]) async throws(EtcdError)
        -> Etcdserverpb_LeaseTimeToLiveResponse
    /// etcd's /raft/snapshot: a MsgSnap (its snapshot at the leader's applied index) with the
    /// backend file after it; `done` tells whether the follower took it.
    func sendSnapshot(_ m: Raftpb_Message, db: [UInt8], done: @escaping @Sendable (Bool) -> Void)
    /// Since when the peer has been answering without a break (nil: not now); etcd's
    /// ActiveSince, for the reconfiguration checks.
    func activeSince(_ id: UInt64) -> ContinuousClock.Instant?
    /// etcd's promote forwarding: a follower asks the leader to promote a learner.
    func forwardPromote(_ id: UInt64, to peerURLs: [String]) async throws(EtcdError)
    /// Whether the member at `peerURLs` is swetcd (it answers `GET /swetcd/version`): true,
    /// false (it answered otherwise, e.g. real etcd's 404), nil (unreachable).
    func isSwetcd(_ peerURLs: [String]) async -> Bool?
    func stop()
}

extension EtcdServer {
    // MARK: - Peer messages

    /// A Raft message from a peer (etcd's pipeline and stream handlers).
    public func receive(_ m: Raftpb_Message) {
        driverIfRunning?.step(m)
    }

    /// The transport could not deliver to `id`: the leader probes it again.
    public func reportUnreachable(_ id: UInt64) {
        driverIfRunning?.reportUnreachable(id)
    }

    /// Whether this member is a learner (etcd refuses most client requests on learners).
    public var isLearner: Bool { shown.isLearner.load(ordering: .relaxed) }

    public var leaderID: UInt64 { shown.leader.load(ordering: .relaxed) }

    /// The peer URLs of the current leader (empty without one).
    func leaderPeerURLs() -> [String]? {
        state.withLock { s in
            guard s.leader != 0, s.leader != memberID else { return nil }
            return s.members.first { $0.id == s.leader }?.peerURLs
        }
    }

    /// The others' peer URLs, for the transport.
    func peerMap(_ members: [Member]) -> [UInt64: [String]] {
        var peers: [UInt64: [String]] = [:]
        for m in members where m.id != memberID { peers[m.id] = m.peerURLs }
        return peers
    }

    // MARK: - Snapshots between members

    /// The leader's side of a MsgSnap: the backend as of `snapshot`'s index (committed and
    /// pinned by a read transaction here, on the Raft queue), with the v2 store as data.
    func sendSnapshot(_ m: Raftpb_Message, _ snapshot: Raftpb_Snapshot, _ reported: @escaping @Sendable (Bool) -> Void) {
        guard let transport = config.peerTransport else { return reported(false) }
        let pinned: (BoltTx, Data)
        do {
            pinned = try state.withLock { s throws in
                try s.kv.commit()
                return (try backend.db.beginRead(),
                        V2Store.json(members: s.members, clusterVersion: s.clusterVersion, index: snapshot.metadata.index))
            }
        } catch {
            logger.warning("cannot snapshot the backend for \(hex(m.to)): \(error)")
            return reported(false)
        }
        let (tx, data) = pinned
        var merged = m
        merged.snapshot = snapshot
        merged.snapshot.data = data
        let message = merged
        let logger = self.logger
        DispatchQueue.global().async {
            var db: [UInt8] = []
            db.reserveCapacity(Int(tx.size))
            do {
                try tx.writeTo(chunkSize: 1 << 20) { db += $0 }
            } catch {
                tx.rollback()
                logger.warning("cannot read the backend for a snapshot: \(error)")
                return reported(false)
            }
            tx.rollback()
            logger.info("sending database snapshot [index: \(snapshot.metadata.index), to: \(hex(m.to))] [\(db.count) bytes]",
                        metadata: ["pkg": "rafthttp"])
            transport.sendSnapshot(message, db: db, done: reported)
        }
    }

    /// The follower's side: the database goes to `member/snap/<index>.snap.db` (durably),
    /// then the message into Raft; the file replaces the backend when Raft applies it.
    public func receiveSnapshot(_ m: Raftpb_Message, db: [UInt8]) throws {
        let path = config.snapDir + "/" + Self.snapshotDBName(m.snapshot.metadata.index)
        try config.fileSystem.writeFile(path, db, permissions: 0o600)
        try config.fileSystem.syncDirectory(config.snapDir)
        logger.info("received and saved database snapshot [index: \(m.snapshot.metadata.index), from: \(hex(m.from))] [\(db.count) bytes]",
                    metadata: ["pkg": "rafthttp"])
        receive(m)
    }

    static func snapshotDBName(_ index: UInt64) -> String {
        let h = String(index, radix: 16)
        return String(repeating: "0", count: max(0, 16 - h.count)) + h + ".snap.db"
    }

    /// etcd's applySnapshot: the received file becomes the backend; the key index, leases,
    /// members, cluster version and alarms are read from it (members from the v2 store).
    func applySnapshot(_ snap: Raftpb_Snapshot) throws {
        let path = config.snapDir + "/" + Self.snapshotDBName(snap.metadata.index)
        try backend.replace(withFileAt: path)
        let persisted = try ServerBackend.load(backend)
        try state.withLock { s throws in
            let kv = try KVStore(backend: backend)
            let lessor = try Self.attachLessor(to: kv, config: config)
            s.kv = kv
            s.lessor = lessor
            s.members = persisted.members
            s.clusterVersion = persisted.clusterVersion
            s.alarms = persisted.alarms
            s.applied = snap.metadata.index
            s.committed = max(s.committed, snap.metadata.index)
            s.revoking.removeAll()
            if s.leader == memberID { lessor.promote(now: .now, extend: .milliseconds(config.electionMs)) }
        }
        recoverMembership(from: snap)
        config.peerTransport?.setPeers(peerMap(members))
        logger.info("applied snapshot at index \(snap.metadata.index)", metadata: ["pkg": "etcdserver"])
    }

    // MARK: - Membership changes (etcd's AddMember, RemoveMember, UpdateMember, PromoteMember)

    /// Adds a member (a learner if asked) with an ID from its peer URLs and the time, as
    /// etcd's `NewMember("", urls, "", now)`; answers once the change is applied here.
    public func memberAdd(peerURLs: [String], isLearner: Bool) async throws(EtcdError) -> (added: Member, members: [Member]) {
        guard !peerURLs.isEmpty, peerURLs.allSatisfy(Self.isValidPeerURL) else { throw .memberBadURLs }
        let now = Int64(Date().timeIntervalSince1970)
        let id = MemberIDs.memberID(peerURLs: peerURLs, clusterToken: "", addedAt: now)
        let member = Member(id: id, name: "", peerURLs: peerURLs.sorted(), isLearner: isLearner)
        try state.withLock { s throws(EtcdError) in
            if s.members.contains(where: { $0.id == id }) { throw .memberExists }
            let urls = Set(s.members.flatMap(\.peerURLs))
            if member.peerURLs.contains(where: urls.contains) { throw .peerURLExists }
            if isLearner, s.members.filter(\.isLearner).count >= 1 { throw .tooManyLearners }
            // etcd's --strict-reconfig-check: a new voter must leave a started quorum.
            if !isLearner && config.strictReconfigCheck {
                let voters = s.members.filter { !$0.isLearner }
                let started = voters.filter { !$0.name.isEmpty }.count
                let total = voters.count + 1
                if !(started == 1 && total == 2) && started < total / 2 + 1 { throw .notEnoughStartedMembers }
            }
        }
        // etcd: a member is added only when every voting member has been connected for 5 s.
        if config.strictReconfigCheck {
            let voters = members.filter { !$0.isLearner }
            if connectedSince(healthInterval, voters) != voters.count { throw .unhealthy }
        }
        var cc = Raftpb_ConfChange()
        cc.type = isLearner ? .confChangeAddLearnerNode : .confChangeAddNode
        cc.nodeID = id
        cc.context = MemberContext(member: member).json(isPromote: false)
        try await proposeConfChange(cc)
        return (member, members)
    }

    public func memberRemove(id: UInt64) async throws(EtcdError) -> [Member] {
        try state.withLock { s throws(EtcdError) in
            guard let m = s.members.first(where: { $0.id == id }) else { throw .memberNotFound }
            if config.strictReconfigCheck && !m.isLearner {
                let others = s.members.filter { !$0.isLearner && $0.id != id }
                let started = others.filter { !$0.name.isEmpty }.count
                if started < others.count / 2 + 1 { throw .notEnoughStartedMembers }
            }
        }
        // etcd: a down member may always go; otherwise what stays must keep an active quorum.
        if config.strictReconfigCheck, let m = members.first(where: { $0.id == id }), !m.isLearner,
           id == memberID || config.peerTransport?.activeSince(id) != nil {
            let voters = members.filter { !$0.isLearner }
            let active = connectedSince(healthInterval, voters)
            if active - 1 < 1 + (voters.count - 1) / 2 { throw .unhealthy }
        }
        var cc = Raftpb_ConfChange()
        cc.type = .confChangeRemoveNode
        cc.nodeID = id
        try await proposeConfChange(cc)
        return members
    }

    public func memberUpdate(id: UInt64, peerURLs: [String]) async throws(EtcdError) -> [Member] {
        guard !peerURLs.isEmpty, peerURLs.allSatisfy(Self.isValidPeerURL) else { throw .memberBadURLs }
        let updated = try state.withLock { s throws(EtcdError) -> Member in
            guard var m = s.members.first(where: { $0.id == id }) else { throw .memberNotFound }
            let others = Set(s.members.filter { $0.id != id }.flatMap(\.peerURLs))
            if peerURLs.contains(where: others.contains) { throw .peerURLExists }
            m.peerURLs = peerURLs.sorted()
            return m
        }
        var cc = Raftpb_ConfChange()
        cc.type = .confChangeUpdateNode
        cc.nodeID = id
        cc.context = MemberContext(member: updated).json
        try await proposeConfChange(cc)
        return members
    }

    /// Promotes a learner that has caught up (its match at least 90% of the leader's);
    /// a follower forwards the request to the leader, as etcd does.
    public func memberPromote(id: UInt64) async throws(EtcdError) -> [Member] {
        let target = try state.withLock { s throws(EtcdError) -> Member in
            guard let m = s.members.first(where: { $0.id == id }) else { throw .memberNotFound }
            guard m.isLearner else { throw .memberNotLearner }
            return m
        }
        if let urls = leaderPeerURLs() {
            try await peerTransport(orThrow: .notLeader).forwardPromote(id, to: urls)
            return members
        }
        try checkLearnerReady(id)
        var promoted = target
        promoted.isLearner = false
        var cc = Raftpb_ConfChange()
        cc.type = .confChangeAddNode
        cc.nodeID = id
        cc.context = MemberContext(member: promoted).json(isPromote: true)
        try await proposeConfChange(cc)
        return members
    }

    /// etcd's HealthInterval: how long peers must have been connected for a reconfiguration.
    var healthInterval: Duration { .seconds(5) }

    /// etcd's numConnectedSince: this member and the members connected for at least `period`.
    func connectedSince(_ period: Duration, _ members: [Member]) -> Int {
        let since = ContinuousClock.now - period
        return members.filter { m in
            if m.id == memberID { return true }
            guard let t = config.peerTransport?.activeSince(m.id) else { return false }
            return t <= since
        }.count
    }

    /// etcd's isLearnerReady, on the leader.
    func checkLearnerReady(_ id: UInt64) throws(EtcdError) {
        guard let d = driverIfRunning else { throw .stopped }
        let st = d.sync { $0.status }
        guard st.lead == memberID else { throw .notLeader }
        guard let learner = st.progress[id], let leader = st.progress[memberID] else { throw .learnerNotReady }
        if Double(learner.match) < Double(leader.match) * 0.9 { throw .learnerNotReady }
    }

    /// etcd's MoveLeader: only the leader transfers leadership, to a voting member; answers
    /// once the transferee leads (or times out).
    public func moveLeader(to target: UInt64) async throws(EtcdError) {
        guard let d = driverIfRunning else { throw .stopped }
        let (leader, voters) = d.sync { n in (n.status.lead, n.status.voters) }
        guard leader == memberID else { throw .notLeader }
        guard target != 0, voters.contains(target) else { throw .badLeaderTransferee }
        if target == memberID { return }
        d.transferLeader(to: target)
        let deadline = ContinuousClock.now + requestTimeout
        while ContinuousClock.now < deadline {
            let lead = state.withLock { $0.leader }
            if lead == target { return }
            try? await Task.sleep(for: .milliseconds(Int64(config.heartbeatMs)))
        }
        throw .timeout
    }

    func peerTransport(orThrow error: EtcdError) throws(EtcdError) -> any PeerTransport {
        guard let t = config.peerTransport else { throw error }
        return t
    }

    /// Proposes a conf change and waits until it is applied here (etcd waits on cc.ID).
    private func proposeConfChange(_ cc: Raftpb_ConfChange) async throws(EtcdError) {
        var cc = cc
        let id = requestIDs.next()
        cc.id = id
        guard let d = driverIfRunning else { throw .stopped }
        let data: Data
        do { data = try cc.serializedBytes() } catch { throw EtcdError(.internal, "etcdserver: \(error)") }
        _ = try await awaitResult { wait(for: id, $0) { d.proposeConfChange(data, requestID: id) } }
    }

    /// etcd's member URL check: http or https with a host and port, nothing else.
    static func isValidPeerURL(_ s: String) -> Bool {
        guard let u = URL(string: s), let scheme = u.scheme, scheme == "http" || scheme == "https",
              u.host != nil, u.port != nil else { return false }
        return (u.path.isEmpty || u.path == "/") && u.query == nil && u.fragment == nil
    }
}

extension MemberContext {
    /// etcd's ConfigChangeContext: the member's JSON with `isPromote` after it.
    func json(isPromote: Bool) -> Data {
        var out = json
        out.removeLast()
        out += Data(#","isPromote":\#(isPromote)}"#.utf8)
        return out
    }

    /// Whether a conf change context marks a promotion.
    static func isPromote(_ json: Data) -> Bool {
        guard let obj = try? JSONSerialization.jsonObject(with: json) as? [String: Any] else { return false }
        return obj["isPromote"] as? Bool ?? false
    }
}
