import Backend
import Dispatch
import Encryption
import EtcdProto
import FileIO
import Foundation
import Lease
import Logging
import MVCC
import Raft
import Synchronization
import WAL

/// What the member needs to know to start.
public struct ServerConfig: Sendable {
    public var name: String
    public var clusterToken: String
    public var initialCluster: InitialCluster
    public var advertiseClientURLs: [String]
    public var maxRequestBytes: Int
    public var maxTxnOps: Int
    /// `<data-dir>`; the WAL lives in `<data-dir>/member/wal` unless `walDir` is set.
    public var dataDir: String
    public var walDir: String?
    public var heartbeatMs: Int
    public var electionMs: Int
    public var preVote: Bool
    /// etcd's --unsafe-no-fsync: for one dedicated test only; logs loudly.
    public var unsafeNoFsync: Bool
    /// etcd's --backend-batch-interval and --backend-batch-limit.
    public var backendBatchInterval: Duration = .milliseconds(100)
    public var backendBatchLimit: Int = 10_000
    /// etcd's --snapshot-count, --max-snapshots, --max-wals.
    public var snapshotCount: UInt64 = 100_000
    public var maxSnapshots = 5
    public var maxWALs = 5
    /// WAL segment size (etcd: wal.SegmentSizeBytes, 64 MB; smaller only in tests).
    public var walSegmentBytes: Int64 = 64_000_000
    /// etcd's --quota-backend-bytes: 0 for etcd's default (2 GiB), negative to disable.
    public var quotaBackendBytes: Int64 = 0
    /// etcd's --experimental-watch-progress-notify-interval (10 minutes).
    public var watchProgressNotifyInterval: Duration = .seconds(600)
    /// etcd's --initial-cluster-state: a new member of an existing cluster ("existing")
    /// learns the cluster from its running members instead of bootstrapping one.
    public var joinExisting = false
    /// etcd's --strict-reconfig-check.
    public var strictReconfigCheck = true
    /// Encryption at rest (`--encryption-provider-config`); nil: values stored as written.
    public var encryption: ValueEncryptor?
    /// The peer side (nil: a member that talks to nobody, as in-process tests).
    public var peerTransport: (any PeerTransport)?
    /// Called when this member was removed from the cluster and has stopped (etcd exits).
    public var onRemoved: @Sendable () -> Void = {}
    /// All file I/O goes through this (a faulty one in crash tests).
    public var fileSystem: any FileSystem
    /// Called when the member cannot persist and stops (etcd panics): by default the
    /// process ends; in-process crash tests only record it.
    public var onFatal: @Sendable (String) -> Void

    public init(
        name: String = "default", clusterToken: String = "etcd-cluster",
        initialCluster: InitialCluster, advertiseClientURLs: [String],
        maxRequestBytes: Int = 1_572_864, maxTxnOps: Int = 128,
        dataDir: String, walDir: String? = nil, heartbeatMs: Int = 100, electionMs: Int = 1000,
        preVote: Bool = false, unsafeNoFsync: Bool = false, fileSystem: any FileSystem = PosixFileSystem(),
        onFatal: @escaping @Sendable (String) -> Void = { fatalError($0) }
    ) {
        self.onFatal = onFatal
        self.name = name
        self.clusterToken = clusterToken
        self.initialCluster = initialCluster
        self.advertiseClientURLs = advertiseClientURLs
        self.maxRequestBytes = maxRequestBytes
        self.maxTxnOps = maxTxnOps
        self.dataDir = dataDir
        self.walDir = walDir
        self.heartbeatMs = heartbeatMs
        self.electionMs = electionMs
        self.preVote = preVote
        self.unsafeNoFsync = unsafeNoFsync
        self.fileSystem = fileSystem
    }

    var effectiveWALDir: String { walDir ?? dataDir + "/member/wal" }
    var snapDir: String { dataDir + "/member/snap" }
    var backendPath: String { snapDir + "/db" }
}

/// The result of applying one committed request.
public enum AppliedResponse: Sendable {
    case put(Etcdserverpb_PutResponse)
    case deleteRange(Etcdserverpb_DeleteRangeResponse)
    case txn(Etcdserverpb_TxnResponse)
    case compaction(Etcdserverpb_CompactionResponse)
    case alarm(Etcdserverpb_AlarmResponse)
    case leaseGrant(Etcdserverpb_LeaseGrantResponse)
    case leaseRevoke(Etcdserverpb_LeaseRevokeResponse)
    case none
}

/// What `Maintenance.Status` reports.
public struct ServerStatus: Sendable {
    public var leader: UInt64
    public var raftIndex: UInt64
    public var raftAppliedIndex: UInt64
    public var raftTerm: UInt64
    public var dbSize: Int64
    public var dbSizeInUse: Int64
    public var isLearner: Bool
    /// Active alarms, as etcd prints them in `errors`.
    public var alarms: [Etcdserverpb_AlarmMember]
}

/// One etcd member. Every write is proposed as an `InternalRaftRequest` (the data of a
/// raftpb.Entry) to Raft, persisted in the WAL, applied in log order to the MVCC store
/// once committed, and the waiting handler is woken with its result — etcd's request path.
/// Linearizable reads wait for a ReadIndex; serializable reads are served locally.
/// The state machine lives in the backend (`member/snap/db`, etcd's bbolt schema), committed
/// in batches; on restart the member re-applies only the WAL entries past the backend's
/// consistent_index.
public final class EtcdServer: Sendable {
    /// The version of etcd whose behaviour swetcd matches.
    public static let etcdVersion = "3.4.23"
    /// The cluster version a fresh 3.4 cluster settles on.
    public static let clusterVersion = "3.4.0"

    public let config: ServerConfig
    public let memberID: UInt64
    public let clusterID: UInt64
    let logger: Logger
    let state: Mutex<State>
    let requestIDs: RequestIDGenerator
    private let driver: Mutex<RaftDriver?> = Mutex(nil)
    private let dataDirLock: Mutex<(any DirectoryLock)?> = Mutex(nil)
    let backend: BatchedBackend
    /// Encryption at rest: the current provider configuration.
    public let encryption: EncryptionKeys
    let leaseExpiry = TimerHolder()
    /// The request timeouts of proposals and ReadIndex waits.
    let deadlines = Deadlines()
    /// The encryption migration loop (see `startEncryptionMigration`).
    let migration = Mutex<Task<Void, Never>?>(nil)
    /// Until every other member is known to be swetcd (see `checkMembersForEncryption`).
    let memberCheck = Mutex<Task<Void, Never>?>(nil)
    /// What the last start read: the snapshot it began from and the WAL entries after it.
    public struct StartupReport: Sendable {
        public var snapshotIndex: UInt64 = 0
        public var walEntries = 0
        /// The backend's consistent_index: entries up to it were not applied again.
        public var consistentIndex: UInt64 = 0
    }
    public var startup: StartupReport { state.withLock { $0.startup } }

