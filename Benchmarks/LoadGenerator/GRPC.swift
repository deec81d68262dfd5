// A small gRPC client on swift-nio-http2: just what the load generator needs (unary calls
// and bidirectional streams of protobuf messages over plaintext HTTP/2, no compression).
//
// grpc-swift's client can't be used against etcd: grpc-go sends a BDP-estimation PING after
// nearly every DATA frame it receives, and NIOHTTP2Handler's default DoS limit (200 control
// frames per 30 s), which grpc-swift-nio-transport doesn't let us configure, closes the
// connection every ~200 requests. Here the limit is raised far above any real rate.
import Foundation
import GRPCWire
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import SwiftProtobuf
import Synchronization

/// A call that ended with a non-OK gRPC status; a failed connection or stream is reported as
/// `unavailable`, as gRPC does.
struct GRPCError: Error, CustomStringConvertible {
    var code: Int
    var message: String

    static let unknown = 2
    static let internalError = 13
    static let unavailable = 14

    /// The names of the status codes, as grpc-swift spells them.
    static let codeNames = [
        "ok", "cancelled", "unknown", "invalidArgument", "deadlineExceeded", "notFound", "alreadyExists",
        "permissionDenied", "resourceExhausted", "failedPrecondition", "aborted", "outOfRange", "unimplemented",
        "internalError", "unavailable", "dataLoss", "unauthenticated",
    ]

    var description: String {
        "\(code >= 0 && code < Self.codeNames.count ? Self.codeNames[code] : "code \(code)"): \(message)"
    }
}

/// One HTTP/2 connection to a gRPC server, carrying any number of concurrent calls, each on
/// its own stream. It connects on first use, and again on the first call after it closed;
/// after a failed attempt, calls fail at once for a second (as gRPC's transient failure)
/// before the next one: a stopped or restarted server costs failed calls, not the run.
final class GRPCConnection: Sendable {
    private struct Connected: Sendable {
        let channel: any Channel
        let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    }

    private enum State: Sendable {
        case idle
        case connecting(EventLoopFuture<Connected>)
        case connected(Connected)
        case failed(GRPCError, retryAt: ContinuousClock.Instant)
    }

    private let host: String
    private let port: Int
    private let authority: String
    private let state = Mutex<State>(.idle)

    init(host: String, port: Int) {
        self.host = host
        self.port = port
        authority = "\(host):\(port)"
    }

    /// The server's pings (grpc-go sends one per few DATA frames it receives) must never
    /// trip the control-frame DoS limit: 100,000 per 100 ms is far above any possible rate,
    /// and keeps the limiter's timestamp ring (allocated at its full count) under 1 MB.
    /// Large flow-control windows, so window updates stay rare.
    private static let connectionConfiguration = {
        var config = NIOHTTP2Handler.ConnectionConfiguration()
        config.initialSettings = nioDefaultSettings + [HTTP2Setting(parameter: .initialWindowSize, value: 4 << 20)]
        config.targetWindowSize = 64 << 20
        config.controlFrameRateLimit.maximumCount = 100_000
        config.controlFrameRateLimit.windowLength = .milliseconds(100)
        return config
    }()

    private static let streamConfiguration = {
        var config = NIOHTTP2Handler.StreamConfiguration()
        config.targetWindowSize = 4 << 20
        return config
    }()

    /// A unary call: sends `request`, returns the one response message.
    func unary<Response: Message>(_ path: String, _ request: some Message, as _: Response.Type) async throws -> Response {
        let frame = try ProtobufBytes.frame(request)
        let connected = try await connection()
        let response = connected.channel.eventLoop.makePromise(of: ByteBuffer.self)
        startCall(on: connected, path, [frame], endStream: true, .unary(response))
        return try Response(serializedBytes: ProtobufBytes(try await response.futureResult.get()))
    }

    /// A bidirectional-streaming call that sends `requests` once open and keeps its side open;
    /// `responses` yields the server's messages until it ends the call. Cancel it when done.
    func stream<Response: Message>(
        _ path: String, _ requests: [some Message], as _: Response.Type
    ) async throws -> StreamingCall<Response> {
        let frames = try requests.map { try ProtobufBytes.frame($0) }
        let (messages, continuation) = AsyncThrowingStream.makeStream(of: ByteBuffer.self)
        startCall(on: try await connection(), path, frames, endStream: false, .stream(continuation))
        return StreamingCall(messages: messages, continuation: continuation)
    }

