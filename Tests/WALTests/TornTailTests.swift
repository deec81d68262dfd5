import Foundation
import Testing
import EtcdProto
import FileIO
@testable import WAL

/// Must show 3: a WAL whose last record is cut at every byte offset restarts cleanly to the
/// last complete record (and takes appends after the repair); a flipped bit in the middle of
/// a record is reported with file and offset, never skipped.
@Suite struct TornTailTests {
    static let segmentBytes: Int64 = 16 * 1024
    static let segment = "/data/wal/0000000000000000-0000000000000000.wal"
    static let metadata = Data("torn-tail".utf8)

    /// A WAL of 20 entries and a hard state, then entry 21 alone as the last record: 1,200
    /// bytes of payload, so the record spans three 512-byte sectors.
    static func build(fs: any FileSystem, dir: String) async throws -> (bytes: [UInt8], last: (offset: Int, length: Int)) {
        let w = try WAL.create(dir: dir, metadata: metadata, fs: fs, options: WAL.Options(segmentBytes: segmentBytes))
        for i in 1...20 {
            try await w.save(hardState: hardState(term: 1, vote: 1, commit: UInt64(i - 1)), entries: [entry(UInt64(i), "entry-\(i)")])
        }
        try await w.save(entries: [entry(21, String(repeating: "0123456789", count: 120) + "!")])
        try w.close()
        let bytes = try fs.readFile(dir + "/0000000000000000-0000000000000000.wal")
        let last = frames(bytes).last!
        #expect(last.record.type == RecordType.entry.rawValue)
        return (bytes, (last.offset, last.length))
    }

    enum Cut: String, CaseIterable { case truncated, zeroFilled }

    /// Reopens, checks what survived, appends an entry, reopens and checks it was kept.
    static func reopenAndAppend(fs: any FileSystem, dir: String, expectLast: UInt64, context: String) async throws {
        let w: WAL
        let c: WAL.Contents
        do {
            w = try WAL.open(dir: dir, at: snapshot(0, 0), fs: fs, options: WAL.Options(segmentBytes: segmentBytes))
            c = try w.readAll()
        } catch {
            Issue.record("\(context): reopen failed: \(error)")
            return
        }
        #expect(c.entries.map(\.index) == Array(1...expectLast), "\(context)")
        #expect(c.hardState == hardState(term: 1, vote: 1, commit: 19), "\(context)")
        try await w.save(hardState: hardState(term: 1, vote: 1, commit: expectLast), entries: [entry(expectLast + 1, "after-repair")])
        try w.close()
        let again = try WAL.open(dir: dir, at: snapshot(0, 0), fs: fs).readAllAndClose()
        #expect(again.entries.map(\.index) == Array(1...expectLast + 1), "\(context)")
        #expect(again.entries.last?.data == Data("after-repair".utf8), "\(context)")
        #expect(again.hardState.commit == expectLast, "\(context)")
    }

    @Test(arguments: Cut.allCases)
    func cutAtEveryByteOfTheLastRecord(_ cut: Cut) async throws {
        let fs = try faultyFS(seed: 30)
        let (bytes, last) = try await Self.build(fs: fs, dir: "/data/wal")
        let end = last.offset + last.length
        var repaired = 0
        for k in last.offset...end {
            var damaged = Array(bytes[0..<k])
            if cut == .zeroFilled { damaged += [UInt8](repeating: 0, count: bytes.count - k) }
            try fs.setContents(Self.segment, damaged)
            try? fs.remove(Self.segment + ".broken")
            // The record survives only if nothing of it was lost (zero-filled padding is no loss).
            let intact = k == end || (cut == .zeroFilled && bytes[k..<end].allSatisfy { $0 == 0 })
            try await Self.reopenAndAppend(fs: fs, dir: "/data/wal", expectLast: intact ? 21 : 20, context: "\(cut) at \(k - last.offset)")
            if fs.exists(Self.segment + ".broken") {
                repaired += 1
                // The copy keeps the damaged bytes for inspection, as etcd's Repair does.
                #expect(try fs.readFile(Self.segment + ".broken").prefix(k) == damaged.prefix(k))
            }
        }
        // Every cut that left a partial record was repaired (a cut on the record boundary, or
        // a zeroed length word, is a clean end).
        #expect(repaired > last.length - 16)
    }

    /// The same on the real disk, at every 7th byte.
    @Test func cutOnRealDisk() async throws {
        let tmp = TempDir()
        let fs = PosixFileSystem()
        let dir = tmp.path + "/wal"
        let (bytes, last) = try await Self.build(fs: fs, dir: dir)
        let path = dir + "/0000000000000000-0000000000000000.wal"
        for k in stride(from: last.offset, to: last.offset + last.length, by: 7) {
            for cut in Cut.allCases {
                var damaged = Array(bytes[0..<k])
                if cut == .zeroFilled { damaged += [UInt8](repeating: 0, count: bytes.count - k) }
                try fs.writeFile(path, damaged)
                try await Self.reopenAndAppend(fs: fs, dir: dir, expectLast: 20, context: "real disk \(cut) at \(k - last.offset)")
            }
        }
    }

