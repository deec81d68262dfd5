import EtcdProto
import Encryption
import Foundation
import MVCC
import Synchronization

/// The member's encryption at rest: the loaded `--encryption-provider-config` (replaced on
/// reload), values sealed on submit, opened for the store.
public final class EncryptionKeys: Sendable {
    private let current: Mutex<(encryptor: ValueEncryptor?, generation: Int)>

    /// Values are sealed (and migrated) only once every other member is known to be swetcd;
    /// opening needs no such check.
    private let allMembersSwetcd = Atomic<Bool>(false)

    public init(_ encryptor: ValueEncryptor?) {
        current = Mutex((encryptor, 0))
    }

    var isPermitted: Bool { allMembersSwetcd.load(ordering: .acquiring) }

    func permit() { allMembersSwetcd.store(true, ordering: .releasing) }

    public var encryptor: ValueEncryptor? { current.withLock { $0.encryptor } }

    /// The configuration and how many times it was replaced.
    var snapshot: (encryptor: ValueEncryptor?, generation: Int) { current.withLock { $0 } }

    /// Puts a newly loaded configuration in place (requests submitted after this use it; the
    /// migration starts on the leader).
    public func replace(_ encryptor: ValueEncryptor?) {
        current.withLock { $0 = (encryptor, $0.generation + 1) }
    }

    /// The store's opener: decrypts with whichever configuration is current.
    var opener: SealedValueOpener {
        { [self] key, value in
            guard let e = encryptor else {
                throw CipherError("no --encryption-provider-config is given")
            }
            return Data(try e.open(key: Array(key), stored: Array(value)))
        }
    }

    /// The request as it enters the log: every put of a covered key with its value sealed and
    /// marked, every other put with no mark (a client cannot set it). Nested txns included.
    /// nil when that is the request as it is (no encryption configured, no mark sent).
    func seal(_ request: Etcdserverpb_InternalRaftRequest) throws(EtcdError) -> Etcdserverpb_InternalRaftRequest? {
        let e = isPermitted ? encryptor : nil
        guard e != nil || (request.hasPut && !request.put.unknownFields.data.isEmpty)
                || (request.hasTxn && Self.hasUnknownFields(request.txn)) else { return nil }
        var r = request
        if r.hasPut { r.put = try seal(r.put, e) }
        if r.hasTxn { r.txn = try seal(r.txn, e) }
        return r
    }

    private static func hasUnknownFields(_ t: Etcdserverpb_TxnRequest) -> Bool {
        t.compare.contains { !$0.unknownFields.data.isEmpty } || (t.success + t.failure).contains { op in
            switch op.request {
            case .requestPut(let p)?: return !p.unknownFields.data.isEmpty
            case .requestTxn(let n)?: return hasUnknownFields(n)
            default: return false
            }
        }
    }

    /// `value` sealed for `key`, or nil when the key's values are stored as written.
    func sealed(_ value: Data, key: Data, _ e: ValueEncryptor, what: String) throws(EtcdError) -> Data? {
        do {
            return try e.seal(key: Array(key), value: Array(value)).map { Data($0) }
        } catch {
            throw EtcdError(.internal, "swetcd: cannot encrypt the \(what) of key \(String(decoding: key, as: UTF8.self)): \(error)")
        }
    }

    private func seal(_ put: Etcdserverpb_PutRequest, _ e: ValueEncryptor?) throws(EtcdError) -> Etcdserverpb_PutRequest {
        // ignore_value keeps the stored value, sealed or not; its value field is empty.
        guard let e, !put.ignoreValue, let v = try sealed(put.value, key: put.key, e, what: "value") else {
            return Sealed.marking(put, sealed: false)
        }
        var p = put
        p.value = v
        return Sealed.marking(p, sealed: true)
    }

    private func seal(_ txn: Etcdserverpb_TxnRequest, _ e: ValueEncryptor?) throws(EtcdError) -> Etcdserverpb_TxnRequest {
        var t = txn
        for i in t.compare.indices { t.compare[i] = try seal(t.compare[i], e) }
        for i in t.success.indices { t.success[i] = try seal(t.success[i], e) }
        for i in t.failure.indices { t.failure[i] = try seal(t.failure[i], e) }
        return t
    }

    /// A value compare on a covered key carries the value sealed too: the log holds no
    /// plaintext of a covered value, not even one a client compares with.
    private func seal(_ c: Etcdserverpb_Compare, _ e: ValueEncryptor?) throws(EtcdError) -> Etcdserverpb_Compare {
        guard let e, case .value(let v)? = c.targetUnion, let sealedValue = try sealed(v, key: c.key, e, what: "compared value") else {
            return Sealed.marking(c, sealed: false)
        }
        var out = c
        out.value = sealedValue
        return Sealed.marking(out, sealed: true)
    }

