import EtcdProto
import Foundation
import Logging
import MVCC
import Synchronization

/// What the member needs to know to start.
public struct ServerConfig: Sendable {
    public var name: String
    public var clusterToken: String
    public var initialCluster: InitialCluster
    public var advertiseClientURLs: [String]
    public var maxRequestBytes: Int
    public var maxTxnOps: Int

    public init(
        name: String = "default", clusterToken: String = "etcd-cluster",
        initialCluster: InitialCluster, advertiseClientURLs: [String],
        maxRequestBytes: Int = 1_572_864, maxTxnOps: Int = 128
    ) {
        self.name = name
        self.clusterToken = clusterToken
        self.initialCluster = initialCluster
        self.advertiseClientURLs = advertiseClientURLs
        self.maxRequestBytes = maxRequestBytes
        self.maxTxnOps = maxTxnOps
    }
}

/// The result of applying one committed request.
public enum AppliedResponse: Sendable {
    case put(Etcdserverpb_PutResponse)
    case deleteRange(Etcdserverpb_DeleteRangeResponse)
    case txn(Etcdserverpb_TxnResponse)
    case compaction(Etcdserverpb_CompactionResponse)
    case alarm(Etcdserverpb_AlarmResponse)
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

/// One etcd member. Every write is proposed as an `InternalRaftRequest` (serialized as
/// the data of a raftpb.Entry), ordered by the log, applied in log order to the MVCC store
/// by the apply step, and the waiting handler is woken with its result — etcd's request
/// path. Today the log is `LocalLog` (one member, memory only); Raft and the WAL replace it.
public final class EtcdServer: Sendable {
    /// The version of etcd whose behaviour swetcd matches.
    public static let etcdVersion = "3.4.23"
    /// The cluster version a fresh 3.4 cluster settles on.
    public static let clusterVersion = "3.4.0"

    public let config: ServerConfig
    public let memberID: UInt64
    public let clusterID: UInt64
    private let logger: Logger
    private let state: Mutex<State>
    private let requestIDs: RequestIDGenerator

    private typealias Waiter = CheckedContinuation<Result<AppliedResponse, EtcdError>, Never>

    private struct State: ~Copyable {
        var kv = KVStore()
        var log = LocalLog()
        var members: [Member] = []
        var clusterVersion: String?
        /// Active alarms in the order they were raised (etcd's alarm store).
        var alarms: [Etcdserverpb_AlarmMember] = []
        /// Handlers waiting for their request to be applied, by request ID; a handler
        /// registers before its entry is proposed, as etcd's `wait.Wait`.
        var waiters: [UInt64: Waiter] = [:]
    }

    public init(config: ServerConfig, logger: Logger = Logger(label: "etcdserver")) throws(EtcdError) {
        self.config = config
        self.logger = logger
        let members = config.initialCluster.members(clusterToken: config.clusterToken)
        guard let me = members.first(where: { $0.name == config.name }) else {
            throw EtcdError(.invalidArgument, "couldn't find local name \"\(config.name)\" in the initial cluster configuration")
        }
        self.memberID = me.id
        self.clusterID = MemberIDs.clusterID(memberIDs: members.map(\.id))
        self.requestIDs = RequestIDGenerator(memberID: me.id)
        self.state = Mutex(State())
        milestone("starting member \(hex(memberID)) in cluster \(hex(clusterID))", zap: "starting local member",
                  ["local-member-id": .string(hex(memberID)), "cluster-id": .string(hex(clusterID))])
        bootstrap(members: members)
    }

    // MARK: - Bootstrap

    /// A new single-member cluster's first log entries, as etcd writes them: the
    /// membership (term 1), the new leader's empty entry (term 2), the cluster version
    /// and this member's published attributes.
    private func bootstrap(members: [Member]) {
        state.withLock { s in
            for m in members {
                s.log.append(term: 1, data: Data())
                s.members.append(m)
                milestone("added member \(hex(m.id)) [\(m.peerURLs.joined(separator: " "))] to cluster \(hex(clusterID))",
                          zap: "added member", pkg: "etcdserver/membership",
                          ["cluster-id": .string(hex(clusterID)), "local-member-id": .string(hex(memberID)), "added-peer-id": .string(hex(m.id)),
                           "added-peer-peer-urls": .array(m.peerURLs.map { .string($0) })])
            }
            s.log.becomeLeader(term: 2)
            s.log.append(term: 2, data: Data())
            _ = applyCommitted(&s)
        }
        milestone("setting up the initial cluster version to \(majorMinor(Self.clusterVersion))",
                  zap: "setting up initial cluster version", ["cluster-version": .string(majorMinor(Self.clusterVersion))])
        proposeAndApply(Self.v2Put(path: "/0/version", value: Self.clusterVersion))
        proposeAndApply(Self.v2Put(
            path: "/0/members/\(hex(memberID))/attributes",
            value: MemberAttributes(name: config.name, clientURLs: config.advertiseClientURLs).json))
        let attributes = "{Name:\(config.name) ClientURLs:[\(config.advertiseClientURLs.joined(separator: " "))]}"
        milestone("published \(attributes) to cluster \(hex(clusterID))",
                  zap: "published local member to cluster through raft",
                  ["local-member-id": .string(hex(memberID)), "local-member-attributes": .string(attributes),
                   "request-path": .string("/0/members/\(hex(memberID))/attributes"), "cluster-id": .string(hex(clusterID)),
                   "publish-timeout": "7s"])
    }

