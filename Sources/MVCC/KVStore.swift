import Backend
import EtcdProto
import FileIO
import Foundation

/// The errors etcd's applier returns for KV requests. The gRPC layer maps them to
/// etcd's status codes and messages.
public enum MVCCError: Error, Equatable, Sendable {
    /// etcd: "mvcc: required revision has been compacted" (gRPC OutOfRange).
    case compacted
    /// etcd: "mvcc: required revision is a future revision" (gRPC OutOfRange).
    case futureRevision
    /// Put with ignore_value / ignore_lease on a missing key: "etcdserver: key not found".
    case keyNotFound
    /// Put with a lease that does not exist: "etcdserver: requested lease not found".
    case leaseNotFound
    /// The backend cannot be read (an I/O error or a damaged file).
    case storage(String)
}

/// etcd's MVCC key-value store with its v3 applier on top (etcd: mvcc/kvstore*.go and
/// the KV half of etcdserver/apply.go): the key index in memory, every revision in the
/// backend's `key` bucket (etcd's schema, see `Schema`), rebuilt from it at start.
///
/// - Every write call (put, delete that deletes something, txn with at least one
///   change) commits exactly one new main revision; its changes get sub revisions
///   0, 1, 2, ... in order.
/// - A fresh store is at revision 1, as etcd.
///
/// Not thread-safe: the caller serializes all calls (the server's apply loop holds a lock).
public final class KVStore {
    /// The key index (etcd: treeIndex).
    var index = TreeIndex()
    /// Every retained change by revision: the backend's `key` bucket.
    var log: RevisionLog
    /// Decrypts values swetcd encrypted (see `Sealed`); nil without encryption.
    public var openSealed: SealedValueOpener? {
        get { log.open }
        set { log.open = newValue }
    }
    /// The keys ("<provider>:<name>") that values in the store were encrypted with, as
    /// found when the store was opened (a member checks its configuration lists them all).
    public internal(set) var sealedKeyNames: Set<String> = []
    /// The backend the store writes to (batched; see `BatchedBackend`).
    public let backend: BatchedBackend
    /// The index of the last Raft entry whose effects are in the backend (etcd's
    /// consistent_index in `meta`); 0 for a new store.
    public internal(set) var consistentIndex: UInt64 = 0
    /// The entry being applied (see `setConsistentIndex`).
    var appliedIndex: UInt64 = 0
    /// etcd: store.currentRev.
    var currentRev: Int64 = 1
    /// etcd: store.compactMainRev; -1 until the first compaction, as in etcd (so a
    /// compaction at revision 0 succeeds once on a fresh store, exactly as etcd does).
    var compactMainRev: Int64 = -1

    /// Whether a lease exists. Until the Lease module is wired in, no lease exists, so
    /// any put with lease != 0 fails with `.leaseNotFound`.
    public var leaseExists: (Int64) -> Bool = { _ in false }
    /// Told of every put (key, lease; 0 for none) and every deleted key, in apply order, so
    /// the lessor keeps its key lists (etcd: Attach/Detach in storeTxnWrite).
    public var onKeyPut: (Data, Int64) -> Void = { _, _ in }
    public var onKeyDeleted: (Data) -> Void = { _ in }
    /// After restore: the lease of every live key that has one (etcd: keyToLease).
    public internal(set) var restoredLeaseItems: [Data: Int64] = [:]

    /// The changes made by the most recent `put`, `deleteRange` or `txn` call, in
    /// revision order, as watch events (DELETE events carry only key and
    /// mod_revision, as etcd sends them). Empty if that call changed nothing or failed.
    public private(set) var lastWriteEvents: [Mvccpb_Event] = []

    /// A store on `backend`: creates etcd's `key` and `meta` buckets if missing, then
    /// rebuilds the key index from the `key` bucket and the revisions from `meta`
    /// (etcd: store.restore), resuming a compaction that was scheduled but not finished.
    public init(backend: BatchedBackend) throws(MVCCError) {
        self.backend = backend
        self.log = RevisionLog(backend: backend)
        backend.createBucket(Schema.key)
        backend.createBucket(Schema.meta)
        try restore()
    }

    /// A store on a new in-memory backend (tests).
    public convenience init() {
        do {
            try self.init(backend: BatchedBackend.inMemory())
        } catch {
            preconditionFailure("in-memory store: \(error)")
        }
    }

    /// Tells the store which Raft entry is being applied. Like etcd, the store records it as
    /// consistent_index (in the same batch as the changes) when a write changes the key space,
    /// and on `commit()`; entries without changes may therefore be applied again after a
    /// crash, which leaves the state as it was (etcd: store.saveIndex).
    public func setConsistentIndex(_ index: UInt64) {
        appliedIndex = index
    }

    /// Commits everything so far to the backend, consistent_index included, and waits
    /// (etcd: store.Commit before a snapshot).
    public func commit() throws {
        saveIndex()
        try backend.commit()
    }