    private func seal(_ op: Etcdserverpb_RequestOp, _ e: ValueEncryptor?) throws(EtcdError) -> Etcdserverpb_RequestOp {
        var o = op
        switch op.request {
        case .requestPut(let p)?: o.requestPut = try seal(p, e)
        case .requestTxn(let t)?: o.requestTxn = try seal(t, e)
        default: break
        }
        return o
    }

    /// At start: every key the store's values were sealed with must be in the configuration.
    func checkStore(_ kv: KVStore, path: String) throws(EtcdError) {
        guard !kv.sealedKeyNames.isEmpty else { return }
        if let e = encryptor {
            let missing = e.missing(kv.sealedKeyNames)
            guard missing.isEmpty else {
                throw EtcdError(.failedPrecondition, "swetcd: \(path) holds values encrypted with \(Self.list(missing)), which \(e.file) does not list; start with the encryption provider config that has \(missing.count == 1 ? "it" : "them")")
            }
        } else {
            throw EtcdError(.failedPrecondition, "swetcd: \(path) holds values encrypted with \(Self.list(kv.sealedKeyNames.sorted())); start with --encryption-provider-config naming \(kv.sealedKeyNames.count == 1 ? "that key" : "those keys")")
        }
    }

    private static func list(_ names: [String]) -> String {
        (names.count == 1 ? "key " : "keys ") + names.map { "\"\($0)\"" }.joined(separator: ", ")
    }
}

// MARK: - Migration through the log

/// swetcd's own log records for encryption (InternalRaftRequest fields no etcd request has;
/// encryption needs every member to be swetcd):
/// - field 5000, a migration batch: a WatchResponse whose events each carry a revision key
///   (kv.key) and the new stored bytes for it (kv.value), applied in place without a new
///   revision or an event;
/// - field 5001, migration completed: every member snapshots, drops the older WAL segments
///   and snapshots, and defragments.
enum EncryptionRecord {
    case rewrite([(revisionKey: [UInt8], stored: [UInt8])])
    case completed

    static let rewriteTag: [UInt8] = varint(5000 << 3 | 2)
    static let completedTag: [UInt8] = varint(5001 << 3 | 0)

    var request: Etcdserverpb_InternalRaftRequest {
        var payload: [UInt8]
        switch self {
        case .rewrite(let items):
            var batch = Etcdserverpb_WatchResponse()
            batch.events = items.map { item in
                var ev = Mvccpb_Event()
                ev.kv.key = Data(item.revisionKey)
                ev.kv.value = Data(item.stored)
                return ev
            }
            let bytes: [UInt8] = (try? batch.serializedBytes()) ?? []
            payload = Self.rewriteTag + Self.varint(UInt64(bytes.count)) + bytes
        case .completed:
            payload = Self.completedTag + [1]
        }
        do {
            return try Etcdserverpb_InternalRaftRequest(serializedBytes: payload)
        } catch {
            preconditionFailure("encryption record does not decode: \(error)")
        }
    }

    init?(_ r: Etcdserverpb_InternalRaftRequest) {
        let data = Array(r.unknownFields.data)
        if data.starts(with: Self.completedTag) {
            self = .completed
            return
        }
        guard data.starts(with: Self.rewriteTag) else { return nil }
        var i = Self.rewriteTag.count
        var length: UInt64 = 0
        var shift: UInt64 = 0
        while i < data.count {
            let b = data[i]
            i += 1
            length |= UInt64(b & 0x7f) << shift
            if b < 0x80 { break }
            shift += 7
            if shift > 63 { return nil }
        }
        guard UInt64(data.count - i) >= length,
              let batch = try? Etcdserverpb_WatchResponse(serializedBytes: Array(data[i..<i + Int(length)]))
        else { return nil }
        self = .rewrite(batch.events.map { (Array($0.kv.key), Array($0.kv.value)) })
    }

    static func varint(_ v: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        var x = v
        while x >= 0x80 {
            out.append(UInt8(x & 0x7f) | 0x80)
            x >>= 7
        }
        out.append(UInt8(x))
        return out
    }
}

/// Where encryption stands, per resource of the configuration (what `swetcd encryption
/// status` prints and /metrics carries).
public struct EncryptionStatus: Sendable, Codable, Equatable {
    public struct Resource: Sendable, Codable, Equatable {
        /// The rule's resource name ("secrets", "*.*"), or "(not covered)" for values sealed
        /// under keys no rule covers any more.
        public var resource: String
        /// EncryptionInProgress, EncryptionCompleted, DecryptionInProgress, DecryptionCompleted.
        public var state: String
        /// "<provider>:<key name>" values are sealed with, or "identity".
        public var target: String
        /// Stored values (every revision kept) under the resource's prefixes.
        public var values: Int
        /// Of those, how many are in the target form.
        public var done: Int
    }

