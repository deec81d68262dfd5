import FileIO

/// Reads records from a run of segments, as etcd's wal decoder does:
/// - a zero length word, or the end of a file, ends that segment (the rest of a segment is
///   preallocated zeros) and reading goes on with the next one;
/// - a record cut short, or failing to parse or to match the rolling CRC, in the LAST segment
///   is a torn tail when it looks like one (see `looksTorn`): reading stops there and the
///   caller repairs the file;
/// - anything else is corruption: an error naming the file and the record's offset.
struct Decoder {
    struct Source {
        let name: String
        let handle: any FileIOHandle
    }

    enum Outcome {
        /// A valid record that starts at `offset` of `sources[file]`.
        case record(WALRecord, file: Int, offset: Int64)
        /// Clean end of the last segment.
        case end
        /// The last segment ends with a torn record at `offset`: everything from there on is
        /// garbage from an interrupted write.
        case torn(offset: Int64, reason: String)
    }

    /// Sector size assumed by the torn-write check (etcd's minSectorSize).
    static let sectorBytes: Int64 = 512

    let sources: [Source]
    private(set) var file = 0
    /// Offset in the current file just after the last valid record.
    private(set) var lastValidOffset: Int64 = 0
    /// The rolling CRC after the last valid record.
    private(set) var crc: UInt32 = 0
    private var reader: ChunkReader

    init(_ sources: [Source]) {
        precondition(!sources.isEmpty)
        self.sources = sources
        self.reader = ChunkReader(sources[0].handle)
    }

    var currentName: String { sources[min(file, sources.count - 1)].name }
    var isLastFile: Bool { file >= sources.count - 1 }

    /// Restarts the rolling CRC (at a crc record).
    mutating func updateCRC(_ value: UInt32) { crc = value }

    mutating func next() throws(WALError) -> Outcome {
        while true {
            guard file < sources.count else { return .end }
            let offset = lastValidOffset
            let name = sources[file].name
            let header = try io { try reader.read(8) }
            var word: UInt64 = 0
            if header.count == 8 {
                for i in 0..<8 { word |= UInt64(header[i]) << (8 * UInt64(i)) }
            }
            if header.isEmpty || (header.count == 8 && word == 0) {
                // End of this segment (end of file or preallocated zeros).
                if isLastFile {
                    file += 1
                    return .end
                }
                file += 1
                lastValidOffset = 0
                reader = ChunkReader(sources[file].handle)
                continue
            }
            if header.count < 8 {
                guard isLastFile else { throw .unexpectedEOF(file: name, offset: offset) }
                return .torn(offset: offset, reason: "partial length word")
            }
            let (recBytes, padBytes) = WALFraming.decodeFrameSize(word)
            if recBytes >= WALFraming.maxRecordBytes - padBytes {
                throw .recordTooLarge(file: name, offset: offset, bytes: recBytes)
            }
            let total = Int(recBytes + padBytes)
            let data = try io { try reader.read(total) }
            if data.count < total {
                guard isLastFile else { throw .unexpectedEOF(file: name, offset: offset) }
                return .torn(offset: offset, reason: "record cut short at end of file")
            }
            let record: WALRecord
            do {
                record = try data.withUnsafeBytes { raw throws(WALFraming.WireError) in
                    try WALFraming.decodeRecord(UnsafeRawBufferPointer(rebasing: raw[0..<Int(recBytes)]))
                }
            } catch {
                if try looksTorn(data, recordBytes: Int(recBytes), at: offset) {
                    return .torn(offset: offset, reason: "unparsable record (\(error))")
                }
                throw .corruptRecord(file: name, offset: offset, reason: "\(error)")
            }
            if record.type != RecordType.crc.rawValue {
                let next = CRC32C.update(crc, record.data ?? [])
                if record.crc != next {
                    if try looksTorn(data, recordBytes: Int(recBytes), at: offset) {
                        return .torn(offset: offset, reason: "crc mismatch in a torn record")
                    }
                    throw .crcMismatch(file: name, offset: offset)
                }
                crc = next
            }
            lastValidOffset = offset + 8 + Int64(total)
            return .record(record, file: file, offset: offset)
        }
    }

    /// Whether a record that failed to parse or to match its CRC is the remains of an
    /// interrupted write rather than corruption. Only in the last segment, and only if:
    /// - (etcd's isTornEntry) some 512-byte-sector-aligned piece of the record is all zeros: a
    ///   sector that was never written (disks write sectors atomically); or
    /// - (swetcd, for disks or tests that tear inside a sector) the record's last byte is zero
    ///   and every byte after the record to the end of the file is zero: the write stopped
    ///   inside this record and nothing was ever written after it. A flipped bit in a record
    ///   that is followed by anything, or that still ends in its own non-zero last byte, is
    ///   corruption.
    private func looksTorn(_ data: [UInt8], recordBytes: Int, at offset: Int64) throws(WALError) -> Bool {
        guard isLastFile else { return false }
        var fileOff = offset + 8
        var cur = 0
        while cur < data.count {
            let chunk = min(Int(Decoder.sectorBytes - fileOff % Decoder.sectorBytes), data.count - cur)
            if data[cur..<cur + chunk].allSatisfy({ $0 == 0 }) { return true }
            fileOff += Int64(chunk)
            cur += chunk
        }
        guard recordBytes > 0, data[recordBytes - 1] == 0 else { return false }
        return try io { try reader.isZero(from: offset + 8 + Int64(data.count)) }
    }
}

/// Sequential reads over a file through a buffer of a few hundred KiB.
struct ChunkReader {
    static let chunkBytes = 256 * 1024

    let handle: any FileIOHandle
    private var buffer: [UInt8] = []
    private var pos = 0
    /// File offset of buffer[0].
    private var bufferOffset: Int64 = 0
    private var eof = false

    init(_ handle: any FileIOHandle) { self.handle = handle }

    /// Up to `n` bytes; fewer only at end of file.
    mutating func read(_ n: Int) throws -> [UInt8] {
        while buffer.count - pos < n && !eof {
            if pos > 0 {
                buffer.removeSubrange(0..<pos)
                bufferOffset += Int64(pos)
                pos = 0
            }
            let want = max(ChunkReader.chunkBytes, n - buffer.count)
            let got = try handle.read(at: bufferOffset + Int64(buffer.count), count: want)
            if got.count < want { eof = true }
            buffer.append(contentsOf: got)
        }
        let take = min(n, buffer.count - pos)
        let out = Array(buffer[pos..<pos + take])
        pos += take
        return out
    }

    /// Whether every byte from `offset` to the end of the file is zero.
    func isZero(from offset: Int64) throws -> Bool {
        var off = offset
        while true {
            let chunk = try handle.read(at: off, count: 1 << 20)
            if !chunk.allSatisfy({ $0 == 0 }) { return false }
            if chunk.count < 1 << 20 { return true }
            off += Int64(chunk.count)
        }
    }
}
