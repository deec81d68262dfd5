import EtcdProto
import EtcdServer
import Foundation
import NIOHTTP1
import SwiftProtobuf

/// etcd's grpc-gateway on the client port: POST /v3/<service>/<method> (also under /v3beta)
/// with the request as JSON, answered with the response as JSON — proto field names, 64-bit
/// integers as strings, bytes in base64, zero values left out — or an error body
/// {"error","message","code"} with grpc-gateway's HTTP status for the gRPC code. The same
/// services (and checks) as gRPC.
struct JSONGateway: Sendable {
    let kv: KVService
    let maintenance: MaintenanceService
    let cluster: ClusterService

    init(server: EtcdServer) {
        kv = KVService(server: server)
        maintenance = MaintenanceService(server: server)
        cluster = ClusterService(server: server)
    }

    typealias Route = @Sendable (JSONGateway, [UInt8]) async throws -> String

    /// etcd 3.4's gateway paths (rpc.proto's google.api.http annotations) that swetcd serves.
    /// /v3/maintenance/hash is Hash: grpc-gateway matches the first registration, and Hash is
    /// registered before HashKV.
    static let routes: [String: Route] = [
        "/v3/kv/range": { g, b in try encode(await g.kv.range(decode(b))) },
        "/v3/kv/put": { g, b in try encode(await g.kv.put(decode(b))) },
        "/v3/kv/deleterange": { g, b in try encode(await g.kv.deleteRange(decode(b))) },
        "/v3/kv/txn": { g, b in try encode(await g.kv.txn(decode(b))) },
        "/v3/kv/compaction": { g, b in try encode(await g.kv.compact(decode(b))) },
        "/v3/maintenance/alarm": { g, b in try encode(await g.maintenance.alarm(decode(b))) },
        "/v3/maintenance/status": { g, b in
            let _: Etcdserverpb_StatusRequest = try decode(b)
            return try encode(g.maintenance.status(Etcdserverpb_StatusRequest()))
        },
        "/v3/maintenance/defragment": { g, b in try encode(await g.maintenance.defragment(decode(b))) },
        "/v3/maintenance/hash": { g, b in try encode(g.maintenance.hash(decode(b))) },
        "/v3/cluster/member/list": { g, b in
            let _: Etcdserverpb_MemberListRequest = try decode(b)
            return try encode(g.cluster.memberList(Etcdserverpb_MemberListRequest()))
        },
    ]

    /// nil when the path is not the gateway's.
    func handle(method: HTTPMethod, path: String, body: [UInt8]) async -> HTTPEndpoints.Response? {
        var p = path
        if p.hasPrefix("/v3beta/") { p = "/v3/" + p.dropFirst("/v3beta/".count) }
        guard let route = Self.routes[p] else { return nil }
        guard method == .POST else {
            return .init(status: .methodNotAllowed, contentType: "text/plain; charset=utf-8", body: "Method Not Allowed\n")
        }
        do {
            return .init(body: try await route(self, body))
        } catch let e as EtcdError {
            return Self.error(e)
        } catch let e as GatewayDecodingError {
            return Self.error(EtcdError(.invalidArgument, e.message))
        } catch {
            return Self.error(EtcdError(.internal, "\(error)"))
        }
    }

    struct GatewayDecodingError: Error { let message: String }

    /// jsonpb as etcd's gateway configures it: unknown fields ignored, an empty body is an
    /// empty request.
    static func decode<M: SwiftProtobuf.Message>(_ body: [UInt8]) throws -> M {
        if body.allSatisfy({ $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }) { return M() }
        var options = JSONDecodingOptions()
        options.ignoreUnknownFields = true
        do {
            return try M(jsonUTF8Bytes: body, options: options)
        } catch {
            throw GatewayDecodingError(message: Self.describe(error))
        }
    }

    static func encode<M: SwiftProtobuf.Message>(_ m: M) throws -> String {
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        return try m.jsonString(options: options)
    }

    /// Go's encoding/json says "unexpected EOF" for a truncated body; other malformed JSON
    /// gets SwiftProtobuf's description.
    static func describe(_ error: Error) -> String {
        if let e = error as? JSONDecodingError, case .truncated = e { return "unexpected EOF" }
        return "\(error)"
    }

    /// grpc-gateway v1's HTTPStatusFromCode and error body.
    static func error(_ e: EtcdError) -> HTTPEndpoints.Response {
        let status: HTTPResponseStatus
        switch e.code {
        case .canceled: status = .requestTimeout
        case .unknown, .internal, .dataLoss: status = .internalServerError
        case .invalidArgument, .failedPrecondition, .outOfRange: status = .badRequest
        case .deadlineExceeded: status = .gatewayTimeout
        case .notFound: status = .notFound
        case .alreadyExists, .aborted: status = .conflict
        case .permissionDenied: status = .forbidden
        case .unauthenticated: status = .unauthorized
        case .resourceExhausted: status = .tooManyRequests
        case .unimplemented: status = .notImplemented
        case .unavailable: status = .serviceUnavailable
        }
        let msg = JSONText.quote(e.message)
        return .init(status: status, body: #"{"error":\#(msg),"message":\#(msg),"code":\#(e.code.rawValue)}"#)
    }
}