    public var member: String
    public var config: String
    public var resources: [Resource]
}

extension EtcdServer {
    /// Counts every stored value by resource: in the target form or not (a full scan of the
    /// `key` bucket, in windows, without holding the member for long).
    public func encryptionStatus() throws(EtcdError) -> EncryptionStatus {
        let e = encryption.encryptor
        var byResource: [String: EncryptionStatus.Resource] = [:]
        if let e {
            for entry in e.coverage.entries where byResource[entry.resource] == nil {
                byResource[entry.resource] = .init(resource: entry.resource, state: "", target: entry.sealingKey ?? "identity", values: 0, done: 0)
            }
        }
        try forEachStoredValue { v in
            let current = v.sealingKey ?? "identity"
            let name: String
            if let entry = e?.coverage.entry(for: Array(v.kv.key)) {
                name = entry.resource
            } else if v.isSealed {
                name = "(not covered)"
                if byResource[name] == nil { byResource[name] = .init(resource: name, state: "", target: "identity", values: 0, done: 0) }
            } else {
                return
            }
            byResource[name]!.values += 1
            if byResource[name]!.target == current { byResource[name]!.done += 1 }
        }
        let resources = byResource.values.sorted { $0.resource < $1.resource }.map { r in
            var r = r
            let complete = r.done == r.values
            r.state = r.target == "identity" ? (complete ? "DecryptionCompleted" : "DecryptionInProgress")
                                             : (complete ? "EncryptionCompleted" : "EncryptionInProgress")
            return r
        }
        return EncryptionStatus(member: config.name, config: e?.file ?? "", resources: resources)
    }

    /// Every stored put, in revision order, read in windows of 1,000 revisions.
    func forEachStoredValue(_ body: (KVStore.StoredValue) throws(EtcdError) -> Void) throws(EtcdError) {
        var from: Int64 = 1
        while let values = try storedValueWindow(&from) {
            for v in values { try body(v) }
        }
    }

    /// The stored puts of the window of 1,000 revisions at `from` (then moved past it), or
    /// nil past the current revision. The member is held only while one window is read.
    func storedValueWindow(_ from: inout Int64) throws(EtcdError) -> [KVStore.StoredValue]? {
        let start = from
        let (values, end) = try state.withLock { s throws(EtcdError) -> ([KVStore.StoredValue], Int64) in
            do throws(MVCCError) {
                return (try s.kv.storedValues(from: start, to: start + 1000), s.kv.currentRevision)
            } catch { throw EtcdError(error) }
        }
        guard start <= end else { return nil }
        from = start + 1000
        return values
    }