    func saveIndex() {
        guard appliedIndex > consistentIndex else { return }
        consistentIndex = appliedIndex
        backend.put(Schema.meta, Schema.consistentIndexKey, Schema.uint64BE(appliedIndex))
    }

    /// The revision of the last committed change; 1 for a fresh store.
    public var currentRevision: Int64 { currentRev }

    /// The revision of the last compaction; 0 before any compaction.
    public var compactedRevision: Int64 { max(compactMainRev, 0) }

    /// etcd's raw `compactMainRev`: -1 before any compaction (what etcd reports as
    /// HashKV's compact_revision on a never-compacted store).
    public var compactMainRevision: Int64 { compactMainRev }

    /// Number of retained revisions (puts and tombstones) in the `key` bucket (a full scan).
    public var retainedRevisionCount: Int { log.entries.count }

    /// Number of keys in the index (live or with retained history).
    public var indexedKeyCount: Int { index.count }


    // MARK: Public KV API

    /// Reads. Header.revision of the response = the store's current revision (as
    /// etcd's applier sets it). Other header fields are left 0 for the caller.
    public func range(_ r: Etcdserverpb_RangeRequest) throws(MVCCError) -> Etcdserverpb_RangeResponse {
        try applyRange(r, TxnView(isWrite: false, beginRev: currentRev))
    }

    /// etcd's `applierV3backend.Put` outside a txn: lease check first, then the
    /// ignore_value / ignore_lease check, then the write.
    public func put(_ r: Etcdserverpb_PutRequest) throws(MVCCError) -> Etcdserverpb_PutResponse {
        lastWriteEvents = []
        if r.lease != 0 && !leaseExists(r.lease) {
            throw .leaseNotFound
        }
        var view = TxnView(isWrite: true, beginRev: currentRev)
        let resp = try applyPut(r, &view)
        endWrite(view)
        return resp
    }

    /// Deletes [key, range_end). Header.revision is the new revision if anything was
    /// deleted, else the current one (no revision bump).
    public func deleteRange(_ r: Etcdserverpb_DeleteRangeRequest) throws(MVCCError) -> Etcdserverpb_DeleteRangeResponse {
        lastWriteEvents = []
        var view = TxnView(isWrite: true, beginRev: currentRev)
        let resp = applyDeleteRange(r, &view)
        endWrite(view)
        return resp
    }

    /// One revision for all writes of the txn (sub revisions inside), as etcd; a txn
    /// with no writes does not advance the revision. Reads inside a txn see the txn's
    /// earlier writes; compares (also those of nested txns) see the state before the txn.
    /// Errors (checked before anything is applied, on the branches the compares select):
    /// keyNotFound / leaseNotFound for puts, then futureRevision / compacted for ranges.
    public func txn(_ r: Etcdserverpb_TxnRequest) throws(MVCCError) -> Etcdserverpb_TxnResponse {
        lastWriteEvents = []
        return try applyTxn(r)
    }

    /// Deletes these keys in one revision (etcd's lease revocation: a DeleteRange per key in
    /// one write txn); keys no longer live are skipped. Returns the header revision.
    public func deleteKeys(_ keys: [Data]) -> Int64 {
        lastWriteEvents = []
        var view = TxnView(isWrite: true, beginRev: currentRev)
        for k in keys { _ = txnDeleteRange(k, .single, &view) }
        endWrite(view)
        return currentRev
    }

    /// Compaction to r.revision: `.compacted` if <= the last compaction revision,
    /// `.futureRevision` if > currentRevision. Keeps, for every key, the latest
    /// revision at or below the compact revision unless it is a tombstone; all later
    /// revisions stay. Synchronous (r.physical needs no waiting here).
    /// Header.revision = current revision.
    public func compact(_ r: Etcdserverpb_CompactionRequest) throws(MVCCError) -> Etcdserverpb_CompactionResponse {
        let rev = r.revision
        if rev <= compactMainRev { throw .compacted }
        if rev > currentRev { throw .futureRevision }
        compactMainRev = rev
        let keep = index.compact(rev)
        log.compact(rev, keep: keep)
        var resp = Etcdserverpb_CompactionResponse()
        resp.header = header(currentRev)
        return resp
    }

    /// The retained changes with mod_revision >= `revision`, in revision order, as
    /// watch events (no prev_kv; a watcher wanting it reads revision mod_revision-1).
    ///
    /// Never throws. Revisions > compactedRevision are all retained; at or below it,
    /// only what compaction kept remains (for each key its latest put <= the compact
    /// revision) — exactly what etcd's backend still holds. A watcher must therefore
    /// be refused with "compacted" when its start revision < compactedRevision, as
    /// etcd's watchable store does; starting exactly at compactedRevision is allowed
    /// and gets the kept puts at that revision, as from etcd.
    public func events(since revision: Int64) throws(MVCCError) -> [Mvccpb_Event] {
        try log.events(since: revision)
    }

    // MARK: Write transaction plumbing (etcd: storeTxnWrite)

