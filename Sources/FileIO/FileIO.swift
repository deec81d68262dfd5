// The one small file-I/O interface of the WAL and the Backend.
//
// Every byte the storage layers put on disk goes through `FileSystem` and `FileIOHandle`, so a
// test can swap the real POSIX implementation (`PosixFileSystem`) for `FaultyFileSystem`, an
// in-memory model of a page cache over a disk that loses every unsynced write at a simulated
// power cut and can tear the page being written. SIGKILL alone cannot show a missing sync
// (the page cache survives it); the faulty file system can.
//
// Durability contract (what both implementations honour and the faulty one enforces):
// - a write is visible to reads at once, but survives a power loss only after `dataSync()` or
//   `sync()` of that file (both also make the file's size durable);
// - a name (create, rename, remove, mkdir) survives a power loss only after
//   `syncDirectory(_:)` of the directory holding it.

/// How to open a file. Mirrors the `open(2)` flags the storage layers use.
public struct OpenOptions: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let read = OpenOptions(rawValue: 1 << 0)
    public static let write = OpenOptions(rawValue: 1 << 1)
    /// Create the file if it does not exist (O_CREAT).
    public static let create = OpenOptions(rawValue: 1 << 2)
    /// Fail with `.alreadyExists` if the file exists (O_EXCL, with `.create`).
    public static let exclusive = OpenOptions(rawValue: 1 << 3)
    /// Truncate an existing file to length 0 (O_TRUNC).
    public static let truncate = OpenOptions(rawValue: 1 << 4)

    public static let readWrite: OpenOptions = [.read, .write]
    public static let createReadWrite: OpenOptions = [.read, .write, .create]
}

/// Errors of the file-I/O layer. Paths are as given by the caller.
public enum FileIOError: Error, Equatable, Sendable, CustomStringConvertible {
    case notFound(path: String)
    case alreadyExists(path: String)
    /// Another open file (in this or another process) holds the exclusive lock.
    case locked(path: String)
    case notADirectory(path: String)
    case isADirectory(path: String)
    case directoryNotEmpty(path: String)
    /// The handle was closed.
    case closed(path: String)
    /// The handle is not open for this kind of access.
    case badAccess(path: String, operation: String)
    /// `FaultyFileSystem` only: the simulated machine lost power; nothing works until `reboot()`.
    case powerLost
    /// `FaultyFileSystem` only: an error injected by the test.
    case injected(operation: String, path: String)
    /// Any other failed system call.
    case system(operation: String, path: String, errno: Int32)

    public var description: String {
        switch self {
        case .notFound(let p): return "\(p): no such file or directory"
        case .alreadyExists(let p): return "\(p): file exists"
        case .locked(let p): return "\(p): file is locked by another process (fileutil: file already locked)"
        case .notADirectory(let p): return "\(p): not a directory"
        case .isADirectory(let p): return "\(p): is a directory"
        case .directoryNotEmpty(let p): return "\(p): directory not empty"
        case .closed(let p): return "\(p): file already closed"
        case .badAccess(let p, let op): return "\(p): \(op): bad file descriptor (not opened for it)"
        case .powerLost: return "simulated power loss: the file system is gone until reboot"
        case .injected(let op, let p): return "\(p): \(op): injected I/O error"
        case .system(let op, let p, let e): return "\(p): \(op): \(describeErrno(e)) (errno \(e))"
        }
    }
}

/// An open file. All offsets are absolute (positional I/O); there is no shared file position.
/// A handle may be used from several threads, but `close()` must not race with other calls.
public protocol FileIOHandle: AnyObject, Sendable {
    /// The path the file was opened under (not updated by a later rename).
    var path: String { get }

    /// Writes all of `bytes` at `offset` (pwrite), extending the file if needed.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws
    /// Reads up to `buffer.count` bytes at `offset` (pread); returns fewer only at end of file.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int
    /// The file's current size (fstat).
    func size() throws -> Int64
    /// Sets the file's size (ftruncate): shrinks, or extends with zeros.
    func truncate(to size: Int64) throws
    /// Reserves disk blocks for the first `size` bytes (fallocate). With `keepSize == false`
    /// the file is extended to at least `size` bytes of zeros (fallocate mode 0, as etcd's
    /// `Preallocate(f, size, true)`); with `true` its size is unchanged (FALLOC_FL_KEEP_SIZE).
    func preallocate(to size: Int64, keepSize: Bool) throws
    /// fdatasync: makes the data and the size durable (not other metadata such as mtime).
    func dataSync() throws
    /// fsync: makes data and all metadata durable.
    func sync() throws
    /// Takes the exclusive lock of the file without waiting, or throws `.locked`.
    /// Held until `close()`. (Linux: an open-file-description lock, as etcd's fileutil takes,
    /// so swetcd and etcd exclude each other; falls back to flock(2).)
    func tryLock() throws
    /// Releases the lock (if any) and the descriptor. Idempotent.
    func close() throws
}

