import Backend
import EtcdProto
import Foundation

/// The errors etcd's lessor returns; the server maps them to etcd's gRPC errors.
public enum LeaseError: Error, Equatable, Sendable {
    /// "etcdserver: requested lease not found"
    case notFound
    /// "etcdserver: lease already exists"
    case exists
    /// "etcdserver: too large lease TTL"
    case ttlTooLarge
}

/// etcd's lessor (lease/lessor.go): leases with their TTL, the keys attached to each, and
/// when each expires. Leases are persisted in the backend's `lease` bucket (8-byte
/// big-endian ID → leasepb.Lease{ID, TTL}); expiry is in memory and only counts on the
/// primary (the leader): elsewhere leases never expire, and a new primary gives every lease a
/// full TTL plus an extension (etcd's Promote), so a restart or a leader change extends them.
///
/// Not thread-safe: the server calls it under its state lock, in apply order for grant,
/// revoke, attach and detach.
public final class Lessor {
    /// etcd's MaxLeaseTTL.
    public static let maxTTL: Int64 = 9_000_000_000
    public static let bucket = Array("lease".utf8)

    struct Lease {
        var ttl: Int64
        var expiry: ContinuousClock.Instant?
        var keys: Set<Data> = []
    }

    private var leases: [Int64: Lease] = [:]
    /// Which lease each attached key belongs to (etcd: itemMap).
    private var itemLease: [Data: Int64] = [:]
    private let backend: BatchedBackend
    /// etcd's minLeaseTTL: a shorter grant gets this TTL.
    public let minTTL: Int64
    public private(set) var isPrimary = false

    /// Loads the leases of the `lease` bucket (creating it if missing).
    public init(backend: BatchedBackend, minTTL: Int64) throws {
        self.backend = backend
        self.minTTL = minTTL
        backend.createBucket(Self.bucket)
        let view = try backend.readView()
        defer { view.close() }
        for (_, v) in try view.scan(Self.bucket, from: [], to: nil) {
            let l = try Leasepb_Lease(serializedBytes: v)
            leases[l.id] = Lease(ttl: l.ttl, expiry: nil)
        }
    }

    static func key(_ id: Int64) -> [UInt8] { withUnsafeBytes(of: UInt64(bitPattern: id).bigEndian) { Array($0) } }

    public func contains(_ id: Int64) -> Bool { leases[id] != nil }

    /// Leases in ID order.
    public var ids: [Int64] { leases.keys.sorted() }

    /// etcd's Grant: the TTL raised to the minimum; on the primary it starts counting now.
    /// Returns the TTL granted.
    public func grant(id: Int64, ttl requested: Int64, now: ContinuousClock.Instant) throws(LeaseError) -> Int64 {
        if requested > Self.maxTTL { throw .ttlTooLarge }
        if leases[id] != nil { throw .exists }
        let ttl = max(requested, minTTL)
        leases[id] = Lease(ttl: ttl, expiry: isPrimary ? now + .seconds(ttl) : nil)
        var l = Leasepb_Lease()
        l.id = id
        l.ttl = ttl
        backend.put(Self.bucket, Self.key(id), (try? l.serializedBytes()) ?? [])
        return ttl
    }

    /// etcd's Revoke, without the key deletion: removes the lease and returns its keys in
    /// order (the caller deletes them in one revision).
    public func revoke(id: Int64) throws(LeaseError) -> [Data] {
        guard let l = leases.removeValue(forKey: id) else { throw .notFound }
        for k in l.keys { itemLease[k] = nil }
        backend.delete(Self.bucket, Self.key(id))
        return l.keys.sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// etcd's Renew on the primary: a full TTL from now. An expired lease is not found (it
    /// is being revoked).
    public func renew(id: Int64, now: ContinuousClock.Instant) throws(LeaseError) -> Int64 {
        guard var l = leases[id] else { throw .notFound }
        if let e = l.expiry, e <= now { throw .notFound }
        l.expiry = now + .seconds(l.ttl)
        leases[id] = l
        return l.ttl
    }

    /// Granted TTL, whole seconds remaining (etcd truncates) and attached keys.
    public func timeToLive(id: Int64, now: ContinuousClock.Instant) -> (granted: Int64, remaining: Int64, keys: [Data])? {
        guard let l = leases[id] else { return nil }
        let remaining: Int64
        if let e = l.expiry {
            remaining = max(0, (e - now).components.seconds)
        } else {
            remaining = l.ttl  // not counting here (not the primary)
        }
        return (l.ttl, remaining, l.keys.sorted { $0.lexicographicallyPrecedes($1) })
    }

    /// A put of `key` with `lease` (0: none): the key leaves its previous lease, if any, and
    /// joins the new one (etcd: Detach + Attach in storeTxnWrite.put).
    public func keyPut(_ key: Data, lease: Int64) {
        let old = itemLease[key] ?? 0
        if old == lease { return }
        if old != 0 {
            leases[old]?.keys.remove(key)
            itemLease[key] = nil
        }
        if lease != 0, leases[lease] != nil {
            leases[lease]!.keys.insert(key)
            itemLease[key] = lease
        }
    }

    /// A delete of `key`: it leaves its lease.
    public func keyDeleted(_ key: Data) { keyPut(key, lease: 0) }

    /// Leases whose time is up (primary only).
    public func expired(now: ContinuousClock.Instant) -> [Int64] {
        guard isPrimary else { return [] }
        return leases.compactMap { id, l in (l.expiry.map { $0 <= now } ?? false) ? id : nil }.sorted()
    }

    /// etcd's Promote: this member became the leader; every lease gets its full TTL plus
    /// `extend` (the election timeout) from now.
    public func promote(now: ContinuousClock.Instant, extend: Duration) {
        isPrimary = true
        for id in leases.keys { leases[id]!.expiry = now + .seconds(leases[id]!.ttl) + extend }
    }

    /// etcd's Demote: no longer the leader; leases stop counting down here.
    public func demote() {
        isPrimary = false
        for id in leases.keys { leases[id]!.expiry = nil }
    }
}