    /// What is woken with a request's applied result: a callback (an async caller waits for
    /// it through `awaitResult`).
    typealias Waiter = @Sendable (Result<AppliedResponse, EtcdError>) -> Void

    /// Handlers waiting for their request to be applied, by request ID; a handler registers
    /// before its entry is proposed, as etcd's `wait.Wait`. Apart from `state`, so that
    /// registering never waits for a batch being applied.
    let waiters = Mutex<[UInt64: Waiter]>([:])
    /// The term of the last applied entry (`State.term`), for response headers without the
    /// state lock.
    let appliedTerm = Atomic<UInt64>(0)
    /// What every request's checks read (learner, leader), without the state lock: an event
    /// loop admitting a call never waits for a batch being applied.
    let shown: ShownState

    /// The parts of `State` that every call's checks read, kept by `State`'s setters.
    final class ShownState: Sendable {
        let memberID: UInt64
        let leader = Atomic<UInt64>(0)
        let isLearner = Atomic<Bool>(false)

        init(memberID: UInt64) { self.memberID = memberID }

        func show(_ members: [Member]) {
            isLearner.store(members.first { $0.id == memberID }?.isLearner ?? false, ordering: .relaxed)
        }
    }

    /// Fails every waiting handler with `error`.
    func failAllWaiters(_ error: EtcdError) {
        let all = waiters.withLock { w in
            defer { w.removeAll() }
            return Array(w.values)
        }
        for w in all { w(.failure(error)) }
    }

    struct State: ~Copyable {
        var kv: KVStore
        var lessor: Lessor
        /// Expired leases whose revocation is proposed and not yet applied.
        var revoking: Set<Int64> = []
        /// Watch streams and their watchers (see WatchSession).
        var watchSessions: [Int: WatchSessionState] = [:]
        var nextWatchSession = 0
        var startup = StartupReport()
        /// etcd_server_leader_changes_seen_total and etcd_server_proposals_failed_total.
        var leaderChanges = 0
        var proposalsFailed = 0
        var members: [Member] = [] { didSet { shown.show(members) } }
        var clusterVersion: String?
        /// Active alarms in the order they were raised (etcd's alarm store).
        var alarms: [Etcdserverpb_AlarmMember] = []
        var leader: UInt64 = 0 { didSet { shown.leader.store(leader, ordering: .relaxed) } }
        /// Where `members` and `leader` are read without this lock.
        let shown: ShownState
        /// When the current leader became known (etcd's leadElectedTime).
        var leaderElectedAt: ContinuousClock.Instant?
        var term: UInt64 = 0
        var committed: UInt64 = 0
        var applied: UInt64 = 0
        /// Tasks waiting for a leader (start-up).
        var leaderWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// Starts a member: a new one from `--initial-cluster`, or a restarting one from its
    /// WAL; returns once it has a leader, has replayed its log and has published itself.
    public static func start(config: ServerConfig, logger: Logger = Logger(label: "etcdserver")) async throws(EtcdError) -> EtcdServer {
        let fs = config.fileSystem
        let walDir = config.effectiveWALDir
        let storage = MemoryStorage()
        var walOptions = WAL.Options(segmentBytes: config.walSegmentBytes, unsafeNoFsync: config.unsafeNoFsync)
        walOptions.log = { logger.info("\($0)", metadata: ["pkg": "wal"]) }
        let server: EtcdServer
        let node: RawNode
        let wal: WAL
        let dataDirLock: any DirectoryLock
        var appliedIndex: UInt64 = 0
        // Whom to talk to before the log says: the initial cluster, or the running one we join.
        var knownPeers: [Member] = []
        var bootstrapping = false
        do {
            // One process per data dir: the directory is flocked for the member's lifetime
            // (the WAL also locks its segments).
            try fs.createDirectoriesDurably(config.dataDir)
            do {
                dataDirLock = try fs.lockDirectory(config.dataDir)
            } catch FileIOError.locked {
                throw EtcdError(.failedPrecondition, "swetcd: data dir \(config.dataDir) is in use by another process")
            }
            try fs.createDirectoriesDurably(config.snapDir)
            let kv = try openBackend(config: config, logger: logger)
            // Before the WAL is opened: without the keys its values were sealed with, the
            // member does not start (never serves ciphertext as values).
            try EncryptionKeys(config.encryption).checkStore(kv, path: config.backendPath)
            if WAL.exists(dir: walDir, fs: fs) {
                // etcd: the newest readable snapshot, then the WAL from it on.
                let snapshot = try SnapDirectory(dir: config.snapDir, fs: fs).loadNewest { path, error in
                    logger.warning("failed to read a snapshot file \(path): \(error)", metadata: ["pkg": "snap"])
                }
                var walSnap = Walpb_Snapshot()
                if let snapshot {
                    walSnap.index = snapshot.metadata.index
                    walSnap.term = snapshot.metadata.term
                    logger.info("recovered store from snapshot at index \(snapshot.metadata.index)")
                }
                wal = try WAL.open(dir: walDir, at: walSnap, fs: fs, options: walOptions)
                let contents = try wal.readAll()
                let meta = try Etcdserverpb_Metadata(serializedBytes: contents.metadata)
                server = try EtcdServer(config: config, memberID: meta.nodeID, clusterID: meta.clusterID, kv: kv, logger: logger)
                server.state.withLock {
                    $0.startup = StartupReport(snapshotIndex: walSnap.index, walEntries: contents.entries.count,
                                               consistentIndex: $0.kv.consistentIndex)
                }
                if let snapshot {
                    server.recoverMembership(from: snapshot)
                    try storage.applySnapshot(snapshot)
                    appliedIndex = snapshot.metadata.index
                    server.state.withLock { $0.applied = appliedIndex; $0.committed = appliedIndex }
                }
                storage.setHardState(contents.hardState)
                storage.append(contents.entries)
                server.milestone(
                    "restarting member \(hex(meta.nodeID)) in cluster \(hex(meta.clusterID)) at commit index \(contents.hardState.commit)",
                    zap: "restarting local member",
                    ["cluster-id": .string(hex(meta.clusterID)), "local-member-id": .string(hex(meta.nodeID)),
                     "commit-index": .stringConvertible(contents.hardState.commit)])
                node = try RawNode(config: server.raftConfig(storage: storage, applied: appliedIndex))
            } else {
                let members = config.initialCluster.members(clusterToken: config.clusterToken)
                guard let local = members.first(where: { $0.name == config.name }) else {
                    throw EtcdError(.invalidArgument, "couldn't find local name \"\(config.name)\" in the initial cluster configuration")
                }
                var me = local
                var clusterID = MemberIDs.clusterID(memberIDs: members.map(\.id))
                if config.joinExisting {
                    // etcd's GetClusterFromRemotePeers: the running members say who we are.
                    guard let transport = config.peerTransport else {
                        throw EtcdError(.failedPrecondition, "swetcd: --initial-cluster-state existing needs the peer transport")
                    }
                    let others = members.filter { $0.name != config.name }.flatMap(\.peerURLs)
                    let remote = try await transport.fetchCluster(from: others)
                    guard let found = remote.members.first(where: { Set($0.peerURLs) == Set(local.peerURLs) }) else {
                        throw EtcdError(.failedPrecondition,
                                        "error validating peerURLs \(remote.members.map(\.peerURLs)): member count is unequal")
                    }
                    me = found
                    clusterID = remote.clusterID
                    knownPeers = remote.members
                } else {
                    knownPeers = members
                    bootstrapping = true
                }
                server = try EtcdServer(config: config, memberID: me.id, clusterID: clusterID, kv: kv, logger: logger)
                try fs.createDirectoriesDurably((walDir as NSString).deletingLastPathComponent)
                var meta = Etcdserverpb_Metadata()
                meta.nodeID = me.id
                meta.clusterID = clusterID
                wal = try WAL.create(dir: walDir, metadata: try meta.serializedBytes(), fs: fs, options: walOptions)
                server.milestone("starting member \(hex(me.id)) in cluster \(hex(clusterID))", zap: "starting local member",
                                 ["local-member-id": .string(hex(me.id)), "cluster-id": .string(hex(clusterID))])
                node = try RawNode(config: server.raftConfig(storage: storage, applied: 0))
                if !config.joinExisting {
                    try node.bootstrap(peers: members.map { RaftPeer(id: $0.id, context: MemberContext(member: $0).json) })
                }
            }
        } catch let error as EtcdError {
            throw error
        } catch {
            throw EtcdError(.internal, "swetcd: cannot start the member: \(error)")
        }
        if config.quotaBackendBytes > Quota.maxBytes {
            logger.warning("backend quota \(config.quotaBackendBytes) exceeds maximum recommended quota \(Quota.maxBytes)")
        }
        if config.unsafeNoFsync {
            logger.warning("--unsafe-no-fsync is set: the WAL is not synced and acknowledged writes can be lost in a power failure")
        }
        server.dataDirLock.withLock { $0 = dataDirLock }
        server.backend.startTimer()
        let policy = RaftDriver.SnapshotPolicy(
            snapDir: SnapDirectory(dir: config.snapDir, fs: fs), count: config.snapshotCount == 0 ? 100_000 : config.snapshotCount,
            maxSnapshots: config.maxSnapshots, maxWALs: config.maxWALs)
        let driver = RaftDriver(node: node, storage: storage, wal: wal, applied: appliedIndex, policy: policy,
                                callbacks: server.driverCallbacks())
        driver.holdLimit = server.requestTimeout.dispatchInterval
        server.driver.withLock { $0 = driver }
        if let transport = config.peerTransport {
            transport.attach(server)
            var peers = server.peerMap(server.members)
            for (id, urls) in server.peerMap(knownPeers) where peers[id] == nil { peers[id] = urls }
            transport.setPeers(peers)
        }
        let electionTicks = max(1, config.electionMs / max(1, config.heartbeatMs))
        let st = node.status
        let singleVoter = st.voters == [server.memberID] && (bootstrapping || st.learners.isEmpty)
        if singleVoter {
            logger.info("\(hex(server.memberID)) as single-node; fast-forwarding \(electionTicks - 1) ticks (election ticks \(electionTicks))")
        }
        driver.start(tick: .milliseconds(config.heartbeatMs), fastForwardTicks: singleVoter ? electionTicks - 1 : 0)
        await server.waitForLeader()
        server.leaseExpiry.set(server.startLeaseExpiry())
        server.migration.withLock { $0 = server.startEncryptionMigration() }
        if server.members.count == 1 {
            server.encryption.permit()
        } else {
            server.memberCheck.withLock { $0 = server.checkMembersForEncryption() }
        }
        do {
            try await server.publish()
        } catch {
            // Never leave a running Raft loop behind a member that failed to start.
            server.stop()
            throw error
        }
        return server
    }