/// An exclusive lock on a directory (flock(2) on its descriptor), held until `unlock()`.
public protocol DirectoryLock: AnyObject, Sendable {
    var path: String { get }
    func unlock() throws
}

/// The file system: names, directories and their durability.
public protocol FileSystem: AnyObject, Sendable {
    /// Opens (or creates, per `options`) a regular file. New files get `permissions` (0600 as etcd).
    func open(_ path: String, options: OpenOptions, permissions: UInt32) throws -> any FileIOHandle
    /// Names in a directory, sorted, without "." and "..".
    func contentsOfDirectory(_ path: String) throws -> [String]
    /// Creates one directory (its parent must exist); `.alreadyExists` if it does.
    func createDirectory(_ path: String, permissions: UInt32) throws
    /// Atomically renames a file or directory, replacing a file (or empty directory) at `to`.
    func rename(_ from: String, to: String) throws
    /// Removes a file or an empty directory.
    func remove(_ path: String) throws
    /// Whether anything exists at `path`.
    func exists(_ path: String) -> Bool
    /// Whether a directory exists at `path`.
    func isDirectory(_ path: String) -> Bool
    /// fsync of the directory itself: makes the names created, renamed or removed in it durable.
    func syncDirectory(_ path: String) throws
    /// Takes an exclusive lock on a directory without waiting, or throws `.locked`.
    func lockDirectory(_ path: String) throws -> any DirectoryLock
    /// Counters of the calls made through this file system (syncs, writes, bytes).
    var stats: IOStats { get }
}

// MARK: - Conveniences shared by all implementations

extension FileSystem {
    public func open(_ path: String, options: OpenOptions) throws -> any FileIOHandle {
        try open(path, options: options, permissions: 0o600)
    }

    public func createDirectory(_ path: String) throws {
        try createDirectory(path, permissions: 0o700)
    }

    /// mkdir -p: creates `path` and any missing parents (0700, as etcd's data dirs).
    public func createDirectories(_ path: String, permissions: UInt32 = 0o700) throws {
        if isDirectory(path) { return }
        let parent = Paths.dirname(path)
        if parent != path && !parent.isEmpty && !exists(parent) {
            try createDirectories(parent, permissions: permissions)
        }
        do {
            try createDirectory(path, permissions: permissions)
        } catch FileIOError.alreadyExists where isDirectory(path) {
            return
        }
    }

    /// rm -rf. Missing paths are not an error.
    public func removeAll(_ path: String) throws {
        guard exists(path) else { return }
        if isDirectory(path) {
            for name in try contentsOfDirectory(path) {
                try removeAll(Paths.join(path, name))
            }
        }
        try remove(path)
    }

    /// The whole content of a file.
    public func readFile(_ path: String) throws -> [UInt8] {
        let f = try open(path, options: .read)
        defer { try? f.close() }
        return try f.readAll()
    }

    /// Creates or replaces a file with `bytes` and makes its content durable (not its name:
    /// call `syncDirectory` for that).
    public func writeFile(_ path: String, _ bytes: [UInt8], permissions: UInt32 = 0o600) throws {
        let f = try open(path, options: [.write, .create, .truncate], permissions: permissions)
        defer { try? f.close() }
        try f.write(bytes, at: 0)
        try f.sync()
    }
}

extension FileIOHandle {
    public func write(_ bytes: [UInt8], at offset: Int64) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    /// Appends at the current end of the file. (Positional: callers that append concurrently
    /// must serialise themselves.)
    public func append(_ bytes: [UInt8]) throws {
        try write(bytes, at: try size())
    }

    /// Up to `count` bytes at `offset`; fewer only at end of file.
    public func read(at offset: Int64, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let n = try out.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        if n < count { out.removeSubrange(n...) }
        return out
    }

    /// The whole file.
    public func readAll() throws -> [UInt8] {
        try read(at: 0, count: Int(try size()))
    }
}

/// Minimal '/'-separated path helpers (no Foundation).
public enum Paths {
    public static func join(_ base: String, _ name: String) -> String {
        if base.isEmpty { return name }
        if name.hasPrefix("/") { return name }
        return base.hasSuffix("/") ? base + name : base + "/" + name
    }

    public static func join(_ base: String, _ names: String...) -> String {
        names.reduce(base) { join($0, $1) }
    }

    /// The parent directory ("." for a bare name, "/" for "/x").
    public static func dirname(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        guard let slash = p.lastIndex(of: "/") else { return "." }
        if slash == p.startIndex { return "/" }
        var parent = p[..<slash]
        while parent.count > 1 && parent.hasSuffix("/") { parent = parent.dropLast() }
        return String(parent)
    }

    /// The last component.
    public static func basename(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        guard let slash = p.lastIndex(of: "/") else { return String(p) }
        return String(p[p.index(after: slash)...])
    }

    /// Removes trailing slashes (keeps "/").
    public static func clean(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        return String(p)
    }
}
