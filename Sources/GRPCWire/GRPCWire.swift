// gRPC's wire format over HTTP/2, as both ends of swetcd use it: the length-prefixed message
// frames, protobuf bytes kept in ByteBuffers, and the percent-encoding of grpc-message.
// (The server is EtcdAPI's GRPCServer; the client is the load generator's.)
import NIOCore
import SwiftProtobuf

/// Protobuf bytes kept in a ByteBuffer, so that SwiftProtobuf serializes straight into a
/// gRPC frame and parses straight from the received frames, without copies.
/// The readable bytes are the message; made for serializing, 5 spare bytes precede them,
/// room for the gRPC prefix.
public struct ProtobufBytes: SwiftProtobufContiguousBytes {
    public var buffer: ByteBuffer

    public init(_ buffer: ByteBuffer) { self.buffer = buffer }

    public init(repeating byte: UInt8, count: Int) {
        buffer = ByteBufferAllocator().buffer(capacity: 5 + count)
        buffer.writeRepeatingByte(0, count: 5)
        buffer.moveReaderIndex(forwardBy: 5)
        buffer.writeRepeatingByte(byte, count: count)
    }

    public init<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        self.init(repeating: 0, count: 0)
        buffer.writeBytes(bytes)
    }

    public var count: Int { buffer.readableBytes }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeReadableBytes(body)
    }

    public mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeMutableReadableBytes(body)
    }

    /// `message` as a gRPC frame: flag 0 (not compressed), 4-byte big-endian length, message.
    public static func frame(_ message: some Message) throws -> ByteBuffer {
        let bytes: ProtobufBytes = try message.serializedBytes()
        var frame = bytes.buffer
        frame.moveReaderIndex(to: 0)
        frame.setInteger(UInt8(0), at: 0)
        frame.setInteger(UInt32(bytes.count), at: 1)
        return frame
    }
}

/// Reassembles gRPC messages from DATA frames: one message may span frames, one frame may
/// hold several.
public struct MessageReader {
    public enum Failure: Error, Equatable {
        /// The compressed flag is set (no compression was negotiated).
        case compressed
        /// A message's declared length is over the limit (checked before its bytes arrive).
        case tooLarge(length: Int, limit: Int)
    }

    private var received = ByteBuffer()
    private let limit: Int

    public init(limit: Int = Int(UInt32.max)) { self.limit = limit }

    public mutating func append(_ bytes: ByteBuffer) {
        if received.readableBytes == 0 {
            received = bytes
        } else {
            var bytes = bytes
            received.writeBuffer(&bytes)
        }
    }

    /// The next complete message, or nil until more bytes arrive.
    public mutating func next() throws(Failure) -> ByteBuffer? {
        guard let flag = received.getInteger(at: received.readerIndex, as: UInt8.self),
            let length = received.getInteger(at: received.readerIndex + 1, as: UInt32.self)
        else { return nil }
        if flag != 0 { throw .compressed }
        if Int(length) > limit { throw .tooLarge(length: Int(length), limit: limit) }
        guard received.readableBytes >= 5 + Int(length) else { return nil }
        received.moveReaderIndex(forwardBy: 5)
        return received.readSlice(length: Int(length))!
    }
}

/// grpc-message's encoding: bytes outside printable ASCII, and '%', are percent-encoded.
public enum GRPCMessageEncoding {
    public static func encode(_ message: String) -> String {
        var out = ""
        for b in message.utf8 {
            if b >= 0x20 && b <= 0x7E && b != UInt8(ascii: "%") {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                out += "%" + String(b, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }

    public static func decode(_ message: String) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(message.utf8)[...]
        while let b = utf8.popFirst() {
            if b == UInt8(ascii: "%"), utf8.count >= 2,
                let v = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16)
            {
                bytes.append(v)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension String {
    fileprivate func leftPadded(to n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
