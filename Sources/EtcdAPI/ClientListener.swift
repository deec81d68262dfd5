import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// Sits first in a connection's pipeline, in front of the gRPC (HTTP/2) handlers. Until the
/// first bytes tell HTTP/2 (the client connection preface) from anything else it holds
/// inbound bytes and the HTTP/2 side's outbound writes (its SETTINGS). HTTP/2: it releases
/// both and leaves. Otherwise it puts HTTP/1.1 handlers in front of itself, replays the
/// bytes to them, and from then on swallows whatever the idle HTTP/2 side writes.
final class ProtocolSwitch: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = Any
    typealias OutboundOut = Any

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private enum Mode { case undecided, http1, http2 }

    private let http: HTTPEndpoints
    private var mode = Mode.undecided
    private var inbound: ByteBuffer?
    private var outbound: [(NIOAny, EventLoopPromise<Void>?)] = []
    private var flushPending = false

    init(http: HTTPEndpoints) { self.http = http }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard mode == .undecided else {
            // http2: leaving the pipeline; http1: its handlers sit in front of us.
            if mode == .http2 { context.fireChannelRead(data) }
            return
        }
        var bytes = unwrapInboundIn(data)
        if inbound == nil { inbound = bytes } else { inbound!.writeBuffer(&bytes) }
        let seen = inbound!.readableBytesView
        let n = min(seen.count, Self.preface.count)
        if !seen.prefix(n).elementsEqual(Self.preface.prefix(n)) {
            switchToHTTP1(context: context)
        } else if n == Self.preface.count {
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch mode {
        case .undecided: outbound.append((data, promise))
        case .http1: promise?.succeed()
        case .http2: context.write(data, promise: promise)
        }
    }

    func flush(context: ChannelHandlerContext) {
        switch mode {
        case .undecided: flushPending = true
        case .http1: break
        case .http2: context.flush()
        }
    }

    /// HTTP/2: hand the held writes and bytes on, then leave the pipeline. What the HTTP/2
    /// side writes while it reads the held bytes (SETTINGS ACK, WINDOW_UPDATE, responses)
    /// passes straight through: this handler is still in the pipeline until the end.
    func removeHandler(context: ChannelHandlerContext, removalToken: ChannelHandlerContext.RemovalToken) {
        mode = .http2
        for (data, promise) in outbound { context.write(data, promise: promise) }
        outbound.removeAll()
        if flushPending { context.flush() }
        if let bytes = inbound {
            inbound = nil
            context.fireChannelRead(wrapInboundOut(bytes))
            context.fireChannelReadComplete()
        }
        context.leavePipeline(removalToken: removalToken)
    }

    private func switchToHTTP1(context: ChannelHandlerContext) {
        mode = .http1
        for (_, promise) in outbound { promise?.succeed() }
        outbound.removeAll()
        let ops = context.pipeline.syncOperations
        do {
            for handler: any ChannelHandler in [
                HTTPResponseEncoder(),
                ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)),
                HTTPServerPipelineHandler(),
                HTTPServerProtocolErrorHandler(),
                HTTP1Handler(endpoints: http),
            ] {
                try ops.addHandler(handler, position: .before(self))
            }
        } catch {
            context.close(promise: nil)
            return
        }
        if let bytes = inbound {
            inbound = nil
            context.pipeline.fireChannelRead(NIOAny(bytes))
            context.pipeline.fireChannelReadComplete()
        }
    }
}

/// The HTTP/1.1 side of the client port: a request line in, one response out.
public struct HTTPEndpoints: Sendable {
    public struct Response: Sendable {
        public var status: HTTPResponseStatus
        public var contentType: String
        public var bytes: [UInt8]
        /// Headers beyond Content-Type and Content-Length.
        public var headers: [(String, String)] = []

        public init(status: HTTPResponseStatus = .ok, contentType: String = "application/json", body: String) {
            self.status = status
            self.contentType = contentType
            self.bytes = Array(body.utf8)
        }

        public init(status: HTTPResponseStatus = .ok, contentType: String, bytes: [UInt8], headers: [(String, String)] = []) {
            self.status = status
            self.contentType = contentType
            self.bytes = bytes
            self.headers = headers
        }

        public var body: String { String(decoding: bytes, as: UTF8.self) }
    }

    public let handle: @Sendable (_ head: HTTPRequestHead, _ body: [UInt8]) async -> Response

    public init(handle: @escaping @Sendable (_ method: HTTPMethod, _ uri: String, _ body: [UInt8]) async -> Response) {
        self.handle = { head, body in await handle(head.method, head.uri, body) }
    }

    /// Endpoints that need the request's headers too (the peer URLs).
    public init(head handle: @escaping @Sendable (_ head: HTTPRequestHead, _ body: [UInt8]) async -> Response) {
        self.handle = handle
    }
}

/// Answers HTTP/1.1 requests; terminal: nothing it reads goes further down the pipeline.
final class HTTP1Handler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let endpoints: HTTPEndpoints
    nonisolated(unsafe) private var head: HTTPRequestHead?
    nonisolated(unsafe) private var body: [UInt8] = []
    /// Bodies beyond this are cut (the JSON gateway's requests are small; gRPC-Go's limit
    /// applies to the same requests over gRPC).
    static let maxBody = 8 << 20
    private let maxBody: Int

    /// `maxBody`: larger bodies are cut (the peer listener takes whole database snapshots).
    init(endpoints: HTTPEndpoints, maxBody: Int = HTTP1Handler.maxBody) {
        self.endpoints = endpoints
        self.maxBody = maxBody
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The server is shutting down: an HTTP/1.1 connection has nothing to finish.
        if event is ChannelShouldQuiesceEvent { context.close(promise: nil) }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = []
        case .body(let buf):
            if body.count + buf.readableBytes <= maxBody { body += buf.readableBytesView }
        case .end:
            guard let h = head else { return }
            head = nil
            let requestBody = body
            body = []
            let endpoints = self.endpoints
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.makeFutureWithTask {
                await endpoints.handle(h, requestBody)
            }.whenSuccess { r in
                let (handler, context) = bound.value
                handler.respond(context: context, head: h, r)
            }
        }
    }

    private func respond(context: ChannelHandlerContext, head h: HTTPRequestHead, _ r: HTTPEndpoints.Response) {
            var headers = HTTPHeaders()
            for (name, value) in r.headers { headers.add(name: name, value: value) }
            if !r.contentType.isEmpty { headers.add(name: "Content-Type", value: r.contentType) }
            headers.add(name: "Content-Length", value: String(r.bytes.count))
            if !h.isKeepAlive { headers.add(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: r.status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: r.bytes)))), promise: nil)
            let keepAlive = h.isKeepAlive
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                if !keepAlive { context.close(promise: nil) }
            }
    }
}

/// Why a listener could not be opened, as Go words it after "listen tcp HOST:PORT: "
/// ("bind: address already in use"): the syscall and its errno text in lower case.
public func listenErrorText(_ error: any Error) -> String {
    guard let io = error as? IOError else { return "\(error)" }
    let call = io.description.hasPrefix("bind") ? "bind" : io.description.hasPrefix("listen") ? "listen" : "socket"
    let text = String(cString: strerror(io.errnoCode))
    return "\(call): \(text.prefix(1).lowercased() + text.dropFirst())"
}
