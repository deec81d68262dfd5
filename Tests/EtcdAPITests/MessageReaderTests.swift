import FileIO
import GRPCWire
import NIOCore
import Testing

@testable import EtcdAPI

/// gRPC's message framing as the server reads it from DATA frames, fuzzed with seeded
/// randomness: messages split and joined at random come out whole and in order; random
/// bytes end in messages or an error, never a crash; the receive limit is applied from the
/// 5-byte prefix, before the message's bytes arrive.
@Suite struct MessageReaderTests {
    private func frame(_ message: [UInt8]) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeInteger(UInt8(0))
        b.writeInteger(UInt32(message.count))
        b.writeBytes(message)
        return b
    }

    /// Feeds `stream` in random chunks; returns the messages read and the error, if any.
    private func read(_ stream: ByteBuffer, limit: Int, _ g: inout SplitMix64) -> ([[UInt8]], MessageReader.Failure?) {
        var reader = MessageReader(limit: limit)
        var rest = stream
        var out: [[UInt8]] = []
        while rest.readableBytes > 0 {
            let n = Int.random(in: 1...max(1, min(rest.readableBytes, 700)), using: &g)
            reader.append(rest.readSlice(length: n)!)
            do {
                while let m = try reader.next() { out.append(Array(m.readableBytesView)) }
            } catch {
                return (out, error)
            }
        }
        return (out, nil)
    }

    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func framedMessagesComeOutWholeWhateverTheSplit(seed: UInt64) {
        var g = SplitMix64(seed: seed)
        for _ in 0..<200 {
            let messages = (0..<Int.random(in: 0...20, using: &g)).map { _ in
                (0..<Int.random(in: 0...1_000, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) }
            }
            var stream = ByteBuffer()
            for m in messages {
                var f = frame(m)
                stream.writeBuffer(&f)
            }
            let (out, error) = read(stream, limit: 4 << 20, &g)
            #expect(error == nil)
            #expect(out == messages)
        }
    }

    @Test(arguments: [5, 6, 7, 8] as [UInt64])
    func randomBytesGiveMessagesOrAnErrorNeverACrash(seed: UInt64) {
        var g = SplitMix64(seed: seed)
        for _ in 0..<2_000 {
            var stream = ByteBuffer()
            for _ in 0..<Int.random(in: 0...40, using: &g) {
                // Mostly small prefixes, so that some random streams parse as messages.
                stream.writeInteger(UInt8.random(in: 0...2, using: &g) == 0 ? UInt8.random(in: 0...255, using: &g) : 0)
                stream.writeInteger(UInt8.random(in: 0...9, using: &g) == 0 ? UInt32.random(in: 0...UInt32.max, using: &g) : UInt32.random(in: 0...8, using: &g))
                stream.writeBytes((0..<Int.random(in: 0...8, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) })
            }
            let limit = Int.random(in: 0...64, using: &g)
            let (out, error) = read(stream, limit: limit, &g)
            #expect(out.allSatisfy { $0.count <= limit })
            if case .tooLarge(let length, let l)? = error {
                #expect(length > l && l == limit)
            }
        }
    }

    @Test func theLimitIsAppliedFromThePrefix() throws {
        var reader = MessageReader(limit: 10)
        var prefix = ByteBuffer()
        prefix.writeInteger(UInt8(0))
        prefix.writeInteger(UInt32(11))
        reader.append(prefix)
        #expect(throws: MessageReader.Failure.tooLarge(length: 11, limit: 10)) { try reader.next() }
        var compressed = ByteBuffer()
        compressed.writeInteger(UInt8(1))
        compressed.writeInteger(UInt32(0))
        var other = MessageReader(limit: 10)
        other.append(compressed)
        #expect(throws: MessageReader.Failure.compressed) { try other.next() }
    }

    @Test func grpcTimeoutsParseAsGRPCGoReadsThem() {
        #expect(GRPCCall.timeout("5S") == .seconds(5))
        #expect(GRPCCall.timeout("4999998m") == .milliseconds(4_999_998))
        #expect(GRPCCall.timeout("1H") == .hours(1))
        #expect(GRPCCall.timeout("7u") == .microseconds(7))
        #expect(GRPCCall.timeout("") == nil)
        #expect(GRPCCall.timeout("S") == nil)
        #expect(GRPCCall.timeout("-1S") == nil)
        #expect(GRPCCall.timeout("5x") == nil)
    }

    @Test func receiveWindowsReturnCreditOnceHalfIsUsed() {
        // A connection starts with HTTP/2's 65,535 bytes and is raised to its target at the
        // first DATA frame; a stream is announced at its target and topped up at half.
        var connection = ReceiveWindow(available: 65_535, target: 16 << 20)
        #expect(connection.received(100) == (16 << 20) - 65_435)
        #expect(connection.available == 16 << 20)
        var stream = ReceiveWindow(available: 1 << 20, target: 1 << 20)
        #expect(stream.received(300 << 10) == nil)
        #expect(stream.received(200 << 10) == nil)
        #expect(stream.received(12 << 10) == 512 << 10)
        #expect(stream.available == 1 << 20)
        // Random frame sizes: the peer never runs out of window, and credit never exceeds
        // what was received.
        var rng = SplitMix64(seed: 9)
        var peerView = 1 << 20, received = 0, credited = 0
        for _ in 0..<10_000 {
            let n = Int(rng.next() % UInt64(16 << 10)) + 1
            guard n <= peerView else { continue }
            peerView -= n
            received += n
            if let inc = stream.received(n) {
                peerView += inc
                credited += inc
            }
            #expect(peerView == stream.available)
            #expect(peerView > (1 << 20) / 2 - (16 << 10))
        }
        #expect(credited <= received)
    }

    @Test func grpcMessagesArePercentEncodedAndBack() {
        let text = "etcdserver: mvcc: required revision has been compacted 100% é\n"
        let encoded = GRPCMessageEncoding.encode(text)
        #expect(encoded == "etcdserver: mvcc: required revision has been compacted 100%25 %C3%A9%0A")
        #expect(GRPCMessageEncoding.decode(encoded) == text)
    }
}
