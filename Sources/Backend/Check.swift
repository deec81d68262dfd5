/// Walks every page reachable from a root bucket: bbolt's checkBucket (used by tx.Check and,
/// throwing on the first problem, to rebuild the free list of a NoFreelistSync file), plus
/// invariants bbolt does not check: keys strictly increasing in each page and within their
/// parent's key range, all leaves of a bucket at one depth, inline bucket pages well formed.
struct TreeWalker {
    let db: BoltDB
    let meta: Meta
    let page: (UInt64) throws -> Page
    let throwing: Bool
    var extraChecks = false
    /// Page id → the id of the (first) page it belongs to.
    var reachable: [UInt64: UInt64] = [:]
    var freed: Set<UInt64> = []
    var errors: [String] = []

    init(db: BoltDB, meta: Meta, page: @escaping (UInt64) throws -> Page, throwing: Bool) {
        self.db = db
        self.meta = meta
        self.page = page
        self.throwing = throwing
    }

    mutating func report(_ s: String) throws {
        if throwing { throw BoltError.corrupted(s) }
        errors.append(s)
    }

    mutating func walkBucket(_ header: BucketHeader, depth: Int) throws {
        if header.root == 0 { return }
        if depth > maxBucketNesting {
            try report("buckets nested deeper than \(maxBucketNesting) levels")
            return
        }
        var leafDepth: Int?
        try walkPage(header.root, treeDepth: 0, lo: nil, hi: nil, bucketDepth: depth, leafDepth: &leafDepth)
    }

    /// Recursion budget of the whole walk (nested buckets × tree levels), so that a hostile
    /// file cannot overflow the stack.
    private var active = 0
    private static let maxActive = 1024

    private mutating func walkPage(_ id: UInt64, treeDepth: Int, lo: Bytes?, hi: Bytes?, bucketDepth: Int, leafDepth: inout Int?) throws {
        if treeDepth > maxTreeDepth || active >= TreeWalker.maxActive {
            try report("page \(id): tree deeper than \(maxTreeDepth) levels or buckets nested too deep")
            return
        }
        active += 1
        defer { active -= 1 }
        if id > meta.pgid {
            try report("page \(id): out of bounds: \(meta.pgid)")
            return
        }
        let p: Page
        do { p = try page(id) } catch {
            try report("page \(id): \(error)")
            return
        }
        var revisit = false
        var i: UInt64 = 0
        while i <= UInt64(p.overflow) {
            let pid = id + i
            if reachable[pid] != nil {
                try report("page \(pid): multiple references")
                revisit = true
            }
            reachable[pid] = id
            if i > 0 && freed.contains(pid) { try report("page \(pid): reachable freed") }
            i += 1
        }
        if freed.contains(id) { try report("page \(id): reachable freed") }
        if revisit { return }

        if extraChecks { try checkKeys(p, lo: lo, hi: hi) }

        if p.isLeaf {
            if let d = leafDepth, d != treeDepth {
                try report("page \(id): leaf at depth \(treeDepth), other leaves of the bucket at depth \(d)")
            }
            leafDepth = treeDepth
            for e in 0..<p.count {
                let el = p.leaf(e)
                guard el.flags & bucketLeafFlag != 0 else { continue }
                let v = p.data[el.value]
                guard v.count >= bucketHeaderSize else {
                    try report("page \(id): bucket value of \(v.count) bytes at element \(e)")
                    continue
                }
                let header = Array(v).withUnsafeBytes { BucketHeader(root: $0.u64(0), sequence: $0.u64(8)) }
                if header.root == 0 {
                    if extraChecks {
                        do {
                            let ip = try Page(data: Array(v), base: bucketHeaderSize)
                            if !ip.isLeaf { try report("page \(id): inline bucket at element \(e) is not a leaf page") }
                            try checkKeys(ip, lo: nil, hi: nil)
                        } catch let error as BoltError where !throwing {
                            errors.append("page \(id): inline bucket at element \(e): \(error)")
                        }
                    }
                } else {
                    try walkBucket(header, depth: bucketDepth + 1)
                }
            }
        } else {
            for e in 0..<p.count {
                let childLo = p.key(e)
                let childHi = e + 1 < p.count ? p.key(e + 1) : hi
                try walkPage(p.childPgid(e), treeDepth: treeDepth + 1, lo: childLo, hi: childHi,
                             bucketDepth: bucketDepth, leafDepth: &leafDepth)
            }
        }
    }

    private mutating func checkKeys(_ p: Page, lo: Bytes?, hi: Bytes?) throws {
        var prev: Bytes?
        for e in 0..<p.count {
            let k = p.key(e)
            if let prev, compareBytes(prev, k) >= 0 {
                try report("page \(p.id): keys out of order at element \(e)")
            }
            if let lo, compareBytes(k, lo) < 0 { try report("page \(p.id): key at element \(e) below its branch key") }
            if let hi, compareBytes(k, hi) >= 0 { try report("page \(p.id): key at element \(e) not below the next branch key") }
            prev = k
        }
    }
}

extension BoltTx {
    /// bbolt's tx.Check: every page below the high-water mark is reachable exactly once or
    /// free, never both; no page freed twice; page types valid. Plus: keys sorted within
    /// pages and their parents' ranges, balanced trees, well-formed inline buckets, meta sane.
    /// Returns the problems found (empty: consistent).
    ///
    /// On a read transaction this waits for the writer (it reads the free list) and assumes
    /// no commit happened since the transaction began, like bbolt.
    public func check() throws -> [String] {
        try checkOpen()
        let freeIDs = try db.freelistSnapshot(holdingWriter: writable)
        var w = TreeWalker(db: db, meta: meta, page: { [unowned self] in try self.page($0) }, throwing: false)
        w.extraChecks = true
        for id in freeIDs where !w.freed.insert(id).inserted {
            w.errors.append("page \(id): already freed")
        }
        w.reachable[0] = 0
        w.reachable[1] = 1
        if meta.freelist != pgidNoFreelist {
            do {
                let buf = try db.readRawPage(meta.freelist, highWater: meta.pgid)
                if buf.u16(8) & freelistPageFlag == 0 {
                    w.errors.append("page \(meta.freelist): freelist page has type \(pageTypeName(buf.u16(8)))")
                }
                for i in 0...UInt64(buf.u32(12)) { w.reachable[meta.freelist + i] = meta.freelist }
            } catch {
                w.errors.append("page \(meta.freelist): freelist: \(error)")
            }
        }
        if meta.root.root < 2 || meta.root.root >= meta.pgid {
            w.errors.append("meta: root page \(meta.root.root) outside [2, \(meta.pgid))")
        }
        try w.walkBucket(meta.root, depth: 0)
        var i: UInt64 = 0
        while i < meta.pgid {
            if w.reachable[i] == nil && !w.freed.contains(i) { w.errors.append("page \(i): unreachable unfreed") }
            i += 1
        }
        for id in freeIDs where id >= meta.pgid || id < 2 {
            w.errors.append("page \(id): freed outside [2, \(meta.pgid))")
        }
        for id in [UInt64(0), 1] + (meta.freelist != pgidNoFreelist ? [meta.freelist] : []) where w.freed.contains(id) {
            w.errors.append("page \(id): reachable freed")
        }
        if !writable && meta.txid == db.currentMeta.txid {
            w.errors.append(contentsOf: db.checkMetaPage(expecting: meta))
        }
        return w.errors
    }
}
