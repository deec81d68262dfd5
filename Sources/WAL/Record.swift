import Foundation
import EtcdProto

// On-disk layout of one WAL record (etcd 3.4 wal/encoder.go, wal/decoder.go):
//
//   +---------------------------+--------------------------------+-----------+
//   | length word (8 bytes, LE) | walpb.Record (protobuf bytes)  | pad (0-7) |
//   +---------------------------+--------------------------------+-----------+
//
// The low 56 bits of the length word are the protobuf length; when the record is padded to
// 8-byte alignment the top byte is 0x80|pad (so a length word is never torn: frames start
// 8-aligned). walpb.Record is {1: type int64, 2: crc uint32, 3: data bytes}; etcd's gogo
// marshaller always writes type and crc, and data only when non-nil. `crc` is the rolling
// CRC-32C over the data of every record so far (the crc record restarts the chain at the
// head of each segment with the value carried over).

/// walpb.Record types.
public enum RecordType: Int64, Sendable, CaseIterable {
    case metadata = 1
    case entry = 2
    case state = 3
    case crc = 4
    case snapshot = 5
}

/// A decoded walpb.Record. `data == nil` when the field was absent.
public struct WALRecord: Equatable, Sendable {
    public var type: Int64
    public var crc: UInt32
    public var data: [UInt8]?

    public init(type: Int64, crc: UInt32, data: [UInt8]?) {
        self.type = type
        self.crc = crc
        self.data = data
    }
}

/// Bytes of one frame and the protobuf codecs for walpb.Record and the raftpb/walpb messages
/// the WAL stores, written to produce exactly the bytes etcd's gogo-generated marshallers do.
public enum WALFraming {
    /// Frame header size: the length word.
    public static let frameHeaderBytes = 8
    /// etcd's decoder refuses records this large or larger (maxWALEntrySizeLimit).
    public static let maxRecordBytes: Int64 = 10 * 1024 * 1024

    /// The length word and the number of pad bytes for a record of `recordBytes` bytes.
    public static func encodeFrameSize(_ recordBytes: Int) -> (lengthWord: UInt64, padBytes: Int) {
        let pad = (8 - recordBytes % 8) % 8
        var word = UInt64(recordBytes)
        if pad != 0 { word |= UInt64(0x80 | pad) << 56 }
        return (word, pad)
    }

    /// Record length and pad from a length word (the low 56 bits, and the low 3 bits of the
    /// top byte when its high bit is set).
    public static func decodeFrameSize(_ lengthWord: UInt64) -> (recordBytes: Int64, padBytes: Int64) {
        let rec = Int64(bitPattern: lengthWord & ~(UInt64(0xFF) << 56))
        let pad = Int64(bitPattern: lengthWord) < 0 ? Int64((lengthWord >> 56) & 0x7) : 0
        return (rec, pad)
    }

