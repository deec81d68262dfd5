import EtcdProto
import EtcdServer
import Foundation
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import Synchronization

/// The client-facing server of one listen URL: etcd's gRPC services and HTTP endpoints on
/// one port. Each connection starts behind a `ProtocolSwitch`; HTTP/2 goes on to
/// swift-nio-http2, where every stream is one `GRPCCall` of the connection's
/// `GRPCConnectionHandler`.
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

    private let host: String
    private let port: Int
    private let routes: GRPCRoutes
    private let http: HTTPEndpoints
    private let keepalive: GRPCConnectionHandler.Keepalive
    private let receiveLimit: Int
    private let listener: EventLoopPromise<any Channel>
    private let state = Mutex(State())

    private struct State {
        var stopped = false
        var listening: (any Channel)?
        var connections: [ObjectIdentifier: any Channel] = [:]
    }

    public init(server: EtcdServer, host: String, port: Int, options: Options = Options(),
                metrics: MetricsEndpoint = MetricsEndpoint()) {
        self.host = host
        self.port = port
        routes = .etcd(server)
        http = Self.httpEndpoints(server, metrics)
        keepalive = .init(
            interval: TimeAmount(options.keepaliveInterval), timeout: TimeAmount(options.keepaliveTimeout),
            minTime: TimeAmount(options.keepaliveMinTime))
        // gRPC-Go's receive limit, which etcd sets on all its services.
        receiveLimit = server.config.maxRequestBytes + Self.grpcOverheadBytes
        listener = MultiThreadedEventLoopGroup.singleton.any().makePromise()
    }

    /// The HTTP/2 settings and limits of a client connection.
    private static let connectionConfiguration = {
        var config = NIOHTTP2Handler.ConnectionConfiguration()
        // etcd allows a connection any number of concurrent streams (grpc.MaxConcurrentStreams
        // (math.MaxUint32)); clients like etcdctl check perf open 500-1,000 on one connection.
        config.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: Int(UInt32.max)),
            HTTP2Setting(parameter: .initialWindowSize, value: streamWindow),
            HTTP2Setting(parameter: .maxFrameSize, value: 1 << 14),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 16 << 10),
        ]
        config.targetWindowSize = 16 << 20
        // grpc-go clients send a BDP ping per few DATA frames they receive: far below this.
        config.controlFrameRateLimit.maximumCount = 10_000
        config.controlFrameRateLimit.windowLength = .milliseconds(100)
        return config
    }()

    /// Each stream's receive window (announced as SETTINGS_INITIAL_WINDOW_SIZE).
    private static let streamWindow = 1 << 20

    private static let streamConfiguration = {
        var config = NIOHTTP2Handler.StreamConfiguration()
        // Clients cancel calls with RST_STREAM (clientv3's KeepAliveOnce, every cancelled
        // context): as gRPC-Go, allow any number of them.
        config.streamResetFrameRateLimit.maximumCount = 10_000
        config.streamResetFrameRateLimit.windowLength = .milliseconds(100)
        return config
    }()

    /// Serves until `shutDown()`; throws if the address cannot be bound.
    public func serve() async throws {
        let http = self.http
        let settings = GRPCConnectionHandler.Settings(
            routes: routes, receiveLimit: receiveLimit, keepalive: keepalive,
            connectionWindow: Self.connectionConfiguration.targetWindowSize, streamWindow: Self.streamWindow)
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [weak self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    try ops.addHandler(FlushCoalescer())
                    try ops.addHandler(ProtocolSwitch(http: http))
                    // No stream multiplexer: frames reach the connection's handler with their
                    // stream ID, and each call is a plain object there.
                    try ops.addHandler(NIOHTTP2Handler(
                        mode: .server, connectionConfiguration: Self.connectionConfiguration,
                        streamConfiguration: Self.streamConfiguration))
                    try ops.addHandler(GRPCConnectionHandler(settings: settings, eventLoop: channel.eventLoop))
                    self?.track(channel)
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            listener.fail(error)
            throw error
        }
        let stopped = state.withLock { s in
            s.listening = channel
            return s.stopped
        }
        listener.succeed(channel)
        if stopped { channel.close(promise: nil) }
        try? await channel.closeFuture.get()
    }

    private func track(_ connection: any Channel) {
        let id = ObjectIdentifier(connection)
        let stopped = state.withLock { s in
            if !s.stopped { s.connections[id] = connection }
            return s.stopped
        }
        if stopped { return connection.close(promise: nil) }
        connection.closeFuture.whenComplete { [weak self] _ in
            _ = self?.state.withLock { $0.connections.removeValue(forKey: id) }
        }
    }

    /// The bound port, once listening (nil if binding failed or the server stopped).
    public var boundPort: Int? {
        get async {
            guard let channel = try? await listener.futureResult.get(), channel.isActive else { return nil }
            return channel.localAddress?.port
        }
    }

    /// Stops accepting and closes every connection (with its calls).
    public func shutDown() {
        let (listening, connections) = state.withLock { s in
            s.stopped = true
            defer { s.connections = [:] }
            return (s.listening, Array(s.connections.values))
        }
        listening?.close(promise: nil)
        for c in connections { c.close(promise: nil) }
    }

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
