import Foundation
import Glibc
import Synchronization
import EtcdProto
import FileIO
@testable import WAL

func entry(_ index: UInt64, term: UInt64 = 1, _ payload: String? = nil) -> Raftpb_Entry {
    var e = Raftpb_Entry()
    e.index = index
    e.term = term
    e.type = .entryNormal
    if let payload { e.data = Data(payload.utf8) }
    return e
}

func hardState(term: UInt64, vote: UInt64 = 0, commit: UInt64) -> Raftpb_HardState {
    var s = Raftpb_HardState()
    s.term = term
    s.vote = vote
    s.commit = commit
    return s
}

func snapshot(_ index: UInt64, _ term: UInt64) -> Walpb_Snapshot {
    var s = Walpb_Snapshot()
    s.index = index
    s.term = term
    return s
}

/// A faulty file system with a durable `/data` directory.
func faultyFS(seed: UInt64, model: PowerLossModel = .tornLastPage) throws -> FaultyFileSystem {
    let fs = FaultyFileSystem(seed: seed, model: model)
    try fs.createDirectories("/data")
    try fs.syncDirectory("/data")
    try fs.syncDirectory("/")
    return fs
}

/// A fresh directory on the real disk, removed by `cleanup`.
final class TempDir {
    let path: String

    init() {
        var template = Array("/tmp/swetcd-wal-test-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil, "mkdtemp failed")
        path = String(cString: p!)
    }

    deinit {
        try? PosixFileSystem().removeAll(path)
    }
}

/// The frames of a segment file: (offset, total frame bytes, record), up to the first zero
/// length word or end of data. For locating records in tests, not for reading WALs.
func frames(_ bytes: [UInt8]) -> [(offset: Int, length: Int, record: WALRecord)] {
    var out: [(Int, Int, WALRecord)] = []
    var off = 0
    while off + 8 <= bytes.count {
        var word: UInt64 = 0
        for i in 0..<8 { word |= UInt64(bytes[off + i]) << (8 * UInt64(i)) }
        if word == 0 { break }
        let (rec, pad) = WALFraming.decodeFrameSize(word)
        let total = 8 + Int(rec) + Int(pad)
        guard off + total <= bytes.count else { break }
        let r = bytes.withUnsafeBytes { raw in
            try? WALFraming.decodeRecord(UnsafeRawBufferPointer(rebasing: raw[off + 8..<off + 8 + Int(rec)]))
        }
        guard let r else { break }
        out.append((off, total, r))
        off += total
    }
    return out
}

/// Length of the records in a segment (the offset after the last frame).
func usedLength(_ bytes: [UInt8]) -> Int {
    guard let last = frames(bytes).last else { return 0 }
    return last.offset + last.length
}

func hex(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

func unhex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = s.utf8.makeIterator()
    while let a = it.next(), let b = it.next() {
        out.append(UInt8(String(decoding: [a, b], as: UTF8.self), radix: 16)!)
    }
    return out
}

/// A FileSystem wrapper whose fdatasync calls can be held at a gate, to show group commit
/// deterministically: while the writer waits inside one fdatasync, everything submitted
/// must go into the next write and sync.
final class GatedFileSystem: FileSystem, @unchecked Sendable {
    let inner: any FileSystem
    var stats: IOStats { inner.stats }
    private let cond = NSCondition()
    private var open = true
    private var inside = 0

    init(_ inner: any FileSystem) { self.inner = inner }

    func closeGate() { cond.lock(); open = false; cond.unlock() }
    func openGate() { cond.lock(); open = true; cond.broadcast(); cond.unlock() }

    /// Blocks until a dataSync is waiting at the (closed) gate.
    func waitUntilSyncIsHeld() {
        cond.lock()
        while inside == 0 { cond.wait() }
        cond.unlock()
    }

    fileprivate func gate() {
        cond.lock()
        inside += 1
        cond.broadcast()
        while !open { cond.wait() }
        inside -= 1
        cond.unlock()
    }

    func open(_ path: String, options: OpenOptions, permissions: UInt32) throws -> any FileIOHandle {
        GatedHandle(try inner.open(path, options: options, permissions: permissions), self)
    }
    func contentsOfDirectory(_ path: String) throws -> [String] { try inner.contentsOfDirectory(path) }
    func createDirectory(_ path: String, permissions: UInt32) throws { try inner.createDirectory(path, permissions: permissions) }
    func rename(_ from: String, to: String) throws { try inner.rename(from, to: to) }
    func remove(_ path: String) throws { try inner.remove(path) }
    func exists(_ path: String) -> Bool { inner.exists(path) }
    func isDirectory(_ path: String) -> Bool { inner.isDirectory(path) }
    func syncDirectory(_ path: String) throws { try inner.syncDirectory(path) }
    func lockDirectory(_ path: String) throws -> any DirectoryLock { try inner.lockDirectory(path) }
}

final class GatedHandle: FileIOHandle, @unchecked Sendable {
    let inner: any FileIOHandle
    let fs: GatedFileSystem
    init(_ inner: any FileIOHandle, _ fs: GatedFileSystem) {
        self.inner = inner
        self.fs = fs
    }
    var path: String { inner.path }
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws { try inner.write(bytes, at: offset) }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int { try inner.read(into: buffer, at: offset) }
    func size() throws -> Int64 { try inner.size() }
    func truncate(to size: Int64) throws { try inner.truncate(to: size) }
    func preallocate(to size: Int64, keepSize: Bool) throws { try inner.preallocate(to: size, keepSize: keepSize) }
    func dataSync() throws {
        fs.gate()
        try inner.dataSync()
    }
    func sync() throws { try inner.sync() }
    func tryLock() throws { try inner.tryLock() }
    func close() throws { try inner.close() }
}

/// Thread-safe box for test bookkeeping.
final class Locked<T: Sendable>: @unchecked Sendable {
    private let m: Mutex<T>
    init(_ v: T) { m = Mutex(v) }
    func withLock<R>(_ body: (inout T) throws -> R) rethrows -> R {
        try m.withLock { v in try body(&v) }
    }
    var value: T { m.withLock { $0 } }
}
