import CoreMetrics
import Dispatch
import FileIO
import Foundation
import Synchronization

/// etcd's backend on top of a `BoltDB` (etcd: mvcc/backend): writes gather in a batch that is
/// committed in one bbolt transaction every `batchInterval` or after `batchLimit` operations,
/// never on the caller's thread; reads see every write at once, committed or not.
///
///     writer ──put/delete/sweep──▶ current batch ──seal──▶ sealed batches ──▶ committer queue
///                                        │                       │               (one bbolt tx
///     reader ──get/scan──▶ overlay: current, then sealed (newest first), then a bbolt read tx
///
/// - A sealed batch stays readable until its transaction is committed; a reader captures the
///   sealed batches and begins its bbolt read transaction under one lock, so every write is
///   found either in a batch it captured or in the committed file.
/// - Batches are committed in the order they were sealed, each atomically: after a crash the
///   file holds a prefix of the batches. Whoever needs to know how far (etcd: the
///   `consistent_index` in `meta`) writes that into the batch itself.
/// - `sweep` (compaction) deletes keys below a bound that a predicate does not keep; it is
///   applied after the batch's puts and deletes, so it must only be used on keys that are
///   never written again once swept (etcd's revision keys).
///
/// A group of writes that must reach the file together (one Raft entry and its
/// consistent_index) goes inside `atomically`: no batch is sealed in the middle of it
/// (etcd holds the batch transaction's lock for the same reason). The batch limit is checked
/// when the group ends.
///
/// Thread-safe. A commit failure is fatal for the backend (etcd panics): `onFailure` is
/// called once and later commits are refused.
public final class BatchedBackend: @unchecked Sendable {
    public struct Options: Sendable {
        /// etcd's --backend-batch-interval (default 100 ms).
        public var batchInterval: Duration = .milliseconds(100)
        /// etcd's --backend-batch-limit (default 10,000 operations).
        public var batchLimit = 10_000
        public init() {}
    }

    /// One bucket's changes in a batch: nil marks a deletion.
    typealias Changes = [[UInt8]: [UInt8]?]

    struct Sweep {
        var bucket: [UInt8]
        /// Keys < end are deleted unless `keep` says otherwise.
        var end: [UInt8]
        var keep: @Sendable ([UInt8]) -> Bool
    }

    final class Batch: @unchecked Sendable {
        var createBuckets: [[UInt8]] = []
        var changes: [[UInt8]: Changes] = [:]
        var sequential: Set<[UInt8]> = []
        var sweeps: [Sweep] = []
        var ops = 0
        var isEmpty: Bool { ops == 0 && createBuckets.isEmpty }
    }

    /// The file (replaced by `defragment`).
    public var db: BoltDB { state.withLock { $0.db } }
    public let options: Options
    /// etcd's etcd_disk_backend_commit_duration_seconds (through swift-metrics).
    private let commitTimer = CoreMetrics.Timer(label: "etcd_disk_backend_commit_duration_seconds")
    private let queue = DispatchQueue(label: "swetcd.backend.commit")
    private struct State {
        var db: BoltDB
        /// Set while a defragmented file replaces `db`: new readers wait.
        var swapping = false
        var current = Batch()
        /// Sealed, oldest first, until committed.
        var sealed: [Batch] = []
        var failure: String?
        var commits = 0
    }
    private let state: Mutex<State>
    /// Held while a group of writes is made (`atomically`) and while a batch is sealed.
    private let groupLock = NSLock()
    private let onFailure: @Sendable (String) -> Void
    private var timer: DispatchSourceTimer?

    public init(db: BoltDB, options: Options = Options(), onFailure: @escaping @Sendable (String) -> Void = { _ in }) {
        self.state = Mutex(State(db: db))
        self.options = options
        self.onFailure = onFailure
    }

