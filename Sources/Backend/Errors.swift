/// Errors of the backend. The descriptions are bbolt's error strings, so logs and messages
/// read as etcd's do.
public enum BoltError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The database is closed.
    case databaseNotOpen
    /// Neither meta page has the magic number (or the file is too short to hold one).
    case invalid
    /// The meta page has another format version.
    case versionMismatch
    /// The meta page's FNV-64a checksum does not match.
    case checksum
    /// The file is shorter than two pages.
    case fileTooSmall
    case txNotWritable
    case txClosed
    case databaseReadOnly
    case bucketNotFound
    case bucketExists
    case bucketNameRequired
    case keyRequired
    case keyTooLarge
    case valueTooLarge
    /// The key holds a bucket where a value was expected, or a value where a bucket was.
    case incompatibleValue
    /// A page or structure of the file is not what bbolt writes (corruption or a bug).
    case corrupted(String)
    /// The database already failed in a way that needs a reopen (e.g. its free page list
    /// could not be restored after a failed commit).
    case needsReopen(String)

    public var description: String {
        switch self {
        case .databaseNotOpen: return "database not open"
        case .invalid: return "invalid database"
        case .versionMismatch: return "version mismatch"
        case .checksum: return "checksum error"
        case .fileTooSmall: return "file size too small"
        case .txNotWritable: return "tx not writable"
        case .txClosed: return "tx closed"
        case .databaseReadOnly: return "database is in read-only mode"
        case .bucketNotFound: return "bucket not found"
        case .bucketExists: return "bucket already exists"
        case .bucketNameRequired: return "bucket name required"
        case .keyRequired: return "key required"
        case .keyTooLarge: return "key too large"
        case .valueTooLarge: return "value too large"
        case .incompatibleValue: return "incompatible value"
        case .corrupted(let s): return "corrupted database: \(s)"
        case .needsReopen(let s): return "database needs reopen: \(s)"
        }
    }
}
