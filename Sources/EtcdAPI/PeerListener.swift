import EtcdProto
import EtcdServer
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SwiftProtobuf

/// One peer URL's listener (etcd's peer handler): `POST /raft` (pipeline messages),
/// `GET /members`, `GET /version`, `GET /raft/probing`, and the forwarding endpoints
/// `POST /leases`, `POST /leases/internal`, `POST /members/promote/<id>`.
public final class PeerListener: Sendable {
    private let channel: any Channel

    /// Binds `host:port`; messages go to `transport.server` once the member runs.
    public static func bind(host: String, port: Int, transport: HTTPPeerTransport) async throws -> PeerListener {
        let endpoints = Self.endpoints(transport)
        let channel = try await ServerBootstrap(group: transport.group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try ch.pipeline.syncOperations.addHandler(HTTP1Handler(endpoints: endpoints, maxBody: 1 << 31))
                }
            }
            .bind(host: host, port: port).get()
        return PeerListener(channel: channel)
    }

    private init(channel: any Channel) { self.channel = channel }

    public var boundPort: Int? { channel.localAddress?.port }

    public func close() { channel.close(promise: nil) }

    static func endpoints(_ transport: HTTPPeerTransport) -> HTTPEndpoints {
        HTTPEndpoints(head: { head, body in
            guard let server = transport.server else {
                return .init(status: .serviceUnavailable, contentType: "text/plain; charset=utf-8", body: "etcdserver: server not started\n")
            }
            let cid = [("X-Etcd-Cluster-ID", String(server.clusterID, radix: 16))]
            if transport.isolated.load(ordering: .relaxed) {
                return text(.serviceUnavailable, "partitioned (fault hook)", cid)
            }
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            switch (head.method, path) {
            case (.POST, "/raft"):
                // etcd: a message from another cluster is refused with 412.
                if let got = head.headers.first(name: "X-Etcd-Cluster-ID"), got != String(server.clusterID, radix: 16) {
                    return text(.preconditionFailed, "cluster ID mismatch", cid)
                }
                guard let m = try? Raftpb_Message(serializedBytes: body) else {
                    return text(.badRequest, "error unmarshalling raft message", cid)
                }
                server.receive(m)
                return .init(status: .noContent, contentType: "", bytes: [], headers: cid)
            case (.POST, "/raft/snapshot"):
                if let got = head.headers.first(name: "X-Etcd-Cluster-ID"), got != String(server.clusterID, radix: 16) {
                    return text(.preconditionFailed, "cluster ID mismatch", cid)
                }
                guard let (m, db) = SnapshotWire.decode(body), m.type == .msgSnap else {
                    return text(.badRequest, "error reading raft message", cid)
                }
                do {
                    try server.receiveSnapshot(m, db: db)
                } catch {
                    return text(.internalServerError, "error saving snapshot: \(error)", cid)
                }
                return .init(status: .noContent, contentType: "", bytes: [], headers: cid)
            case (.GET, "/members"):
                return .init(contentType: "application/json", bytes: Array(PeerMembersJSON.encode(server.members).utf8), headers: cid)
            case (.GET, "/version"):
                return .init(body: #"{"etcdserver":"\#(EtcdServer.etcdVersion)","etcdcluster":"3.4.0"}"#)
            case (.GET, "/swetcd/version"):
                // swetcd's own: how members tell each other apart from real etcd (encryption
                // at rest needs every member to be swetcd).
                return .init(body: #"{"swetcd":true}"#)
            case (.GET, "/raft/probing"):
                return .init(body: #"{"health":"true"}"#)
            case (.POST, "/leases"):
                guard let r = try? Etcdserverpb_LeaseKeepAliveRequest(serializedBytes: body) else {
                    return text(.badRequest, "error unmarshalling request", cid)
                }
                return await answer(cid) { () async throws(EtcdError) in try server.leaseRenewOnLeader(r.id) }
            case (.POST, "/leases/internal"):
                guard let r = try? Leasepb_LeaseInternalRequest(serializedBytes: body) else {
                    return text(.badRequest, "error unmarshalling request", cid)
                }
                return await answer(cid) { () async throws(EtcdError) in
                    guard server.leaderID == server.memberID else { throw EtcdError.notLeader }
                    var resp = Leasepb_LeaseInternalResponse()
                    resp.leaseTimeToLiveResponse = try await server.leaseTimeToLive(r.leaseTimeToLiveRequest)
                    return resp
                }
            case (.POST, _) where path.hasPrefix("/members/promote/"):
                guard let id = UInt64(path.dropFirst("/members/promote/".count)) else {
                    return text(.badRequest, "bad member ID", cid)
                }
                return await answer(cid) { () async throws(EtcdError) in
                    guard server.leaderID == server.memberID else { throw EtcdError.notLeader }
                    _ = try await server.memberPromote(id: id)
                    return Etcdserverpb_MemberPromoteResponse()
                }
            default:
                return text(.notFound, "404 page not found", cid)
            }
        })
    }

    private static func text(_ status: HTTPResponseStatus, _ message: String, _ headers: [(String, String)]) -> HTTPEndpoints.Response {
        .init(status: status, contentType: "text/plain; charset=utf-8", bytes: Array((message + "\n").utf8), headers: headers)
    }

    private static func answer<M: SwiftProtobuf.Message>(
        _ headers: [(String, String)], _ body: () async throws(EtcdError) -> M
    ) async -> HTTPEndpoints.Response {
        do {
            let m = try await body()
            return .init(contentType: "application/protobuf", bytes: (try? m.serializedBytes()) ?? [], headers: headers)
        } catch {
            return text(PeerErrors.status(error), error.message, headers)
        }
    }
}
