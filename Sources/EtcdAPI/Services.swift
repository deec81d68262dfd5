import EtcdProto
import EtcdServer
import Foundation

// The client services as plain request → response functions, independent of any gRPC
// library; GRPCServices.swift adapts them to grpc-swift. Each does what etcd's
// `api/v3rpc` does: check the request, hand it to the member, fill the response header.

public struct KVService: Sendable {
    let server: EtcdServer

    public init(server: EtcdServer) { self.server = server }

    public func range(_ r: Etcdserverpb_RangeRequest) async throws(EtcdError) -> Etcdserverpb_RangeResponse {
        try Validation.check(r)
        var resp = try await server.range(r)
        server.fill(&resp.header)
        return resp
    }

    // The writes take a callback (the gRPC server calls them on the event loop, without a
    // task; `done` is called once); the async forms wait for the same calls.

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
        let server = self.server
        // etcd's quotaKVServer wraps the KV server: the quota is checked first.
        server.checkQuota(put: r, done) {
            do throws(EtcdError) { try Validation.check(r) } catch { return done(.failure(error)) }
            server.put(r, filling(done, \.header))
        }
    }

    public func deleteRange(_ r: Etcdserverpb_DeleteRangeRequest, _ done: @escaping @Sendable (Result<Etcdserverpb_DeleteRangeResponse, EtcdError>) -> Void) {
        do throws(EtcdError) { try Validation.check(r) } catch { return done(.failure(error)) }
        server.deleteRange(r, filling(done, \.header))
    }

    public func txn(_ r: Etcdserverpb_TxnRequest, _ done: @escaping @Sendable (Result<Etcdserverpb_TxnResponse, EtcdError>) -> Void) {
        let server = self.server
        server.checkQuota(txn: r, done) {
            do throws(EtcdError) { try Validation.check(r, maxTxnOps: server.config.maxTxnOps) } catch { return done(.failure(error)) }
            server.txn(r, filling(done, \.header))
        }
    }

    /// `done`, given the response with its header filled.
    private func filling<R>(
        _ done: @escaping @Sendable (Result<R, EtcdError>) -> Void, _ header: WritableKeyPath<R, Etcdserverpb_ResponseHeader> & Sendable
    ) -> @Sendable (Result<R, EtcdError>) -> Void {
        let server = self.server
        return { result in done(result.map { var resp = $0; server.fill(&resp[keyPath: header]); return resp }) }
    }

    public func compact(_ r: Etcdserverpb_CompactionRequest) async throws(EtcdError) -> Etcdserverpb_CompactionResponse {
        var resp = try await server.compact(r)
        server.fill(&resp.header)
        return resp
    }
}

public struct MaintenanceService: Sendable {
    let server: EtcdServer

    public init(server: EtcdServer) { self.server = server }

    public func status(_ r: Etcdserverpb_StatusRequest) -> Etcdserverpb_StatusResponse {
        var resp = Etcdserverpb_StatusResponse()
        server.fill(&resp.header)
        let st = server.status()
        resp.version = EtcdServer.etcdVersion
        resp.leader = st.leader
        resp.raftIndex = st.raftIndex
        resp.raftAppliedIndex = st.raftAppliedIndex
        resp.raftTerm = st.raftTerm
        resp.dbSize = st.dbSize
        resp.dbSizeInUse = st.dbSizeInUse
        resp.isLearner = st.isLearner
        if st.leader == 0 { resp.errors.append(EtcdError.noLeader.message) }
        resp.errors += st.alarms.map(EtcdServer.describe)
        return resp
    }

    /// etcd answers Alarm without a response header.
    public func alarm(_ r: Etcdserverpb_AlarmRequest) async throws(EtcdError) -> Etcdserverpb_AlarmResponse {
        try await server.alarm(r)
    }

    /// The backend file as etcd streams it: chunks with the bytes remaining after each, then
    /// the sha256 with remaining_bytes 0 (no response header, as etcd).
    public func snapshot(_ send: (Etcdserverpb_SnapshotResponse) async throws -> Void) async throws {
        let (size, pieces) = try server.backendSnapshot()
        var sent: Int64 = 0
        for try await piece in pieces {
            var resp = Etcdserverpb_SnapshotResponse()
            switch piece {
            case .chunk(let data):
                sent += Int64(data.count)
                resp.remainingBytes = UInt64(max(0, size - sent))
                resp.blob = data
            case .checksum(let sha):
                resp.blob = sha
            }
            try await send(resp)
        }
    }

    public func hash(_ r: Etcdserverpb_HashRequest) throws(EtcdError) -> Etcdserverpb_HashResponse {
        try server.hash()
    }

