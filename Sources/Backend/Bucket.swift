import FileIO

/// A collection of key/value pairs and nested buckets inside a transaction (bbolt's Bucket).
///
/// Only valid while its transaction is open. In a read transaction a bucket may be read from
/// several threads at once; in a write transaction, use it from one thread at a time.
public final class BoltBucket: @unchecked Sendable {
    static let minFillPercent = 0.1
    static let maxFillPercent = 1.0
    /// bbolt.DefaultFillPercent.
    public static let defaultFillPercent = 0.5

    let tx: BoltTx
    var header: BucketHeader
    /// Sub-bucket cache (write transactions only).
    var buckets: [[UInt8]: BoltBucket]?
    /// The inline page, for a bucket stored inside its parent's value.
    var inlinePage: Page?
    /// The materialized root node.
    var rootNode: Node?
    /// Node cache (write transactions only).
    var nodes: [UInt64: Node]?
    var deleted = false

    /// How full split pages are left (0.1 ... 1.0). bbolt's default is 0.5; etcd sets 0.9 on
    /// buckets it appends sequential keys to (its `key` bucket) and when it defragments.
    /// Not persisted: it applies to the commit of the transaction this bucket belongs to.
    public var fillPercent: Double = BoltBucket.defaultFillPercent

    init(tx: BoltTx, header: BucketHeader) {
        self.tx = tx
        self.header = header
        if tx.writable {
            buckets = [:]
            nodes = [:]
        }
    }

    /// The page id of the bucket's root (0 for an inline bucket).
    public var rootPageID: UInt64 { header.root }
    public var isWritable: Bool { tx.writable }
    /// The bucket's sequence number (NextSequence/SetSequence).
    public var sequence: UInt64 { header.sequence }

    func checkOpen() throws {
        try tx.checkOpen()
        if deleted { throw BoltError.bucketNotFound }
    }

    func checkWritable() throws {
        try checkOpen()
        if !tx.writable { throw BoltError.txNotWritable }
    }

    // MARK: - Public API

    /// A cursor over the bucket's keys, in byte order.
    public func cursor() -> BoltCursor {
        // Read transactions may be shared between threads: their stats stay untouched.
        if tx.writable { tx.stats.cursorCount += 1 }
        return BoltCursor(bucket: self)
    }

    /// The nested bucket `name`, or nil if there is none (or `name` holds a value).
    public func bucket(_ name: [UInt8]) throws -> BoltBucket? {
        try checkOpen()
        return try childBucket(Bytes(name))
    }

    func childBucket(_ name: Bytes) throws -> BoltBucket? {
        if let child = buckets?[Array(name)] { return child }
        let c = BoltCursor(bucket: self)
        let (k, v, flags) = try c.seekRaw(name)
        guard let k, bytesEqual(k, name), flags & bucketLeafFlag != 0 else { return nil }
        let child = try openBucket(v ?? [])
        buckets?[Array(name)] = child
        return child
    }

    func openBucket(_ value: Bytes) throws -> BoltBucket {
        guard value.count >= bucketHeaderSize else {
            throw BoltError.corrupted("bucket value of \(value.count) bytes is shorter than a bucket header")
        }
        let data = Array(value)
        let header = data.withUnsafeBytes { BucketHeader(root: $0.u64(0), sequence: $0.u64(8)) }
        let child = BoltBucket(tx: tx, header: header)
        if header.root == 0 {
            let p = try Page(data: data, base: bucketHeaderSize)
            guard p.isLeaf else { throw BoltError.corrupted("inline bucket page is not a leaf page") }
            child.inlinePage = p
        }
        return child
    }