    private init(config: ServerConfig, memberID: UInt64, clusterID: UInt64, kv: sending KVStore, logger: Logger) throws {
        self.config = config
        self.logger = logger
        self.memberID = memberID
        self.clusterID = clusterID
        self.requestIDs = RequestIDGenerator(memberID: memberID)
        self.backend = kv.backend
        self.encryption = EncryptionKeys(config.encryption)
        kv.openSealed = encryption.opener
        let persisted = try ServerBackend.load(kv.backend)
        let lessor = try Self.attachLessor(to: kv, config: config)
        let shown = ShownState(memberID: memberID)
        shown.show(persisted.members)
        self.shown = shown
        self.state = Mutex(State(kv: kv, lessor: lessor, members: persisted.members,
                                 clusterVersion: persisted.clusterVersion, alarms: persisted.alarms, shown: shown))
    }

    /// The lessor on the backend's `lease` bucket, with the keys the store found attached
    /// and the store's lease hooks pointing at it.
    static func attachLessor(to kv: KVStore, config: ServerConfig) throws -> Lessor {
        // etcd's minimum lease TTL: 1.5 election timeouts, in whole seconds rounded up.
        let electionTicks = max(1, config.electionMs / max(1, config.heartbeatMs))
        let minTTLms = (3 * electionTicks / 2) * config.heartbeatMs
        let lessor = try Lessor(backend: kv.backend, minTTL: Int64((minTTLms + 999) / 1000))
        for (key, lease) in kv.restoredLeaseItems { lessor.keyPut(key, lease: lease) }
        kv.leaseExists = { lessor.contains($0) }
        kv.onKeyPut = { lessor.keyPut($0, lease: $1) }
        kv.onKeyDeleted = { lessor.keyDeleted($0) }
        return lessor
    }