    /// etcd's capped and corrupt appliers: with a NOSPACE alarm raised, writes that could
    /// grow the store are refused; with CORRUPT, every KV request is.
    private func refusedByAlarm(_ r: Etcdserverpb_InternalRaftRequest, _ alarms: [Etcdserverpb_AlarmMember]) -> EtcdError? {
        if alarms.contains(where: { $0.alarm == .corrupt }),
           r.hasPut || r.hasDeleteRange || r.hasTxn || r.hasCompaction || r.hasLeaseGrant || r.hasLeaseRevoke {
            return .corrupt
        }
        if alarms.contains(where: { $0.alarm == .nospace }),
           r.hasPut || r.hasLeaseGrant || (r.hasTxn && !Self.isReadOnly(r.txn)) {
            return .noSpace
        }
        return nil
    }

    static func isReadOnly(_ t: Etcdserverpb_TxnRequest) -> Bool {
        (t.success + t.failure).allSatisfy { op in
            switch op.request {
            case .requestRange, nil: return true
            case .requestTxn(let inner): return isReadOnly(inner)
            case .requestPut, .requestDeleteRange: return false
            }
        }
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
        }
        return .none
    }

    private func proposeAndApply(_ request: Etcdserverpb_InternalRaftRequest) {
        var request = request
        request.header.id = requestIDs.next()
        let data = (try? request.serializedBytes() as Data) ?? Data()
        state.withLock { s in
            s.log.append(term: s.log.term, data: data)
            _ = applyCommitted(&s)
        }
    }

    // MARK: - Reads

    /// Range; serializable and linearizable reads alike see every write acknowledged before
    /// the call (one member, applied synchronously).
    public func range(_ request: Etcdserverpb_RangeRequest) throws(EtcdError) -> Etcdserverpb_RangeResponse {
        try state.withLock { s throws(EtcdError) in
            if s.alarms.contains(where: { $0.alarm == .corrupt }) { throw .corrupt }
            do throws(MVCCError) {
                return try s.kv.range(request)
            } catch {
                throw EtcdError(error)
            }
        }
    }

    public var members: [Member] { state.withLock { $0.members } }

    public var raftTerm: UInt64 { state.withLock { $0.log.term } }

    public var currentRevision: Int64 { state.withLock { $0.kv.currentRevision } }

    public func status() -> ServerStatus {
        state.withLock { s in
            ServerStatus(
                leader: memberID, raftIndex: s.log.committed, raftAppliedIndex: s.log.applied,
                raftTerm: s.log.term, dbSize: s.kv.estimatedDBSize, dbSizeInUse: s.kv.estimatedDBSize,
                isLearner: false, alarms: s.alarms)
        }
    }

    /// etcd's `header.fill`: cluster and member IDs, raft term, and the current revision
    /// unless the response already set one.
    public func fill(_ header: inout Etcdserverpb_ResponseHeader) {
        state.withLock { s in
            header.clusterID = clusterID
            header.memberID = memberID
            header.raftTerm = s.log.term
            if header.revision == 0 { header.revision = s.kv.currentRevision }
        }
    }

    // MARK: - Writes: propose, commit, apply, wake

    public func put(_ r: Etcdserverpb_PutRequest) async throws(EtcdError) -> Etcdserverpb_PutResponse {
        var req = Etcdserverpb_InternalRaftRequest()
        req.put = r
        guard case .put(let resp) = try await process(req) else { throw EtcdError(.internal, "unexpected apply result") }
        return resp
    }

    public func deleteRange(_ r: Etcdserverpb_DeleteRangeRequest) async throws(EtcdError) -> Etcdserverpb_DeleteRangeResponse {
        var req = Etcdserverpb_InternalRaftRequest()
        req.deleteRange = r
        guard case .deleteRange(let resp) = try await process(req) else { throw EtcdError(.internal, "unexpected apply result") }
        return resp
    }

    public func txn(_ r: Etcdserverpb_TxnRequest) async throws(EtcdError) -> Etcdserverpb_TxnResponse {
        var req = Etcdserverpb_InternalRaftRequest()
        req.txn = r
        guard case .txn(let resp) = try await process(req) else { throw EtcdError(.internal, "unexpected apply result") }
        return resp
    }