    /// The migration loop (on the leader): rewrites, in batches through the log, every stored
    /// value not in the form the current configuration wants; once a full pass finds none
    /// after having rewritten some, records completion (every member then snapshots, purges
    /// and defragments). Checks again every second and after a reload.
    func startEncryptionMigration() -> Task<Void, Never> {
        Task.detached { [weak self] in
            var progress = MigrationProgress()
            // Nothing to do until a configuration is loaded, unless the store holds sealed values.
            if let self, self.encryption.snapshot.encryptor == nil,
               self.state.withLock({ $0.kv.sealedKeyNames.isEmpty }) { progress.done = 0 }
            while !Task.isCancelled {
                guard let self else { return }
                let (config, generation) = self.encryption.snapshot
                progress.observe(generation, at: .now)
                if self.isLeaderNow && progress.done != generation && self.encryption.isPermitted {
                    do {
                        let rewritten = try await self.migrationPass(config)
                        switch progress.passEnded(rewritten: rewritten, at: .now, settle: self.requestTimeout) {
                        case .again:
                            continue
                        case .wait:
                            break
                        case .recordCompletion:
                            var completed = EncryptionRecord.completed.request
                            _ = try await self.process(&completed)
                            progress.completionRecorded()
                        case .done:
                            progress.completionRecorded()
                        }
                    } catch {
                        self.logger.warning("encryption migration: \(error); retrying", metadata: ["pkg": "encryption"])
                    }
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    var isLeaderNow: Bool { state.withLock { $0.leader == memberID } }

    /// Encryption needs every member to be swetcd (the log carries swetcd's own records and
    /// marks): until each other member has answered as swetcd, values are stored as written
    /// and nothing is migrated; a member that answers as something else is reported.
    func checkMembersForEncryption() -> Task<Void, Never> {
        Task.detached { [weak self] in
            var reported: Set<UInt64> = []
            while !Task.isCancelled {
                guard let self else { return }
                let others = self.members.filter { $0.id != self.memberID }
                var all = true
                for m in others {
                    switch await self.config.peerTransport?.isSwetcd(m.peerURLs) {
                    case true?:
                        continue
                    case false?:
                        all = false
                        if reported.insert(m.id).inserted {
                            self.logger.error("encryption at rest needs every member to be swetcd: member \(m.name) (\(m.peerURLs.joined(separator: ","))) is not; values are stored as written", metadata: ["pkg": "encryption"])
                        }
                    default:
                        all = false
                    }
                }
                if all {
                    self.encryption.permit()
                    return
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// One pass over the store; returns how many values it rewrote.
    private func migrationPass(_ e: ValueEncryptor?) async throws(EtcdError) -> Int {
        // A test hook (never set in production): pause between batches, so a test can stop
        // the member in the middle of a migration.
        let pause = ProcessInfo.processInfo.environment["SWETCD_TEST_MIGRATION_PAUSE_MS"].flatMap { Int($0) } ?? 0
        var rewritten = 0
        var pending: [(revisionKey: [UInt8], stored: [UInt8])] = []
        func propose() async throws(EtcdError) {
            guard !pending.isEmpty else { return }
            if pause > 0 { try? await Task.sleep(for: .milliseconds(pause)) }
            var rewrite = EncryptionRecord.rewrite(pending).request
            _ = try await process(&rewrite)
            rewritten += pending.count
            logger.info("encryption migration: rewrote \(pending.count) stored values", metadata: ["pkg": "encryption"])
            pending = []
        }
        // Window by window, proposing every 100 rewrites: no more than one batch is held.
        var from: Int64 = 1
        while let values = try storedValueWindow(&from) {
            for v in values {
                let want = e?.sealingKey(for: Array(v.kv.key))
                guard want != v.sealingKey else { continue }
                let plain: Data = try state.withLock { s throws(EtcdError) in
                    do throws(MVCCError) { return try s.kv.plaintext(v) } catch { throw EtcdError(error) }
                }
                var value = plain
                if let e, want != nil { value = try encryption.sealed(plain, key: v.kv.key, e, what: "value") ?? plain }
                pending.append((v.revisionKey, KVStore.storedBytes(v.kv, value: value, sealed: want != nil)))
                if pending.count >= 100 { try await propose() }
            }
        }
        try await propose()
        return rewritten
    }

    /// Applies an encryption record (in the apply loop).
    func applyEncryptionRecord(_ record: EncryptionRecord, _ s: inout State) {
        switch record {
        case .rewrite(let items):
            s.kv.rewrite(items)
        case .completed:
            logger.notice("encryption migration completed: taking a snapshot, removing older WAL segments and snapshots, defragmenting", metadata: ["pkg": "encryption"])
            Task.detached { [weak self] in await self?.purgeAfterMigration() }
        }
    }

    /// Every member, once a migration completed: nothing on disk keeps values as they were.
    func purgeAfterMigration() async {
        for _ in 0..<50 {
            guard let d = driverIfRunning else { return }
            if d.snapshotAndPurgeEverythingBelow() { break }
            try? await Task.sleep(for: .milliseconds(200))
        }
        do {
            try await defragment()
        } catch {
            logger.error("encryption migration: defragment failed: \(error)", metadata: ["pkg": "encryption"])
        }
    }
}

/// The migration loop's bookkeeping, apart from the store and the clock: which configuration
/// generation it has finished, since when the current one is in place, and whether values
/// were rewritten since completion was last recorded.
struct MigrationProgress {
    /// The generation whose migration is finished (nil: none yet).
    var done: Int?
    private var seen = -1
    private var since = ContinuousClock.now
    /// Values were rewritten and no completion record followed yet. A reload does not clear
    /// it: rewrites under the configuration before it still need their purge.
    private(set) var rewrote = false

    enum Next: Equatable {
        /// A pass rewrote values: pass again at once.
        case again
        /// Nothing left to rewrite, but the configuration is too recent to be sure.
        case wait
        /// Nothing left, and values were rewritten: record completion through the log.
        case recordCompletion
        /// Nothing left, nothing was rewritten: this generation is finished.
        case done
    }

    mutating func observe(_ generation: Int, at now: ContinuousClock.Instant) {
        guard generation != seen else { return }
        seen = generation
        since = now
    }

    /// After a pass over the store that rewrote `rewritten` values. Requests sealed under the
    /// previous configuration may still be on their way to the log: completion waits out
    /// `settle` (one request timeout) after a reload (not for the configuration loaded at start).
    mutating func passEnded(rewritten: Int, at now: ContinuousClock.Instant, settle: Duration) -> Next {
        if rewritten > 0 {
            rewrote = true
            return .again
        }
        guard seen == 0 || now - since >= settle else { return .wait }
        return rewrote ? .recordCompletion : .done
    }

    /// Completion is recorded (or there was nothing to record) for the generation seen.
    mutating func completionRecorded() {
        rewrote = false
        done = seen
    }
}
