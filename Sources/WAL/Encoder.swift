import FileIO

/// Appends framed records to one segment file, chaining the rolling CRC, through a buffer
/// that is written out in whole pages (etcd's PageWriter): while the buffer grows past
/// `watermarkBytes` only the page-aligned part is written, so writes start and end on page
/// boundaries except for the final flush before a sync.
struct Encoder {
    /// etcd's walPageBytes: 8 × the minimum sector size.
    static let pageBytes = 4096
    /// etcd's PageWriter buffers 128 KiB before writing pages out.
    static let watermarkBytes = 128 * 1024

    let handle: any FileIOHandle
    /// The rolling CRC after the last record encoded.
    private(set) var crc: UInt32
    /// File offset of buffer[0].
    private var flushedOffset: Int64
    private var buffer: [UInt8] = []

    init(handle: any FileIOHandle, offset: Int64, crc: UInt32) {
        self.handle = handle
        self.flushedOffset = offset
        self.crc = crc
        buffer.reserveCapacity(Encoder.watermarkBytes + Encoder.pageBytes)
    }

    /// File offset after the last record encoded (flushed or not).
    var offset: Int64 { flushedOffset + Int64(buffer.count) }

    /// Encodes one record: the CRC continues over `data`, and the record carries the result.
    /// A crc record (no data) carries the running CRC itself.
    mutating func encode(_ type: RecordType, _ data: [UInt8]?) throws {
        if let data {
            crc = CRC32C.update(crc, data)
            data.withUnsafeBytes { WALFraming.appendFrame(type: type.rawValue, crc: crc, data: $0, to: &buffer) }
        } else {
            WALFraming.appendFrame(type: type.rawValue, crc: crc, data: nil, to: &buffer)
        }
        if buffer.count >= Encoder.watermarkBytes {
            try writePages()
        }
    }

    /// Writes the page-aligned prefix of the buffer.
    private mutating func writePages() throws {
        let end = offset
        let alignedEnd = end - end % Int64(Encoder.pageBytes)
        guard alignedEnd > flushedOffset else { return }
        let n = Int(alignedEnd - flushedOffset)
        try buffer.withUnsafeBytes { try handle.write(UnsafeRawBufferPointer(rebasing: $0[0..<n]), at: flushedOffset) }
        buffer.removeSubrange(0..<n)
        flushedOffset = alignedEnd
    }

    /// Writes everything buffered (the last, partial page included).
    mutating func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try handle.write($0, at: flushedOffset) }
        flushedOffset += Int64(buffer.count)
        buffer.removeAll(keepingCapacity: true)
    }
}
