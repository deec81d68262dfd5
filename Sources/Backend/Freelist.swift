/// bbolt's "array" free page list (freelist.go; etcd 3.4's default type).
///
/// `ids` are free now (sorted). `pending[txid]` are pages freed by that transaction: they
/// become free only when no open reader can still see them (`release`/`releaseRange`, run
/// when a writer begins). `allocs` remembers which transaction allocated a page, so that a
/// page both allocated and freed while readers are open is released as early as possible.
final class Freelist {
    struct TxPending {
        var ids: [UInt64] = []
        var alloctx: [UInt64] = []
        var lastReleaseBegin: UInt64 = 0
    }

    private(set) var ids: [UInt64] = []
    var allocs: [UInt64: UInt64] = [:]
    private(set) var pending: [UInt64: TxPending] = [:]
    /// Every free and pending page id.
    private(set) var cache: Set<UInt64> = []

    init() {}

    var freeCount: Int { ids.count }
    var pendingCount: Int { pending.values.reduce(0) { $0 + $1.ids.count } }
    var count: Int { freeCount + pendingCount }

    /// Bytes the freelist page needs.
    func size() -> Int {
        var n = count
        if n >= 0xFFFF { n += 1 }
        return pageHeaderSize + 8 * n
    }

    /// Free and pending ids, sorted.
    func copyAll() -> [UInt64] {
        var m: [UInt64] = []
        m.reserveCapacity(pendingCount)
        for txp in pending.values { m.append(contentsOf: txp.ids) }
        m.sort()
        return Freelist.merge(ids, m)
    }

    static func merge(_ a: [UInt64], _ b: [UInt64]) -> [UInt64] {
        if a.isEmpty { return b }
        if b.isEmpty { return a }
        var out: [UInt64] = []
        out.reserveCapacity(a.count + b.count)
        var i = 0, j = 0
        while i < a.count && j < b.count {
            if a[i] <= b[j] { out.append(a[i]); i += 1 } else { out.append(b[j]); j += 1 }
        }
        if i < a.count { out.append(contentsOf: a[i...]) }
        if j < b.count { out.append(contentsOf: b[j...]) }
        return out
    }

    /// The first run of `n` contiguous free pages (first fit); 0 if none.
    func allocate(txid: UInt64, count n: Int) throws -> UInt64 {
        if ids.isEmpty { return 0 }
        var initial: UInt64 = 0, previd: UInt64 = 0
        for i in 0..<ids.count {
            let id = ids[i]
            if id <= 1 { throw BoltError.corrupted("invalid page allocation: \(id)") }
            if previd == 0 || id &- previd != 1 { initial = id }
            if (id - initial) + 1 == UInt64(n) {
                ids.removeSubrange((i - n + 1)...i)
                for k in 0..<UInt64(n) { cache.remove(initial + k) }
                allocs[initial] = txid
                return initial
            }
            previd = id
        }
        return 0
    }

    /// Marks page `id` (and its overflow pages) pending-free by `txid`.
    func free(txid: UInt64, id: UInt64, overflow: UInt32, isFreelistPage: Bool) throws {
        if id <= 1 { throw BoltError.corrupted("cannot free page 0 or 1: \(id)") }
        var allocTxid: UInt64 = 0
        if let a = allocs.removeValue(forKey: id) {
            allocTxid = a
        } else if isFreelistPage {
            allocTxid = txid &- 1
        }
        var txp = pending.removeValue(forKey: txid) ?? TxPending()
        defer { pending[txid] = txp }
        var pid = id
        let last = id &+ UInt64(overflow)
        while true {
            if cache.contains(pid) { throw BoltError.corrupted("page \(pid) already freed") }
            txp.ids.append(pid)
            txp.alloctx.append(allocTxid)
            cache.insert(pid)
            if pid == last { break }
            pid += 1
        }
    }

    /// Moves all pages pending from transactions <= txid to the free ids.
    func release(upTo txid: UInt64) {
        var m: [UInt64] = []
        for (tid, txp) in pending where tid <= txid {
            m.append(contentsOf: txp.ids)
            pending[tid] = nil
        }
        mergeSpans(m)
    }

