import EtcdProto
import EtcdServer
import GRPCCore
import GRPCProtobuf
import SwiftProtobuf

// grpc-swift adapters of the plain services. Methods not built yet answer Unimplemented.

extension EtcdError: RPCErrorConvertible {
    public var rpcErrorCode: RPCError.Code {
        Status.Code(rawValue: code.rawValue).flatMap { RPCError.Code($0) } ?? .unknown
    }

    public var rpcErrorMessage: String { message }
}

struct KVGRPC: Etcdserverpb_KV.SimpleServiceProtocol {
    let kv: KVService
    /// gRPC's receive limit: --max-request-bytes plus etcd's 512 KiB of gRPC overhead.
    let receiveLimit: Int

    func range(request: Etcdserverpb_RangeRequest, context: ServerContext) async throws -> Etcdserverpb_RangeResponse {
        try await kv.range(request)
    }

    func put(request: Etcdserverpb_PutRequest, context: ServerContext) async throws -> Etcdserverpb_PutResponse {
        try await kv.put(request)
    }

    func deleteRange(request: Etcdserverpb_DeleteRangeRequest, context: ServerContext) async throws -> Etcdserverpb_DeleteRangeResponse {
        try await kv.deleteRange(request)
    }

    func txn(request: Etcdserverpb_TxnRequest, context: ServerContext) async throws -> Etcdserverpb_TxnResponse {
        try await kv.txn(request)
    }

    func compact(request: Etcdserverpb_CompactionRequest, context: ServerContext) async throws -> Etcdserverpb_CompactionResponse {
        try await kv.compact(request)
    }
}

struct MaintenanceGRPC: Etcdserverpb_Maintenance.SimpleServiceProtocol {
    let maintenance: MaintenanceService

    func alarm(request: Etcdserverpb_AlarmRequest, context: ServerContext) async throws -> Etcdserverpb_AlarmResponse {
        try await maintenance.alarm(request)
    }

    func status(request: Etcdserverpb_StatusRequest, context: ServerContext) async throws -> Etcdserverpb_StatusResponse {
        maintenance.status(request)
    }

    func defragment(request: Etcdserverpb_DefragmentRequest, context: ServerContext) async throws -> Etcdserverpb_DefragmentResponse {
        try await maintenance.defragment(request)
    }

    func hash(request: Etcdserverpb_HashRequest, context: ServerContext) async throws -> Etcdserverpb_HashResponse {
        try maintenance.hash(request)
    }

    func hashKV(request: Etcdserverpb_HashKVRequest, context: ServerContext) async throws -> Etcdserverpb_HashKVResponse {
        try maintenance.hashKV(request)
    }

    func snapshot(
        request: Etcdserverpb_SnapshotRequest, response: RPCWriter<Etcdserverpb_SnapshotResponse>,
        context: ServerContext
    ) async throws {
        try await maintenance.snapshot { try await response.write($0) }
    }

    func moveLeader(request: Etcdserverpb_MoveLeaderRequest, context: ServerContext) async throws -> Etcdserverpb_MoveLeaderResponse {
        try await maintenance.moveLeader(request)
    }
}

/// etcd's Watch stream: requests (create, cancel, progress) are read while responses —
/// control answers and events of every watcher, in one order — are written.
struct WatchGRPC: Etcdserverpb_Watch.SimpleServiceProtocol {
    let server: EtcdServer