    /// Creates the nested bucket `name`.
    @discardableResult
    public func createBucket(_ name: [UInt8]) throws -> BoltBucket {
        try checkWritable()
        if name.isEmpty { throw BoltError.bucketNameRequired }
        if name.count > boltMaxKeySize { throw BoltError.keyTooLarge }
        let key = Bytes(name)
        let c = BoltCursor(bucket: self)
        let (k, _, flags) = try c.seekRaw(key)
        if let k, bytesEqual(k, key) {
            if flags & bucketLeafFlag != 0 { throw BoltError.bucketExists }
            throw BoltError.incompatibleValue
        }
        // An empty inline bucket: header (root 0, sequence 0) and an empty leaf page.
        var value = [UInt8](repeating: 0, count: bucketHeaderSize + pageHeaderSize)
        value.setU16(bucketHeaderSize + 8, leafPageFlag)
        try c.node().put(oldKey: key, newKey: key, value: Bytes(value), pgid: 0, flags: bucketLeafFlag)
        // Sub-buckets are not allowed in inline buckets: from now on this one is a paged bucket.
        inlinePage = nil
        guard let child = try childBucket(key) else { throw BoltError.corrupted("created bucket not found") }
        return child
    }

    /// The nested bucket `name`, created if missing.
    @discardableResult
    public func createBucketIfNotExists(_ name: [UInt8]) throws -> BoltBucket {
        do {
            return try createBucket(name)
        } catch BoltError.bucketExists {
            guard let b = try bucket(name) else { throw BoltError.bucketNotFound }
            return b
        }
    }

    /// Deletes the nested bucket `name` and everything in it.
    public func deleteBucket(_ name: [UInt8]) throws {
        try deleteBucket(name, depth: 0)
    }

    private func deleteBucket(_ name: [UInt8], depth: Int) throws {
        try checkWritable()
        if depth > maxBucketNesting { throw BoltError.corrupted("buckets nested deeper than \(maxBucketNesting) levels") }
        let key = Bytes(name)
        let c = BoltCursor(bucket: self)
        let (k, _, flags) = try c.seekRaw(key)
        guard let k, bytesEqual(k, key) else { throw BoltError.bucketNotFound }
        if flags & bucketLeafFlag == 0 { throw BoltError.incompatibleValue }

        guard let child = try childBucket(key) else { throw BoltError.bucketNotFound }
        // Delete the child's own sub-buckets first.
        var subNames: [Bytes] = []
        let cc = BoltCursor(bucket: child)
        var (ck, _, cf) = try cc.firstRaw()
        while let kk = ck {
            if cf & bucketLeafFlag != 0 { subNames.append(kk) }
            (ck, _, cf) = try cc.nextRaw()
        }
        for sub in subNames { try child.deleteBucket(Array(sub), depth: depth + 1) }

        buckets?[Array(name)] = nil
        child.nodes = nil
        child.rootNode = nil
        try child.free()
        child.markDeleted()
        try c.node().del(key)
    }

    private func markDeleted() {
        deleted = true
        for b in (buckets ?? [:]).values { b.markDeleted() }
    }

    /// The value of `key`, or nil if it is missing or holds a nested bucket.
    public func get(_ key: [UInt8]) throws -> [UInt8]? {
        try checkOpen()
        let kb = Bytes(key)
        let (k, v, flags) = try lookup(kb)
        if flags & bucketLeafFlag != 0 { return nil }
        guard let k, bytesEqual(k, kb) else { return nil }
        return Array(v ?? [])
    }

    /// The element a seek for `key` lands on within its leaf (what Cursor.seek finds before
    /// moving past the end of a leaf), without a cursor.
    func lookup(_ key: Bytes) throws -> BoltCursor.Raw {
        var pgid = header.root
        var depth = 0
        while true {
            depth += 1
            if depth > maxTreeDepth { throw BoltError.corrupted("tree deeper than \(maxTreeDepth) levels (a cycle?)") }
            let (p, n) = try pageNode(pgid)
            if let n {
                let (index, exact) = n.lowerBound(key)
                if n.isLeaf { return BoltCursor.keyValue(nil, n, index) }
                if n.inodes.isEmpty { throw BoltError.corrupted("empty branch") }
                let i = min((!exact && index > 0) ? index - 1 : index, n.inodes.count - 1)
                pgid = n.inodes[i].pgid
            } else {
                let p = p!
                let (index, exact) = p.search(key)
                if p.isLeaf { return BoltCursor.keyValue(p, nil, index) }
                let i = min((!exact && index > 0) ? index - 1 : index, p.count - 1)
                pgid = p.childPgid(i)
            }
        }
    }