    /// Commits every `batchInterval` whatever is pending (etcd's backend run loop).
    public func startTimer() {
        let t = DispatchSource.makeTimerSource(queue: DispatchQueue.global())
        let interval = options.batchInterval
        let ns = Int(interval.totalNanoseconds)
        t.schedule(deadline: .now() + .nanoseconds(ns), repeating: .nanoseconds(max(ns, 1_000_000)), leeway: .milliseconds(1))
        t.setEventHandler { [weak self] in self?.commitAsync() }
        t.resume()
        timer = t
    }

    /// Stops the timer, commits what is pending and waits for it; the BoltDB stays open.
    public func stop() throws {
        timer?.cancel()
        timer = nil
        try commit()
    }

    // MARK: - Writes (into the current batch)

    public func createBucket(_ name: [UInt8]) {
        state.withLock { $0.current.createBuckets.append(name) }
    }

    /// `sequential`: keys of this bucket are written in ascending order (bbolt fill percent
    /// 0.9, as etcd's UnsafeSeqPut).
    public func put(_ bucket: [UInt8], _ key: [UInt8], _ value: [UInt8], sequential: Bool = false) {
        state.withLock { s in
            s.current.changes[bucket, default: [:]][key] = .some(value)
            if sequential { s.current.sequential.insert(bucket) }
            s.current.ops += 1
        }
    }

    public func delete(_ bucket: [UInt8], _ key: [UInt8]) {
        state.withLock { s in
            s.current.changes[bucket, default: [:]][key] = .some(nil)
            s.current.ops += 1
        }
    }

    /// Runs `body`, whose writes end up in one batch; then queues a commit if the batch
    /// reached `batchLimit` operations.
    public func atomically<T>(_ body: () throws -> T) rethrows -> T {
        groupLock.lock()
        let result: T
        do {
            result = try body()
        } catch {
            groupLock.unlock()
            throw error
        }
        groupLock.unlock()
        if state.withLock({ $0.current.ops >= options.batchLimit }) { commitAsync() }
        return result
    }

    /// Deletes every key < `end` of `bucket` for which `keep` is false (see the type's note).
    public func sweep(_ bucket: [UInt8], below end: [UInt8], keep: @escaping @Sendable ([UInt8]) -> Bool) {
        state.withLock { s in
            if var c = s.current.changes[bucket] {
                for k in c.keys where compare(k, end) < 0 && !keep(k) { c[k] = .some(nil) }
                s.current.changes[bucket] = c
            }
            s.current.sweeps.append(Sweep(bucket: bucket, end: end, keep: keep))
            s.current.ops += 1
        }
    }

    /// Operations waiting in the current batch.
    public var pendingOperations: Int { state.withLock { $0.current.ops } }

    /// Number of batches committed so far.
    public var commitCount: Int { state.withLock { $0.commits } }

    // MARK: - Commit

    /// Seals the current batch and queues its commit.
    public func commitAsync() {
        guard let batch = seal() else { return }
        queue.async { [self] in write(batch) }
    }

    /// Seals the current batch and returns once it (and every earlier one) is committed.
    public func commit() throws {
        if let batch = seal() {
            queue.sync { write(batch) }
        } else {
            queue.sync {}
        }
        if let f = state.withLock({ $0.failure }) { throw BoltError.needsReopen(f) }
    }

    private func seal() -> Batch? {
        groupLock.lock()
        defer { groupLock.unlock() }
        return state.withLock { s -> Batch? in
            guard !s.current.isEmpty, s.failure == nil else { return nil }
            let b = s.current
            s.current = Batch()
            s.sealed.append(b)
            return b
        }
    }

