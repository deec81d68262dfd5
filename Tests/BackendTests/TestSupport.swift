import Backend
import FileIO
import Foundation

/// A fresh in-memory file system holding a directory /db.
func memoryFS(seed: UInt64 = 1, model: PowerLossModel = .dropUnsynced) throws -> FaultyFileSystem {
    let fs = FaultyFileSystem(seed: seed, model: model)
    try fs.createDirectory("/db")
    try fs.syncDirectory("/")
    return fs
}

/// A new database at /db/db on an in-memory file system.
func memoryDB(_ options: BoltOptions = BoltOptions(), seed: UInt64 = 1) throws -> (FaultyFileSystem, BoltDB) {
    let fs = try memoryFS(seed: seed)
    return (fs, try BoltDB.open(path: "/db/db", fileSystem: fs, options: options))
}

/// A temporary directory on the real file system, removed by `cleanup()`.
final class TempDir {
    let path: String
    init(_ name: String = "backend") {
        var template = Array("/tmp/swetcd-\(name)-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil, "mkdtemp failed")
        path = String(cString: p!)
    }
    func file(_ name: String) -> String { path + "/" + name }
    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// Key i as etcd-like sequential bytes (16 hex digits).
func seqKey(_ i: Int, prefix: String = "") -> [UInt8] { bytes(prefix + hex16(Int64(i))) }

func value(_ i: Int, size: Int) -> [UInt8] {
    var rng = SplitMix64(seed: UInt64(i) &* 31 &+ UInt64(size))
    return (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
}

/// All keys and values of a bucket, in cursor order (nested buckets as nil values).
func contents(_ b: BoltBucket) throws -> [(key: [UInt8], value: [UInt8]?)] {
    var out: [(key: [UInt8], value: [UInt8]?)] = []
    try b.forEach { out.append(($0, $1)) }
    return out
}

/// The whole database as path → key → value (nested buckets as entries "path/name").
typealias Snapshot = [String: [[UInt8]: [UInt8]]]

func snapshot(_ db: BoltDB) throws -> Snapshot {
    try db.view { tx in try snapshot(tx) }
}

func snapshot(_ tx: BoltTx) throws -> Snapshot {
    var out: Snapshot = [:]
    func walk(_ b: BoltBucket, _ path: String) throws {
        var m: [[UInt8]: [UInt8]] = [:]
        var subs: [[UInt8]] = []
        try b.forEach { k, v in
            if let v { m[k] = v } else { subs.append(k) }
        }
        out[path] = m
        for s in subs { try walk(try b.bucket(s)!, path + "/" + hex(s)) }
    }
    try tx.forEachBucket { name, b in try walk(b, hex(name)) }
    return out
}

/// Locates (building if needed) Tools/bbolt-check; nil with a reason when Go or bbolt is missing.
enum BboltTool {
    static let result: Result<String, ScriptError> = {
        let here = URL(fileURLWithPath: #filePath)
        let script = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Tools/bbolt-check/build.sh").path
        guard FileManager.default.isExecutableFile(atPath: script) else {
            return .failure(ScriptError(description: "\(script) missing"))
        }
        let (code, out, err) = run("/bin/sh", [script])
        if code != 0 {
            return .failure(ScriptError(description: "bbolt-check not built (\(err.trimmingCharacters(in: .whitespacesAndNewlines)))"))
        }
        return .success(out.trimmingCharacters(in: .whitespacesAndNewlines))
    }()

    static var path: String? { try? result.get() }
    static var skipReason: String {
        if case .failure(let e) = result { return e.description }
        return ""
    }

    /// Runs bbolt-check; returns exit code and stdout.
    @discardableResult
    static func call(_ args: [String]) -> (Int32, String, String) {
        run(path!, args)
    }

    static func run(_ exe: String, _ args: [String]) -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        do { try p.run() } catch { return (-1, "", "\(error)") }
        // Read both pipes before waiting, or a large dump fills the pipe and blocks.
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errBox.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let errData = errBox.data
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }
}