    /// Moves pages pending from transactions in [begin, end] that were also allocated by a
    /// transaction in that range (so no open reader can see them) to the free ids.
    func releaseRange(_ begin: UInt64, _ end: UInt64) {
        if begin > end { return }
        var m: [UInt64] = []
        for tid in Array(pending.keys) {
            if tid < begin || tid > end { continue }
            var txp = pending[tid]!
            if txp.lastReleaseBegin == begin { continue }
            var i = 0
            while i < txp.ids.count {
                let atx = txp.alloctx[i]
                if atx < begin || atx > end { i += 1; continue }
                m.append(txp.ids[i])
                txp.ids[i] = txp.ids[txp.ids.count - 1]
                txp.ids.removeLast()
                txp.alloctx[i] = txp.alloctx[txp.alloctx.count - 1]
                txp.alloctx.removeLast()
            }
            txp.lastReleaseBegin = begin
            pending[tid] = txp.ids.isEmpty ? nil : txp
        }
        mergeSpans(m)
    }

    /// Undoes the frees of an aborted transaction.
    func rollback(txid: UInt64) {
        guard let txp = pending.removeValue(forKey: txid) else { return }
        var m: [UInt64] = []
        for (i, pgid) in txp.ids.enumerated() {
            cache.remove(pgid)
            let tx = txp.alloctx[i]
            if tx == 0 { continue }
            if tx != txid {
                allocs[pgid] = tx
            } else {
                m.append(pgid)
            }
        }
        mergeSpans(m)
    }

    func isFreed(_ id: UInt64) -> Bool { cache.contains(id) }

    /// Reads the ids of a freelist page (`p` holds the page and its overflow pages).
    static func readPage(_ p: [UInt8], pageID: UInt64, highWater: UInt64) throws -> [UInt64] {
        guard p.count >= pageHeaderSize else { throw BoltError.corrupted("freelist page \(pageID) too short") }
        let flags = p.u16(8)
        guard flags & freelistPageFlag != 0 else {
            throw BoltError.corrupted("invalid freelist page: \(pageID), page type is \(pageTypeName(flags))")
        }
        var idx = 0
        var count = Int(p.u16(10))
        if count == 0xFFFF {
            guard p.count >= pageHeaderSize + 8 else { throw BoltError.corrupted("freelist page \(pageID) too short") }
            let c = p.u64(pageHeaderSize)
            guard c < UInt64(Int.max / 16) else { throw BoltError.corrupted("freelist count \(c) overflows") }
            idx = 1
            count = Int(c)
        }
        guard pageHeaderSize + (idx + count) * 8 <= p.count else {
            throw BoltError.corrupted("freelist page \(pageID): \(count) ids do not fit in the page")
        }
        var out = [UInt64](repeating: 0, count: count)
        p.withUnsafeBytes { raw in
            for i in 0..<count { out[i] = raw.u64(pageHeaderSize + (idx + i) * 8) }
        }
        out.sort()
        var prev: UInt64 = 1
        for id in out {
            if id < 2 || id >= highWater {
                throw BoltError.corrupted("freelist page \(pageID): free page id \(id) out of range [2, \(highWater))")
            }
            if id == prev { throw BoltError.corrupted("freelist page \(pageID): page \(id) listed twice") }
            prev = id
        }
        return out
    }

    /// Initializes the free ids from a sorted list (readIDs): nothing pending.
    func readIDs(_ sorted: [UInt64]) {
        ids = sorted
        reindex()
    }

    /// Sets the free ids to `sorted` minus what is pending (reload / noSyncReload).
    func reload(_ sorted: [UInt64]) {
        var pcache = Set<UInt64>()
        for txp in pending.values { pcache.formUnion(txp.ids) }
        ids = sorted.filter { !pcache.contains($0) }
        reindex()
    }

    private func reindex() {
        cache = Set(ids)
        for txp in pending.values { cache.formUnion(txp.ids) }
    }

    /// Writes the freelist into page buffer `p` (header id/overflow already set).
    func write(into p: inout [UInt8]) {
        let all = copyAll()
        let l = all.count
        p.withUnsafeMutableBytes { raw in
            raw.setU16(8, raw.u16(8) | freelistPageFlag)
            if l == 0 {
                raw.setU16(10, 0)
            } else if l < 0xFFFF {
                raw.setU16(10, UInt16(l))
                for (i, id) in all.enumerated() { raw.setU64(pageHeaderSize + i * 8, id) }
            } else {
                raw.setU16(10, 0xFFFF)
                raw.setU64(pageHeaderSize, UInt64(l))
                for (i, id) in all.enumerated() { raw.setU64(pageHeaderSize + (i + 1) * 8, id) }
            }
        }
    }

    private func mergeSpans(_ m: [UInt64]) {
        if m.isEmpty { return }
        ids = Freelist.merge(ids, m.sorted())
    }
}

extension UnsafeMutableRawBufferPointer {
    @inline(__always) func u16(_ off: Int) -> UInt16 { UnsafeRawBufferPointer(self).u16(off) }
}
