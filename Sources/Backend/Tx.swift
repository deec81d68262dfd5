import FileIO

/// Counters of what a transaction did (bbolt's TxStats, without the timings).
public struct BoltTxStats: Sendable, Equatable {
    public var pageCount = 0
    public var pageAlloc = 0
    public var cursorCount = 0
    public var nodeCount = 0
    public var rebalance = 0
    public var split = 0
    public var spill = 0
    public var write = 0
    public init() {}

    mutating func add(_ o: BoltTxStats) {
        pageCount += o.pageCount; pageAlloc += o.pageAlloc; cursorCount += o.cursorCount
        nodeCount += o.nodeCount; rebalance += o.rebalance; split += o.split; spill += o.spill; write += o.write
    }
}

/// A read-only or read/write transaction (bbolt's Tx).
///
/// A read transaction sees the database as of its start, however many writers commit after
/// it; the pages it can see are not reused until it ends, so end it (`rollback()`) when done.
/// A read transaction may be used from several threads at once. A write transaction holds the
/// one writer slot until `commit()` or `rollback()`; use it from one thread at a time.
public final class BoltTx: @unchecked Sendable {
    public let db: BoltDB
    public let writable: Bool
    var meta: Meta
    private var _root: BoltBucket?
    /// Pages allocated by this (write) transaction's commit, by id.
    var dirty: [UInt64: [UInt8]] = [:]
    private var trackedNodes: [Node] = []
    private var commitHandlers: [() -> Void] = []
    private(set) var closed = false
    var stats = BoltTxStats()

    init(db: BoltDB, meta: Meta, writable: Bool) {
        self.db = db
        self.writable = writable
        self.meta = meta
        if writable { self.meta.txid += 1 }
        _root = BoltBucket(tx: self, header: meta.root)
    }

    deinit {
        if !closed { rollback() }
    }

    /// The transaction id: the meta txid it sees (read) or will write (write).
    public var id: UInt64 { meta.txid }
    /// The database size as this transaction sees it: high-water page id × page size.
    public var size: Int64 { Int64(meta.pgid) * Int64(db.pageSize) }
    public var isClosed: Bool { closed }
    public var txStats: BoltTxStats { stats }

    func checkOpen() throws {
        if closed { throw BoltError.txClosed }
    }

    var root: BoltBucket {
        get throws {
            try checkOpen()
            return _root!
        }
    }

    func track(_ n: Node) { trackedNodes.append(n) }

    // MARK: - Buckets at the root

    /// The top-level bucket `name`, or nil.
    public func bucket(_ name: [UInt8]) throws -> BoltBucket? { try root.bucket(name) }
    @discardableResult
    public func createBucket(_ name: [UInt8]) throws -> BoltBucket { try root.createBucket(name) }
    @discardableResult
    public func createBucketIfNotExists(_ name: [UInt8]) throws -> BoltBucket { try root.createBucketIfNotExists(name) }
    public func deleteBucket(_ name: [UInt8]) throws { try root.deleteBucket(name) }
    /// A cursor over the top-level bucket names (their values are nil).
    public func cursor() throws -> BoltCursor { try root.cursor() }

    /// Calls `body` for every top-level bucket.
    public func forEachBucket(_ body: (_ name: [UInt8], _ bucket: BoltBucket) throws -> Void) throws {
        let r = try root
        let c = BoltCursor(bucket: r)
        var (k, _, f) = try c.firstRaw()
        while let kk = k {
            if f & bucketLeafFlag != 0, let b = try r.childBucket(kk) { try body(Array(kk), b) }
            (k, _, f) = try c.nextRaw()
        }
    }

    /// Runs `fn` after a successful commit.
    public func onCommit(_ fn: @escaping () -> Void) { commitHandlers.append(fn) }

    // MARK: - Pages

    /// Page `id` as this transaction sees it.
    func page(_ id: UInt64) throws -> Page {
        if let buf = dirty[id] { return try Page(data: buf, base: 0) }
        return try db.readPage(id, highWater: meta.pgid)
    }

    /// Allocates `count` contiguous pages (a dirty buffer with id and overflow set).
    func allocate(count: Int) throws -> UInt64 {
        let id = try db.allocate(tx: self, count: count)
        var buf = [UInt8](repeating: 0, count: count * db.pageSize)
        buf.setU64(0, id)
        buf.setU32(12, UInt32(count - 1))
        dirty[id] = buf
        stats.pageCount += count
        stats.pageAlloc += count * db.pageSize
        return id
    }

    func writeNode(_ node: Node, to id: UInt64) throws {
        guard var buf = dirty.removeValue(forKey: id) else { throw BoltError.corrupted("no dirty page \(id)") }
        defer { dirty[id] = buf }
        try node.write(into: &buf, base: 0)
    }

    // MARK: - Commit / rollback