    /// etcd 3.4 takes the membership at a snapshot from the v2 store inside it (a data dir
    /// made by `etcdctl snapshot restore` has the new members only there; its backend may
    /// still list the old cluster's). Names and client URLs the v2 store lacks come from the
    /// backend for the same member IDs; the WAL's conf changes after the snapshot follow.
    func recoverMembership(from snapshot: Raftpb_Snapshot) {
        guard let parsed = V2Store.members(from: snapshot.data), !parsed.members.isEmpty else { return }
        state.withLock { s in
            let stored = Dictionary(s.members.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            s.members = parsed.members.map { m in
                var m = m
                if m.name.isEmpty, m.clientURLs.isEmpty, let b = stored[m.id] {
                    m.name = b.name
                    m.clientURLs = b.clientURLs
                }
                return m
            }
            // etcd 3.4 reads the cluster version from the v2 store too: none after a restore,
            // so the leader sets it again.
            s.clusterVersion = parsed.clusterVersion
        }
    }

    /// Opens (or creates) `member/snap/db` with etcd's options and etcd's buckets, and the
    /// MVCC store on it (its index rebuilt from the `key` bucket).
    private static func openBackend(config: ServerConfig, logger: Logger) throws -> sending KVStore {
        var options = BoltOptions.etcd
        options.noSync = config.unsafeNoFsync
        let db = try BoltDB.open(path: config.backendPath, fileSystem: config.fileSystem, options: options)
        var bo = BatchedBackend.Options()
        bo.batchInterval = config.backendBatchInterval
        bo.batchLimit = config.backendBatchLimit
        let backend = BatchedBackend(db: db, options: bo, onFailure: { message in
            logger.critical("\(message)")
            config.onFatal(message)
        })
        try ServerBackend.createBuckets(backend)
        return try KVStore(backend: backend)
    }

    private func raftConfig(storage: MemoryStorage, applied: UInt64) -> RaftConfig {
        var c = RaftConfig(
            id: memberID, electionTick: max(1, config.electionMs / max(1, config.heartbeatMs)), heartbeatTick: 1,
            storage: storage, randomSeed: memberID ^ UInt64(UInt32(truncatingIfNeeded: Date().timeIntervalSince1970.bitPattern)))
        c.preVote = config.preVote
        c.applied = applied
        c.maxInflightMsgs = 512
        c.checkQuorum = true
        return c
    }

    /// Stops Raft and closes the WAL; pending requests fail with "server stopped".
    public func stop() {
        leaseExpiry.cancel()
        migration.withLock { $0?.cancel() }
        memberCheck.withLock { $0?.cancel() }
        let d = driver.withLock { d -> RaftDriver? in defer { d = nil }; return d }
        d?.stop()
        failAllWaiters(.stopped)
        do {
            try backend.stop()
            try backend.db.close()
        } catch {
            logger.error("cannot close the backend: \(error)")
        }
        let lock = dataDirLock.withLock { l -> (any DirectoryLock)? in defer { l = nil }; return l }
        try? lock?.unlock()
    }

    private func waitForLeader() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { s -> Bool in
                if s.leader != 0 { return true }
                s.leaderWaiters.append(c)
                return false
            }
            if ready { c.resume() }
        }
    }

    /// etcd's start-up proposals: the leader sets the cluster version once; every member
    /// publishes its name and client URLs on every start.
    /// etcd's publish loop: a request that times out (a forwarded proposal can be lost while
    /// the leader changes or this member catches up) is proposed again, until it is applied or
    /// the member stops.
    private func processUntilApplied(_ request: Etcdserverpb_InternalRaftRequest) async throws(EtcdError) {
        var request = request
        while true {
            do {
                _ = try await process(&request)
                return
            } catch {
                if error == .stopped || driverIfRunning == nil { throw error }
                logger.warning("publish error: \(error.message)", metadata: ["pkg": "etcdserver"])
            }
        }
    }

    private func publish() async throws(EtcdError) {
        let (isLeader, hasVersion) = state.withLock { ($0.leader == memberID, $0.clusterVersion != nil) }
        if isLeader && !hasVersion {
            milestone("setting up the initial cluster version to \(majorMinor(Self.clusterVersion))",
                      zap: "setting up initial cluster version", ["cluster-version": .string(majorMinor(Self.clusterVersion))])
            try await processUntilApplied(Self.v2Put(path: "/0/version", value: Self.clusterVersion))
        }
        try await processUntilApplied(Self.v2Put(
            path: "/0/members/\(hex(memberID))/attributes",
            value: MemberAttributes(name: config.name, clientURLs: config.advertiseClientURLs).json))
        let attributes = "{Name:\(config.name) ClientURLs:[\(config.advertiseClientURLs.joined(separator: " "))]}"
        milestone("published \(attributes) to cluster \(hex(clusterID))",
                  zap: "published local member to cluster through raft",
                  ["local-member-id": .string(hex(memberID)), "local-member-attributes": .string(attributes),
                   "request-path": .string("/0/members/\(hex(memberID))/attributes"), "cluster-id": .string(hex(clusterID)),
                   "publish-timeout": "7s"])
    }

    // MARK: - The driver's side: soft state, apply

    private func driverCallbacks() -> RaftDriver.Callbacks {
        RaftDriver.Callbacks(
            apply: { [weak self] entries, node in self?.applyCommitted(entries, node) },
            softState: { [weak self] lead, term, commit in
                guard let self else { return }
                let woken = state.withLock { s -> [CheckedContinuation<Void, Never>] in
                    // etcd's lessor Promote/Demote follow the leadership.
                    if lead == memberID && s.leader != memberID {
                        s.lessor.promote(now: .now, extend: .milliseconds(config.electionMs))
                    } else if lead != memberID && s.leader == memberID {
                        s.lessor.demote()
                    }
                    if s.leader != lead && lead != 0 {
                        s.leaderChanges += 1
                        s.leaderElectedAt = .now
                        logger.info("raft.node: \(hex(memberID)) elected leader \(hex(lead)) at term \(term)", metadata: ["pkg": "raft"])
                    }
                    s.leader = lead
                    s.committed = max(s.committed, commit)
                    guard lead != 0 else { return [] }
                    defer { s.leaderWaiters.removeAll() }
                    return s.leaderWaiters
                }
                for w in woken { w.resume() }
            },
            failed: { [weak self] message in
                guard let self else { return }
                logger.critical("\(message)")
                failAllWaiters(.stopped)
                config.onFatal(message)
            },
            dropped: { [weak self] id in
                guard let self else { return }
                let noLeader = state.withLock { s in
                    s.proposalsFailed += 1
                    return s.leader == 0
                }
                waiters.withLock { $0.removeValue(forKey: id) }?(.failure(noLeader ? .noLeader : .stopped))
            },
            snapshotData: { [weak self] index in
                guard let self else { throw EtcdError.stopped }
                // Everything applied so far must be in the backend before the WAL before
                // `index` may go (etcd: KV().Commit() in snapshot()).
                return try state.withLock { s throws in
                    try s.kv.commit()
                    return V2Store.json(members: s.members, clusterVersion: s.clusterVersion, index: index)
                }
            },
            snapshotTaken: { [weak self] index, term in
                guard let self else { return }
                logger.info("saved snapshot at index \(index) (term \(term))", metadata: ["pkg": "etcdserver"])
            },
            send: { [transport = config.peerTransport] messages in transport?.send(messages) },
            sendSnapshot: { [weak self] m, snapshot, reported in self?.sendSnapshot(m, snapshot, reported) },
            applySnapshot: { [weak self] snap in try self?.applySnapshot(snap) })
    }

