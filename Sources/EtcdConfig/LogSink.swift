#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Where a log line goes: etcd's `--log-outputs` values map onto these
/// ("default" and "stderr" → stderr, "stdout" → stdout, anything else → a file
/// opened for appending, created 0666 & umask, as zap opens it).
public enum LogTarget: Hashable, Sendable {
    case stderr
    case stdout
    case file(String)

    /// The target for one `--log-outputs` value.
    public init(logOutput: String) {
        switch logOutput {
        case "default", "stderr": self = .stderr
        case "stdout": self = .stdout
        default: self = .file(logOutput)
        }
    }
}

/// Something a handler writes whole lines to. Implementations must write each
/// line atomically with respect to other lines.
public protocol LogLineWriter: Sendable {
    func write(_ line: String)
}

/// A file descriptor with a lock, shared by every handler writing to it.
public final class FileDescriptorSink: LogLineWriter {
    private let fd: Int32
    private let closeOnDeinit: Bool
    private let lock = Mutex<Void>(())

    init(fd: Int32, closeOnDeinit: Bool) {
        self.fd = fd
        self.closeOnDeinit = closeOnDeinit
    }

    deinit {
        if closeOnDeinit { _ = close(fd) }
    }

    public func write(_ line: String) {
        var bytes = Array(line.utf8)
        lock.withLock { _ in
            bytes.withUnsafeMutableBytes { buf in
                var off = 0
                while off < buf.count {
                    let n = sysWrite(fd, buf.baseAddress! + off, buf.count - off)
                    if n < 0 {
                        if errno == EINTR { continue }
                        return
                    }
                    off += n
                }
            }
        }
    }

    public static let standardError = FileDescriptorSink(fd: 2, closeOnDeinit: false)
    public static let standardOutput = FileDescriptorSink(fd: 1, closeOnDeinit: false)

    private static let files = Mutex<[String: FileDescriptorSink]>([:])

    /// The shared sink for a target; files are opened once per path (O_WRONLY|O_APPEND|O_CREAT, 0666).
    /// The error text is zap's: `open sink "PATH": open PATH: no such file or directory`.
    public static func open(_ target: LogTarget) throws(ConfigError) -> FileDescriptorSink {
        switch target {
        case .stderr: return standardError
        case .stdout: return standardOutput
        case .file(let path):
            let result: Result<FileDescriptorSink, ConfigError> = files.withLock { files in
                if let existing = files[path] { return .success(existing) }
                let fd = path.withCString { sysOpen($0, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o666) }
                if fd < 0 {
                    let msg = "open sink \(goQuote(path)): open \(path): \(goErrnoText(errno))"
                    return .failure(ConfigError(message: msg, exitCode: 1, lines: [], logSpec: nil))
                }
                let sink = FileDescriptorSink(fd: fd, closeOnDeinit: true)
                files[path] = sink
                return .success(sink)
            }
            return try result.get()
        }
    }
}

/// Collects lines in memory (for tests and for rendering texts).
public final class MemoryLogSink: LogLineWriter {
    private let storage = Mutex<[String]>([])
    public init() {}
    public func write(_ line: String) { storage.withLock { $0.append(line) } }
    public var lines: [String] { storage.withLock { $0 } }
}

private func sysWrite(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int) -> Int {
    #if canImport(Darwin)
    return Darwin.write(fd, p, n)
    #elseif canImport(Musl)
    return Musl.write(fd, p, n)
    #else
    return Glibc.write(fd, p, n)
    #endif
}

private func sysOpen(_ path: UnsafePointer<CChar>, _ flags: Int32, _ mode: mode_t) -> Int32 {
    #if canImport(Darwin)
    return Darwin.open(path, flags, mode)
    #elseif canImport(Musl)
    return Musl.open(path, flags, mode)
    #else
    return Glibc.open(path, flags, mode)
    #endif
}
