import Foundation
import Testing
import EtcdProto
import FileIO
@testable import WAL

@Suite struct FramingTests {
    @Test func frameSizeForEveryLengthModEight() {
        for n in 0..<64 {
            let (word, pad) = WALFraming.encodeFrameSize(n)
            #expect((n + pad) % 8 == 0)
            #expect(pad == (8 - n % 8) % 8)
            if pad == 0 {
                #expect(word == UInt64(n))
            } else {
                #expect(word >> 56 == UInt64(0x80 | pad))
                #expect(word & 0x00FF_FFFF_FFFF_FFFF == UInt64(n))
            }
            let (rec, dpad) = WALFraming.decodeFrameSize(word)
            #expect(rec == Int64(n) && dpad == Int64(pad))
        }
    }

    /// Records with data of every length 0…100 (every length mod 8, and varint lengths of
    /// 1 and 2 bytes): frame is 8-aligned, padding is zeros, and it decodes to the same record.
    @Test func recordRoundTripEveryLength() throws {
        var rng = SplitMix64(seed: 3)
        for n in 0...200 {
            let data = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            for type in RecordType.allCases {
                let rec = WALRecord(type: type.rawValue, crc: UInt32(truncatingIfNeeded: rng.next()), data: data)
                let frame = WALFraming.frame(rec)
                #expect(frame.count % 8 == 0)
                let parsed = frames(frame)
                #expect(parsed.count == 1)
                #expect(parsed.first?.record == rec)
                #expect(parsed.first?.length == frame.count)
                let (recBytes, pad) = WALFraming.decodeFrameSize(frame[0..<8].enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
                #expect(frame[(8 + Int(recBytes))...].allSatisfy { $0 == 0 })
                #expect(Int64(frame.count) == 8 + recBytes + pad)
            }
        }
        // A record without data (the crc record) omits field 3.
        let crcFrame = WALFraming.frame(WALRecord(type: 4, crc: 0, data: nil))
        #expect(hex(crcFrame) == "0400000000000084" + "0804100000000000")
        #expect(frames(crcFrame).first?.record.data == nil)
    }

    /// The exact bytes of etcd's first frame (its crc record) and metadata frame.
    @Test func matchesEtcdFrameBytes() throws {
        let etcd = [UInt8](Data(base64Encoded: EtcdFixtures.liveSegmentBase64)!)
        let f = frames(etcd)
        for (off, len, rec) in f {
            #expect(WALFraming.frame(rec) == Array(etcd[off..<off + len]))
        }
        #expect(f.count == 26)
        #expect(usedLength(etcd) == etcd.count)
    }

    @Test func decoderSkipsUnknownFieldsAndAcceptsAnyOrder() throws {
        // data (3), unknown varint field 9, crc (2), unknown bytes field 10, type (1)
        let bytes: [UInt8] = [0x1A, 0x02, 0xAA, 0xBB, 0x48, 0x05, 0x10, 0x07, 0x52, 0x01, 0x00, 0x08, 0x02]
        let rec = try bytes.withUnsafeBytes { try WALFraming.decodeRecord($0) }
        #expect(rec == WALRecord(type: 2, crc: 7, data: [0xAA, 0xBB]))
        // Truncated length-delimited field, tag 0, group end: errors.
        for bad: [UInt8] in [[0x1A, 0x05, 0x01], [0x00], [0x0C], [0x08]] {
            #expect(throws: (any Error).self) { try bad.withUnsafeBytes { try WALFraming.decodeRecord($0) } }
        }
    }

    /// Entry, HardState and Snapshot as etcd's gogo marshallers write them (zero-valued fields
    /// included), and readable by SwiftProtobuf.
    @Test func messagesMarshalAsGogo() throws {
        var e = entry(3, term: 2, "hi")
        #expect(hex(WALFraming.marshal(e)) == "080010021803" + "22026869")
        e = entry(5, term: 1)
        #expect(hex(WALFraming.marshal(e)) == "080010011805")
        e.type = .entryConfChange
        e.data = Data()
        #expect(hex(WALFraming.marshal(e)) == "0801100118052200")
        #expect(try Raftpb_Entry(serializedBytes: WALFraming.marshal(e)) == e)
        #expect(hex(WALFraming.marshal(hardState(term: 0, commit: 0))) == "080010001800")
        #expect(hex(WALFraming.marshal(hardState(term: 300, vote: 2, commit: 1))) == "08ac02100218" + "01")
        #expect(hex(WALFraming.marshal(snapshot(0, 0))) == "08001000")
        var s = Raftpb_HardState()
        s.term = 7
        #expect(try Raftpb_HardState(serializedBytes: WALFraming.marshal(s)).term == 7)
    }

    @Test func segmentNames() {
        #expect(SegmentName.make(sequence: 0, index: 0) == "0000000000000000-0000000000000000.wal")
        #expect(SegmentName.make(sequence: 0x1F, index: 0xABCDEF) == "000000000000001f-0000000000abcdef.wal")
        #expect(SegmentName.parse("000000000000001f-0000000000abcdef.wal")! == (0x1F, 0xABCDEF))
        #expect(SegmentName.parse("0.tmp") == nil)
        #expect(SegmentName.parse("000000000000001f-0000000000abcdef.wal.broken") == nil)
        #expect(SegmentName.parse("000000000000001g-0000000000abcdef.wal") == nil)
        let names = ["0000000000000000-0000000000000000.wal", "0000000000000001-0000000000000010.wal", "0000000000000002-0000000000000020.wal"]
        #expect(SegmentName.search(names, index: 0) == 0)
        #expect(SegmentName.search(names, index: 0x10) == 1)
        #expect(SegmentName.search(names, index: 0x1F) == 1)
        #expect(SegmentName.search(names, index: 0x100) == 2)
        #expect(SegmentName.isValidSequence(names))
        #expect(!SegmentName.isValidSequence([names[1], "0000000000000003-0000000000000030.wal"]))
        // etcd's isValidSeq does not check the step after sequence 0 (lastSeq == 0 means
        // "none yet"); neither do we.
        #expect(SegmentName.isValidSequence([names[0], names[2]]))
    }
}