    /// Applies committed entries in order and wakes their handlers (outside the lock).
    private func applyCommitted(_ entries: [Raftpb_Entry], _ node: RawNode) {
        // Raft learns of membership changes as they are applied.
        let confChanges = entries.map { e in
            e.type == .entryConfChange ? try? Raftpb_ConfChange(serializedBytes: e.data) : nil
        }
        for cc in confChanges.compactMap({ $0 }) { _ = node.applyConfChange(cc) }
        var results: [(id: UInt64, result: Result<AppliedResponse, EtcdError>)] = []
        var membershipChanged = false
        var removed = false
        // The entries' changes and their consistent_index reach the backend file together.
        backend.atomically { state.withLock { s in
            for (entry, cc) in zip(entries, confChanges) {
                s.applied = entry.index
                // etcd reports the term of the last applied entry (setTerm at apply), not
                // Raft's current term: a candidate's campaigns do not show in headers.
                s.term = entry.term
                s.committed = max(s.committed, entry.index)
                // The backend already holds what entries up to consistent_index did
                // (a restart replays the WAL from before the last backend commit).
                let inBackend = entry.index <= s.kv.consistentIndex
                if !inBackend { s.kv.setConsistentIndex(entry.index) }
                switch entry.type {
                case .entryConfChange:
                    if let cc {
                        applyConfChange(cc, &s, persist: !inBackend)
                        membershipChanged = true
                        if cc.nodeID == memberID && cc.type == .confChangeRemoveNode { removed = true }
                        results.append((cc.id, .success(.none)))
                    }
                case .entryNormal:
                    if inBackend { continue }
                    guard let (id, result) = applyNormal(entry, &s) else { break }
                    results.append((id, result))
                default:
                    break
                }
            }
            appliedTerm.store(s.term, ordering: .relaxed)
        } }
        let woken = waiters.withLock { w in results.compactMap { r in w.removeValue(forKey: r.id).map { ($0, r.result) } } }
        for (w, r) in woken { w(r) }
        if membershipChanged, let transport = config.peerTransport { transport.setPeers(peerMap(members)) }
        if removed {
            // etcd: "the member has been permanently removed from the cluster"; it stops.
            logger.warning("the member has been permanently removed from the cluster", metadata: ["pkg": "etcdserver"])
            let onRemoved = config.onRemoved
            DispatchQueue.global().async { [weak self] in
                self?.stop()
                onRemoved()
            }
        }
    }

    private func applyConfChange(_ cc: Raftpb_ConfChange, _ s: inout State, persist: Bool) {
        switch cc.type {
        case .confChangeAddNode where MemberContext.isPromote(cc.context):
            guard let i = s.members.firstIndex(where: { $0.id == cc.nodeID }) else { break }
            s.members[i].isLearner = false
            if persist { ServerBackend.saveMember(s.members[i], backend) }
            milestone("promote member \(hex(cc.nodeID)) in cluster \(hex(clusterID))", zap: "promote member",
                      pkg: "etcdserver/membership", ["cluster-id": .string(hex(clusterID)), "promoted-member-id": .string(hex(cc.nodeID))])
        case .confChangeUpdateNode:
            guard let i = s.members.firstIndex(where: { $0.id == cc.nodeID }), let ctx = MemberContext(json: cc.context) else { break }
            s.members[i].peerURLs = ctx.peerURLs
            if persist { ServerBackend.saveMember(s.members[i], backend) }
            milestone("updated member \(hex(cc.nodeID)) \(ctx.peerURLs) in cluster \(hex(clusterID))", zap: "updated member",
                      pkg: "etcdserver/membership", ["cluster-id": .string(hex(clusterID)), "updated-remote-peer-id": .string(hex(cc.nodeID))])
        case .confChangeAddNode, .confChangeAddLearnerNode:
            let ctx = MemberContext(json: cc.context)
            let m = Member(id: cc.nodeID, name: ctx?.name ?? "", peerURLs: ctx?.peerURLs ?? [],
                           clientURLs: ctx?.clientURLs ?? [], isLearner: cc.type == .confChangeAddLearnerNode)
            if let i = s.members.firstIndex(where: { $0.id == m.id }) { s.members[i].isLearner = m.isLearner } else {
                s.members.append(m)
                s.members.sort { $0.id < $1.id }
            }
            if persist, let saved = s.members.first(where: { $0.id == m.id }) { ServerBackend.saveMember(saved, backend) }
            milestone("added member \(hex(m.id)) [\(m.peerURLs.joined(separator: " "))] to cluster \(hex(clusterID))",
                      zap: "added member", pkg: "etcdserver/membership",
                      ["cluster-id": .string(hex(clusterID)), "local-member-id": .string(hex(memberID)), "added-peer-id": .string(hex(m.id)),
                       "added-peer-peer-urls": .array(m.peerURLs.map { .string($0) })])
        case .confChangeRemoveNode:
            s.members.removeAll { $0.id == cc.nodeID }
            if persist { ServerBackend.removeMember(cc.nodeID, backend) }
        default:
            break
        }
    }

    /// Applies one normal entry to the state machine; returns its request ID and result.
    private func applyNormal(_ entry: Raftpb_Entry, _ s: inout State) -> (UInt64, Result<AppliedResponse, EtcdError>)? {
        guard !entry.data.isEmpty,
              let request = try? Etcdserverpb_InternalRaftRequest(serializedBytes: entry.data)
        else { return nil }
        let result: Result<AppliedResponse, EtcdError>
        do throws(MVCCError) {
            if let refused = refusedByAlarm(request, s.alarms) {
                result = .failure(refused)
            } else if (request.hasPut && !quotaAvailable(cost: Quota.cost(request.put)))
                        || (request.hasTxn && !quotaAvailable(cost: Quota.cost(request.txn))) {
                // etcd's quotaApplierV3: over quota at apply time too; the alarm follows.
                result = .failure(.noSpace)
                if !s.alarms.contains(where: { $0.alarm == .nospace }) { Task { await self.raiseNoSpace() } }
            } else if request.hasPut {
                result = .success(.put(try s.kv.put(request.put)))
            } else if request.hasDeleteRange {
                result = .success(.deleteRange(try s.kv.deleteRange(request.deleteRange)))
            } else if request.hasTxn {
                result = .success(.txn(try s.kv.txn(request.txn)))
            } else if request.hasCompaction {
                result = .success(.compaction(try s.kv.compact(request.compaction)))
            } else if request.hasLeaseGrant || request.hasLeaseRevoke {
                result = applyLease(request, &s)
            } else if request.hasAlarm {
                result = .success(.alarm(applyAlarm(request.alarm, &s.alarms)))
                ServerBackend.saveAlarm(request.alarm, backend)
            } else if request.hasV2 {
                result = .success(applyV2(request.v2, &s))
            } else if let record = EncryptionRecord(request) {
                applyEncryptionRecord(record, &s)
                result = .success(.none)
            } else {
                result = .failure(EtcdError(.unimplemented, "etcdserver: unsupported request"))
            }
        } catch {
            result = .failure(EtcdError(error))
        }
        if case .success = result, request.hasPut || request.hasDeleteRange || request.hasTxn || request.hasLeaseRevoke {
            notifyWatchers(s.kv.lastWriteEvents, &s)
        }
        return (request.header.id, result)
    }