    func watch(
        request: RPCAsyncSequence<Etcdserverpb_WatchRequest, any Error>,
        response: RPCWriter<Etcdserverpb_WatchResponse>, context: ServerContext
    ) async throws {
        let session = server.watchSession()
        defer { session.close() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await r in session.responses { try await response.write(r) }
            }
            group.addTask {
                defer { session.close() }
                for try await r in request {
                    switch r.requestUnion {
                    case .createRequest(let c)?: session.create(c)
                    case .cancelRequest(let c)?: session.cancel(c.watchID)
                    case .progressRequest?: session.progress()
                    case nil: break
                    }
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }
}

struct LeaseGRPC: Etcdserverpb_Lease.SimpleServiceProtocol {
    let lease: LeaseService

    func leaseGrant(request: Etcdserverpb_LeaseGrantRequest, context: ServerContext) async throws -> Etcdserverpb_LeaseGrantResponse {
        try await lease.grant(request)
    }

    func leaseRevoke(request: Etcdserverpb_LeaseRevokeRequest, context: ServerContext) async throws -> Etcdserverpb_LeaseRevokeResponse {
        try await lease.revoke(request)
    }

    func leaseKeepAlive(
        request: RPCAsyncSequence<Etcdserverpb_LeaseKeepAliveRequest, any Error>,
        response: RPCWriter<Etcdserverpb_LeaseKeepAliveResponse>, context: ServerContext
    ) async throws {
        for try await r in request {
            try await response.write(try await lease.keepAlive(r))
        }
    }

    func leaseTimeToLive(request: Etcdserverpb_LeaseTimeToLiveRequest, context: ServerContext) async throws -> Etcdserverpb_LeaseTimeToLiveResponse {
        try await lease.timeToLive(request)
    }

    func leaseLeases(request: Etcdserverpb_LeaseLeasesRequest, context: ServerContext) async throws -> Etcdserverpb_LeaseLeasesResponse {
        try await lease.leases(request)
    }
}

struct ClusterGRPC: Etcdserverpb_Cluster.SimpleServiceProtocol {
    let cluster: ClusterService

    func memberList(request: Etcdserverpb_MemberListRequest, context: ServerContext) async throws -> Etcdserverpb_MemberListResponse {
        cluster.memberList(request)
    }

    func memberAdd(request: Etcdserverpb_MemberAddRequest, context: ServerContext) async throws -> Etcdserverpb_MemberAddResponse {
        try await cluster.memberAdd(request)
    }

    func memberRemove(request: Etcdserverpb_MemberRemoveRequest, context: ServerContext) async throws -> Etcdserverpb_MemberRemoveResponse {
        try await cluster.memberRemove(request)
    }

    func memberUpdate(request: Etcdserverpb_MemberUpdateRequest, context: ServerContext) async throws -> Etcdserverpb_MemberUpdateResponse {
        try await cluster.memberUpdate(request)
    }

    func memberPromote(request: Etcdserverpb_MemberPromoteRequest, context: ServerContext) async throws -> Etcdserverpb_MemberPromoteResponse {
        try await cluster.memberPromote(request)
    }
}

/// Decodes a protobuf request after applying gRPC-Go's receive limit with its exact error,
/// so that a client sees what etcd's gRPC server says for an oversized request.
struct SizeLimitedDeserializer<Message: SwiftProtobuf.Message>: MessageDeserializer {
    let limit: Int

    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> Message {
        let n = serializedMessageBytes.count
        if n > limit {
            throw RPCError(code: .resourceExhausted, message: "grpc: received message larger than max (\(n) vs. \(limit))")
        }
        return try ProtobufDeserializer<Message>().deserialize(serializedMessageBytes)
    }
}

extension KVGRPC {
    /// The generated registration, with etcd's receive limit on every KV request.
    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        register(Etcdserverpb_KV.Method.Range.descriptor, &router) { try await self.range(request: $0, context: $1) }
        register(Etcdserverpb_KV.Method.Put.descriptor, &router) { try await self.put(request: $0, context: $1) }
        register(Etcdserverpb_KV.Method.DeleteRange.descriptor, &router) { try await self.deleteRange(request: $0, context: $1) }
        register(Etcdserverpb_KV.Method.Txn.descriptor, &router) { try await self.txn(request: $0, context: $1) }
        register(Etcdserverpb_KV.Method.Compact.descriptor, &router) { try await self.compact(request: $0, context: $1) }
    }

    private func register<Transport: ServerTransport, Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ method: MethodDescriptor, _ router: inout RPCRouter<Transport>,
        _ handler: @escaping @Sendable (StreamingServerRequest<Request>, ServerContext) async throws -> StreamingServerResponse<Response>
    ) {
        router.registerHandler(
            forMethod: method,
            deserializer: SizeLimitedDeserializer<Request>(limit: receiveLimit),
            serializer: ProtobufSerializer<Response>(),
            handler: handler)
    }
}