    func close() {
        state.withLock { state in
            if case .connected(let connected) = state { connected.channel.close(promise: nil) }
            state = .idle
        }
    }

    private func startCall(
        on connected: Connected, _ path: String, _ frames: [ByteBuffer], endStream: Bool, _ receiver: CallHandler.Receiver
    ) {
        let headers: HPACKHeaders = [
            ":method": "POST", ":scheme": "http", ":path": path, ":authority": authority,
            "content-type": "application/grpc", "te": "trailers",
        ]
        let created = connected.channel.eventLoop.makePromise(of: (any Channel).self)
        created.futureResult.whenFailure { receiver.finish(GRPCError(code: GRPCError.unavailable, message: "\($0)")) }
        connected.multiplexer.createStreamChannel(promise: created) { stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandler(
                    CallHandler(headers: headers, requests: frames, endStream: endStream, receiver: receiver))
            }
        }
    }

    /// The open connection; connects first when there is none (calls arriving meanwhile
    /// wait for the same attempt).
    private func connection() async throws -> Connected {
        let current = state.withLock { state in
            switch state {
            case .connected(let connected) where connected.channel.isActive: break
            case .connecting: break
            case .failed(_, let retryAt) where ContinuousClock.now < retryAt: break
            case .idle, .connected, .failed: state = .connecting(connect())
            }
            return state
        }
        switch current {
        case .connected(let connected): return connected
        case .connecting(let attempt): return try await attempt.get()
        case .failed(let error, _): throw error
        case .idle: preconditionFailure("unreachable")
        }
    }

    private func connect() -> EventLoopFuture<Connected> {
        let attempt = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Server-initiated streams (pushes) aren't expected; they are closed.
                    _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .client, connectionConfiguration: Self.connectionConfiguration,
                        streamConfiguration: Self.streamConfiguration
                    ) { pushed in pushed.close() }
                }
            }
            .connect(host: host, port: port)
            .flatMapThrowing { channel in
                Connected(
                    channel: channel,
                    multiplexer: try channel.pipeline.syncOperations.handler(type: NIOHTTP2Handler.self).syncMultiplexer())
            }
            .flatMapErrorThrowing { error in
                // NIO's "Connection errors: SingleConnectionFailure(…)" → the first socket error.
                let cause = (error as? NIOConnectionError)?.connectionErrors.first.map { "\($0.error)" } ?? "\(error)"
                throw GRPCError(code: GRPCError.unavailable, message: "connecting to \(self.authority): \(cause)")
            }
        attempt.whenComplete { result in
            self.state.withLock { state in
                guard case .connecting(let current) = state, current === attempt else {
                    if case .success(let connected) = result { connected.channel.close(promise: nil) }  // closed meanwhile
                    return
                }
                switch result {
                case .success(let connected): state = .connected(connected)
                case .failure(let error):
                    let failure = error as? GRPCError ?? GRPCError(code: GRPCError.unavailable, message: "\(error)")
                    state = .failed(failure, retryAt: .now + .seconds(1))
                }
            }
        }
        return attempt
    }
}

/// A bidirectional-streaming call's responses; `cancel` resets the stream (as clientv3 does
/// by cancelling the call's context).
struct StreamingCall<Response: Message>: Sendable {
    fileprivate let messages: AsyncThrowingStream<ByteBuffer, any Error>
    fileprivate let continuation: AsyncThrowingStream<ByteBuffer, any Error>.Continuation

    var responses: AsyncThrowingMapSequence<AsyncThrowingStream<ByteBuffer, any Error>, Response> {
        messages.map { try Response(serializedBytes: ProtobufBytes($0)) }
    }

    func cancel() { continuation.finish() }
}

