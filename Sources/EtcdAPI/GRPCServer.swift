import EtcdServer
import GRPCWire
import NIOCore
import NIOHPACK
import NIOHTTP2
import SwiftProtobuf

// swetcd's gRPC server, directly on swift-nio-http2: each HTTP/2 stream is one call, served
// by one `GRPCCallHandler` on the connection's event loop. A unary call's method runs in one
// task once its request message is complete; its response, headers and trailers go out in
// one write. Streams get their requests as an async sequence and write through a
// `ResponseWriter`. What gRPC-Go (etcd's server) says on the wire, this says too: its status
// codes and messages, its receive limit, its keepalive policy.

/// A method of a service, by what it does with its call's messages (protobuf bytes).
enum GRPCMethod: Sendable {
    /// One request in, one response out; returns the response framed (`ProtobufBytes.frame`).
    /// `onEventLoop`: the call's task runs on the connection's event loop instead of the
    /// global pool (for short methods on the hot path: no thread is woken to start the
    /// task, to resume it after the member answers, or to come back to write).
    case unary(onEventLoop: Bool, @Sendable (_ request: ByteBuffer) async throws -> ByteBuffer)
    /// Requests as they arrive (until the client ends its side), responses through the
    /// writer; returning ends the call with OK, throwing with the error's status.
    case stream(@Sendable (_ requests: AsyncThrowingStream<ByteBuffer, any Error>, _ responses: ResponseWriter) async throws -> Void)
}

/// The methods served, by their gRPC path ("/etcdserverpb.KV/Range"), and what every call
/// is checked for before its method runs.
struct GRPCRoutes: Sendable {
    var methods: [String: GRPCMethod] = [:]
    /// Throws the status a call gets instead of running (etcd's interceptors); gets the
    /// path and the request headers.
    var admit: @Sendable (_ path: String, _ headers: HPACKHeaders) throws(EtcdError) -> Void = { _, _ in }

    /// A unary method of protobuf messages.
    mutating func unary<Request: Message, Response: Message>(
        _ path: String, onEventLoop: Bool = false, _ body: @escaping @Sendable (Request) async throws -> Response
    ) {
        methods[path] = .unary(onEventLoop: onEventLoop) { bytes in try ProtobufBytes.frame(try await body(try Self.decode(bytes))) }
    }

    /// A streaming method; the body decodes its requests with `decode`.
    mutating func stream(
        _ path: String,
        _ body: @escaping @Sendable (AsyncThrowingStream<ByteBuffer, any Error>, ResponseWriter) async throws -> Void
    ) {
        methods[path] = .stream(body)
    }

    /// A request message, or gRPC-Go's error for bytes that are not one.
    static func decode<Request: Message>(_ bytes: ByteBuffer, as _: Request.Type = Request.self) throws(EtcdError) -> Request {
        do {
            return try Request(serializedBytes: ProtobufBytes(bytes))
        } catch {
            throw EtcdError(.internal, "grpc: error unmarshalling request: \(error)")
        }
    }

    /// gRPC-Go's answer for a path no service has.
    func unknown(_ path: String) -> EtcdError {
        let parts = path.dropFirst().split(separator: "/", maxSplits: 1)
        guard parts.count == 2 else { return EtcdError(.unimplemented, "malformed method name: \"\(path)\"") }
        let service = "/\(parts[0])/"
        if methods.keys.contains(where: { $0.hasPrefix(service) }) {
            return EtcdError(.unimplemented, "unknown method \(parts[1]) for service \(parts[0])")
        }
        return EtcdError(.unimplemented, "unknown service \(parts[0])")
    }
}

/// Writes a streaming call's responses. A write waits only while the stream cannot take
/// more (HTTP/2 flow control or a slow reader); it fails once the call is over.
struct ResponseWriter: Sendable {
    fileprivate let channel: any Channel
    fileprivate let handler: NIOLoopBound<GRPCCallHandler>

