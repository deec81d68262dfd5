import Glibc
import Synchronization

/// The real file system: POSIX calls on the machine's files.
///
/// - writes are `pwrite`, reads `pread` (no shared file position);
/// - `dataSync` is `fdatasync`;
/// - `preallocate` is `fallocate` (mode 0 or FALLOC_FL_KEEP_SIZE), falling back to
///   `posix_fallocate` / `ftruncate` where the file system lacks it, as etcd does;
/// - `tryLock` is an open-file-description write lock (`F_OFD_SETLK`, what etcd 3.4's
///   fileutil takes on Linux, so swetcd and etcd exclude each other on one data dir), falling
///   back to `flock(LOCK_EX|LOCK_NB)` where OFD locks are missing;
/// - `syncDirectory` opens the directory read-only and fsyncs it.
public final class PosixFileSystem: FileSystem {
    public let stats = IOStats()

    public init() {}

    public func open(_ path: String, options: OpenOptions, permissions: UInt32) throws -> any FileIOHandle {
        var flags: Int32 = O_CLOEXEC
        switch (options.contains(.read), options.contains(.write)) {
        case (_, false): flags |= O_RDONLY
        case (false, true): flags |= O_WRONLY
        case (true, true): flags |= O_RDWR
        }
        if options.contains(.create) { flags |= O_CREAT }
        if options.contains(.exclusive) { flags |= O_EXCL }
        if options.contains(.truncate) { flags |= O_TRUNC }
        let fd = retryOnEINTR { Glibc.open(path, flags, mode_t(permissions)) }
        if fd < 0 { throw posixError("open", path) }
        var st = stat()
        if fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
            _ = Glibc.close(fd)
            throw FileIOError.isADirectory(path: path)
        }
        return PosixFileHandle(fd: fd, path: path, options: options, stats: stats)
    }

    public func contentsOfDirectory(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw posixError("opendir", path) }
        defer { closedir(dir) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw posixError("readdir", path) }
                break
            }
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public func createDirectory(_ path: String, permissions: UInt32) throws {
        if mkdir(path, mode_t(permissions)) != 0 { throw posixError("mkdir", path) }
    }

    public func rename(_ from: String, to: String) throws {
        stats.record { $0.renames += 1 }
        if Glibc.rename(from, to) != 0 { throw posixError("rename to \(to)", from) }
    }

    public func remove(_ path: String) throws {
        if isDirectory(path) {
            if rmdir(path) != 0 { throw posixError("rmdir", path) }
        } else if unlink(path) != 0 {
            throw posixError("unlink", path)
        }
    }

    public func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    public func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public func syncDirectory(_ path: String) throws {
        stats.record { $0.directorySyncs += 1 }
        let fd = retryOnEINTR { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        if fd < 0 { throw posixError("open directory", path) }
        defer { _ = Glibc.close(fd) }
        if retryOnEINTR({ fsync(fd) }) != 0 { throw posixError("fsync directory", path) }
    }

    public func lockDirectory(_ path: String) throws -> any DirectoryLock {
        let fd = retryOnEINTR { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        if fd < 0 { throw posixError("open directory", path) }
        if Syscalls.flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            _ = Glibc.close(fd)
            if e == EWOULDBLOCK || e == EAGAIN { throw FileIOError.locked(path: path) }
            throw FileIOError.system(operation: "flock", path: path, errno: e)
        }
        return PosixDirectoryLock(fd: fd, path: path)
    }
}

final class PosixDirectoryLock: DirectoryLock {
    let path: String
    private let fd: Mutex<Int32>

    init(fd: Int32, path: String) {
        self.fd = Mutex(fd)
        self.path = path
    }

    func unlock() throws {
        let old = fd.withLock { (v: inout Int32) -> Int32 in let o = v; v = -1; return o }
        if old >= 0 { _ = Glibc.close(old) }  // closing the descriptor drops the flock
    }

    deinit { try? unlock() }
}

final class PosixFileHandle: FileIOHandle {
    let path: String
    private let options: OpenOptions
    private let stats: IOStats
    /// The descriptor; -1 once closed.
    private let fdState: Mutex<Int32>

    init(fd: Int32, path: String, options: OpenOptions, stats: IOStats) {
        self.fdState = Mutex(fd)
        self.path = path
        self.options = options
        self.stats = stats
    }

    deinit { try? close() }

