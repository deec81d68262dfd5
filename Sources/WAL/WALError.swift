import FileIO
import Glibc

/// Errors of the WAL. Corruption errors name the segment file and the byte offset of the
/// record at fault; the message starts with etcd's wording where etcd has one.
public enum WALError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `create` on a directory that already holds WAL segments (etcd: os.ErrExist).
    case exists(dir: String)
    /// No segment, none at or before the snapshot index, or a gap in the sequence.
    case fileNotFound(dir: String)
    /// A segment is locked by another open WAL (this or another process, etcd included).
    case locked(path: String)
    /// A record's CRC does not match the rolling CRC (not a torn tail).
    case crcMismatch(file: String, offset: Int64)
    /// A crc record disagrees with the running CRC carried from the previous segment.
    case crcChainMismatch(file: String, offset: Int64)
    /// A record that cannot be parsed (not a torn tail).
    case corruptRecord(file: String, offset: Int64, reason: String)
    /// A length word announcing a record of 10 MiB or more.
    case recordTooLarge(file: String, offset: Int64, bytes: Int64)
    /// A record cut short before the last segment (only the last segment may end torn).
    case unexpectedEOF(file: String, offset: Int64)
    case unexpectedRecordType(type: Int64, file: String, offset: Int64)
    case metadataConflict(file: String, offset: Int64)
    case snapshotMismatch(file: String, offset: Int64)
    case snapshotNotFound(index: UInt64, term: UInt64)
    /// An entry whose index leaves a gap after the entries read so far.
    case sliceOutOfRange(file: String, offset: Int64, index: UInt64)
    case badWALName(String)
    /// `save` before `readAll` on an opened WAL, or `readAll` twice.
    case notReadyForAppend
    case alreadyRead
    case closed
    /// An earlier write or sync failed: the WAL stopped (fail-stop, as etcd panics), since
    /// what reached the disk is unknown.
    case stopped(cause: String)
    /// A file-system error.
    case io(FileIOError)

    public var description: String {
        switch self {
        case .exists(let d): return "wal: \(d): file exists (a WAL is already there)"
        case .fileNotFound(let d): return "wal: file not found (\(d))"
        case .locked(let p): return "wal: \(p) is locked by another process (is another etcd/swetcd using this data dir?)"
        case .crcMismatch(let f, let o): return "walpb: crc mismatch in \(f) at offset \(o)"
        case .crcChainMismatch(let f, let o): return "wal: crc mismatch in \(f) at offset \(o) (crc record does not continue the previous segment)"
        case .corruptRecord(let f, let o, let r): return "wal: corrupt record in \(f) at offset \(o): \(r)"
        case .recordTooLarge(let f, let o, let b): return "wal: max entry size limit exceeded in \(f) at offset \(o) (\(b) bytes)"
        case .unexpectedEOF(let f, let o): return "wal: unexpected EOF in \(f) at offset \(o) (only the last segment may end with a torn record)"
        case .unexpectedRecordType(let t, let f, let o): return "wal: unexpected block type \(t) in \(f) at offset \(o)"
        case .metadataConflict(let f, let o): return "wal: conflicting metadata found in \(f) at offset \(o)"
        case .snapshotMismatch(let f, let o): return "wal: snapshot mismatch in \(f) at offset \(o)"
        case .snapshotNotFound(let i, let t): return "wal: snapshot not found (index \(i), term \(t))"
        case .sliceOutOfRange(let f, let o, let i): return "wal: slice bounds out of range: entry \(i) in \(f) at offset \(o) leaves a gap"
        case .badWALName(let n): return "wal: bad wal name \(n)"
        case .notReadyForAppend: return "wal: read all records before appending"
        case .alreadyRead: return "wal: decoder not found (records already read)"
        case .closed: return "wal: closed"
        case .stopped(let c): return "wal: stopped after an I/O failure: \(c)"
        case .io(let e): return "wal: \(e)"
        }
    }
}

/// Runs `body`, turning file-system errors into `WALError.io`.
@inline(__always)
func io<T>(_ body: () throws -> T) throws(WALError) -> T {
    do {
        return try body()
    } catch let e as WALError {
        throw e
    } catch let e as FileIOError {
        throw .io(e)
    } catch {
        throw .stopped(cause: "\(error)")
    }
}

/// Takes the exclusive lock of a WAL file, retrying for up to ~50 ms if it is held.
///
/// A lock this process just released can still be held for a moment by a child process that
/// is between fork and exec: the child shares the open file description (and so its lock)
/// until exec closes the close-on-exec descriptors (etcd's renameWAL mentions the same
/// window). A lock really held by another WAL still fails, with `.locked`, after the retries.
func lockWAL(_ handle: any FileIOHandle) throws {
    var attempt = 0
    while true {
        do {
            try handle.tryLock()
            return
        } catch FileIOError.locked(let path) {
            attempt += 1
            if attempt > 5 { throw FileIOError.locked(path: path) }
            usleep(10_000)
        }
    }
}
