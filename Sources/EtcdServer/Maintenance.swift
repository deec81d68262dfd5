import Backend
import Crypto
import Dispatch
import EtcdProto
import Foundation
import MVCC
import Synchronization

/// A piece of Maintenance.Snapshot's stream: the database file in chunks, then its sha256.
public enum SnapshotPiece: Sendable {
    case chunk(Data)
    case checksum(Data)
}

/// etcd's quota (etcdserver/quota.go): what a request may add to the backend.
enum Quota {
    /// etcd's DefaultQuotaBytes (2 GiB) and MaxQuotaBytes (8 GiB).
    static let defaultBytes: Int64 = 2 * 1024 * 1024 * 1024
    static let maxBytes: Int64 = 8 * 1024 * 1024 * 1024
    static let kvOverhead = 256
    static let leaseOverhead = 64

    static func cost(_ p: Etcdserverpb_PutRequest) -> Int { kvOverhead + p.key.count + p.value.count }

    /// The larger of the two branches' puts (nested txns are not counted, as in etcd).
    static func cost(_ t: Etcdserverpb_TxnRequest) -> Int {
        func side(_ ops: [Etcdserverpb_RequestOp]) -> Int {
            ops.reduce(0) { n, op in
                if case .requestPut(let p)? = op.request { return n + cost(p) }
                return n
            }
        }
        return max(side(t.success), side(t.failure))
    }
}

/// The member's figures behind etcd's Prometheus metrics, read at scrape time.
public struct ServerMetrics: Sendable {
    public var hasLeader: Bool
    public var leaderChanges: Int
    public var proposalsCommitted: UInt64
    public var proposalsApplied: UInt64
    public var proposalsPending: Int
    public var proposalsFailed: Int
    public var keys: Int
    public var dbSize: Int64
    public var dbSizeInUse: Int64
    public var quotaBytes: Int64
}

extension EtcdServer {
    public func metrics() -> ServerMetrics {
        state.withLock { s in
            ServerMetrics(
                hasLeader: s.leader != 0, leaderChanges: s.leaderChanges, proposalsCommitted: s.committed,
                proposalsApplied: s.applied, proposalsPending: waiters.withLock { $0.count }, proposalsFailed: s.proposalsFailed,
                keys: s.kv.indexedKeyCount, dbSize: backend.db.size, dbSizeInUse: backend.db.sizeInUse,
                quotaBytes: quotaBytes ?? 0)
        }
    }

    /// The effective --quota-backend-bytes: 0 means etcd's default, negative disables it.
    var quotaBytes: Int64? {
        if config.quotaBackendBytes < 0 { return nil }
        return config.quotaBackendBytes == 0 ? Quota.defaultBytes : config.quotaBackendBytes
    }

    /// etcd's backendQuota.Available: the physical size plus the request's cost must stay
    /// below the quota (requests that add nothing always pass).
    func quotaAvailable(cost: Int) -> Bool {
        guard cost > 0, let quota = quotaBytes else { return true }
        return backend.db.size + Int64(cost) < quota
    }

    /// etcd's quotaAlarmer, in front of Put, Txn and LeaseGrant: over quota, the member raises
    /// the NOSPACE alarm (through the log) and refuses the request.
    /// The callback form: when `r` fits, `next` runs at once; else the alarm is raised in a
    /// task, and `done` gets the refusal (or `next` runs, if room was made meanwhile).
    public func checkQuota<R: Sendable>(put r: Etcdserverpb_PutRequest, _ done: @escaping @Sendable (Result<R, EtcdError>) -> Void,
                                        then next: @escaping @Sendable () -> Void) {
        checkQuota(cost: Quota.cost(r), done, then: next)
    }

    public func checkQuota<R: Sendable>(txn r: Etcdserverpb_TxnRequest, _ done: @escaping @Sendable (Result<R, EtcdError>) -> Void,
                                        then next: @escaping @Sendable () -> Void) {
        checkQuota(cost: Quota.cost(r), done, then: next)
    }

    func checkQuota<R: Sendable>(cost: Int, _ done: @escaping @Sendable (Result<R, EtcdError>) -> Void,
                                 then next: @escaping @Sendable () -> Void) {
        if quotaAvailable(cost: cost) { return next() }
        Task {
            do throws(EtcdError) { try await checkQuota(cost: cost) } catch { return done(.failure(error)) }
            next()
        }
    }

    func checkQuota(cost: Int) async throws(EtcdError) {
        if quotaAvailable(cost: cost) { return }
        await raiseNoSpace()
        throw .noSpace
    }

    func raiseNoSpace() async {
        var a = Etcdserverpb_AlarmRequest()
        a.action = .activate
        a.memberID = memberID
        a.alarm = .nospace
        _ = try? await alarm(a)
    }

    // MARK: - Snapshot

