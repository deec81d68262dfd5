import NIOCore
import NIOEmbedded
import Testing

@testable import EtcdAPI

/// The first bytes of a connection decide HTTP/2 or HTTP/1.1; whatever the HTTP/2 side
/// writes while it reads them must reach the socket.
@Suite struct ProtocolSwitchTests {
    /// Stands for the HTTP/2 handler: writes its SETTINGS when active, and answers every
    /// read (as swift-nio-http2 sends WINDOW_UPDATE and responses for a request's DATA).
    final class Answering: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        func channelActive(context: ChannelHandlerContext) {
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "settings")), promise: nil)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = unwrapInboundIn(data)
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "answer to \(bytes.readableBytes) bytes")), promise: nil)
        }
    }

    private func written(_ channel: EmbeddedChannel) throws -> [String] {
        var out: [String] = []
        while var b = try channel.readOutbound(as: ByteBuffer.self) { out.append(b.readString(length: b.readableBytes)!) }
        return out
    }

    /// A client's first packet holding the preface and its first requests: the answers to
    /// them go out (they were held and lost, so the client's flow-control window was never
    /// reopened and its calls hung).
    @Test func writesMadeWhileTheHeldBytesAreReadGoOut() throws {
        let endpoints = HTTPEndpoints { _, _, _ in .init(body: "") }
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([ProtocolSwitch(http: endpoints), Answering()])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        #expect(try written(channel).isEmpty)  // SETTINGS held until the first bytes tell
        var first = ByteBuffer(bytes: ProtocolSwitch.preface)
        first.writeString("HEADERS+DATA")
        try channel.writeInbound(first)
        #expect(try written(channel) == ["settings", "answer to 36 bytes"])
        try channel.writeInbound(ByteBuffer(string: "more"))
        #expect(try written(channel) == ["answer to 4 bytes"])
        _ = try channel.finish()
    }

    /// The preface split over two reads: nothing is answered before it is complete.
    @Test func aSplitPrefaceIsHeldUntilComplete() throws {
        let endpoints = HTTPEndpoints { _, _, _ in .init(body: "") }
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([ProtocolSwitch(http: endpoints), Answering()])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(ByteBuffer(bytes: ProtocolSwitch.preface.prefix(10)))
        #expect(try written(channel).isEmpty)
        try channel.writeInbound(ByteBuffer(bytes: ProtocolSwitch.preface.dropFirst(10)))
        #expect(try written(channel) == ["settings", "answer to 24 bytes"])
        _ = try channel.finish()
    }
}
