import EtcdProto
import EtcdServer
import NIOHPACK

// The gRPC paths of etcd's services, each bound to its plain service (Services.swift).
// Auth, v3lock and v3election have no route: gRPC-Go's "unknown service" answers them.

extension GRPCRoutes {
    /// What a learner serves (etcd's interceptors): Status, and Range when serializable.
    static let learnerPaths: Set<String> = ["/etcdserverpb.Maintenance/Status", "/etcdserverpb.KV/Range"]

    static func etcd(_ server: EtcdServer) -> GRPCRoutes {
        var r = GRPCRoutes()
        // etcd's checks in front of every RPC (its unary and stream interceptors): a client that
        // asks for a leader (metadata `hasleader: true`, which clientv3 sets for watches and
        // `WithRequireLeader`) gets "etcdserver: no leader" without one; a learner serves only
        // `learnerPaths`, everything else gets "etcdserver: rpc not supported for learner".
        r.admit = { path, headers throws(EtcdError) in
            if headers[canonicalForm: "hasleader"].contains("true") && server.leaderID == 0 { throw .noLeader }
            if !learnerPaths.contains(path) && server.isLearner { throw .notSupportedForLearner }
        }

        // Writes run without a task (`callback`): checked, encoded and proposed on the
        // connection's event loop, answered there once the entry is applied. Range stays in a
        // task on the pool: a large one would hold the event loop's other connections.
        let kv = KVService(server: server)
        r.unary("/etcdserverpb.KV/Range") { (q: Etcdserverpb_RangeRequest) in
            if !q.serializable && server.isLearner { throw EtcdError.notSupportedForLearner }
            return try await kv.range(q)
        }
        r.unary("/etcdserverpb.KV/Put", callback: kv.put)
        r.unary("/etcdserverpb.KV/DeleteRange", callback: kv.deleteRange)
        r.unary("/etcdserverpb.KV/Txn", callback: kv.txn)
        r.unary("/etcdserverpb.KV/Compact") { (q: Etcdserverpb_CompactionRequest) in try await kv.compact(q) }

        let maintenance = MaintenanceService(server: server)
        r.unary("/etcdserverpb.Maintenance/Alarm") { (q: Etcdserverpb_AlarmRequest) in try await maintenance.alarm(q) }
        r.unary("/etcdserverpb.Maintenance/Status") { (q: Etcdserverpb_StatusRequest) in maintenance.status(q) }
        r.unary("/etcdserverpb.Maintenance/Defragment") { (q: Etcdserverpb_DefragmentRequest) in try await maintenance.defragment(q) }
        r.unary("/etcdserverpb.Maintenance/Hash") { (q: Etcdserverpb_HashRequest) in try maintenance.hash(q) }
        r.unary("/etcdserverpb.Maintenance/HashKV") { (q: Etcdserverpb_HashKVRequest) in try maintenance.hashKV(q) }
        r.unary("/etcdserverpb.Maintenance/MoveLeader") { (q: Etcdserverpb_MoveLeaderRequest) in try await maintenance.moveLeader(q) }
        r.stream("/etcdserverpb.Maintenance/Snapshot") { requests, responses in
            // Server streaming: the one (empty) request, then the database in chunks.
            for try await bytes in requests { _ = try decode(bytes, as: Etcdserverpb_SnapshotRequest.self) }
            try await maintenance.snapshot { try await responses.write($0) }
        }

        let cluster = ClusterService(server: server)
        r.unary("/etcdserverpb.Cluster/MemberList") { (q: Etcdserverpb_MemberListRequest) in cluster.memberList(q) }
        r.unary("/etcdserverpb.Cluster/MemberAdd") { (q: Etcdserverpb_MemberAddRequest) in try await cluster.memberAdd(q) }
        r.unary("/etcdserverpb.Cluster/MemberRemove") { (q: Etcdserverpb_MemberRemoveRequest) in try await cluster.memberRemove(q) }
        r.unary("/etcdserverpb.Cluster/MemberUpdate") { (q: Etcdserverpb_MemberUpdateRequest) in try await cluster.memberUpdate(q) }
        r.unary("/etcdserverpb.Cluster/MemberPromote") { (q: Etcdserverpb_MemberPromoteRequest) in try await cluster.memberPromote(q) }

        let lease = LeaseService(server: server)
        r.unary("/etcdserverpb.Lease/LeaseGrant") { (q: Etcdserverpb_LeaseGrantRequest) in try await lease.grant(q) }
        r.unary("/etcdserverpb.Lease/LeaseRevoke") { (q: Etcdserverpb_LeaseRevokeRequest) in try await lease.revoke(q) }
        r.unary("/etcdserverpb.Lease/LeaseTimeToLive") { (q: Etcdserverpb_LeaseTimeToLiveRequest) in try await lease.timeToLive(q) }
        r.unary("/etcdserverpb.Lease/LeaseLeases") { (q: Etcdserverpb_LeaseLeasesRequest) in try await lease.leases(q) }
        r.stream("/etcdserverpb.Lease/LeaseKeepAlive") { requests, responses in
            for try await bytes in requests {
                try await responses.write(try await lease.keepAlive(try decode(bytes, as: Etcdserverpb_LeaseKeepAliveRequest.self)))
            }
        }

        // etcd's Watch stream: requests (create, cancel, progress) are read while responses —
        // control answers and events of every watcher, in one order — are written. The
        // client's half-close ends only the requests: as etcd's recvLoop at EOF, the watchers
        // go on sending until the client cancels the stream.
        r.stream("/etcdserverpb.Watch/Watch") { requests, responses in
            let session = server.watchSession()
            defer { session.close() }
            try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    for await r in session.responses { try await responses.write(r) }
                    return true
                }
                group.addTask {
                    for try await bytes in requests {
                        switch try decode(bytes, as: Etcdserverpb_WatchRequest.self).requestUnion {
                        case .createRequest(let c)?: session.create(c)
                        case .cancelRequest(let c)?: session.cancel(c.watchID)
                        case .progressRequest?: session.progress()
                        case nil: break
                        }
                    }
                    return false
                }
                while let responsesEnded = try await group.next(), !responsesEnded {}
                group.cancelAll()
            }
        }
        return r
    }
}