    public func hashKV(_ r: Etcdserverpb_HashKVRequest) throws(EtcdError) -> Etcdserverpb_HashKVResponse {
        try server.hashKV(r)
    }

    /// etcd answers MoveLeader with an empty response once the transferee leads.
    public func moveLeader(_ r: Etcdserverpb_MoveLeaderRequest) async throws(EtcdError) -> Etcdserverpb_MoveLeaderResponse {
        try await server.moveLeader(to: r.targetID)
        return Etcdserverpb_MoveLeaderResponse()
    }

    /// etcd answers Defragment with an empty response (no header).
    public func defragment(_ r: Etcdserverpb_DefragmentRequest) async throws(EtcdError) -> Etcdserverpb_DefragmentResponse {
        try await server.defragment()
        return Etcdserverpb_DefragmentResponse()
    }
}

/// etcd's LeaseServer: grant and revoke through the log, keepalives on the leader.
public struct LeaseService: Sendable {
    let server: EtcdServer

    public init(server: EtcdServer) { self.server = server }

    public func grant(_ r: Etcdserverpb_LeaseGrantRequest) async throws(EtcdError) -> Etcdserverpb_LeaseGrantResponse {
        try await server.leaseGrant(r)
    }

    public func revoke(_ r: Etcdserverpb_LeaseRevokeRequest) async throws(EtcdError) -> Etcdserverpb_LeaseRevokeResponse {
        try await server.leaseRevoke(r)
    }

    public func keepAlive(_ r: Etcdserverpb_LeaseKeepAliveRequest) async throws(EtcdError) -> Etcdserverpb_LeaseKeepAliveResponse {
        try await server.leaseRenew(r.id)
    }

    public func timeToLive(_ r: Etcdserverpb_LeaseTimeToLiveRequest) async throws(EtcdError) -> Etcdserverpb_LeaseTimeToLiveResponse {
        try await server.leaseTimeToLive(r)
    }

    public func leases(_ r: Etcdserverpb_LeaseLeasesRequest) async throws(EtcdError) -> Etcdserverpb_LeaseLeasesResponse {
        try await server.leaseLeases()
    }
}

public struct ClusterService: Sendable {
    let server: EtcdServer

    public init(server: EtcdServer) { self.server = server }

    public func memberList(_ r: Etcdserverpb_MemberListRequest) -> Etcdserverpb_MemberListResponse {
        var resp = Etcdserverpb_MemberListResponse()
        resp.header = header()
        resp.members = server.members.map(Self.proto)
        return resp
    }

    public func memberAdd(_ r: Etcdserverpb_MemberAddRequest) async throws(EtcdError) -> Etcdserverpb_MemberAddResponse {
        let (added, members) = try await server.memberAdd(peerURLs: r.peerUrls, isLearner: r.isLearner)
        var resp = Etcdserverpb_MemberAddResponse()
        resp.header = header()
        resp.member = Self.proto(added)
        resp.members = members.map(Self.proto)
        return resp
    }

    public func memberRemove(_ r: Etcdserverpb_MemberRemoveRequest) async throws(EtcdError) -> Etcdserverpb_MemberRemoveResponse {
        let members = try await server.memberRemove(id: r.id)
        var resp = Etcdserverpb_MemberRemoveResponse()
        resp.header = header()
        resp.members = members.map(Self.proto)
        return resp
    }

    public func memberUpdate(_ r: Etcdserverpb_MemberUpdateRequest) async throws(EtcdError) -> Etcdserverpb_MemberUpdateResponse {
        let members = try await server.memberUpdate(id: r.id, peerURLs: r.peerUrls)
        var resp = Etcdserverpb_MemberUpdateResponse()
        resp.header = header()
        resp.members = members.map(Self.proto)
        return resp
    }

    public func memberPromote(_ r: Etcdserverpb_MemberPromoteRequest) async throws(EtcdError) -> Etcdserverpb_MemberPromoteResponse {
        let members = try await server.memberPromote(id: r.id)
        var resp = Etcdserverpb_MemberPromoteResponse()
        resp.header = header()
        resp.members = members.map(Self.proto)
        return resp
    }

    /// etcd's ClusterServer header: IDs and term, no revision.
    private func header() -> Etcdserverpb_ResponseHeader {
        var h = Etcdserverpb_ResponseHeader()
        h.clusterID = server.clusterID
        h.memberID = server.memberID
        h.raftTerm = server.raftTerm
        return h
    }

    static func proto(_ m: Member) -> Etcdserverpb_Member {
        var pm = Etcdserverpb_Member()
        pm.id = m.id
        pm.name = m.name
        pm.peerUrls = m.peerURLs
        pm.clientUrls = m.clientURLs
        pm.isLearner = m.isLearner
        return pm
    }
}