    /// etcd's TxnRead / TxnWrite as the applier sees it.
    struct TxnView {
        let isWrite: Bool
        /// Read: the store revision. Write: the revision the txn starts from; its
        /// changes go to beginRev + 1.
        let beginRev: Int64
        /// The changes so far, as events.
        var changes: [Mvccpb_Event] = []

        init(isWrite: Bool, beginRev: Int64) {
            self.isWrite = isWrite
            self.beginRev = beginRev
        }

        /// The revision reads inside the txn see and report (storeTxnWrite.Range).
        var readRev: Int64 { isWrite && !changes.isEmpty ? beginRev + 1 : beginRev }
    }

    func endWrite(_ view: TxnView) {
        precondition(view.isWrite && view.beginRev == currentRev, "write txn ended out of order")
        if !view.changes.isEmpty {
            currentRev += 1
            saveIndex()
        }
        lastWriteEvents = view.changes
    }

    /// etcd: storeTxnWrite.put.
    /// `sealed`: `value` is encrypted (see `Sealed`); the event carries it decrypted.
    func txnPut(_ key: Data, _ value: Data, lease: Int64, sealed: Bool = false, _ view: inout TxnView) {
        precondition(view.isWrite)
        let rev = view.beginRev + 1
        var created = rev
        var version: Int64 = 0
        let keyIndex = index.forWrite(key)
        if let existing = keyIndex.get(atRev: rev) {
            created = existing.created.main
            version = existing.version
        }
        let idxRev = Revision(main: rev, sub: Int64(view.changes.count))
        var kv = Mvccpb_KeyValue()
        kv.key = key
        kv.value = value
        kv.createRevision = created
        kv.modRevision = rev
        kv.version = version + 1
        kv.lease = lease
        log.append(idxRev, kv, tombstone: false, sealed: sealed)
        keyIndex.put(idxRev)
        onKeyPut(key, lease)
        var ev = Mvccpb_Event()
        ev.type = .put
        ev.kv = kv
        if sealed {
            // Every member decrypts what it applies for its watchers: a member whose
            // configuration lacks the key cannot serve this value at all (etcd panics on an
            // unreadable backend alike).
            ev.kv.value = log.openApplying(key, value, "the value of key \(String(decoding: key, as: UTF8.self)) being applied at revision \(rev)")
        }
        view.changes.append(ev)
    }

    /// etcd: storeTxnWrite.deleteRange. Returns the number of keys deleted.
    func txnDeleteRange(_ key: Data, _ end: RangeEnd, _ view: inout TxnView) -> Int64 {
        precondition(view.isWrite)
        let live = index.range(key, end, atRev: view.readRev)
        for (k, _) in live {
            let idxRev = Revision(main: view.beginRev + 1, sub: Int64(view.changes.count))
            var kv = Mvccpb_KeyValue()
            kv.key = k
            log.append(idxRev, kv, tombstone: true)
            let ok = index.tombstone(k, idxRev)
            precondition(ok, "tombstone of a live key failed")
            onKeyDeleted(k)
            var ev = Mvccpb_Event()
            ev.type = .delete
            kv.modRevision = idxRev.main
            ev.kv = kv
            view.changes.append(ev)
        }
        return Int64(live.count)
    }

    struct RangeResult {
        var kvs: [Mvccpb_KeyValue]
        var count: Int
        var rev: Int64
    }

    /// etcd: storeTxnRead.rangeKeys. `curRev` is the revision of the view.
    func rangeKeys(_ key: Data, _ end: RangeEnd, limit: Int64, rev requested: Int64,
                   countOnly: Bool, curRev: Int64) throws(MVCCError) -> RangeResult {
        if requested > curRev { throw .futureRevision }
        let rev = requested <= 0 ? curRev : requested
        if rev < compactMainRev { throw .compacted }
        if countOnly {
            return RangeResult(kvs: [], count: index.countLive(key, end, atRev: rev), rev: curRev)
        }
        let pairs = index.range(key, end, atRev: rev)
        var n = pairs.count
        if limit > 0 && limit < Int64(n) { n = Int(limit) }
        let kvs = try log.kvs(at: pairs[0..<n].map(\.rev))
        return RangeResult(kvs: kvs, count: pairs.count, rev: curRev)
    }

    /// All live KVs in [key, end) at `atRev` (a Range with default options). Used while
    /// applying a write, where a backend that cannot be read is fatal (etcd panics too).
    /// `stored`: values as stored (sealed ones encrypted and marked).
    func liveKVs(_ key: Data, _ end: RangeEnd, atRev: Int64, stored: Bool = false) -> [Mvccpb_KeyValue] {
        do {
            let revs = index.range(key, end, atRev: atRev).map(\.rev)
            return stored ? try log.storedKVs(at: revs) : try log.kvs(at: revs)
        } catch {
            preconditionFailure("swetcd: cannot read the backend while applying: \(error)")
        }
    }

    func header(_ revision: Int64) -> Etcdserverpb_ResponseHeader {
        var h = Etcdserverpb_ResponseHeader()
        h.revision = revision
        return h
    }
}