    /// LeaseGrant and LeaseRevoke (etcd: applierV3backend): a revoke deletes the lease's keys
    /// in one revision.
    private func applyLease(_ r: Etcdserverpb_InternalRaftRequest, _ s: inout State) -> Result<AppliedResponse, EtcdError> {
        do throws(LeaseError) {
            if r.hasLeaseGrant {
                var resp = Etcdserverpb_LeaseGrantResponse()
                resp.ttl = try s.lessor.grant(id: r.leaseGrant.id, ttl: r.leaseGrant.ttl, now: .now)
                resp.id = r.leaseGrant.id
                return .success(.leaseGrant(resp))
            }
            let keys = try s.lessor.revoke(id: r.leaseRevoke.id)
            s.revoking.remove(r.leaseRevoke.id)
            if !keys.isEmpty { _ = s.kv.deleteKeys(keys) }
            return .success(.leaseRevoke(Etcdserverpb_LeaseRevokeResponse()))
        } catch {
            if r.hasLeaseRevoke { s.revoking.remove(r.leaseRevoke.id) }
            return .failure(EtcdError(error))
        }
    }

    /// etcd's capped and corrupt appliers: with a NOSPACE alarm raised, writes that could
    /// grow the store are refused; with CORRUPT, every KV request is.
    private func refusedByAlarm(_ r: Etcdserverpb_InternalRaftRequest, _ alarms: [Etcdserverpb_AlarmMember]) -> EtcdError? {
        if alarms.contains(where: { $0.alarm == .corrupt }),
           r.hasPut || r.hasDeleteRange || r.hasTxn || r.hasCompaction || r.hasLeaseGrant || r.hasLeaseRevoke {
            return .corrupt
        }
        // etcd's applierV3Capped: a txn is refused only if its puts cost something.
        if alarms.contains(where: { $0.alarm == .nospace }),
           r.hasPut || r.hasLeaseGrant || (r.hasTxn && Quota.cost(r.txn) > 0) {
            return .noSpace
        }
        return nil
    }

    /// etcd's alarm store: GET lists (all alarms for type NONE), ACTIVATE and DEACTIVATE
    /// answer with the alarm they changed, or nothing when it was already so.
    private func applyAlarm(_ r: Etcdserverpb_AlarmRequest, _ alarms: inout [Etcdserverpb_AlarmMember]) -> Etcdserverpb_AlarmResponse {
        var resp = Etcdserverpb_AlarmResponse()
        var member = Etcdserverpb_AlarmMember()
        member.memberID = r.memberID
        member.alarm = r.alarm
        switch r.action {
        case .get:
            resp.alarms = alarms.filter { r.alarm == .none || $0.alarm == r.alarm }
        case .activate:
            guard r.alarm != .none, !alarms.contains(member) else { break }
            alarms.append(member)
            resp.alarms = [member]
            logger.warning("alarm \(Self.alarmName(r.alarm)) raised by peer \(hex(r.memberID))")
        case .deactivate:
            guard let i = alarms.firstIndex(of: member) else { break }
            alarms.remove(at: i)
            resp.alarms = [member]
            logger.warning("alarm \(Self.alarmName(r.alarm)) disarmed \(member.textFormatString())")
        case .UNRECOGNIZED:
            break
        }
        return resp
    }

    /// etcd's AlarmMember String(), as Status.errors shows it: "memberID:<id> alarm:<TYPE> ".
    public static func describe(_ a: Etcdserverpb_AlarmMember) -> String {
        "memberID:\(a.memberID) alarm:\(alarmName(a.alarm)) "
    }

    static func alarmName(_ t: Etcdserverpb_AlarmType) -> String {
        switch t {
        case .none: return "NONE"
        case .nospace: return "NOSPACE"
        case .corrupt: return "CORRUPT"
        case .UNRECOGNIZED(let n): return String(n)
        }
    }

    /// etcd 3.4 keeps cluster metadata in its v2 store and changes it with v2 PUTs.
    static func v2Put(path: String, value: String) -> Etcdserverpb_InternalRaftRequest {
        var r = Etcdserverpb_InternalRaftRequest()
        r.v2.method = "PUT"
        r.v2.path = path
        r.v2.val = value
        return r
    }

    /// Applies the v2 requests etcd 3.4 uses for cluster metadata: the cluster version and
    /// member attributes.
    private func applyV2(_ r: Etcdserverpb_Request, _ s: inout State) -> AppliedResponse {
        let parts = r.path.split(separator: "/")
        if r.path == "/0/version" {
            s.clusterVersion = r.val
            ServerBackend.saveClusterVersion(r.val, backend)
            let version = majorMinor(r.val)
            milestone("set the initial cluster version to \(version)", level: .notice, zap: "set initial cluster version",
                      pkg: "etcdserver/membership",
                      ["cluster-id": .string(hex(clusterID)), "local-member-id": .string(hex(memberID)), "cluster-version": .string(version)])
            milestone("enabled capabilities for version \(version)", zap: "enabled capabilities for version",
                      pkg: "etcdserver/api", ["cluster-version": .string(version)])
        } else if parts.count == 4, parts[0] == "0", parts[1] == "members", parts[3] == "attributes",
                  let id = UInt64(parts[2], radix: 16),
                  let attrs = MemberAttributes(json: r.val),
                  let i = s.members.firstIndex(where: { $0.id == id }) {
            s.members[i].name = attrs.name
            s.members[i].clientURLs = attrs.clientURLs
            ServerBackend.saveMember(s.members[i], backend)
        }
        return .none
    }

    // MARK: - Reads

    /// Range: linearizable reads first wait for a ReadIndex and its application;
    /// serializable reads are served from what this member has applied.
    public func range(_ request: Etcdserverpb_RangeRequest) async throws(EtcdError) -> Etcdserverpb_RangeResponse {
        if !request.serializable { try await linearizableReadBarrier() }
        // Reads do not go through the (alarm-aware) applier, as in etcd: served under CORRUPT too.
        return try state.withLock { s throws(EtcdError) in
            do throws(MVCCError) {
                return try s.kv.range(request)
            } catch {
                throw EtcdError(error)
            }
        }
    }