    /// Appends one whole frame (length word, record, padding) to `out`.
    public static func appendFrame(type: Int64, crc: UInt32, data: UnsafeRawBufferPointer?, to out: inout [UInt8]) {
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: 8))
        out.append(0x08)
        appendVarint(UInt64(bitPattern: type), to: &out)
        out.append(0x10)
        appendVarint(UInt64(crc), to: &out)
        if let data {
            out.append(0x1A)
            appendVarint(UInt64(data.count), to: &out)
            out.append(contentsOf: data)
        }
        let recordBytes = out.count - start - 8
        let (word, pad) = encodeFrameSize(recordBytes)
        withUnsafeBytes(of: word.littleEndian) { w in
            for i in 0..<8 { out[start + i] = w[i] }
        }
        if pad > 0 { out.append(contentsOf: repeatElement(0, count: pad)) }
    }

    /// A whole frame as bytes.
    public static func frame(_ record: WALRecord) -> [UInt8] {
        var out: [UInt8] = []
        if let d = record.data {
            d.withUnsafeBytes { appendFrame(type: record.type, crc: record.crc, data: $0, to: &out) }
        } else {
            appendFrame(type: record.type, crc: record.crc, data: nil, to: &out)
        }
        return out
    }

    // MARK: - Protobuf wire helpers

    @inline(__always)
    static func appendVarint(_ v: UInt64, to out: inout [UInt8]) {
        var v = v
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    enum WireError: Error, CustomStringConvertible {
        case truncated
        case overflow
        case illegalTag(UInt64)
        case wrongWireType(field: UInt64, wireType: UInt64)
        case groupUnsupported

        var description: String {
            switch self {
            case .truncated: return "unexpected EOF"
            case .overflow: return "integer overflow"
            case .illegalTag(let t): return "illegal tag \(t)"
            case .wrongWireType(let f, let w): return "wrong wireType = \(w) for field \(f)"
            case .groupUnsupported: return "illegal wireType 4 (end group)"
            }
        }
    }

    @inline(__always)
    static func readVarint(_ p: UnsafeRawBufferPointer, _ i: inout Int) throws(WireError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            if shift >= 64 { throw .overflow }
            guard i < p.count else { throw .truncated }
            let b = p[i]
            i += 1
            result |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return result }
            shift += 7
        }
    }

    /// Skips one field's value (as gogo's skipRecord does).
    static func skipField(wireType: UInt64, _ p: UnsafeRawBufferPointer, _ i: inout Int) throws(WireError) {
        switch wireType {
        case 0: _ = try readVarint(p, &i)
        case 1: i += 8
        case 2:
            let n = try readVarint(p, &i)
            guard n <= UInt64(p.count - i) else { throw .truncated }
            i += Int(n)
        case 5: i += 4
        case 3, 4: throw .groupUnsupported
        default: throw .illegalTag(wireType)
        }
        if i > p.count { throw .truncated }
    }

    /// Parses walpb.Record (gogo Unmarshal semantics: any field order, last value wins,
    /// unknown fields skipped).
    static func decodeRecord(_ p: UnsafeRawBufferPointer) throws(WireError) -> WALRecord {
        var rec = WALRecord(type: 0, crc: 0, data: nil)
        var i = 0
        while i < p.count {
            let key = try readVarint(p, &i)
            let field = key >> 3
            let wire = key & 7
            if wire == 4 { throw .groupUnsupported }
            if field == 0 { throw .illegalTag(key) }
            switch field {
            case 1:
                guard wire == 0 else { throw .wrongWireType(field: 1, wireType: wire) }
                rec.type = Int64(bitPattern: try readVarint(p, &i))
            case 2:
                guard wire == 0 else { throw .wrongWireType(field: 2, wireType: wire) }
                rec.crc = UInt32(truncatingIfNeeded: try readVarint(p, &i))
            case 3:
                guard wire == 2 else { throw .wrongWireType(field: 3, wireType: wire) }
                let n = try readVarint(p, &i)
                guard n <= UInt64(p.count - i) else { throw .truncated }
                rec.data = Array(p[i..<i + Int(n)])
                i += Int(n)
            default:
                try skipField(wireType: wire, p, &i)
            }
        }
        return rec
    }

    // MARK: - raftpb / walpb messages, as etcd's gogo marshallers lay them out

    /// raftpb.Entry: {1: Type, 2: Term, 3: Index} always, {4: Data} when present.
    public static func marshal(_ e: Raftpb_Entry) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(e.data.count + 24)
        out.append(0x08)
        appendVarint(UInt64(bitPattern: Int64(e.type.rawValue)), to: &out)
        out.append(0x10)
        appendVarint(e.term, to: &out)
        out.append(0x18)
        appendVarint(e.index, to: &out)
        if e.hasData {
            out.append(0x22)
            appendVarint(UInt64(e.data.count), to: &out)
            out.append(contentsOf: e.data)
        }
        return out
    }

    /// raftpb.HardState: {1: Term, 2: Vote, 3: Commit}, all always.
    public static func marshal(_ s: Raftpb_HardState) -> [UInt8] {
        var out: [UInt8] = []
        out.append(0x08)
        appendVarint(s.term, to: &out)
        out.append(0x10)
        appendVarint(s.vote, to: &out)
        out.append(0x18)
        appendVarint(s.commit, to: &out)
        return out
    }

    /// walpb.Snapshot: {1: Index, 2: Term}, both always.
    public static func marshal(_ s: Walpb_Snapshot) -> [UInt8] {
        var out: [UInt8] = []
        out.append(0x08)
        appendVarint(s.index, to: &out)
        out.append(0x10)
        appendVarint(s.term, to: &out)
        return out
    }
}