    private func fd() throws -> Int32 {
        let fd = fdState.withLock { $0 }
        if fd < 0 { throw FileIOError.closed(path: path) }
        return fd
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        let fd = try fd()
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw posixError("pwrite", path)
            }
            done += n
        }
        stats.record { $0.writes += 1; $0.bytesWritten += Int64(bytes.count) }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int {
        let fd = try fd()
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw posixError("pread", path)
            }
            if n == 0 { break }
            done += n
        }
        stats.record { $0.reads += 1 }
        return done
    }

    func size() throws -> Int64 {
        var st = stat()
        if fstat(try fd(), &st) != 0 { throw posixError("fstat", path) }
        return Int64(st.st_size)
    }

    func truncate(to size: Int64) throws {
        let fd = try fd()
        if retryOnEINTR({ ftruncate(fd, off_t(size)) }) != 0 { throw posixError("ftruncate", path) }
    }

    func preallocate(to size: Int64, keepSize: Bool) throws {
        // fallocate returns EINVAL for a zero length; etcd skips it too.
        if size <= 0 { return }
        let fd = try fd()
        stats.record { $0.preallocations += 1 }
        if let fallocate = Syscalls.fallocate {
            let rc = retryOnEINTR { fallocate(fd, keepSize ? Syscalls.FALLOC_FL_KEEP_SIZE : 0, off_t(0), off_t(size)) }
            if rc == 0 { return }
            let e = errno
            guard e == EOPNOTSUPP || e == ENOTSUP || e == ENOSYS else {
                throw FileIOError.system(operation: "fallocate", path: path, errno: e)
            }
        }
        // Not supported by this file system. etcd: keep-size → nothing to do; extend → truncate.
        if keepSize { return }
        if try self.size() < size {
            try truncate(to: size)
        }
    }

    func dataSync() throws {
        let fd = try fd()
        stats.record { $0.dataSyncs += 1 }
        if retryOnEINTR({ fdatasync(fd) }) != 0 { throw posixError("fdatasync", path) }
    }

    func sync() throws {
        let fd = try fd()
        stats.record { $0.fileSyncs += 1 }
        if retryOnEINTR({ fsync(fd) }) != 0 { throw posixError("fsync", path) }
    }

    func tryLock() throws {
        let fd = try fd()
        if options.contains(.write) {
            var fl = flock()
            fl.l_type = Int16(F_WRLCK)
            fl.l_whence = Int16(SEEK_SET)
            fl.l_start = 0
            fl.l_len = 0
            if fcntl(fd, Syscalls.F_OFD_SETLK, &fl) == 0 { return }
            let e = errno
            if e == EAGAIN || e == EACCES || e == EWOULDBLOCK { throw FileIOError.locked(path: path) }
            guard e == EINVAL else { throw FileIOError.system(operation: "fcntl(F_OFD_SETLK)", path: path, errno: e) }
            // No OFD locks on this kernel: etcd falls back to flock, so do we.
        }
        if Syscalls.flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            if e == EWOULDBLOCK || e == EAGAIN { throw FileIOError.locked(path: path) }
            throw FileIOError.system(operation: "flock", path: path, errno: e)
        }
    }

    func close() throws {
        let old = fdState.withLock { (v: inout Int32) -> Int32 in let o = v; v = -1; return o }
        if old >= 0 && Glibc.close(old) != 0 && errno != EINTR {
            throw posixError("close", path)
        }
    }
}

/// libc functions Swift's Glibc module does not surface (fallocate is behind _GNU_SOURCE;
/// `flock` the function is shadowed by `struct flock`), looked up once by name.
enum Syscalls {
    typealias FallocateFn = @convention(c) (Int32, Int32, off_t, off_t) -> Int32
    typealias FlockFn = @convention(c) (Int32, Int32) -> Int32

    static let F_OFD_SETLK: Int32 = 37  // <bits/fcntl-linux.h>
    static let FALLOC_FL_KEEP_SIZE: Int32 = 1

    static let fallocate: FallocateFn? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "fallocate") else { return nil }
        return unsafeBitCast(sym, to: FallocateFn.self)
    }()

    private static let flockFn: FlockFn = {
        let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "flock")!
        return unsafeBitCast(sym, to: FlockFn.self)
    }()

    static func flock(_ fd: Int32, _ op: Int32) -> Int32 {
        retryOnEINTR { flockFn(fd, op) }
    }
}

@inline(__always)
func retryOnEINTR<T: BinaryInteger>(_ call: () -> T) -> T {
    while true {
        let r = call()
        if r >= 0 || errno != EINTR { return r }
    }
}

func posixError(_ op: String, _ path: String) -> FileIOError {
    let e = errno
    switch e {
    case ENOENT: return .notFound(path: path)
    case EEXIST: return .alreadyExists(path: path)
    case ENOTDIR: return .notADirectory(path: path)
    case EISDIR: return .isADirectory(path: path)
    case ENOTEMPTY: return .directoryNotEmpty(path: path)
    default: return .system(operation: op, path: path, errno: e)
    }
}

func describeErrno(_ e: Int32) -> String {
    guard let s = strerror(e) else { return "error" }
    return String(cString: s)
}