    public func compact(_ r: Etcdserverpb_CompactionRequest) async throws(EtcdError) -> Etcdserverpb_CompactionResponse {
        var req = Etcdserverpb_InternalRaftRequest()
        req.compaction = r
        guard case .compaction(var resp) = try await process(req) else { throw EtcdError(.internal, "unexpected apply result") }
        // etcd reports the store's revision after the compaction was applied.
        resp.header.revision = currentRevision
        return resp
    }

    /// Alarm GET, ACTIVATE and DEACTIVATE all go through the log, as in etcd.
    public func alarm(_ r: Etcdserverpb_AlarmRequest) async throws(EtcdError) -> Etcdserverpb_AlarmResponse {
        var req = Etcdserverpb_InternalRaftRequest()
        req.alarm = r
        guard case .alarm(let resp) = try await process(req) else { throw EtcdError(.internal, "unexpected apply result") }
        return resp
    }

    /// etcd's `processInternalRaftRequestOnce`: stamp an ID, check the size, propose,
    /// wait until the entry is applied, return the apply result.
    func process(_ request: Etcdserverpb_InternalRaftRequest) async throws(EtcdError) -> AppliedResponse {
        var request = request
        let id = requestIDs.next()
        request.header.id = id
        let data: Data
        do {
            data = try request.serializedBytes()
        } catch {
            throw EtcdError(.internal, "etcdserver: failed to encode request: \(error)")
        }
        if data.count > config.maxRequestBytes { throw .requestTooLarge }

        let result = await withCheckedContinuation { (c: Waiter) in
            let woken = state.withLock { s in
                s.waiters[id] = c
                s.log.append(term: s.log.term, data: data)
                return applyCommitted(&s)
            }
            for (waiter, result) in woken { waiter.resume(returning: result) }
        }
        return try result.get()
    }

    /// Applies every committed, not yet applied entry in log order and collects the
    /// handlers to wake (woken outside the lock).
    private func applyCommitted(_ s: inout State) -> [(Waiter, Result<AppliedResponse, EtcdError>)] {
        var woken: [(Waiter, Result<AppliedResponse, EtcdError>)] = []
        for entry in s.log.committedUnapplied() {
            guard let (id, result) = apply(entry, &s) else { continue }
            if let waiter = s.waiters.removeValue(forKey: id) {
                woken.append((waiter, result))
            }
        }
        return woken
    }

    /// Applies one entry to the state machine; returns the request ID and its result.
    private func apply(_ entry: LocalLog.Entry, _ s: inout State) -> (UInt64, Result<AppliedResponse, EtcdError>)? {
        s.log.applied = entry.index
        guard !entry.data.isEmpty,
              let request = try? Etcdserverpb_InternalRaftRequest(serializedBytes: entry.data)
        else { return nil }
        let result: Result<AppliedResponse, EtcdError>
        do throws(MVCCError) {
            if let refused = refusedByAlarm(request, s.alarms) {
                result = .failure(refused)
            } else if request.hasPut {
                result = .success(.put(try s.kv.put(request.put)))
            } else if request.hasDeleteRange {
                result = .success(.deleteRange(try s.kv.deleteRange(request.deleteRange)))
            } else if request.hasTxn {
                result = .success(.txn(try s.kv.txn(request.txn)))
            } else if request.hasCompaction {
                result = .success(.compaction(try s.kv.compact(request.compaction)))
            } else if request.hasAlarm {
                result = .success(.alarm(applyAlarm(request.alarm, &s.alarms)))
            } else if request.hasV2 {
                result = .success(applyV2(request.v2, &s))
            } else {
                result = .failure(EtcdError(.unimplemented, "etcdserver: unsupported request"))
            }
        } catch {
            result = .failure(EtcdError(error))
        }
        return (request.header.id, result)
    }
}

/// The log of one member in memory: every appended entry is committed at once.
/// Raft and the WAL replace this (they own term, index and commit).
struct LocalLog: ~Copyable {
    struct Entry {
        var term: UInt64
        var index: UInt64
        var data: Data
    }

    private(set) var term: UInt64 = 1
    private(set) var committed: UInt64 = 0
    var applied: UInt64 = 0
    private var unapplied: [Entry] = []

    mutating func becomeLeader(term: UInt64) { self.term = term }

    mutating func append(term: UInt64, data: Data) {
        committed += 1
        unapplied.append(Entry(term: term, index: committed, data: data))
    }

    /// The committed entries not handed to the apply step yet, in log order.
    mutating func committedUnapplied() -> [Entry] {
        defer { unapplied.removeAll(keepingCapacity: true) }
        return unapplied
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