    /// Waits until this member has applied everything committed when the call began,
    /// as confirmed by Raft's ReadIndex.
    public func linearizableReadBarrier() async throws(EtcdError) {
        guard let d = driver.withLock({ $0 }) else { throw .stopped }
        let timeout = requestTimeout
        let r: Result<UInt64, EtcdError> = await withCheckedContinuation { c in
            let once = ResumeOnce(c)
            d.readIndex { once.resume($0) }
            // No answer from the leader (lost, or none elected): etcd's read loop times out.
            deadlines.add(after: timeout) { once.resume(.failure(.timeout)) }
        }
        _ = try r.get()
    }

    public var members: [Member] { state.withLock { $0.members } }

    public var raftTerm: UInt64 { state.withLock { $0.term } }

    public var currentRevision: Int64 { state.withLock { $0.kv.currentRevision } }

    /// The revision of the last compaction (0 before any).
    public var compactedRevision: Int64 { state.withLock { $0.kv.compactedRevision } }

    public func status() -> ServerStatus {
        state.withLock { s in
            ServerStatus(
                leader: s.leader, raftIndex: s.committed, raftAppliedIndex: s.applied,
                raftTerm: s.term, dbSize: backend.db.size, dbSizeInUse: backend.db.sizeInUse,
                isLearner: s.members.first { $0.id == memberID }?.isLearner ?? false, alarms: s.alarms)
        }
    }

    /// etcd's `header.fill`: cluster and member IDs, raft term, and the current revision
    /// unless the response already set one.
    public func fill(_ header: inout Etcdserverpb_ResponseHeader) {
        header.clusterID = clusterID
        header.memberID = memberID
        header.raftTerm = appliedTerm.load(ordering: .relaxed)
        if header.revision == 0 { header.revision = state.withLock { $0.kv.currentRevision } }
    }

    // MARK: - Writes: propose, commit, apply, wake

    // Put, DeleteRange and Txn take a callback (the gRPC server calls them on the event loop,
    // without a task): `done` is called once, on the thread that applied the entry (or timed
    // it out), or at once when the request is refused before the log. The async forms wait
    // for the same calls.

    public func put(_ r: Etcdserverpb_PutRequest) async throws(EtcdError) -> Etcdserverpb_PutResponse {
        try await awaitResult { put(r, $0) }
    }

    public func deleteRange(_ r: Etcdserverpb_DeleteRangeRequest) async throws(EtcdError) -> Etcdserverpb_DeleteRangeResponse {
        try await awaitResult { deleteRange(r, $0) }
    }

    public func txn(_ r: Etcdserverpb_TxnRequest) async throws(EtcdError) -> Etcdserverpb_TxnResponse {
        try await awaitResult { txn(r, $0) }
    }

    public func put(_ r: Etcdserverpb_PutRequest, _ done: @escaping @Sendable (Result<Etcdserverpb_PutResponse, EtcdError>) -> Void) {
        var req = Etcdserverpb_InternalRaftRequest()
        req.put = r
        process(&req, done) { if case .put(let resp) = $0 { resp } else { nil } }
    }

    public func deleteRange(_ r: Etcdserverpb_DeleteRangeRequest, _ done: @escaping @Sendable (Result<Etcdserverpb_DeleteRangeResponse, EtcdError>) -> Void) {
        var req = Etcdserverpb_InternalRaftRequest()
        req.deleteRange = r
        process(&req, done) { if case .deleteRange(let resp) = $0 { resp } else { nil } }
    }

    public func txn(_ r: Etcdserverpb_TxnRequest, _ done: @escaping @Sendable (Result<Etcdserverpb_TxnResponse, EtcdError>) -> Void) {
        if KVStore.isTxnReadonly(r) { return answerInTask(done) { () throws(EtcdError) in try await self.readonlyTxn(r) } }
        var req = Etcdserverpb_InternalRaftRequest()
        req.txn = r
        process(&req, done) { if case .txn(let resp) = $0 { resp } else { nil } }
    }

    /// etcd serves a txn of ranges only without the log: after a ReadIndex unless every range
    /// is serializable.
    private func readonlyTxn(_ r: Etcdserverpb_TxnRequest) async throws(EtcdError) -> Etcdserverpb_TxnResponse {
        let serializable = (r.success + r.failure).allSatisfy { op in
            if case .requestRange(let rr)? = op.request { return rr.serializable }
            return true
        }
        if !serializable { try await linearizableReadBarrier() }
        return try state.withLock { s throws(EtcdError) in
            do throws(MVCCError) { return try s.kv.txn(r) } catch { throw EtcdError(error) }
        }
    }

    public func compact(_ r: Etcdserverpb_CompactionRequest) async throws(EtcdError) -> Etcdserverpb_CompactionResponse {
        var req = Etcdserverpb_InternalRaftRequest()
        req.compaction = r
        guard case .compaction(var resp) = try await process(&req) else { throw .unexpectedApplyResult }
        if r.physical {
            // --physical: answer once the compaction is in the backend file (etcd waits for it).
            try state.withLock { s throws(EtcdError) in
                do { try s.kv.commit() } catch { throw EtcdError(.internal, "swetcd: cannot commit the backend: \(error)") }
            }
        }
        // etcd reports the store's revision after the compaction was applied.
        resp.header.revision = currentRevision
        return resp
    }

    /// Alarm GET, ACTIVATE and DEACTIVATE all go through the log, as in etcd.
    public func alarm(_ r: Etcdserverpb_AlarmRequest) async throws(EtcdError) -> Etcdserverpb_AlarmResponse {
        var req = Etcdserverpb_InternalRaftRequest()
        req.alarm = r
        guard case .alarm(let resp) = try await process(&req) else { throw .unexpectedApplyResult }
        return resp
    }

    /// etcd's `processInternalRaftRequestOnce`: stamp an ID, check the size, register the
    /// waiter, propose, and wait until the entry is applied.
    /// (`inout`: stamping the ID in the caller's own request does not copy its storage.)
    func process(_ request: inout Etcdserverpb_InternalRaftRequest) async throws(EtcdError) -> AppliedResponse {
        try await awaitResult { process(&request, $0) }
    }

    /// `process` without a task: `done` is called with the applied result (on the thread that
    /// applied it, or on the one that timed it out), or at once when the request is refused.
    func process(_ request: inout Etcdserverpb_InternalRaftRequest,
                 _ done: @escaping @Sendable (Result<AppliedResponse, EtcdError>) -> Void) {
        let (id, data, d): (UInt64, Data, RaftDriver)
        do { (id, data, d) = try prepare(&request) } catch { return done(.failure(error)) }
        wait(for: id, done) { d.propose(data, requestID: id) }
    }

