import EtcdProto
import EtcdServer
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import NIOCore
import NIOHTTP1
import NIOPosix

/// The client-facing server of one listen URL: etcd's gRPC services and HTTP endpoints.
public final class ClientServer: Sendable {
    public struct Options: Sendable {
        /// etcd's --grpc-keepalive-min-time: clients may ping this often while a stream is open.
        public var keepaliveMinTime: Duration = .seconds(5)
        /// etcd's --grpc-keepalive-interval and --grpc-keepalive-timeout.
        public var keepaliveInterval: Duration = .seconds(2 * 60 * 60)
        public var keepaliveTimeout: Duration = .seconds(20)

        public init() {}
    }

    /// etcd lets gRPC accept this much more than --max-request-bytes, so that a request
    /// just over the limit reaches the server and gets "etcdserver: request is too large".
    static let grpcOverheadBytes = 512 * 1024

    private let grpc: GRPCServer<HTTP2ServerTransport.Custom<ClientListenerFactory>>
    private let transport: HTTP2ServerTransport.Custom<ClientListenerFactory>

    public init(server: EtcdServer, host: String, port: Int, options: Options = Options(),
                metrics: MetricsEndpoint = MetricsEndpoint()) {
        let factory = ClientListenerFactory(
            host: host, port: port, http: Self.httpEndpoints(server, metrics),
            eventLoopGroup: MultiThreadedEventLoopGroup.singletonMultiThreadedEventLoopGroup)
        var config = HTTP2ServerTransport.Custom<ClientListenerFactory>.Config.defaults
        config.connection.keepalive = .init(
            time: options.keepaliveInterval, timeout: options.keepaliveTimeout,
            clientBehavior: .init(minPingIntervalWithoutCalls: options.keepaliveMinTime, allowWithoutCalls: false))
        // etcd's gRPC limit is enforced with gRPC-Go's error by the KV deserializers; the
        // transport's own limit (which resets the stream) only stops much larger messages.
        let receiveLimit = server.config.maxRequestBytes + Self.grpcOverheadBytes
        config.rpc.maxRequestPayloadSize = max(4 * receiveLimit, 16 << 20)
        // etcd allows a connection any number of concurrent streams (grpc.MaxConcurrentStreams
        // (math.MaxUint32)). Unset, swift-nio-http2 holds clients to 100 without telling them,
        // so a client with more (etcdctl check perf: 500-1,000 on one connection; many
        // watch streams) had streams refused and retried: requests waited 4-14 s.
        config.http2.maxConcurrentStreams = Int(UInt32.max)
        transport = HTTP2ServerTransport.Custom(listenerFactory: factory, config: config)
        grpc = GRPCServer(
            transport: transport,
            services: [
                KVGRPC(kv: KVService(server: server), receiveLimit: receiveLimit),
                MaintenanceGRPC(maintenance: MaintenanceService(server: server)),
                ClusterGRPC(cluster: ClusterService(server: server)),
                LeaseGRPC(lease: LeaseService(server: server)),
                WatchGRPC(server: server),
            ],
            interceptors: [RequestGuard(server: server)])
    }

    /// Serves until `shutDown()`; throws if the address cannot be bound.
    public func serve() async throws { try await grpc.serve() }

    /// The bound port, once listening (nil if binding failed or the server stopped).
    public var boundPort: Int? {
        get async {
            let address = await transport.listeningAddress
            return address?.ipv4?.port ?? address?.ipv6?.port
        }
    }

    public func shutDown() { grpc.beginGracefulShutdown() }

    static func httpEndpoints(_ server: EtcdServer, _ metrics: MetricsEndpoint) -> HTTPEndpoints {
        let gateway = JSONGateway(server: server)
        return HTTPEndpoints { method, uri, body in
            let path = uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? uri
            switch path {
            case "/version":
                return .init(body: #"{"etcdserver":"\#(EtcdServer.etcdVersion)","etcdcluster":"\#(majorMinorZero(EtcdServer.clusterVersion))"}"#)
            case "/metrics":
                return .init(contentType: "text/plain; version=0.0.4; charset=utf-8", body: metrics.render(server))
            case "/swetcd/encryption/status":
                // swetcd's own: what `swetcd encryption status` prints.
                do {
                    let status = try server.encryptionStatus()
                    let enc = JSONEncoder()
                    enc.outputFormatting = [.sortedKeys]
                    return .init(contentType: "application/json", body: String(decoding: try enc.encode(status), as: UTF8.self))
                } catch {
                    return .init(status: .internalServerError, contentType: "text/plain; charset=utf-8", body: "\(error)\n")
                }
            case "/health":
                // etcd writes it without a content type; Go's sniffing makes it text/plain.
                return .init(contentType: "text/plain; charset=utf-8", body: #"{"health":"true"}"#)
            default:
                if let r = await gateway.handle(method: method, path: path, body: body) { return r }
                return .init(status: .notFound, contentType: "text/plain; charset=utf-8", body: "404 page not found\n")
            }
        }
    }

    private static func majorMinorZero(_ v: String) -> String {
        let parts = v.split(separator: ".")
        return parts.count >= 2 ? "\(parts[0]).\(parts[1]).0" : v
    }
}

/// etcd's checks in front of every RPC (its unary and stream interceptors): a learner serves
/// Status and serializable Range only, everything else gets "etcdserver: rpc not supported
/// for learner"; a client that asks for a leader (metadata `hasleader: true`, which clientv3
/// sets for watches and `WithRequireLeader`) gets "etcdserver: no leader" without one.
struct RequestGuard: ServerInterceptor {
    let server: EtcdServer

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        if request.metadata[stringValues: "hasleader"].contains("true") && server.leaderID == 0 {
            throw EtcdError.noLeader
        }
        guard server.isLearner else { return try await next(request, context) }
        switch context.descriptor.method {
        case "Status":
            return try await next(request, context)
        case "Range":
            var request = request
            let messages = request.messages
            request.messages = RPCAsyncSequence(wrapping: messages.map { m in
                if let r = m as? Etcdserverpb_RangeRequest, !r.serializable { throw EtcdError.notSupportedForLearner }
                return m
            })
            return try await next(request, context)
        default:
            throw EtcdError.notSupportedForLearner
        }
    }
}