    /// Sets `key` to `value`.
    public func put(_ key: [UInt8], _ value: [UInt8]) throws {
        try checkWritable()
        if key.isEmpty { throw BoltError.keyRequired }
        if key.count > boltMaxKeySize { throw BoltError.keyTooLarge }
        if value.count > boltMaxValueSize { throw BoltError.valueTooLarge }
        let kb = Bytes(key)
        let c = BoltCursor(bucket: self)
        let (k, _, flags) = try c.seekRaw(kb)
        if let k, bytesEqual(k, kb), flags & bucketLeafFlag != 0 { throw BoltError.incompatibleValue }
        try c.node().put(oldKey: kb, newKey: kb, value: Bytes(value), pgid: 0, flags: 0)
    }

    /// Removes `key`; nothing happens if it is missing.
    public func delete(_ key: [UInt8]) throws {
        try checkWritable()
        let kb = Bytes(key)
        let c = BoltCursor(bucket: self)
        let (k, _, flags) = try c.seekRaw(kb)
        guard let k, bytesEqual(k, kb) else { return }
        if flags & bucketLeafFlag != 0 { throw BoltError.incompatibleValue }
        try c.node().del(kb)
    }

    public func setSequence(_ v: UInt64) throws {
        try checkWritable()
        if rootNode == nil { _ = try node(header.root, parent: nil) }
        header.sequence = v
    }

    public func nextSequence() throws -> UInt64 {
        try checkWritable()
        if rootNode == nil { _ = try node(header.root, parent: nil) }
        header.sequence &+= 1
        return header.sequence
    }

    /// Calls `body` for every key in order; `value` is nil for a nested bucket.
    public func forEach(_ body: (_ key: [UInt8], _ value: [UInt8]?) throws -> Void) throws {
        try checkOpen()
        let c = BoltCursor(bucket: self)
        var (k, v, f) = try c.firstRaw()
        while let kk = k {
            try body(Array(kk), f & bucketLeafFlag != 0 ? nil : Array(v ?? []))
            (k, v, f) = try c.nextRaw()
        }
    }

    /// Number of key/value pairs and nested buckets directly in this bucket.
    public func count() throws -> Int {
        try checkOpen()
        var n = 0
        let c = BoltCursor(bucket: self)
        var (k, _, _) = try c.firstRaw()
        while k != nil { n += 1; (k, _, _) = try c.nextRaw() }
        return n
    }

    // MARK: - Internals (bucket.go)

    /// The node or the page for `id` (the inline page for an inline bucket).
    func pageNode(_ id: UInt64) throws -> (Page?, Node?) {
        if header.root == 0 {
            if id != 0 { throw BoltError.corrupted("inline bucket non-zero page access: \(id) != 0") }
            if let rootNode { return (nil, rootNode) }
            guard let inlinePage else { throw BoltError.corrupted("inline bucket without a page") }
            return (inlinePage, nil)
        }
        if let n = nodes?[id] { return (nil, n) }
        return (try tx.page(id), nil)
    }

    /// The node of page `pgid`, read and cached on first use.
    func node(_ pgid: UInt64, parent: Node?) throws -> Node {
        guard nodes != nil else { throw BoltError.txNotWritable }
        if let n = nodes![pgid] { return n }
        let p: Page
        if let inlinePage { p = inlinePage } else { p = try tx.page(pgid) }
        let n = Node(bucket: self, isLeaf: p.isLeaf, parent: parent)
        n.read(p)
        if inlinePage != nil { n.pgid = 0; n.overflow = 0 }
        if let parent { parent.children.append(n) } else { rootNode = n }
        nodes![pgid] = n
        tx.stats.nodeCount += 1
        return n
    }

