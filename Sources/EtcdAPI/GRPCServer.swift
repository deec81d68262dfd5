import EtcdServer
import GRPCWire
import NIOCore
import NIOHPACK
import NIOHTTP2
import SwiftProtobuf
import Synchronization

// swetcd's gRPC server, directly on swift-nio-http2's connection handler (no stream
// multiplexer, no channel per stream): each HTTP/2 stream is one `GRPCCall`, kept by its
// connection's `GRPCConnectionHandler` on the connection's event loop. A unary call's
// method runs once its request message is complete, in a task or (the writes) called on the
// event loop with a callback; its response, headers and trailers go out in one write.
// Streams get their requests as an async sequence and write through a `ResponseWriter`.
// What gRPC-Go (etcd's server) says on the wire, this says too: its status codes and
// messages, its receive limit, its keepalive policy.

/// A method of a service, by what it does with its call's messages (protobuf bytes).
enum GRPCMethod: Sendable {
    /// One request in, one response out, in a task; returns the response framed
    /// (`ProtobufBytes.frame`).
    case unary(@Sendable (_ request: ByteBuffer) async throws -> ByteBuffer)
    /// One request in, one response out, without a task (the writes, short on the hot path):
    /// called on the connection's event loop, it calls `done` once, from any thread, with
    /// what makes the framed response; that runs back on the event loop.
    case unaryCallback(@Sendable (_ request: ByteBuffer, _ done: @escaping @Sendable (@escaping @Sendable () throws -> ByteBuffer) -> Void) -> Void)
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
        _ path: String, _ body: @escaping @Sendable (Request) async throws -> Response
    ) {
        methods[path] = .unary { bytes in try ProtobufBytes.frame(try await body(try Self.decode(bytes))) }
    }

    /// A unary method of protobuf messages that answers through a callback (`unaryCallback`).
    mutating func unary<Request: Message, Response: Message>(
        _ path: String, callback body: @escaping @Sendable (Request, _ done: @escaping @Sendable (Result<Response, EtcdError>) -> Void) -> Void
    ) {
        methods[path] = .unaryCallback { bytes, done in
            let request: Request
            do { request = try Self.decode(bytes) } catch { return done { throw error } }
            body(request) { result in done { try ProtobufBytes.frame(try result.get()) } }
        }
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

/// Writes a streaming call's responses. A write waits only while more than `backlogLimit`
/// bytes of the stream are not yet on the socket (HTTP/2 flow control or a slow reader);
/// it fails once the call is over.
struct ResponseWriter: Sendable {
    fileprivate let loop: any EventLoop
    fileprivate let call: NIOLoopBound<GRPCCall>
    fileprivate let backlog: WriteBacklog

    /// etcd's snapshot chunks are 32 KiB, a watch response is usually far smaller.
    static let backlogLimit = 1 << 20

    func write(_ message: some Message) async throws {
        guard !backlog.closed else { throw ChannelError.ioOnClosedChannel }
        let frame = try ProtobufBytes.frame(message)
        let size = frame.readableBytes
        let promise = loop.makePromise(of: Void.self)
        let backlog = self.backlog
        let waits = backlog.add(size) > Self.backlogLimit
        promise.futureResult.whenComplete { _ in backlog.add(-size) }
        let call = self.call
        loop.execute { call.value.send(frame, promise: promise) }
        if waits { try await promise.futureResult.get() }
    }
}

/// A streaming call's bytes written but not yet on the socket, and whether the call is over.
final class WriteBacklog: Sendable {
    private let bytes = Atomic<Int>(0)
    private let ended = Atomic<Bool>(false)

    /// The bytes pending after adding `n`.
    @discardableResult
    func add(_ n: Int) -> Int { bytes.add(n, ordering: .relaxed).newValue }

    var closed: Bool {
        get { ended.load(ordering: .relaxed) }
        set { ended.store(newValue, ordering: .relaxed) }
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

/// HTTP/2 receive windows: what the peer may still send before this side returns credit
/// with WINDOW_UPDATE. Credit goes back once half of `target` is used (the messages are
/// read as soon as they arrive, so what came in is consumed).
struct ReceiveWindow {
    private(set) var available: Int
    let target: Int

    /// Counts `length` flow-controlled bytes received; the increment to send, if any.
    mutating func received(_ length: Int) -> Int? {
        available -= length
        guard available <= target / 2 else { return nil }
        defer { available = target }
        return target - available
    }
}

/// One call: the server side of one HTTP/2 stream, kept by the connection's handler (no
/// channel of its own). Lives on the connection's event loop.
final class GRPCCall {
    private static let responseHeaders: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]

    let streamID: HTTP2StreamID
    private let connection: GRPCConnectionHandler
    private var reader: MessageReader
    private var window: ReceiveWindow
    private var method: GRPCMethod?
    private var admit: @Sendable () throws(EtcdError) -> Void = {}
    private var requests: AsyncThrowingStream<ByteBuffer, any Error>.Continuation?
    private var backlog: WriteBacklog?
    private var task: Task<Void, Never>?
    /// A unary call's method was given its request.
    private var started = false
    private var deadline: Scheduled<Void>?
    private var headersSent = false
    /// The client sent END_STREAM.
    private var clientEnded = false
    /// The status went out (or the stream is gone): nothing more is written.
    private var ended = false

    init(streamID: HTTP2StreamID, connection: GRPCConnectionHandler, receiveLimit: Int, window: ReceiveWindow) {
        self.streamID = streamID
        self.connection = connection
        self.window = window
        reader = MessageReader(limit: receiveLimit)
    }

    /// The request headers: the call starts (later HEADERS are the client's trailers).
    func received(_ headers: HTTP2Frame.FramePayload.Headers, first: Bool) {
        // Known before the call can end on what it read: a call that ends then resets the
        // stream only if the client is still sending.
        if headers.endStream { clientEnded = true }
        if first && !ended { start(headers.headers) }
        if headers.endStream { endOfRequests() }
    }

    /// `length`: the frame's flow-controlled length (data and padding).
    func received(_ data: HTTP2Frame.FramePayload.Data, length: Int) {
        guard !ended else { return }
        if data.endStream { clientEnded = true }
        if !data.endStream, let increment = window.received(length) {
            connection.write(HTTP2Frame(streamID: streamID, payload: .windowUpdate(windowSizeIncrement: increment)))
        }
        if case .byteBuffer(let bytes) = data.data { received(bytes) }
        if data.endStream { endOfRequests() }
    }

    /// The stream is closed (both sides ended, a reset, or the connection went away).
    func closed() {
        deadline?.cancel()
        backlog?.closed = true
        if !ended {
            ended = true
            task?.cancel()
            requests?.finish(throwing: CancellationError())
        }
    }

    private func start(_ headers: HPACKHeaders) {
        guard headers.first(name: "content-type")?.hasPrefix("application/grpc") == true else {
            // gRPC-Go answers a request that is not gRPC with HTTP 415.
            ended = true
            let h: HPACKHeaders = [":status": "415", "content-type": "text/plain; charset=utf-8"]
            connection.write(HTTP2Frame(streamID: streamID, payload: .headers(.init(headers: h, endStream: true))))
            return
        }
        let path = headers.first(name: ":path") ?? ""
        guard let method = connection.routes.methods[path] else { return finish(connection.routes.unknown(path)) }
        // The checks run in the call's task, not here.
        let routes = connection.routes
        admit = { () throws(EtcdError) in try routes.admit(path, headers) }
        self.method = method
        let loop = connection.eventLoop
        if let timeout = headers.first(name: "grpc-timeout").flatMap(Self.timeout) {
            let bound = NIOLoopBound(self, eventLoop: loop)
            deadline = loop.scheduleTask(in: timeout) {
                bound.value.expired()
            }
        }
        if case .stream(let body) = method {
            let (stream, continuation) = AsyncThrowingStream.makeStream(of: ByteBuffer.self)
            requests = continuation
            let backlog = WriteBacklog()
            self.backlog = backlog
            let writer = ResponseWriter(loop: loop, call: NIOLoopBound(self, eventLoop: loop), backlog: backlog)
            run { try await body(stream, writer) }
        }
    }

    private func received(_ bytes: ByteBuffer) {
        reader.append(bytes)
        do throws(MessageReader.Failure) {
            while let message = try reader.next() {
                switch method {
                case .unary(let body)?:
                    guard !started else { return protocolViolation() }
                    started = true
                    run { try await body(message) }
                case .unaryCallback(let body)?:
                    guard !started else { return protocolViolation() }
                    started = true
                    call(body, message)
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

    private func protocolViolation() {
        finish(EtcdError(.internal, "grpc: client streaming protocol violation: get <nil>, want <EOF>"))
    }

    private func endOfRequests() {
        clientEnded = true
        requests?.finish()
        switch method {
        case .unary?, .unaryCallback?:
            if !started && !ended { finish(EtcdError(.internal, "grpc: error while reading request: EOF")) }
        default:
            break
        }
    }

    /// Calls a callback method (on the event loop); back on the event loop, sends what its
    /// callback makes, and the status.
    private func call(_ body: @Sendable (ByteBuffer, @escaping @Sendable (@escaping @Sendable () throws -> ByteBuffer) -> Void) -> Void,
                      _ message: ByteBuffer) {
        do throws(EtcdError) { try admit() } catch { return finish(error) }
        let loop = connection.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        body(message) { response in
            let end = {
                do {
                    bound.value.finish(nil, response: try response())
                } catch {
                    bound.value.finish(status(of: error))
                }
            }
            if loop.inEventLoop { end() } else { loop.execute(end) }
        }
    }

    /// Runs the method in a task; back on the event loop, sends its response and status.
    private func run(_ body: @escaping @Sendable () async throws -> ByteBuffer?) {
        let loop = connection.eventLoop
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
        task = Task(operation: call)
    }

    private func run(_ body: @escaping @Sendable () async throws -> Void) {
        run { () async throws -> ByteBuffer? in
            try await body()
            return nil
        }
    }

    /// A streaming call's response message (see `ResponseWriter`).
    fileprivate func send(_ frame: ByteBuffer, promise: EventLoopPromise<Void>) {
        guard !ended else { return promise.fail(ChannelError.ioOnClosedChannel) }
        sendHeaders()
        connection.write(HTTP2Frame(streamID: streamID, payload: .data(.init(data: .byteBuffer(frame)))), promise: promise)
        connection.wroteResponse()
    }

    private func sendHeaders() {
        guard !headersSent else { return }
        headersSent = true
        connection.write(HTTP2Frame(streamID: streamID, payload: .headers(.init(headers: Self.responseHeaders))))
    }

    /// Ends the call: the response message (a unary call's), then the status, in one flush.
    /// Before any response, the status goes alone (gRPC's Trailers-Only).
    private func finish(_ error: EtcdError?, response: ByteBuffer? = nil) {
        guard !ended else { return }
        ended = true
        backlog?.closed = true
        deadline?.cancel()
        requests?.finish()
        var trailers: HPACKHeaders
        if headersSent || response != nil {
            sendHeaders()
            if let response { connection.write(HTTP2Frame(streamID: streamID, payload: .data(.init(data: .byteBuffer(response))))) }
            trailers = [:]
        } else {
            trailers = Self.responseHeaders
        }
        trailers.add(name: "grpc-status", value: String(error?.code.rawValue ?? 0))
        if let error, !error.message.isEmpty {
            trailers.add(name: "grpc-message", value: GRPCMessageEncoding.encode(error.message))
        }
        connection.write(HTTP2Frame(streamID: streamID, payload: .headers(.init(headers: trailers, endStream: true))))
        connection.wroteResponse()
        if !clientEnded {
            // The client may still be sending: the call is over, so is the stream (as gRPC-Go,
            // which resets it with NO_ERROR).
            connection.write(HTTP2Frame(streamID: streamID, payload: .rstStream(.noError)))
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

/// The connection: its calls by stream (frames from NIOHTTP2Handler come here with their
/// stream ID; no channel per stream), the receive windows, one flush per event-loop turn,
/// and gRPC-Go's keepalive on both sides. The server pings after `interval` without and
/// closes when the ack does not come within `timeout`; a client that pings more often than
/// allowed (`minTime` with calls open, 2 hours without) gets three strikes, then GOAWAY
/// ENHANCE_YOUR_CALM "too_many_pings", as gRPC-Go's server does.
final class GRPCConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    struct Keepalive: Sendable {
        var interval: TimeAmount
        var timeout: TimeAmount
        var minTime: TimeAmount
    }

    /// What a connection serves and how much it lets a client send ahead.
    struct Settings: Sendable {
        var routes: GRPCRoutes
        var receiveLimit: Int
        var keepalive: Keepalive
        /// The receive window of the connection and of each stream (the latter is also the
        /// initial window this side announces in its SETTINGS).
        var connectionWindow: Int
        var streamWindow: Int
    }

    private let settings: Settings
    var routes: GRPCRoutes { settings.routes }
    let eventLoop: any EventLoop
    private var context: ChannelHandlerContext?
    private var calls: [HTTP2StreamID: GRPCCall] = [:]
    /// HTTP/2 starts every connection with 65,535 bytes, whatever the SETTINGS say.
    private var window: ReceiveWindow
    private var flushPending = false
    /// The connection's send window, as the HTTP/2 handler last reported it.
    private var sendWindow: Int?
    private var lastPingAt: NIODeadline?
    private var pingStrikes = 0
    private var pingTimer: RepeatedTask?
    private var ackTimer: Scheduled<Void>?
    private static let keepalivePing = HTTP2PingData(withInteger: 0x6b65_6570_616c_6976)

    init(settings: Settings, eventLoop: any EventLoop) {
        self.settings = settings
        self.eventLoop = eventLoop
        window = ReceiveWindow(available: 65_535, target: settings.connectionWindow)
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
        let open = calls.values
        calls = [:]
        for call in open { call.closed() }
        self.context = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.payload {
        case .headers(let headers):
            if let call = calls[frame.streamID] {
                call.received(headers, first: false)
            } else {
                let call = GRPCCall(
                    streamID: frame.streamID, connection: self, receiveLimit: settings.receiveLimit,
                    window: ReceiveWindow(available: settings.streamWindow, target: settings.streamWindow))
                calls[frame.streamID] = call
                call.received(headers, first: true)
            }
        case .data(let data):
            let length = data.data.readableBytes + (data.paddingBytes.map { $0 + 1 } ?? 0)
            if let increment = window.received(length) {
                write(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment)))
            }
            calls[frame.streamID]?.received(data, length: length)
        case .ping(let ping, let ack):
            received(ping: ping, ack: ack, context: context)
        default:
            break
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let closed as StreamClosedEvent:
            calls.removeValue(forKey: closed.streamID)?.closed()
        case let update as NIOHTTP2WindowUpdatedEvent where update.streamID == .rootStream:
            // The connection's send window falls only when DATA goes out. gRPC-Go forgives
            // pings at each DATA frame it writes: a client's BDP pings come once per round
            // trip of a large response, far more often than the keepalive policy allows.
            guard let window = update.outboundWindowSize else { break }
            if let before = sendWindow, window < before { wroteResponse() }
            sendWindow = window
        default:
            break
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Writes a frame of a call or of the connection; flushed at the end of this turn of the
    /// event loop, with whatever else was written in it (one flush, one writev, for all the
    /// calls answered in one turn).
    func write(_ frame: HTTP2Frame, promise: EventLoopPromise<Void>? = nil) {
        guard let context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        context.write(wrapOutboundOut(frame), promise: promise)
        guard !flushPending else { return }
        flushPending = true
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.execute {
            let handler = bound.value
            handler.flushPending = false
            handler.context?.flush()
        }
    }

    private func received(ping: HTTP2PingData, ack: Bool, context: ChannelHandlerContext) {
        if ack {
            if ping == Self.keepalivePing { ackTimer?.cancel() }
            return
        }
        let now = NIODeadline.now()
        if let last = lastPingAt, now < last + (calls.isEmpty ? .hours(2) : settings.keepalive.minTime) {
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

    /// gRPC-Go forgives a client's pings once the server sends headers or a DATA frame.
    func wroteResponse() {
        pingStrikes = 0
    }

    private func schedulePing() {
        guard pingTimer == nil, let context else { return }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        pingTimer = context.eventLoop.scheduleRepeatedTask(initialDelay: settings.keepalive.interval, delay: settings.keepalive.interval) { _ in
            bound.value.ping()
        }
    }

    private func ping() {
        guard let context else { return }
        context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .ping(Self.keepalivePing, ack: false))), promise: nil)
        ackTimer?.cancel()
        let channel = context.channel
        ackTimer = context.eventLoop.scheduleTask(in: settings.keepalive.timeout) { channel.close(promise: nil) }
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