    func write(_ message: some Message) async throws {
        let frame = try ProtobufBytes.frame(message)
        let promise = channel.eventLoop.makePromise(of: Void.self)
        let handler = self.handler
        channel.eventLoop.execute { handler.value.send(frame, promise: promise) }
        if !channel.isWritable { try await promise.futureResult.get() }
    }
}

/// The status of a failed call: etcd's errors as they are; anything else is Unknown.
private func status(of error: any Error) -> EtcdError {
    switch error {
    case let e as EtcdError: return e
    case is CancellationError: return EtcdError(.canceled, "context canceled")
    default: return EtcdError(.unknown, "\(error)")
    }
}

/// One call: the server side of one HTTP/2 stream. Lives on the connection's event loop.
final class GRPCCallHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private static let responseHeaders: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]

    private let routes: GRPCRoutes
    private let connection: GRPCConnectionHandler
    private var reader: MessageReader
    private var context: ChannelHandlerContext?
    private var method: GRPCMethod?
    private var admit: @Sendable () throws(EtcdError) -> Void = {}
    private var requests: AsyncThrowingStream<ByteBuffer, any Error>.Continuation?
    private var task: Task<Void, Never>?
    private var deadline: Scheduled<Void>?
    private var headersSent = false
    /// The client sent END_STREAM.
    private var clientEnded = false
    /// The status went out (or the stream is gone): nothing more is written.
    private var ended = false

    init(routes: GRPCRoutes, connection: GRPCConnectionHandler, receiveLimit: Int) {
        self.routes = routes
        self.connection = connection
        reader = MessageReader(limit: receiveLimit)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let frame):
            if method == nil && !ended {
                start(frame.headers)
            }
            if frame.endStream { endOfRequests() }
        case .data(let frame):
            guard !ended, case .byteBuffer(let bytes) = frame.data else { return }
            received(bytes)
            if frame.endStream { endOfRequests() }
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        if !ended {
            ended = true
            task?.cancel()
            requests?.finish(throwing: CancellationError())
        }
        self.context = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A reset stream or a protocol error of this stream: the call is over.
        context.close(promise: nil)
    }

    private func start(_ headers: HPACKHeaders) {
        guard let context else { return }
        guard headers.first(name: "content-type")?.hasPrefix("application/grpc") == true else {
            // gRPC-Go answers a request that is not gRPC with HTTP 415.
            ended = true
            let h: HPACKHeaders = [":status": "415", "content-type": "text/plain; charset=utf-8"]
            context.writeAndFlush(wrapOutboundOut(.headers(.init(headers: h, endStream: true))), promise: nil)
            return
        }
        let path = headers.first(name: ":path") ?? ""
        guard let method = routes.methods[path] else { return finish(routes.unknown(path)) }
        // The checks run in the call's task, not here: they read the member's state under its
        // lock (for the writes of `onEventLoop` methods that task runs on this event loop too,
        // which then waits at most for one applied batch to release the lock).
        let routes = self.routes
        admit = { () throws(EtcdError) in try routes.admit(path, headers) }
        self.method = method
        if let timeout = headers.first(name: "grpc-timeout").flatMap(Self.timeout) {
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            deadline = context.eventLoop.scheduleTask(in: timeout) {
                bound.value.expired()
            }
        }
        if case .stream(let body) = method {
            let (stream, continuation) = AsyncThrowingStream.makeStream(of: ByteBuffer.self)
            requests = continuation
            let writer = ResponseWriter(channel: context.channel, handler: NIOLoopBound(self, eventLoop: context.eventLoop))
            run { try await body(stream, writer) }
        }
    }

    private func received(_ bytes: ByteBuffer) {
        reader.append(bytes)
        do throws(MessageReader.Failure) {
            while let message = try reader.next() {
                switch method {
                case .unary(let onEventLoop, let body)?:
                    guard task == nil else {
                        return finish(EtcdError(.internal, "grpc: client streaming protocol violation: get <nil>, want <EOF>"))
                    }
                    run(onEventLoop: onEventLoop) { try await body(message) }
                case .stream?:
                    requests?.yield(message)
                case nil:
                    return
                }
            }
        } catch {
            switch error {
            case .compressed:
                finish(EtcdError(.internal, "grpc: compressed flag set with identity or empty encoding"))
            case .tooLarge(let length, let limit):
                finish(EtcdError(.resourceExhausted, "grpc: received message larger than max (\(length) vs. \(limit))"))
            }
        }
    }

    private func endOfRequests() {
        clientEnded = true
        requests?.finish()
        if case .unary? = method, task == nil, !ended {
            finish(EtcdError(.internal, "grpc: error while reading request: EOF"))
        }
    }

    /// Runs the method in a task; back on the event loop, sends its response and status.
    private func run(onEventLoop: Bool = false, _ body: @escaping @Sendable () async throws -> ByteBuffer?) {
        guard let context else { return }
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        let admit = self.admit
        let call: @Sendable () async -> Void = {
            let result: Result<ByteBuffer?, any Error>
            do {
                try admit()
                result = .success(try await body())
            } catch {
                result = .failure(error)
            }
            let end = {
                switch result {
                case .success(let response): bound.value.finish(nil, response: response)
                case .failure(let error): bound.value.finish(status(of: error))
                }
            }
            if loop.inEventLoop { end() } else { loop.execute(end) }
        }
        task = onEventLoop ? Task(executorPreference: connection.executor, operation: call) : Task(operation: call)
    }

    private func run(_ body: @escaping @Sendable () async throws -> Void) {
        run { () async throws -> ByteBuffer? in
            try await body()
            return nil
        }
    }

    /// A streaming call's response message (see `ResponseWriter`).
    fileprivate func send(_ frame: ByteBuffer, promise: EventLoopPromise<Void>) {
        guard !ended, let context else { return promise.fail(ChannelError.ioOnClosedChannel) }
        sendHeaders(context)
        context.writeAndFlush(wrapOutboundOut(.data(.init(data: .byteBuffer(frame)))), promise: promise)
        connection.wroteResponse()
    }

    private func sendHeaders(_ context: ChannelHandlerContext) {
        guard !headersSent else { return }
        headersSent = true
        context.write(wrapOutboundOut(.headers(.init(headers: Self.responseHeaders))), promise: nil)
    }

    /// Ends the call: the response message (a unary call's), then the status, in one flush.
    /// Before any response, the status goes alone (gRPC's Trailers-Only).
    private func finish(_ error: EtcdError?, response: ByteBuffer? = nil) {
        guard !ended, let context else { return }
        ended = true
        deadline?.cancel()
        requests?.finish()
        var trailers: HPACKHeaders
        if headersSent || response != nil {
            sendHeaders(context)
            if let response { context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(response)))), promise: nil) }
            trailers = [:]
        } else {
            trailers = Self.responseHeaders
        }
        trailers.add(name: "grpc-status", value: String(error?.code.rawValue ?? 0))
        if let error, !error.message.isEmpty {
            trailers.add(name: "grpc-message", value: GRPCMessageEncoding.encode(error.message))
        }
        let sent = context.writeAndFlush(wrapOutboundOut(.headers(.init(headers: trailers, endStream: true))))
        connection.wroteResponse()
        if !clientEnded {
            // The client may still be sending: the call is over, so is the stream (as gRPC-Go).
            let channel = context.channel
            sent.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    private func expired() {
        guard !ended else { return }
        task?.cancel()
        finish(EtcdError(.deadlineExceeded, "context deadline exceeded"))
    }

    /// grpc-timeout: at most 8 digits and a unit (H, M, S, m, u, n).
    static func timeout(_ value: String) -> TimeAmount? {
        guard let unit = value.last, let n = Int64(value.dropLast()), n >= 0 else { return nil }
        switch unit {
        case "H": return .hours(n)
        case "M": return .minutes(n)
        case "S": return .seconds(n)
        case "m": return .milliseconds(n)
        case "u": return .microseconds(n)
        case "n": return .nanoseconds(n)
        default: return nil
        }
    }
}