    /// On the commit queue: one bbolt write transaction for the batch.
    private func write(_ batch: Batch) {
        if state.withLock({ $0.failure }) != nil { return }
        let db = self.db
        do {
            let tx = try db.beginWrite()
            do {
                for name in batch.createBuckets { _ = try tx.createBucketIfNotExists(name) }
                for (name, changes) in batch.changes.sorted(by: { compare($0.key, $1.key) < 0 }) {
                    guard let b = try tx.bucket(name) else { throw BoltError.bucketNotFound }
                    if batch.sequential.contains(name) { b.fillPercent = 0.9 }
                    for (k, v) in changes.sorted(by: { compare($0.key, $1.key) < 0 }) {
                        if let v { try b.put(k, v) } else { try b.delete(k) }
                    }
                }
                for sw in batch.sweeps {
                    guard let b = try tx.bucket(sw.bucket) else { throw BoltError.bucketNotFound }
                    var doomed: [[UInt8]] = []
                    let c = b.cursor()
                    var e = try c.first()
                    while let (k, _) = e, compare(k, sw.end) < 0 {
                        if !sw.keep(k) { doomed.append(k) }
                        e = try c.next()
                    }
                    for k in doomed { try b.delete(k) }
                }
                let start = DispatchTime.now().uptimeNanoseconds
                try tx.commit()
                commitTimer.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - start))
            } catch {
                tx.rollback()
                throw error
            }
            state.withLock { s in
                if let i = s.sealed.firstIndex(where: { $0 === batch }) { s.sealed.remove(at: i) }
                s.commits += 1
            }
        } catch {
            let message = "swetcd: cannot commit the backend \(db.path): \(error)"
            state.withLock { $0.failure = message }
            onFailure(message)
        }
    }

    // MARK: - Reads

    /// A consistent view of every write made so far (and of later ones while the batch that
    /// was current stays current).
    /// End it with `close()`; a bbolt read transaction stays open meanwhile.
    public final class ReadView {
        let backend: BatchedBackend
        /// The batch that was current when the view began: it may be sealed and committed
        /// while the view is open (it then holds no more writes), so the view keeps it
        /// rather than asking for whichever batch is current at the time of a read.
        let current: Batch
        let sealed: [Batch]
        let tx: BoltTx
        private var buckets: [[UInt8]: BoltBucket?] = [:]

        init(backend: BatchedBackend, current: Batch, sealed: [Batch], tx: BoltTx) {
            self.backend = backend
            self.current = current
            self.sealed = sealed
            self.tx = tx
        }

        deinit { tx.rollback() }

        public func close() { tx.rollback() }

        private func boltBucket(_ name: [UInt8]) throws -> BoltBucket? {
            if let b = buckets[name] { return b }
            let b = try tx.bucket(name)
            buckets[name] = b
            return b
        }

        /// The overlay's answer for one key: .some(value or nil = deleted), or nil if no
        /// batch touched it.
        private func overlay(_ bucket: [UInt8], _ key: [UInt8]) -> [UInt8]?? {
            // Under the lock: the batch takes writes until it is sealed.
            if let v = backend.state.withLock({ _ in current.changes[bucket]?[key] }) { return v }
            for b in sealed.reversed() {
                if let v = b.changes[bucket]?[key] { return v }
            }
            return nil
        }

        public func get(_ bucket: [UInt8], _ key: [UInt8]) throws -> [UInt8]? {
            if let v = overlay(bucket, key) { return v }
            return try boltBucket(bucket)?.get(key)
        }

        /// Every key in [from, to) (to nil: to the end) with its value, in key order.
        public func scan(_ bucket: [UInt8], from: [UInt8], to: [UInt8]?) throws -> [(key: [UInt8], value: [UInt8])] {
            func inRange(_ k: [UInt8]) -> Bool { compare(k, from) >= 0 && (to.map { compare(k, $0) < 0 } ?? true) }
            var out: [(key: [UInt8], value: [UInt8])] = []
            if let b = try boltBucket(bucket) {
                let c = b.cursor()
                var e = try c.seek(from)
                while let (k, v) = e, to.map({ compare(k, $0) < 0 }) ?? true {
                    if let v { out.append((k, v)) }
                    e = try c.next()
                }
            }
            // The overlay, oldest first so newer batches win; then the sweeps not yet committed.
            var changes: [[UInt8]: [UInt8]?] = [:]
            var sweeps: [Sweep] = []
            let current = backend.state.withLock { _ -> (Changes, [Sweep]) in
                (self.current.changes[bucket] ?? [:], self.current.sweeps.filter { $0.bucket == bucket })
            }
            for b in sealed {
                for (k, v) in b.changes[bucket] ?? [:] where inRange(k) { changes[k] = v }
                sweeps += b.sweeps.filter { $0.bucket == bucket }
            }
            for (k, v) in current.0 where inRange(k) { changes[k] = v }
            sweeps += current.1
            if changes.isEmpty && sweeps.isEmpty { return out }
            var merged: [(key: [UInt8], value: [UInt8])] = []
            merged.reserveCapacity(out.count + changes.count)
            let extra = changes.sorted { compare($0.key, $1.key) < 0 }
            var i = 0, j = 0
            while i < out.count || j < extra.count {
                if j == extra.count || (i < out.count && compare(out[i].key, extra[j].key) < 0) {
                    merged.append(out[i]); i += 1
                } else {
                    if i < out.count && compare(out[i].key, extra[j].key) == 0 { i += 1 }
                    if let v = extra[j].value { merged.append((extra[j].key, v)) }
                    j += 1
                }
            }
            if !sweeps.isEmpty {
                merged.removeAll { e in sweeps.contains { compare(e.key, $0.end) < 0 && !$0.keep(e.key) } }
            }
            return merged
        }
    }

    public func readView() throws -> ReadView {
        while true {
            let view = try state.withLock { s throws -> ReadView? in
                if s.swapping { return nil }
                return ReadView(backend: self, current: s.current, sealed: s.sealed, tx: try s.db.beginRead())
            }
            if let view { return view }
            usleep(200)  // a defragmented file is being put in place (milliseconds)
        }
    }

    // MARK: - Defragment

    /// etcd's Defrag, without stopping the member: commits what is pending, then, on the
    /// commit queue (so no batch commits meanwhile, while writes keep gathering in the
    /// current batch and reads keep being served from the old file), copies the file
    /// compactly; then new readers wait while the open ones finish and the copy replaces the
    /// file. Returns how long readers were held off.
    @discardableResult
    public func defragment() throws -> Duration {
        if let batch = seal() { queue.sync { write(batch) } }
        if let f = state.withLock({ $0.failure }) { throw BoltError.needsReopen(f) }
        return try queue.sync { () throws -> Duration in
            let old = db
            let copy = try old.prepareDefragment()
            let clock = ContinuousClock()
            let start = clock.now
            state.withLock { $0.swapping = true }
            defer { state.withLock { $0.swapping = false } }
            while old.stats.openTxN > 0 { usleep(100) }
            let new = try old.finishDefragment(copy)
            state.withLock { $0.db = new }
            return clock.now - start
        }
    }

    /// Puts the database file at `path` in place of this one (etcd: a follower receiving a
    /// snapshot from the leader). What is pending is dropped: the new file supersedes it.
    /// Readers wait while the files are swapped.
    public func replace(withFileAt path: String) throws {
        try queue.sync { () throws in
            let old = db
            state.withLock { $0.swapping = true }
            defer { state.withLock { $0.swapping = false } }
            while old.stats.openTxN > 0 { usleep(100) }
            state.withLock { s in
                s.current = Batch()
                s.sealed.removeAll()
            }
            let new = try old.finishDefragment(BoltDB.DefragmentedCopy(path: path))
            state.withLock { $0.db = new }
        }
    }

    /// One key, through a short-lived view.
    public func get(_ bucket: [UInt8], _ key: [UInt8]) throws -> [UInt8]? {
        let v = try readView()
        defer { v.close() }
        return try v.get(bucket, key)
    }
}

@inline(__always)
private func compare(_ a: [UInt8], _ b: [UInt8]) -> Int { compareBytes(a[...], b[...]) }