    /// Maintenance.Snapshot: everything applied is committed to the backend (etcd's
    /// ForceCommit), then a read transaction streams the file as of that commit in 32 KiB
    /// chunks, followed by the sha256 of the bytes sent. Writes go on meanwhile; the stream
    /// produces a chunk only when the previous ones were taken (at most 8 ahead).
    public func backendSnapshot() throws(EtcdError) -> (size: Int64, pieces: SnapshotPieces) {
        let tx: BoltTx
        do {
            tx = try state.withLock { s throws in
                try s.kv.commit()
                return try backend.db.beginRead()
            }
        } catch {
            throw EtcdError(.internal, "swetcd: cannot snapshot the backend: \(error)")
        }
        let size = tx.size
        let (stream, continuation) = AsyncThrowingStream<SnapshotPiece, Error>.makeStream()
        let flow = SnapshotFlow()
        continuation.onTermination = { _ in flow.cancel() }
        let logger = self.logger
        logger.info("sending database snapshot to client [\(size) bytes]", metadata: ["pkg": "etcdserver/api/v3rpc"])
        DispatchQueue.global().async {
            var sha = SHA256()
            do {
                try tx.writeTo(chunkSize: 32 * 1024) { buf in
                    try flow.waitForRoom()
                    sha.update(bufferPointer: buf)
                    continuation.yield(.chunk(Data(buf)))
                }
                tx.rollback()
                continuation.yield(.checksum(Data(sha.finalize())))
                continuation.finish()
            } catch {
                tx.rollback()
                continuation.finish(throwing: error)
            }
        }
        return (size, SnapshotPieces(stream: stream, flow: flow))
    }

    // MARK: - Hashes

    public func hash() throws(EtcdError) -> Etcdserverpb_HashResponse {
        // etcd's store.Hash commits the backend first (ForceCommit).
        let (h, rev) = try state.withLock { s throws(EtcdError) in
            do { try s.kv.commit() } catch { throw EtcdError(.internal, "swetcd: cannot commit the backend: \(error)") }
            do throws(MVCCError) { return try s.kv.hash() } catch { throw EtcdError(error) }
        }
        var resp = Etcdserverpb_HashResponse()
        resp.header.revision = rev
        resp.hash = h
        fill(&resp.header)
        return resp
    }

    public func hashKV(_ r: Etcdserverpb_HashKVRequest) throws(EtcdError) -> Etcdserverpb_HashKVResponse {
        let (h, rev, compactRev) = try state.withLock { s throws(EtcdError) in
            do throws(MVCCError) { return try s.kv.hashKV(revision: r.revision) } catch { throw EtcdError(error) }
        }
        var resp = Etcdserverpb_HashKVResponse()
        resp.header.revision = rev
        resp.hash = h
        resp.compactRevision = compactRev
        fill(&resp.header)
        return resp
    }

    // MARK: - Defragment

    /// Maintenance.Defragment: the backend file rewritten without free pages. Unlike etcd,
    /// the member keeps applying writes and serving reads while the copy is made; readers
    /// wait only while the copy replaces the file (logged).
    public func defragment() async throws(EtcdError) {
        milestone("starting to defragment the storage backend...", level: .notice, zap: "starting defragment", [:])
        let backend = self.backend
        let result: Result<Duration, Error> = await withCheckedContinuation { c in
            DispatchQueue.global().async {
                c.resume(returning: Result { try backend.defragment() })
            }
        }
        switch result {
        case .success(let held):
            logger.info("defragment: readers held off for \(held) while the new file replaced the old one")
            milestone("finished defragmenting the storage backend", level: .notice, zap: "finished defragment", [:])
        case .failure(let error):
            logger.error("failed to defragment the storage backend (\(error))")
            throw EtcdError(.internal, "swetcd: defragment failed: \(error)")
        }
    }
}

/// The pieces of a snapshot; taking one lets the producer read the next chunk.
public struct SnapshotPieces: AsyncSequence, Sendable {
    public typealias Element = SnapshotPiece
    let stream: AsyncThrowingStream<SnapshotPiece, Error>
    let flow: SnapshotFlow

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<SnapshotPiece, Error>.AsyncIterator
        let flow: SnapshotFlow

        public mutating func next() async throws -> SnapshotPiece? {
            let piece = try await base.next()
            flow.taken()
            return piece
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: stream.makeAsyncIterator(), flow: flow)
    }
}

/// Back-pressure between the snapshot producer (a thread reading the file) and the gRPC
/// stream: at most 8 chunks ahead; cancelled when the client goes away.
final class SnapshotFlow: Sendable {
    private let room = DispatchSemaphore(value: 8)
    private let cancelled = Atomic<Bool>(false)

    struct Cancelled: Error {}

    func waitForRoom() throws {
        room.wait()
        if cancelled.load(ordering: .relaxed) { throw Cancelled() }
    }

    func taken() { room.signal() }

    func cancel() {
        cancelled.store(true, ordering: .relaxed)
        for _ in 0..<9 { room.signal() }
    }
}
