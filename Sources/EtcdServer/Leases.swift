import Dispatch
import EtcdProto
import Foundation
import Lease

extension EtcdServer {
    /// LeaseGrant through the log; an ID of 0 is chosen as etcd chooses it (a request ID
    /// with the top bit cleared). Over quota, NOSPACE as for a put.
    public func leaseGrant(_ r: Etcdserverpb_LeaseGrantRequest) async throws(EtcdError) -> Etcdserverpb_LeaseGrantResponse {
        try await checkQuota(cost: Quota.leaseOverhead)
        var r = r
        while r.id == 0 { r.id = Int64(bitPattern: requestIDs.next() & ((1 << 63) - 1)) }
        var req = Etcdserverpb_InternalRaftRequest()
        req.leaseGrant = r
        guard case .leaseGrant(var resp) = try await process(&req) else { throw .unexpectedApplyResult }
        fill(&resp.header)
        return resp
    }

    public func leaseRevoke(_ r: Etcdserverpb_LeaseRevokeRequest) async throws(EtcdError) -> Etcdserverpb_LeaseRevokeResponse {
        var req = Etcdserverpb_InternalRaftRequest()
        req.leaseRevoke = r
        guard case .leaseRevoke(var resp) = try await process(&req) else { throw .unexpectedApplyResult }
        fill(&resp.header)
        return resp
    }

    /// A keepalive: on the leader the lease gets its full TTL again; the TTL is 0 for a lease
    /// that does not exist (etcd answers so rather than failing the stream).
    /// A follower forwards it to the leader over the peer URLs, as etcd does.
    public func leaseRenew(_ id: Int64) async throws(EtcdError) -> Etcdserverpb_LeaseKeepAliveResponse {
        if let urls = leaderPeerURLs() {
            var r = Etcdserverpb_LeaseKeepAliveRequest()
            r.id = id
            var resp = try await peerTransport(orThrow: .noLeader).forwardLeaseRenew(r, to: urls)
            fill(&resp.header)
            return resp
        }
        return try leaseRenewOnLeader(id)
    }

    /// The leader's side of a keepalive (also what a forwarded one runs).
    public func leaseRenewOnLeader(_ id: Int64) throws(EtcdError) -> Etcdserverpb_LeaseKeepAliveResponse {
        var resp = Etcdserverpb_LeaseKeepAliveResponse()
        resp.id = id
        try state.withLock { s throws(EtcdError) in
            if s.leader == 0 { throw .noLeader }
            do throws(LeaseError) {
                resp.ttl = try s.lessor.renew(id: id, now: .now)
            } catch {
                resp.ttl = 0
            }
        }
        fill(&resp.header)
        return resp
    }

    /// TTL left (whole seconds), granted TTL and, if asked, the keys; TTL -1 for a lease that
    /// does not exist, as etcd answers.
    public func leaseTimeToLive(_ r: Etcdserverpb_LeaseTimeToLiveRequest) async throws(EtcdError) -> Etcdserverpb_LeaseTimeToLiveResponse {
        // Only the leader counts down TTLs: a follower asks it (etcd's /leases/internal).
        if let urls = leaderPeerURLs() {
            var resp = try await peerTransport(orThrow: .noLeader).forwardLeaseTimeToLive(r, to: urls)
            fill(&resp.header)
            return resp
        }
        try await linearizableReadBarrier()
        var resp = Etcdserverpb_LeaseTimeToLiveResponse()
        resp.id = r.id
        state.withLock { s in
            if let t = s.lessor.timeToLive(id: r.id, now: .now) {
                resp.ttl = t.remaining
                resp.grantedTtl = t.granted
                if r.keys { resp.keys = t.keys }
            } else {
                resp.ttl = -1
            }
        }
        fill(&resp.header)
        return resp
    }

    public func leaseLeases() async throws(EtcdError) -> Etcdserverpb_LeaseLeasesResponse {
        try await linearizableReadBarrier()
        var resp = Etcdserverpb_LeaseLeasesResponse()
        resp.leases = state.withLock { $0.lessor.ids }.map { id in
            var l = Etcdserverpb_LeaseStatus()
            l.id = id
            return l
        }
        fill(&resp.header)
        return resp
    }

    /// etcd's revokeExpiredLeases: every 500 ms the leader proposes a revoke for each expired
    /// lease (once per lease until it is applied).
    func startLeaseExpiry() -> DispatchSourceTimer {
        let t = DispatchSource.makeTimerSource(queue: DispatchQueue.global())
        t.schedule(deadline: .now() + .milliseconds(500), repeating: .milliseconds(500))
        t.setEventHandler { [weak self] in
            guard let self else { return }
            let due = self.state.withLock { s -> [Int64] in
                let ids = s.lessor.expired(now: .now).filter { !s.revoking.contains($0) }
                s.revoking.formUnion(ids)
                return ids
            }
            for id in due {
                Task {
                    var r = Etcdserverpb_LeaseRevokeRequest()
                    r.id = id
                    do {
                        _ = try await self.leaseRevoke(r)
                    } catch {
                        _ = self.state.withLock { $0.revoking.remove(id) }
                    }
                }
            }
        }
        t.resume()
        return t
    }
}

/// A timer owned by the member (lease expiry), cancelled when it stops.
final class TimerHolder: @unchecked Sendable {
    private let lock = NSLock()
    private var timer: DispatchSourceTimer?  // under lock

    func set(_ t: DispatchSourceTimer) { lock.withLock { timer = t } }

    func cancel() {
        lock.withLock {
            timer?.cancel()
            timer = nil
        }
    }
}