/// One call's HTTP/2 stream: sends the request headers and messages once the stream is
/// active; reassembles the response messages (one may span DATA frames, one frame may hold
/// several) and ends the call with the status in the trailers (or in the only HEADERS, for a
/// Trailers-Only response).
private final class CallHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    /// Where the response goes: the one message of a unary call, or each message of a stream.
    enum Receiver: Sendable {
        case unary(EventLoopPromise<ByteBuffer>)
        case stream(AsyncThrowingStream<ByteBuffer, any Error>.Continuation)

        func finish(_ error: (any Error)?, response: ByteBuffer? = nil) {
            switch self {
            case .unary(let promise):
                if let error {
                    promise.fail(error)
                } else if let response {
                    promise.succeed(response)
                } else {
                    promise.fail(GRPCError(code: GRPCError.internalError, message: "no response message"))
                }
            case .stream(let continuation):
                continuation.finish(throwing: error)
            }
        }
    }

    private let headers: HPACKHeaders
    private let requests: [ByteBuffer]
    private let endStream: Bool
    private let receiver: Receiver
    private var received = MessageReader()  // DATA not yet parsed into messages
    private var response: ByteBuffer?  // a unary call's message
    private var done = false

    init(headers: HPACKHeaders, requests: [ByteBuffer], endStream: Bool, receiver: Receiver) {
        self.headers = headers
        self.requests = requests
        self.endStream = endStream
        self.receiver = receiver
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // A stream's consumer cancelling (or going away) resets the stream.
        if case .stream(let continuation) = receiver {
            let channel = context.channel
            continuation.onTermination = { _ in channel.close(promise: nil) }
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.headers(.init(headers: headers, endStream: requests.isEmpty && endStream))), promise: nil)
        for (i, request) in requests.enumerated() {
            let last = i == requests.count - 1
            context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(request), endStream: last && endStream))), promise: nil)
        }
        context.flush()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        switch unwrapInboundIn(data) {
        case .headers(let frame):
            if let status = frame.headers.first(name: ":status"), status != "200" {
                fail(context, GRPCError(code: GRPCError.unknown, message: "HTTP status \(status)"))
            } else if frame.endStream {
                finish(Self.status(frame.headers))
            }
        case .data(let frame):
            guard case .byteBuffer(let bytes) = frame.data else { return }
            receive(context, bytes)
            if frame.endStream { fail(context, GRPCError(code: GRPCError.internalError, message: "stream ended without trailers")) }
        case .rstStream(let code):
            finish(GRPCError(code: GRPCError.unavailable, message: "stream reset by the server: \(code)"))
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(GRPCError(code: GRPCError.unavailable, message: "stream closed before the call's status"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // (Without the stream ID, so that the report counts these errors as one.)
        let message = (error as? NIOHTTP2Errors.StreamClosed).map { "stream reset by the server: \($0.errorCode)" }
        fail(context, GRPCError(code: GRPCError.unavailable, message: message ?? "\(error)"))
    }

    /// Appends a DATA frame's bytes and passes on every message now complete.
    private func receive(_ context: ChannelHandlerContext, _ bytes: ByteBuffer) {
        received.append(bytes)
        do {
            while let message = try received.next() {
                switch receiver {
                case .unary: response = message
                case .stream(let continuation): continuation.yield(message)
                }
            }
        } catch {
            fail(context, GRPCError(code: GRPCError.internalError, message: "compressed message (not asked for)"))
        }
    }

    /// nil for grpc-status 0, else the status as an error (grpc-message is percent-encoded).
    private static func status(_ trailers: HPACKHeaders) -> GRPCError? {
        guard let code = trailers.first(name: "grpc-status").flatMap({ Int($0) }) else {
            return GRPCError(code: GRPCError.unknown, message: "no grpc-status in the trailers")
        }
        if code == 0 { return nil }
        let message = trailers.first(name: "grpc-message") ?? ""
        return GRPCError(code: code, message: GRPCMessageEncoding.decode(message))
    }

    private func fail(_ context: ChannelHandlerContext, _ error: GRPCError) {
        finish(error)
        context.close(promise: nil)
    }

    private func finish(_ error: GRPCError?) {
        guard !done else { return }
        done = true
        receiver.finish(error, response: response)
        response = nil
    }
}
