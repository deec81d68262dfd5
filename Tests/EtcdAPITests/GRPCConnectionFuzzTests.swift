import EtcdProto
import FileIO
import Foundation
import GRPCWire
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

@testable import EtcdAPI

/// The connection's handler gets HTTP/2 frames and stream events straight from
/// swift-nio-http2 (no channel per stream), in any order a client can cause: random
/// sequences of headers, data, pings, resets and closes on a few streams, with seeded
/// randomness, must never crash it, and what it writes must stay well-formed: at most one
/// end of each call, window credit within HTTP/2's bounds.
@Suite struct GRPCConnectionFuzzTests {
    static let paths = ["/etcdserverpb.KV/Put", "/etcdserverpb.KV/Put", "/etcdserverpb.KV/Put", "/etcdserverpb.KV/Nope", "/x.Y/Z", "nopath", ""]

    func routes() -> GRPCRoutes {
        var r = GRPCRoutes()
        // A callback method answering at once, on the event loop: the call ends within the
        // loop's run().
        r.unary("/etcdserverpb.KV/Put", callback: { (q: Etcdserverpb_PutRequest, done) in
            var response = Etcdserverpb_PutResponse()
            response.header.revision = Int64(q.key.count)
            done(.success(response))
        })
        return r
    }

    func headers(_ g: inout SplitMix64) -> HPACKHeaders {
        var h: HPACKHeaders = [":method": "POST", ":path": Self.paths.randomElement(using: &g)!]
        h.add(name: "content-type", value: Int.random(in: 0..<5, using: &g) == 0 ? "text/plain" : "application/grpc")
        if Bool.random(using: &g) { h.add(name: "grpc-timeout", value: ["1m", "0n", "bad", "99999999H", "5S"].randomElement(using: &g)!) }
        if Bool.random(using: &g) { h.add(name: "hasleader", value: "true") }
        return h
    }

    func data(_ g: inout SplitMix64) -> ByteBuffer {
        if Bool.random(using: &g) {
            var put = Etcdserverpb_PutRequest()
            put.key = Data(repeating: 0x61, count: Int.random(in: 0..<5, using: &g))
            let framed = try! ProtobufBytes.frame(put)
            // Whole, cut short, or with bytes after it.
            switch Int.random(in: 0..<3, using: &g) {
            case 0: return framed
            case 1: return framed.getSlice(at: 0, length: Int.random(in: 0...framed.readableBytes, using: &g))!
            default:
                var b = framed
                b.writeBytes((0..<Int.random(in: 1..<8, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) })
                return b
            }
        }
        return ByteBuffer(bytes: (0..<Int.random(in: 0..<40, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) })
    }

    @Test(arguments: 1...6 as ClosedRange<UInt64>)
    func randomFrameSequencesNeverCrashTheHandler(seed: UInt64) throws {
        var g = SplitMix64(seed: seed)
        let channel = EmbeddedChannel()
        let settings = GRPCConnectionHandler.Settings(
            routes: routes(), receiveLimit: 64,
            keepalive: .init(interval: .seconds(7200), timeout: .seconds(20), minTime: .seconds(5)),
            connectionWindow: 1 << 16, streamWindow: 1 << 12)
        try channel.pipeline.syncOperations.addHandler(GRPCConnectionHandler(settings: settings, eventLoop: channel.eventLoop))
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()

        var ends: [HTTP2StreamID: Int] = [:]
        var calls = 0, succeeded = 0, steps = 0
        func drain() throws {
            while let frame = try channel.readOutbound(as: HTTP2Frame.self) {
                switch frame.payload {
                case .headers(let h) where h.endStream:
                    ends[frame.streamID, default: 0] += 1
                    calls += 1
                    if h.headers.first(name: "grpc-status") == "0" { succeeded += 1 }
                    #expect(ends[frame.streamID]! <= 1, "stream \(frame.streamID) ended twice")
                case .windowUpdate(let increment):
                    #expect(increment > 0 && increment <= Int(Int32.max))
                default:
                    break
                }
            }
        }

        for _ in 0..<2_000 {
            guard channel.isActive else { break }
            steps += 1
            let stream = HTTP2StreamID(Int.random(in: 0..<5, using: &g) * 2 + 1)
            switch Int.random(in: 0..<10, using: &g) {
            case 0, 1, 2:
                try channel.writeInbound(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: headers(&g), endStream: Bool.random(using: &g)))))
            case 3, 4, 5:
                let padding = Int.random(in: 0..<4, using: &g) == 0 ? Int.random(in: 0..<20, using: &g) : nil
                try channel.writeInbound(HTTP2Frame(streamID: stream, payload: .data(.init(
                    data: .byteBuffer(data(&g)), endStream: Int.random(in: 0..<3, using: &g) == 0, paddingBytes: padding))))
            case 6:
                // The stream closes (both sides done, reset, or dropped): a later HEADERS on
                // the same ID stands for a new call.
                channel.pipeline.fireUserInboundEventTriggered(StreamClosedEvent(streamID: stream, reason: Bool.random(using: &g) ? nil : .cancel))
                ends[stream] = nil
            case 7:
                channel.pipeline.fireUserInboundEventTriggered(NIOHTTP2WindowUpdatedEvent(
                    streamID: .rootStream, inboundWindowSize: nil, outboundWindowSize: Int.random(in: 0..<(1 << 16), using: &g)))
            case 8 where Int.random(in: 0..<40, using: &g) == 0:
                // Rare: three strikes close the connection (gRPC-Go's too_many_pings).
                try channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: g.next()), ack: Bool.random(using: &g))))
            default:
                channel.embeddedEventLoop.advanceTime(by: .milliseconds(Int64.random(in: 0..<3, using: &g)))
            }
            channel.embeddedEventLoop.run()
            try drain()
        }
        _ = try? channel.finish()
        try drain()
        // The sequences get far enough to end many calls, successful ones among them.
        #expect(steps > 200, "only \(steps) steps")
        #expect(calls > 20, "only \(calls) calls ended")
        #expect(succeeded > 0, "no call succeeded")
    }
}