/// The connection: gRPC-Go's keepalive on both sides. The server pings after `interval`
/// without and closes when the ack does not come within `timeout`; a client that pings more
/// often than allowed (`minTime` with calls open, 2 hours without) gets three strikes, then
/// GOAWAY ENHANCE_YOUR_CALM "too_many_pings", as gRPC-Go's server does.
final class GRPCConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    struct Keepalive: Sendable {
        var interval: TimeAmount
        var timeout: TimeAmount
        var minTime: TimeAmount
    }

    private let keepalive: Keepalive
    /// Runs the tasks of this connection's `onEventLoop` calls.
    let executor: EventLoopTaskExecutor
    private var context: ChannelHandlerContext?
    private var openStreams = 0
    private var lastPingAt: NIODeadline?
    private var pingStrikes = 0
    private var pingTimer: RepeatedTask?
    private var ackTimer: Scheduled<Void>?
    private static let keepalivePing = HTTP2PingData(withInteger: 0x6b65_6570_616c_6976)

    init(keepalive: Keepalive, eventLoop: any EventLoop) {
        self.keepalive = keepalive
        executor = EventLoopTaskExecutor(eventLoop)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { schedulePing() }
    }

    func channelActive(context: ChannelHandlerContext) {
        schedulePing()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        pingTimer?.cancel()
        ackTimer?.cancel()
        self.context = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard case .ping(let ping, let ack) = frame.payload else { return }
        if ack {
            if ping == Self.keepalivePing { ackTimer?.cancel() }
            return
        }
        let now = NIODeadline.now()
        if let last = lastPingAt, now < last + (openStreams > 0 ? keepalive.minTime : .hours(2)) {
            pingStrikes += 1
        }
        lastPingAt = now
        if pingStrikes > 2 {
            let goAway = HTTP2Frame(
                streamID: .rootStream,
                payload: .goAway(lastStreamID: .maxID, errorCode: .enhanceYourCalm, opaqueData: ByteBuffer(string: "too_many_pings")))
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(goAway)).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    /// gRPC-Go forgives a client's pings once the server sends headers or data.
    func wroteResponse() {
        pingStrikes = 0
    }

    /// Counts the open streams (the HTTP/2 handler calls it on the connection's event loop).
    struct StreamCounter: NIOHTTP2StreamDelegate {
        let handler: NIOLoopBound<GRPCConnectionHandler>

        func streamCreated(_ id: HTTP2StreamID, channel: any Channel) { handler.value.openStreams += 1 }
        func streamClosed(_ id: HTTP2StreamID, channel: any Channel) { handler.value.openStreams -= 1 }
    }

    private func schedulePing() {
        guard pingTimer == nil, let context else { return }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        pingTimer = context.eventLoop.scheduleRepeatedTask(initialDelay: keepalive.interval, delay: keepalive.interval) { _ in
            bound.value.ping()
        }
    }

    private func ping() {
        guard let context else { return }
        context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .ping(Self.keepalivePing, ack: false))), promise: nil)
        ackTimer?.cancel()
        let channel = context.channel
        ackTimer = context.eventLoop.scheduleTask(in: keepalive.timeout) { channel.close(promise: nil) }
    }
}

/// Flushes a connection once per turn of its event loop instead of once per call: the
/// responses of a batch of applied writes come back as separate event-loop tasks, each
/// flushing its stream, and the first flush is held until those queued with it have
/// written (one writev for all of them rather than one each). A close flushes first, so
/// nothing written is dropped.
final class FlushCoalescer: ChannelOutboundHandler {
    typealias OutboundIn = NIOAny

    private var pending = false

    func flush(context: ChannelHandlerContext) {
        guard !pending else { return }
        pending = true
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = bound.value
            guard handler.pending else { return }
            handler.pending = false
            context.flush()
        }
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if pending {
            pending = false
            context.flush()
        }
        context.close(mode: mode, promise: promise)
    }
}

/// A task executor that runs its jobs on one event loop (Swift's `executorPreference`).
final class EventLoopTaskExecutor: TaskExecutor {
    private let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { [self] in job.runSynchronously(on: asUnownedTaskExecutor()) }
    }
}
