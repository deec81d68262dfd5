import Backend
import FileIO

// Helpers shared by the tests (no test framework here, so the file also builds into ad-hoc
// tools): hex, a seeded generator, the dump format and the operation scripts of
// Tools/bbolt-check (the same script runs against real bbolt and against Backend).

func hex(_ b: [UInt8]) -> String {
    if b.isEmpty { return "-" }
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(b.count * 2)
    for x in b { out.append(digits[Int(x >> 4)]); out.append(digits[Int(x & 15)]) }
    return String(decoding: out, as: UTF8.self)
}

func unhex(_ s: Substring) -> [UInt8] {
    if s == "-" { return [] }
    var out: [UInt8] = []
    out.reserveCapacity(s.count / 2)
    var hi: UInt8 = 0
    var odd = false
    for c in s.utf8 {
        let v: UInt8 = c <= 57 ? c - 48 : c - 87
        if odd { out.append(hi << 4 | v) } else { hi = v }
        odd.toggle()
    }
    return out
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// %016x of n.
func hex16(_ n: Int64) -> String {
    let h = String(UInt64(bitPattern: n), radix: 16)
    return String(repeating: "0", count: max(0, 16 - h.count)) + h
}

/// The xorshift of bbolt-check's putn.
struct XorShift {
    var s: UInt64
    init(seed: UInt64) { s = seed | 1 }
    mutating func next() -> UInt64 {
        s ^= s << 13
        s ^= s >> 7
        s ^= s << 17
        return s
    }
}

/// Every bucket, key and value of the database, in bbolt-check's dump format.
func dumpDB(_ db: BoltDB) throws -> String {
    var out = ""
    try db.view { tx in
        try tx.forEachBucket { name, b in try dumpBucket(b, path: hex(name), into: &out) }
    }
    return out
}

func dumpBucket(_ b: BoltBucket, path: String, into out: inout String) throws {
    out += "B \(path) seq=\(b.sequence)\n"
    var subs: [[UInt8]] = []
    try b.forEach { k, v in
        if let v {
            out += "K \(path) \(hex(k)) \(hex(v))\n"
        } else {
            subs.append(k)
            out += "K \(path) \(hex(k)) bucket\n"
        }
    }
    for k in subs { try dumpBucket(try b.bucket(k)!, path: path + "/" + hex(k), into: &out) }
}

struct ScriptError: Error, CustomStringConvertible {
    var description: String
}

/// Applies a bbolt-check script with Backend (same semantics as `bbolt-check run`).
func runScript(_ script: String, path: String, fileSystem: any FileSystem = PosixFileSystem(),
               baseOptions: BoltOptions = BoltOptions()) throws {
    var db: BoltDB?
    var tx: BoltTx?
    var cache: [String: BoltBucket] = [:]
    func bucket(_ p: Substring) throws -> BoltBucket {
        if let b = cache[String(p)] { return b }
        let parts = p.split(separator: "/", omittingEmptySubsequences: false).map { unhex($0) }
        guard var b = try tx!.bucket(parts[0]) else { throw ScriptError(description: "no bucket \(p)") }
        for n in parts.dropFirst() {
            guard let c = try b.bucket(n) else { throw ScriptError(description: "no bucket \(p)") }
            b = c
        }
        cache[String(p)] = b
        return b
    }
    func parent(_ p: Substring) -> (Substring?, [UInt8]) {
        let parts = p.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count == 1 { return (nil, unhex(parts[0])) }
        let pp = p[p.startIndex..<p.lastIndex(of: "/")!]
        return (pp, unhex(parts.last!))
    }
    for line in script.split(separator: "\n") {
        let f = line.split(separator: " ")
        if f.isEmpty || f[0].hasPrefix("#") { continue }
        switch f[0] {
        case "open":
            try db?.close()
            var o = baseOptions
            o.pageSize = Int(f[1])!
            o.noFreelistSync = f[2] == "1"
            db = try BoltDB.open(path: path, fileSystem: fileSystem, options: o)
        case "close":
            try db!.close()
            db = nil
        case "begin":
            tx = try db!.beginWrite()
            cache = [:]
        case "commit":
            try tx!.commit()
            tx = nil
        case "rollback":
            tx!.rollback()
            tx = nil
        case "fill":
            try bucket(f[1]).fillPercent = Double(f[2])!
        case "create":
            let (pp, name) = parent(f[1])
            if let pp { try bucket(pp).createBucket(name) } else { try tx!.createBucket(name) }
        case "delbucket":
            let (pp, name) = parent(f[1])
            if let pp { try bucket(pp).deleteBucket(name) } else { try tx!.deleteBucket(name) }
            for k in Array(cache.keys) where k == f[1] || k.hasPrefix(f[1] + "/") { cache[k] = nil }
        case "put":
            try bucket(f[1]).put(unhex(f[2]), unhex(f[3]))
        case "del":
            try bucket(f[1]).delete(unhex(f[2]))
        case "seq":
            try bucket(f[1]).setSequence(UInt64(f[2])!)
        case "putn":
            let b = try bucket(f[1])
            let prefix = unhex(f[2])
            let first = Int64(f[3])!, count = Int64(f[4])!, size = Int(f[5])!
            var rng = XorShift(seed: UInt64(f[6])!)
            for i in 0..<count {
                var v = [UInt8](repeating: 0, count: size)
                for j in 0..<size { v[j] = UInt8(truncatingIfNeeded: rng.next()) }
                try b.put(prefix + bytes(hex16(first + i)), v)
            }
        case "deln":
            let b = try bucket(f[1])
            let prefix = unhex(f[2])
            let first = Int64(f[3])!, count = Int64(f[4])!, step = Int64(f[5])!
            for i in 0..<count { try b.delete(prefix + bytes(hex16(first + i * step))) }
        default:
            throw ScriptError(description: "unknown op \(f[0])")
        }
    }
    if let tx { try tx.commit() }
    try db?.close()
}