    /// etcd's own rule: a sector of the last record that is all zeros marks a torn write,
    /// even if bytes after it were written (pages reach the disk out of order).
    @Test func zeroSectorInLastRecordIsTorn() async throws {
        let fs = try faultyFS(seed: 31)
        let (bytes, last) = try await Self.build(fs: fs, dir: "/data/wal")
        var damaged = bytes
        let sectorStart = (last.offset + 8 + 511) / 512 * 512
        for i in sectorStart..<sectorStart + 512 { damaged[i] = 0 }
        try fs.setContents(Self.segment, damaged)
        try await Self.reopenAndAppend(fs: fs, dir: "/data/wal", expectLast: 20, context: "zero sector")
    }

    /// A bit flipped in the middle of any record — entries, hard states, metadata, the
    /// snapshot record, and the last record too — is an error naming the segment and the
    /// record's offset.
    @Test func flippedBitIsReportedWithFileAndOffset() async throws {
        let fs = try faultyFS(seed: 32)
        let (bytes, _) = try await Self.build(fs: fs, dir: "/data/wal")
        let all = frames(bytes)
        for (n, f) in all.enumerated() {
            var damaged = bytes
            var word: UInt64 = 0
            for i in 0..<8 { word |= UInt64(bytes[f.offset + i]) << (8 * UInt64(i)) }
            let recordBytes = Int(WALFraming.decodeFrameSize(word).recordBytes)
            let middle = f.offset + 8 + recordBytes / 2
            // The low bit: in a varint's last byte a high bit can lie beyond the field's 32
            // bits (e.g. bit 32 of the crc), which etcd's decoder, like ours, ignores.
            damaged[middle] ^= 0x01
            try fs.setContents(Self.segment, damaged)
            let expectedOffset = Int64(f.offset)
            do {
                let w = try WAL.open(dir: "/data/wal", at: snapshot(0, 0), fs: fs)
                defer { try? w.close() }
                let c = try w.readAll()
                Issue.record("flip in record \(n) (type \(f.record.type)) at \(f.offset) not reported; read \(c.entries.count) entries")
            } catch let e {
                let (file, offset) = Self.location(e)
                #expect(file == "0000000000000000-0000000000000000.wal", "record \(n): \(e)")
                #expect(offset == expectedOffset, "record \(n): \(e)")
                #expect("\(e)".contains("0000000000000000-0000000000000000.wal") && "\(e)".contains("offset \(expectedOffset)"))
            }
        }
        // Undamaged, it reads fine.
        try fs.setContents(Self.segment, bytes)
        #expect(try WAL.open(dir: "/data/wal", at: snapshot(0, 0), fs: fs).readAllAndClose().entries.count == 21)
    }

    /// Corruption in an earlier segment names that segment.
    @Test func flippedBitInEarlierSegment() async throws {
        let fs = try faultyFS(seed: 33)
        let w = try WAL.create(dir: "/data/wal", metadata: Self.metadata, fs: fs, options: WAL.Options(segmentBytes: 2048, prepareSegmentsInBackground: false))
        for i in 1...40 {
            try await w.save(hardState: hardState(term: 1, commit: UInt64(i)), entries: [entry(UInt64(i), String(repeating: "w", count: 100))])
        }
        try w.close()
        let names = try fs.contentsOfDirectory("/data/wal").filter { $0.hasSuffix(".wal") }
        #expect(names.count >= 3)
        let victim = names[1]
        var bytes = try fs.readFile("/data/wal/" + victim)
        let f = frames(bytes).first { $0.record.type == RecordType.entry.rawValue }!
        bytes[f.offset + f.length / 2] ^= 0x01
        try fs.setContents("/data/wal/" + victim, bytes)
        #expect(throws: WALError.crcMismatch(file: victim, offset: Int64(f.offset))) {
            try WAL.open(dir: "/data/wal", at: snapshot(0, 0), fs: fs).readAll()
        }
    }

    /// A record cut short in a segment that is not the last is corruption, not a torn tail.
    @Test func truncatedEarlierSegmentIsAnError() async throws {
        let fs = try faultyFS(seed: 34)
        let w = try WAL.create(dir: "/data/wal", metadata: Self.metadata, fs: fs, options: WAL.Options(segmentBytes: 2048, prepareSegmentsInBackground: false))
        for i in 1...30 {
            try await w.save(entries: [entry(UInt64(i), String(repeating: "v", count: 100))])
        }
        try w.close()
        let names = try fs.contentsOfDirectory("/data/wal").filter { $0.hasSuffix(".wal") }
        let bytes = try fs.readFile("/data/wal/" + names[0])
        let last = frames(bytes).last!
        try fs.setContents("/data/wal/" + names[0], Array(bytes[0..<last.offset + 20]))
        #expect(throws: WALError.unexpectedEOF(file: names[0], offset: Int64(last.offset))) {
            try WAL.open(dir: "/data/wal", at: snapshot(0, 0), fs: fs).readAll()
        }
    }

    static func location(_ e: WALError) -> (String?, Int64?) {
        switch e {
        case .crcMismatch(let f, let o), .crcChainMismatch(let f, let o), .unexpectedEOF(let f, let o),
             .metadataConflict(let f, let o), .snapshotMismatch(let f, let o):
            return (f, o)
        case .corruptRecord(let f, let o, _), .recordTooLarge(let f, let o, _), .sliceOutOfRange(let f, let o, _):
            return (f, o)
        case .unexpectedRecordType(_, let f, let o):
            return (f, o)
        default:
            return (nil, nil)
        }
    }
}