    func rebalance() throws {
        if let nodes {
            // bbolt ranges over a Go map here, i.e. in a random order, and the order matters:
            // in ascending page order every underfull leaf merges into the first one of its
            // parent, which then splits again at the fill percent, leaving ~25% more pages
            // than bbolt does. A seeded shuffle behaves like Go's order and stays reproducible.
            var order = nodes.keys.sorted()
            var rng = SplitMix64(seed: tx.meta.txid &* 0x9E37_79B9_7F4A_7C15 ^ header.root)
            if order.count > 1 {
                for i in stride(from: order.count - 1, to: 0, by: -1) {
                    let j = Int(rng.next() % UInt64(i + 1))
                    order.swapAt(i, j)
                }
            }
            for pgid in order {
                guard let n = self.nodes?[pgid] else { continue }
                try n.rebalance()
            }
        }
        if let buckets {
            for name in buckets.keys.sorted(by: { compareBytes(Bytes($0), Bytes($1)) < 0 }) {
                try buckets[name]!.rebalance()
            }
        }
    }

    /// Writes all changed nodes of this bucket and its sub-buckets to dirty pages.
    func spill() throws {
        if let buckets {
            for name in buckets.keys.sorted(by: { compareBytes(Bytes($0), Bytes($1)) < 0 }) {
                let child = buckets[name]!
                var value: [UInt8]
                if child.inlineable() {
                    try child.free()
                    value = try child.write()
                } else {
                    try child.spill()
                    value = [UInt8](repeating: 0, count: bucketHeaderSize)
                    value.setU64(0, child.header.root)
                    value.setU64(8, child.header.sequence)
                }
                if child.rootNode == nil { continue }
                let nk = Bytes(name)
                let c = BoltCursor(bucket: self)
                let (k, _, flags) = try c.seekRaw(nk)
                guard let k, bytesEqual(k, nk) else { throw BoltError.corrupted("misplaced bucket header") }
                guard flags & bucketLeafFlag != 0 else { throw BoltError.corrupted("unexpected bucket header flag: \(flags)") }
                try c.node().put(oldKey: nk, newKey: nk, value: Bytes(value), pgid: 0, flags: bucketLeafFlag)
            }
        }
        guard let rootNode else { return }
        try rootNode.spill()
        let newRoot = rootNode.root()
        self.rootNode = newRoot
        if newRoot.pgid >= tx.meta.pgid {
            throw BoltError.corrupted("pgid (\(newRoot.pgid)) above high water mark (\(tx.meta.pgid))")
        }
        header.root = newRoot.pgid
    }

    /// Small enough to be stored inline in the parent, and without sub-buckets.
    func inlineable() -> Bool {
        guard let n = rootNode, n.isLeaf else { return false }
        var size = pageHeaderSize
        let maxSize = tx.db.pageSize / 4
        for inode in n.inodes {
            size += leafElementSize + inode.key.count + inode.value.count
            if inode.flags & bucketLeafFlag != 0 { return false }
            if size > maxSize { return false }
        }
        return true
    }

    /// The bucket as an inline value: header then its root node as a page.
    func write() throws -> [UInt8] {
        guard let n = rootNode else { throw BoltError.corrupted("write of an unmaterialized bucket") }
        var value = [UInt8](repeating: 0, count: bucketHeaderSize + n.size())
        value.setU64(0, header.root)
        value.setU64(8, header.sequence)
        try n.write(into: &value, base: bucketHeaderSize)
        return value
    }

    /// Frees every page of the bucket (not its sub-buckets' pages).
    func free() throws {
        if header.root == 0 { return }
        try forEachPageNode(header.root, depth: 0) { p, n in
            if let p {
                try tx.db.freelist.free(txid: tx.meta.txid, id: p.id, overflow: p.overflow, isFreelistPage: false)
            } else if let n {
                try n.free()
            }
        }
        header.root = 0
    }

    private func forEachPageNode(_ id: UInt64, depth: Int, _ fn: (Page?, Node?) throws -> Void) throws {
        if depth > maxTreeDepth { throw BoltError.corrupted("tree deeper than \(maxTreeDepth) levels (a cycle?)") }
        let (p, n) = try pageNode(id)
        try fn(p, n)
        if let p {
            if p.isBranch { for i in 0..<p.count { try forEachPageNode(p.childPgid(i), depth: depth + 1, fn) } }
        } else if let n, !n.isLeaf {
            for inode in n.inodes { try forEachPageNode(inode.pgid, depth: depth + 1, fn) }
        }
    }
}
