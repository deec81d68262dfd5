import Foundation

/// The in-memory key index: every key ever written (and not yet compacted away),
/// in ascending byte order, each with its `KeyIndex`. etcd: mvcc/index.go `treeIndex`
/// (a B-tree of degree 32 there).
///
/// Here: a sorted list of sorted chunks (a two-level B-tree). Lookup is two binary
/// searches; inserting a new key shifts at most one chunk (<= `maxChunk` entries), so
/// random inserts stay cheap with millions of keys; range scans walk chunks in order.
struct TreeIndex {
    /// Non-empty chunks, each sorted, every key of chunk i < every key of chunk i+1.
    private var chunks: [[KeyIndex]] = []
    /// Each chunk's keys, in the same shape as `chunks`: the searches read these contiguous
    /// keys (inline in `Data` up to 14 bytes) instead of one object per step, which was a
    /// cache miss per comparison on every write.
    private var keys: [[Data]] = []
    private(set) var count = 0

    static let maxChunk = 512

    /// Position of the first key >= `key`: (chunk, offset). offset may equal the chunk's
    /// count only for the last chunk (key beyond every key).
    private func lowerBound(_ key: Data) -> (chunk: Int, offset: Int) {
        if keys.isEmpty { return (0, 0) }
        // First chunk whose last key >= key.
        var lo = 0, hi = keys.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if compareBytes(keys[mid][keys[mid].count - 1], key) < 0 { lo = mid + 1 } else { hi = mid }
        }
        if lo == keys.count {
            return (keys.count - 1, keys[keys.count - 1].count)
        }
        let c = keys[lo]
        var l = 0, h = c.count
        while l < h {
            let mid = (l + h) / 2
            if compareBytes(c[mid], key) < 0 { l = mid + 1 } else { h = mid }
        }
        return (lo, l)
    }

    func keyIndex(_ key: Data) -> KeyIndex? {
        let p = lowerBound(key)
        guard p.chunk < chunks.count, p.offset < chunks[p.chunk].count else { return nil }
        let ki = chunks[p.chunk][p.offset]
        return compareBytes(ki.key, key) == 0 ? ki : nil
    }

    mutating func put(_ key: Data, _ rev: Revision) {
        forWrite(key).put(rev)
    }

    /// The key's index, inserted empty when the key is new, for a write that reads the key
    /// and then puts a revision to it (one search instead of one per step). The caller puts
    /// a revision before anything else reads the index.
    mutating func forWrite(_ key: Data) -> KeyIndex {
        let p = lowerBound(key)
        if p.chunk < chunks.count, p.offset < chunks[p.chunk].count {
            let ki = chunks[p.chunk][p.offset]
            if compareBytes(ki.key, key) == 0 { return ki }
        }
        let ki = KeyIndex(key: key)
        insert(ki, at: p)
        return ki
    }

    /// Inserts a key restored from the backend (etcd: keyIndex.restore + treeIndex.Insert).
    mutating func restore(_ key: Data, created: Revision, modified: Revision, version: Int64) {
        precondition(keyIndex(key) == nil, "restore of a key already indexed")
        let ki = KeyIndex(key: key)
        ki.restore(created: created, modified: modified, version: version)
        insert(ki)
    }

    private mutating func insert(_ ki: KeyIndex) {
        insert(ki, at: lowerBound(ki.key))
    }

    private mutating func insert(_ ki: KeyIndex, at p: (chunk: Int, offset: Int)) {
        count += 1
        if chunks.isEmpty {
            chunks.append([ki])
            keys.append([ki.key])
            return
        }
        chunks[p.chunk].insert(ki, at: p.offset)
        keys[p.chunk].insert(ki.key, at: p.offset)
        if chunks[p.chunk].count > Self.maxChunk {
            let upper = Array(chunks[p.chunk][(Self.maxChunk / 2)...])
            chunks[p.chunk].removeSubrange((Self.maxChunk / 2)...)
            chunks.insert(upper, at: p.chunk + 1)
            let upperKeys = Array(keys[p.chunk][(Self.maxChunk / 2)...])
            keys[p.chunk].removeSubrange((Self.maxChunk / 2)...)
            keys.insert(upperKeys, at: p.chunk + 1)
        }
    }

    /// False if the key is not live (etcd: ErrRevisionNotFound).
    func tombstone(_ key: Data, _ rev: Revision) -> Bool {
        guard let ki = keyIndex(key) else { return false }
        return ki.tombstone(rev)
    }

    func get(_ key: Data, atRev: Int64) -> (modified: Revision, created: Revision, version: Int64)? {
        keyIndex(key)?.get(atRev: atRev)
    }

    /// Calls `body` for each key index in [key, end) in key order.
    func visit(_ key: Data, _ end: RangeEnd, _ body: (KeyIndex) -> Void) {
        let endKey: Data?
        switch end {
        case .single:
            if let ki = keyIndex(key) { body(ki) }
            return
        case .unbounded: endKey = nil
        case .before(let e): endKey = e
        }
        var (ci, off) = lowerBound(key)
        while ci < chunks.count {
            let c = chunks[ci]
            while off < c.count {
                let ki = c[off]
                if let endKey, compareBytes(ki.key, endKey) >= 0 { return }
                body(ki)
                off += 1
            }
            ci += 1
            off = 0
        }
    }

    /// Keys live at `atRev` in [key, end) with their visible revision. etcd: treeIndex.Range.
    func range(_ key: Data, _ end: RangeEnd, atRev: Int64) -> [(key: Data, rev: Revision)] {
        var out: [(key: Data, rev: Revision)] = []
        visit(key, end) { ki in
            if let r = ki.get(atRev: atRev) {
                out.append((ki.key, r.modified))
            }
        }
        return out
    }

    /// Number of keys live at `atRev` in [key, end).
    func countLive(_ key: Data, _ end: RangeEnd, atRev: Int64) -> Int {
        var n = 0
        visit(key, end) { ki in
            if ki.get(atRev: atRev) != nil { n += 1 }
        }
        return n
    }

    /// Every key index in key order.
    var all: [KeyIndex] { chunks.flatMap { $0 } }

    /// Compacts every key index at `rev`, removes the ones left empty, and returns
    /// the revisions <= rev that the backend must keep. etcd: treeIndex.Compact.
    mutating func compact(_ rev: Int64) -> Set<Revision> {
        var keep = Set<Revision>()
        var out: [[KeyIndex]] = []
        var current: [KeyIndex] = []
        current.reserveCapacity(Self.maxChunk / 2)
        for c in chunks {
            for ki in c {
                ki.compact(atRev: rev, keep: &keep)
                if ki.isEmpty { continue }
                current.append(ki)
                if current.count == Self.maxChunk / 2 {
                    out.append(current)
                    current = []
                    current.reserveCapacity(Self.maxChunk / 2)
                }
            }
        }
        if !current.isEmpty { out.append(current) }
        chunks = out
        keys = out.map { $0.map(\.key) }
        count = out.reduce(0) { $0 + $1.count }
        return keep
    }

    /// Structural invariants (tests): chunks non-empty and bounded, keys strictly ascending.
    func checkInvariants() -> Bool {
        var prev: Data?
        var n = 0
        guard keys == chunks.map({ $0.map(\.key) }) else { return false }
        for c in chunks {
            if c.isEmpty || c.count > Self.maxChunk { return false }
            for ki in c {
                if let prev, compareBytes(prev, ki.key) >= 0 { return false }
                prev = ki.key
                n += 1
            }
        }
        return n == count
    }
}