    /// Writes the changes: dirty pages, fdatasync, then the meta page, fdatasync (bbolt's
    /// order, so a crash leaves the previous or the new version, never a mix).
    public func commit() throws {
        try checkOpen()
        guard writable else { throw BoltError.txNotWritable }
        var metaWriteStarted = false
        do {
            try _root!.rebalance()
            try _root!.spill()
            meta.root.root = _root!.header.root

            if meta.freelist != pgidNoFreelist {
                try db.freelist.free(txid: meta.txid, id: meta.freelist, overflow: db.freelistPageOverflow, isFreelistPage: true)
            }
            var freelistOverflow: UInt32 = 0
            if !db.options.noFreelistSync {
                let opgid = meta.pgid
                let count = db.freelist.size() / db.pageSize + 1
                let id = try allocate(count: count)
                var buf = dirty.removeValue(forKey: id)!
                db.freelist.write(into: &buf)
                dirty[id] = buf
                meta.freelist = id
                freelistOverflow = UInt32(count - 1)
                if meta.pgid > opgid {
                    try db.grow(to: Int(meta.pgid + 1) * db.pageSize)
                }
            } else {
                meta.freelist = pgidNoFreelist
            }

            try writeDirtyPages()

            if db.options.strictMode {
                let errs = try check()
                if !errs.isEmpty { throw BoltError.corrupted("check fail: " + errs.joined(separator: "\n")) }
            }

            metaWriteStarted = true
            try writeMeta()
            db.committed(tx: self, freelistOverflow: freelistOverflow)
        } catch {
            if metaWriteStarted {
                // The new meta page may or may not be on disk: reusing the pages this
                // transaction freed could corrupt it. Only a reopen (which reads whichever meta
                // is valid) can go on.
                db.markFailed("meta page write failed: \(error)")
            }
            physicalRollback()
            throw error
        }
        finishWrite()
        for fn in commitHandlers { fn() }
    }

    /// Ends the transaction, discarding its changes. Never fails; a no-op when already closed.
    public func rollback() {
        if closed { return }
        if writable {
            db.freelist.rollback(txid: meta.txid)
            finishWrite()
        } else {
            closeRead()
        }
    }

    /// After a failed commit: the freelist is reloaded from the file as of the last commit.
    private func physicalRollback() {
        if closed { return }
        db.freelist.rollback(txid: meta.txid)
        db.reloadFreelistAfterFailure()
        finishWrite()
    }

    private func finishWrite() {
        closed = true
        teardown()
        db.writerFinished(stats: stats)
    }

    private func closeRead() {
        closed = true
        teardown()
        db.readerFinished(txid: meta.txid, stats: stats)
    }

    private func teardown() {
        for n in trackedNodes {
            n.parent = nil
            n.children = []
        }
        trackedNodes = []
        dirty = [:]
        _root = nil
    }

    private func writeDirtyPages() throws {
        let ids = dirty.keys.sorted()
        let ps = db.pageSize
        db.cacheInvalidate(dirty)
        // Contiguous pages go out in one write of at most 4 MiB (bbolt writes page by page;
        // the bytes on disk are the same).
        var i = 0
        while i < ids.count {
            var run = dirty[ids[i]]!
            let start = ids[i]
            var nextID = start + UInt64(run.count / ps)
            var j = i + 1
            while j < ids.count && ids[j] == nextID && run.count < 4 << 20 {
                let b = dirty[ids[j]]!
                run.append(contentsOf: b)
                nextID += UInt64(b.count / ps)
                j += 1
            }
            try db.file.write(run, at: Int64(start) * Int64(ps))
            stats.write += 1
            i = j
        }
        if !db.options.noSync { try db.file.dataSync() }
        db.cacheWritten(dirty)
        dirty = [:]
    }

    private func writeMeta() throws {
        let buf = meta.pageBytes(pageSize: db.pageSize)
        try db.file.write(buf, at: Int64(meta.txid % 2) * Int64(db.pageSize))
        if !db.options.noSync { try db.file.dataSync() }
        stats.write += 1
    }

    // MARK: - Snapshot

    /// Streams a consistent copy of the whole database as of this transaction (bbolt's
    /// WriteTo): meta 0 and meta 1 (txid - 1) built from this transaction's meta, then the
    /// data pages up to the high-water mark, read from the file. Returns the bytes written
    /// (always `size`).
    @discardableResult
    public func writeTo(chunkSize: Int = 1 << 20, _ sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Int64 {
        try checkOpen()
        let ps = db.pageSize
        var m = meta
        var n: Int64 = 0
        let meta0 = m.pageBytes(pageSize: ps, id: 0)
        try meta0.withUnsafeBytes { try sink($0) }
        n += Int64(ps)
        m.txid &-= 1
        let meta1 = m.pageBytes(pageSize: ps, id: 1)
        try meta1.withUnsafeBytes { try sink($0) }
        n += Int64(ps)

        let total = size
        var off = Int64(2 * ps)
        var buf = [UInt8](repeating: 0, count: max(ps, chunkSize - chunkSize % ps))
        while off < total {
            let want = Int(min(Int64(buf.count), total - off))
            let got = try buf.withUnsafeMutableBytes { try db.file.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<want]), at: off) }
            if got < want { throw BoltError.corrupted("file ends at \(off + Int64(got)) before the high-water mark \(total)") }
            try buf.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[0..<want])) }
            off += Int64(want)
            n += Int64(want)
        }
        return n
    }

    /// Writes the copy to a new file at `path` (replacing one there) and syncs it.
    public func copyFile(to path: String, fileSystem: any FileSystem, permissions: UInt32 = 0o600) throws {
        let f = try fileSystem.open(path, options: [.write, .create, .truncate], permissions: permissions)
        defer { try? f.close() }
        var off: Int64 = 0
        try writeTo { chunk in
            try f.write(chunk, at: off)
            off += Int64(chunk.count)
        }
        try f.sync()
    }
}