    /// `process` for one kind of result, which `pick` takes out of the applied response.
    private func process<R>(_ request: inout Etcdserverpb_InternalRaftRequest,
                            _ done: @escaping @Sendable (Result<R, EtcdError>) -> Void,
                            pick: @escaping @Sendable (AppliedResponse) -> R?) {
        process(&request) { result in
            done(result.flatMap { applied in pick(applied).map { .success($0) } ?? .failure(.unexpectedApplyResult) })
        }
    }

    /// The request stamped with its ID, as it enters the log (size-checked, sealed), and the
    /// driver to propose it to.
    private func prepare(_ request: inout Etcdserverpb_InternalRaftRequest) throws(EtcdError) -> (UInt64, Data, RaftDriver) {
        let id = requestIDs.next()
        request.header.id = id
        let data: Data
        do {
            // etcd's size limit is on the request as the client sent it, before sealing.
            let plain: Data = try request.serializedBytes()
            if plain.count > config.maxRequestBytes { throw EtcdError.requestTooLarge }
            data = try encryption.seal(request).map { try $0.serializedBytes() } ?? plain
        } catch let e as EtcdError {
            throw e
        } catch {
            throw EtcdError(.internal, "etcdserver: failed to encode request: \(error)")
        }
        guard let d = driver.withLock({ $0 }) else { throw .stopped }
        return (id, data, d)
    }

    /// Registers `waiter` for request `id`, runs `propose`; the waiter is woken when the entry
    /// is applied here, or fails after etcd's request timeout (5 s + 2 election timeouts).
    func wait(for id: UInt64, _ waiter: @escaping Waiter, _ propose: () -> Void) {
        let timeout = requestTimeout
        waiters.withLock { $0[id] = waiter }
        propose()
        let start = ContinuousClock.now
        deadlines.add(after: timeout) { [weak self] in
            guard let self, let w = waiters.withLock({ $0.removeValue(forKey: id) }) else { return }
            let (lead, elected) = state.withLock { ($0.leader, $0.leaderElectedAt) }
            w(.failure(timeoutError(start: start, lead: lead, elected: elected)))
        }
    }

    /// etcd's parseProposeCtxErr: a request that started shortly before the current leader
    /// was elected timed out because the previous one failed; one whose way to the leader (or,
    /// on the leader, to a quorum) broke since it started lost its connection; else a plain
    /// timeout.
    func timeoutError(start: ContinuousClock.Instant, lead: UInt64, elected: ContinuousClock.Instant?) -> EtcdError {
        if let elected, start < elected, start > elected - .milliseconds(2 * config.electionMs) {
            return .timeoutDueToLeaderFail
        }
        if lead == memberID {
            let voters = members.filter { !$0.isLearner }
            if connectedSince(ContinuousClock.now - start, voters) < voters.count / 2 + 1 { return .timeoutDueToConnectionLost }
        } else if lead != 0, config.peerTransport != nil {
            guard let since = config.peerTransport?.activeSince(lead), since <= start else { return .timeoutDueToConnectionLost }
        }
        return .timeout
    }

    /// etcd's ReqTimeout: 5 s plus two election timeouts.
    var requestTimeout: Duration { .seconds(5) + .milliseconds(2 * config.electionMs) }

    var driverIfRunning: RaftDriver? { driver.withLock { $0 } }

}

/// The callback API's way to a method that waits: runs `body` in a task, hands its result to
/// `done`.
public func answerInTask<R: Sendable>(_ done: @escaping @Sendable (Result<R, EtcdError>) -> Void,
                                      _ body: @escaping @Sendable () async throws(EtcdError) -> R) {
    Task {
        do throws(EtcdError) { done(.success(try await body())) } catch { done(.failure(error)) }
    }
}

/// The other way round: waits for what `start` hands to its callback (the async form of a
/// method that takes one).
public func awaitResult<R: Sendable>(
    _ start: (@escaping @Sendable (Result<R, EtcdError>) -> Void) -> Void
) async throws(EtcdError) -> R {
    try await withCheckedContinuation { (c: CheckedContinuation<Result<R, EtcdError>, Never>) in
        start { c.resume(returning: $0) }
    }.get()
}

/// A continuation resumed by whichever of several callbacks comes first.
final class ResumeOnce<T: Sendable>: Sendable {
    private let c: Mutex<CheckedContinuation<T, Never>?>
    init(_ c: CheckedContinuation<T, Never>) { self.c = Mutex(c) }
    func resume(_ value: T) {
        c.withLock { c in defer { c = nil }; return c }?.resume(returning: value)
    }
}

/// etcd's request ID scheme (`pkg/idutil`): the member ID's low 16 bits, then a
/// millisecond timestamp and a counter in the low 48 bits.
final class RequestIDGenerator: Sendable {
    private let prefix: UInt64
    private let suffix: Atomic<UInt64>

    init(memberID: UInt64, now: Date = Date()) {
        prefix = (memberID & 0xffff) << 48
        let ms = UInt64(now.timeIntervalSince1970 * 1000)
        suffix = Atomic((ms << 8) & ((1 << 48) - 1))
    }

    func next() -> UInt64 {
        let s = suffix.wrappingAdd(1, ordering: .relaxed).newValue
        return prefix | (s & ((1 << 48) - 1))
    }
}

extension EtcdServer {
    /// A milestone etcd logs, worded as each of its loggers words it: `message` for
    /// capnslog, `zap` (with `fields`, in order) for `--logger zap`. The metadata keys are
    /// those of EtcdConfig's `EtcdLogMetadata` (package, zap message, zap field order).
    func milestone(
        _ message: String, level: Logger.Level = .info, zap: String, pkg: String = "etcdserver",
        _ fields: KeyValuePairs<String, Logger.MetadataValue>,
        file: String = #fileID, function: String = #function, line: UInt = #line
    ) {
        var metadata: Logger.Metadata = ["pkg": .string(pkg), "zap.msg": .string(zap)]
        for (k, v) in fields { metadata[k] = v }
        metadata["zap.field-order"] = .array(fields.map { .string($0.key) })
        logger.log(level: level, "\(message)", metadata: metadata, file: file, function: function, line: line)
    }
}

/// IDs as etcd prints them in logs: lowercase hex without padding.
func hex(_ id: UInt64) -> String { String(id, radix: 16) }

/// "3.4.0" → "3.4", as etcd logs cluster versions.
func majorMinor(_ version: String) -> String {
    version.split(separator: ".").prefix(2).joined(separator: ".")
}
