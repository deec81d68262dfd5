// The Backend target: a bbolt-format copy-on-write B+tree file (go.etcd.io/bbolt 1.3.6, the
// version etcd 3.4.23 uses), written from scratch. One concept per file, as bbolt:
//
//   Page.swift       the on-disk layout: page header, branch/leaf elements, meta page
//   Freelist.swift   bbolt's "array" free list: free ids, pending frees per txid, release
//   Node.swift       a page materialized in a write transaction: put/del, split, spill, rebalance
//   Bucket.swift     buckets (nested, inline), get/put/delete, spill of changed buckets
//   Cursor.swift     first/last/next/prev/seek over pages and nodes
//   Tx.swift         transactions: commit (pages, fdatasync, meta, fdatasync), rollback, WriteTo
//   DB.swift         open/create, meta selection, allocation, file growth, readers/writer, stats
//   Check.swift      bbolt's tx.Check plus stricter invariants (and the NoFreelistSync scan)
//   Compact.swift    etcd's defrag (defragdb and the file swap) and bbolt's Compact
//   PageCache.swift  validated pages shared by all transactions (in place of bbolt's mmap)
//
// Given the same operations, files are byte-for-byte what bbolt writes (the test suite runs
// the same scripts through the real bbolt and compares), including bbolt's file growth steps.
// Where bbolt's result depends on Go's random map order (several underfull pages rebalanced in
// one transaction), a seeded shuffle stands in for it.
//
// Differences from bbolt, all invisible in the file:
// - no mmap: pages are read with pread through `FileIO` and validated before use, so a damaged
//   file gives `BoltError.corrupted` instead of a crash; a meta whose high-water mark lies past
//   the end of the file loses to the other meta (or fails the open);
// - contiguous dirty pages are written with one pwrite each run (bbolt: one per page);
// - a new file's directory is fsynced (`syncDirectoryOnCreate`), so its name survives a crash;
// - a failure while writing the meta page poisons the handle (`BoltError.needsReopen`) instead
//   of reusing pages the half-written meta may reference;
// - cursors skip leaves emptied earlier in the same write transaction also when moving
//   backwards (bbolt 1.3.6 only does it forwards; fixed in later bbolt).

import FileIO
import Synchronization

/// How to open a database (bbolt's Options, plus the page cache that replaces its mmap).
public struct BoltOptions: Sendable, Equatable {
    /// Page size of a new file (bbolt: the OS page size). An existing file keeps its own.
    public var pageSize = 4096
    /// Do not write the free page list at commit; rebuild it by scanning the tree at open
    /// (etcd sets this). The meta then says freelist = 0xFFFF_FFFF_FFFF_FFFF.
    public var noFreelistSync = false
    /// Skip the fdatasync calls of commit (unsafe; etcd's --unsafe-no-fsync).
    public var noSync = false
    /// Skip the truncate+fsync that grows the file when a written free list raises the
    /// high-water mark.
    public var noGrowSync = false
    /// Open read-only: no lock, no writers, the free list is not loaded.
    public var readOnly = false
    /// bbolt's InitialMmapSize. There is no mmap here, but bbolt's file growth depends on the
    /// mapping size, so it is modelled to grow files exactly as bbolt does (etcd: 10 GiB).
    public var initialMmapSize = 0
    /// bbolt's AllocSize: the growth step once the mapping is past it.
    public var allocSize = 16 << 20
    /// Run `check()` before writing each meta page and fail the commit on a problem.
    public var strictMode = false
    /// Bytes of validated pages kept in memory, shared by all transactions. The system's
    /// page cache holds the file beneath it; at 128 MiB this cache held the whole db of
    /// 100,000 puts (18 MB of resident memory more) for no measurable gain in throughput.
    public var pageCacheBytes = 16 << 20
    /// fsync the directory after creating a new file (bbolt does not; a created file's name
    /// is durable only then).
    public var syncDirectoryOnCreate = true

    public init() {}

    /// The options etcd 3.4 opens its backend with: NoFreelistSync and a 10 GiB
    /// InitialMmapSize (array freelist, fsync on).
    public static var etcd: BoltOptions {
        var o = BoltOptions()
        o.noFreelistSync = true
        o.initialMmapSize = 10 << 30
        return o
    }
}

/// Database statistics (bbolt's Stats, without the timings).
public struct BoltStats: Sendable, Equatable {
    /// Free pages on the free list.
    public var freePageN = 0
    /// Pages freed but still visible to an open reader (or freed by the last commit).
    public var pendingPageN = 0
    /// Bytes in free and pending pages.
    public var freeAlloc = 0
    /// Bytes the free list page takes.
    public var freelistInuse = 0
    /// Read transactions started.
    public var txN = 0
    /// Read transactions open now.
    public var openTxN = 0
    /// Sum of the stats of finished transactions.
    public var txStats = BoltTxStats()
    public init() {}
}

/// What the current meta page says.
public struct BoltMetaInfo: Sendable, Equatable {
    public var txid: UInt64
    /// The high-water mark: pages [0, pgid) are in use or free.
    public var pgid: UInt64
    public var rootPage: UInt64
    /// The free list page, or nil when it is not written (NoFreelistSync).
    public var freelistPage: UInt64?
    public var pageSize: Int
}

/// A bbolt-format database file (bbolt's DB): one writer at a time, any number of readers,
/// each seeing the version committed when it began.
///
/// All file I/O goes through `FileSystem`/`FileHandle`. Instead of bbolt's mmap, pages are
/// read with pread into a bounded cache of validated pages, so a corrupt file yields errors.
public final class BoltDB: @unchecked Sendable {
    // @unchecked: `shared` is a Mutex; the writer-owned state below is touched only by the
    // holder of `writerLock`; the rest is immutable after init.
    public let path: String
    public let fileSystem: any FileSystem
    public let options: BoltOptions
    public let pageSize: Int
    let file: any FileIOHandle

    private struct Shared {
        var meta: Meta
        var readers: [UInt64] = []
        var stats = BoltStats()
        var closed = false
    }

    private let shared: Mutex<Shared>
    private let writerLock = WriterLock()
    private let cache: PageCache

    // Writer-owned (under writerLock).
    var freelist = Freelist()
    var freelistPageOverflow: UInt32 = 0
    private var freelistLoaded = false
    private var filesz = 0
    private var datasz = 0
    private var failure: String?

    private init(path: String, fileSystem: any FileSystem, options: BoltOptions, pageSize: Int,
                 file: any FileIOHandle, meta: Meta, filesz: Int, datasz: Int) {
        self.path = path
        self.fileSystem = fileSystem
        self.options = options
        self.pageSize = pageSize
        self.file = file
        self.shared = Mutex(Shared(meta: meta))
        self.cache = PageCache(limit: max(options.pageCacheBytes, 16 * pageSize))
        self.filesz = filesz
        self.datasz = datasz
    }

    deinit {
        try? file.close()
    }

    // MARK: - Open

    /// Opens the database at `path`, creating it (2 meta pages, an empty free list, an empty
    /// root leaf) if the file is missing or empty.
    public static func open(path: String, fileSystem: any FileSystem = PosixFileSystem(),
                            options: BoltOptions = BoltOptions()) throws -> BoltDB {
        precondition(options.pageSize >= 1024 && options.pageSize <= 1 << 16, "page size out of range")
        let handle = try fileSystem.open(path, options: options.readOnly ? .read : .createReadWrite, permissions: 0o600)
        do {
            if !options.readOnly { try handle.tryLock() }
            var pageSize = options.pageSize
            var size = Int(try handle.size())
            var filesz = 0
            if size == 0 {
                if options.readOnly { throw BoltError.invalid }
                try initFile(handle, pageSize: pageSize)
                if options.syncDirectoryOnCreate { try fileSystem.syncDirectory(Paths.dirname(path)) }
                filesz = 4 * pageSize
                size = filesz
            } else {
                let head = try handle.read(at: 0, count: 0x1000)
                guard head.count == 0x1000 else { throw BoltError.invalid }
                let m0 = head.withUnsafeBytes { Meta(decoding: $0, pageOffset: 0) }
                if (try? validate(m0)) != nil { pageSize = Int(m0.pageSize) }
            }
            guard size >= 2 * pageSize else { throw BoltError.fileTooSmall }
            let meta = try chooseMeta(handle, pageSize: pageSize, fileSize: size)
            let datasz = try mmapSize(max(size, options.initialMmapSize), pageSize: pageSize)
            let db = BoltDB(path: path, fileSystem: fileSystem, options: options, pageSize: pageSize,
                            file: handle, meta: meta, filesz: filesz, datasz: datasz)
            if options.readOnly { return db }
            try db.loadFreelist()
            if !options.noFreelistSync && meta.freelist == pgidNoFreelist {
                // A file last written without a free list: write one now (as bbolt does).
                let tx = try db.beginWrite()
                try tx.commit()
            }
            return db
        } catch {
            try? handle.close()
            throw error
        }
    }

    private static func initFile(_ f: any FileIOHandle, pageSize ps: Int) throws {
        var buf = [UInt8](repeating: 0, count: 4 * ps)
        for i in 0..<2 {
            let m = Meta(pageSize: UInt32(ps), root: BucketHeader(root: 3, sequence: 0), freelist: 2, pgid: 4, txid: UInt64(i))
            let page = m.pageBytes(pageSize: ps, id: UInt64(i))
            buf.replaceSubrange(i * ps..<(i + 1) * ps, with: page)
        }
        buf.setU64(2 * ps, 2)
        buf.setU16(2 * ps + 8, freelistPageFlag)
        buf.setU64(3 * ps, 3)
        buf.setU16(3 * ps + 8, leafPageFlag)
        try f.write(buf, at: 0)
        try f.dataSync()
    }

    static func validPageSize(_ ps: UInt32) -> Bool { ps >= 512 && ps <= 1 << 20 }

    private static func validate(_ m: Meta) throws {
        try m.validate()
        if !validPageSize(m.pageSize) { throw BoltError.invalid }
    }

    /// bbolt's db.meta(): the valid meta with the higher txid, else the other valid one.
    /// Beyond bbolt, a checksummed meta that points past the end of the file loses to a sane one,
    /// and when neither is sane the open fails (bbolt would crash reading past the end).
    private static func chooseMeta(_ f: any FileIOHandle, pageSize ps: Int, fileSize: Int) throws -> Meta {
        let b0 = try f.read(at: 0, count: pageHeaderSize + 64)
        let b1 = try f.read(at: Int64(ps), count: pageHeaderSize + 64)
        guard b0.count == 80 && b1.count == 80 else { throw BoltError.fileTooSmall }
        let m0 = b0.withUnsafeBytes { Meta(decoding: $0, pageOffset: 0) }
        let m1 = b1.withUnsafeBytes { Meta(decoding: $0, pageOffset: 0) }
        var err0: Error?
        do { try validate(m0) } catch { err0 = error }
        let ok1 = (try? validate(m1)) != nil
        if err0 != nil && !ok1 { throw err0! }
        var candidates: [Meta] = []
        let (a, b) = m1.txid > m0.txid ? (m1, m0) : (m0, m1)
        let aOK = a == m0 ? err0 == nil : ok1
        let bOK = b == m0 ? err0 == nil : ok1
        if aOK { candidates.append(a) }
        if bOK { candidates.append(b) }
        func sane(_ m: Meta) -> Bool {
            m.pgid >= 4 && m.pgid <= UInt64(fileSize / ps) && m.root.root >= 2 && m.root.root < m.pgid
                && (m.freelist == pgidNoFreelist || (m.freelist >= 2 && m.freelist < m.pgid))
        }
        // bbolt would map the file and fault on pages past its end; refuse instead.
        guard let m = candidates.first(where: sane) else {
            throw BoltError.corrupted("meta page (txid \(candidates[0].txid)) describes \(candidates[0].pgid) pages, the file holds \(fileSize / ps)")
        }
        return m
    }

    /// bbolt's mmapSize: doubling from 32 KiB to 1 GiB, then 1 GiB steps.
    static func mmapSize(_ size: Int, pageSize: Int) throws -> Int {
        for i in 15...30 where size <= 1 << i { return 1 << i }
        if size > maxMapSize { throw BoltError.corrupted("mmap too large") }
        var sz = size
        let rem = sz % maxMmapStep
        if rem > 0 { sz += maxMmapStep - rem }
        if sz % pageSize != 0 { sz = (sz / pageSize + 1) * pageSize }
        return min(sz, maxMapSize)
    }

    // MARK: - Free list

    private func loadFreelist() throws {
        if freelistLoaded { return }
        let meta = currentMeta
        freelist = Freelist()
        if meta.freelist == pgidNoFreelist {
            freelist.readIDs(try freePagesByScan(meta))
            freelistPageOverflow = 0
        } else {
            let (ids, overflow) = try readFreelistPage(meta)
            freelist.readIDs(ids)
            freelistPageOverflow = overflow
        }
        freelistLoaded = true
        let fc = freelist.freeCount
        shared.withLock { $0.stats.freePageN = fc }
    }

    private func readFreelistPage(_ meta: Meta) throws -> ([UInt64], UInt32) {
        let buf = try readRawPage(meta.freelist, highWater: meta.pgid)
        return (try Freelist.readPage(buf, pageID: meta.freelist, highWater: meta.pgid), buf.u32(12))
    }

    /// Pages [2, pgid) that no bucket reaches (how the free list is rebuilt without one).
    private func freePagesByScan(_ meta: Meta) throws -> [UInt64] {
        var walker = TreeWalker(db: self, meta: meta, page: { try self.readPage($0, highWater: meta.pgid) }, throwing: true)
        try walker.walkBucket(meta.root, depth: 0)
        var ids: [UInt64] = []
        var i: UInt64 = 2
        while i < meta.pgid {
            if walker.reachable[i] == nil { ids.append(i) }
            i += 1
        }
        return ids
    }

    func markFailed(_ why: String) {
        if failure == nil { failure = why }
    }

    /// After a failed commit: the free list as of the current (last committed) meta.
    func reloadFreelistAfterFailure() {
        if failure != nil { return }
        let meta = currentMeta
        do {
            if meta.freelist == pgidNoFreelist {
                freelist.reload(try freePagesByScan(meta))
            } else {
                freelist.reload(try readFreelistPage(meta).0)
            }
        } catch {
            failure = "free list reload after a failed commit: \(error)"
        }
    }

    /// Sorted free and pending page ids, consistently with the current meta.
    func freelistSnapshot(holdingWriter: Bool) throws -> [UInt64] {
        if holdingWriter { return freelist.copyAll() }
        writerLock.lock()
        defer { writerLock.unlock() }
        if !freelistLoaded { try loadFreelist() }
        return freelist.copyAll()
    }

    // MARK: - Transactions

    var currentMeta: Meta { shared.withLock { $0.meta } }

    /// Starts a read transaction on the last committed version.
    public func beginRead() throws -> BoltTx {
        let meta = try shared.withLock { s -> Meta in
            if s.closed { throw BoltError.databaseNotOpen }
            s.readers.append(s.meta.txid)
            s.stats.txN += 1
            s.stats.openTxN = s.readers.count
            return s.meta
        }
        return BoltTx(db: self, meta: meta, writable: false)
    }

    /// Starts the write transaction, waiting while another one is open.
    public func beginWrite() throws -> BoltTx {
        if options.readOnly { throw BoltError.databaseReadOnly }
        writerLock.lock()
        do {
            if let failure { throw BoltError.needsReopen(failure) }
            let (meta, readers) = try shared.withLock { s -> (Meta, [UInt64]) in
                if s.closed { throw BoltError.databaseNotOpen }
                return (s.meta, s.readers)
            }
            let tx = BoltTx(db: self, meta: meta, writable: true)
            releasePending(openReaders: readers)
            return tx
        } catch {
            writerLock.unlock()
            throw error
        }
    }

    /// bbolt's freePages: pending pages no open reader can see become free.
    private func releasePending(openReaders: [UInt64]) {
        let txs = openReaders.sorted()
        var minid = txs.first ?? UInt64.max
        if minid > 0 { freelist.release(upTo: minid - 1) }
        for t in txs {
            if t > 0 { freelist.releaseRange(minid, t - 1) }
            minid = t &+ 1
        }
        freelist.releaseRange(minid, UInt64.max)
    }

    /// Runs `body` in a write transaction and commits it (rolls back if `body` throws).
    @discardableResult
    public func update<T>(_ body: (BoltTx) throws -> T) throws -> T {
        let tx = try beginWrite()
        do {
            let r = try body(tx)
            try tx.commit()
            return r
        } catch {
            tx.rollback()
            throw error
        }
    }

    /// Runs `body` in a read transaction.
    @discardableResult
    public func view<T>(_ body: (BoltTx) throws -> T) throws -> T {
        let tx = try beginRead()
        defer { tx.rollback() }
        return try body(tx)
    }

    func committed(tx: BoltTx, freelistOverflow: UInt32) {
        freelistPageOverflow = freelistOverflow
        let meta = tx.meta
        shared.withLock { $0.meta = meta }
    }

    func writerFinished(stats: BoltTxStats) {
        let free = freelist.freeCount, pending = freelist.pendingCount, alloc = freelist.size()
        let ps = pageSize
        shared.withLock { s in
            s.stats.freePageN = free
            s.stats.pendingPageN = pending
            s.stats.freeAlloc = (free + pending) * ps
            s.stats.freelistInuse = alloc
            s.stats.txStats.add(stats)
        }
        writerLock.unlock()
    }

    func readerFinished(txid: UInt64, stats: BoltTxStats) {
        shared.withLock { s in
            if let i = s.readers.firstIndex(of: txid) { s.readers.remove(at: i) }
            s.stats.openTxN = s.readers.count
            s.stats.txStats.add(stats)
        }
    }

    /// Closes the file, after waiting for an open write transaction to end. Read
    /// transactions still open fail from then on.
    public func close() throws {
        writerLock.lock()
        defer { writerLock.unlock() }
        let wasOpen = shared.withLock { s -> Bool in
            let w = !s.closed
            s.closed = true
            return w
        }
        guard wasOpen else { return }
        cache.removeAll()
        try file.close()
    }

    public var isClosed: Bool { shared.withLock { $0.closed } }

    // MARK: - Sizes and stats

    public var stats: BoltStats { shared.withLock { $0.stats } }

    public var metaInfo: BoltMetaInfo {
        let m = currentMeta
        return BoltMetaInfo(txid: m.txid, pgid: m.pgid, rootPage: m.root.root,
                            freelistPage: m.freelist == pgidNoFreelist ? nil : m.freelist, pageSize: pageSize)
    }

    /// The size of the database as the last commit left it: high-water mark × page size
    /// (etcd's backend Size, `etcd_mvcc_db_total_size_in_bytes`).
    public var size: Int64 { Int64(currentMeta.pgid) * Int64(pageSize) }

    /// `size` minus the free pages (etcd's SizeInUse).
    public var sizeInUse: Int64 {
        shared.withLock { s in Int64(s.meta.pgid) * Int64(pageSize) - Int64(s.stats.freePageN) * Int64(pageSize) }
    }

    /// The length of the file on disk (may exceed `size`: bbolt grows files in steps).
    public func fileSize() throws -> Int64 { try file.size() }

    /// One of the two meta pages on disk is `meta`, intact (magic, version, checksum, page
    /// header). Usually slot txid % 2; a WriteTo copy has it in slot 0. (The other slot holds
    /// an older meta, or a torn one after a crash.)
    func checkMetaPage(expecting meta: Meta) -> [String] {
        var seen: [String] = []
        for slot in [meta.txid % 2, 1 - meta.txid % 2] {
            do {
                let b = try file.read(at: Int64(slot) * Int64(pageSize), count: pageHeaderSize + 64)
                guard b.count == 80 else { seen.append("slot \(slot): short read"); continue }
                let m = b.withUnsafeBytes { Meta(decoding: $0, pageOffset: 0) }
                var expected = meta
                expected.checksum = m.checksum
                guard m == expected else { seen.append("slot \(slot): txid \(m.txid)"); continue }
                var errs: [String] = []
                do { try m.validate() } catch { errs.append("meta page \(slot): \(error)") }
                if m.checksum == 0 { errs.append("meta page \(slot): no checksum") }
                if b.u64(0) != slot || b.u16(8) & metaPageFlag == 0 { errs.append("meta page \(slot): bad page header") }
                return errs
            } catch {
                seen.append("slot \(slot): \(error)")
            }
        }
        return ["meta: no meta page on disk holds txid \(meta.txid) (\(seen.joined(separator: ", ")))"]
    }

    // MARK: - Pages

    /// A branch or leaf page (with overflow), from the cache or the file, validated.
    func readPage(_ id: UInt64, highWater: UInt64) throws -> Page {
        guard id >= 2 && id < highWater else {
            throw BoltError.corrupted("page \(id): out of bounds: \(highWater)")
        }
        if let p = cache.get(id) { return p }
        let buf = try readRawPage(id, highWater: highWater)
        let p = try Page(data: buf, base: 0)
        cache.put(id, p)
        return p
    }

    /// The bytes of page `id` and its overflow pages, after checking the header's id and that
    /// the overflow stays below the high-water mark and inside the file.
    func readRawPage(_ id: UInt64, highWater: UInt64) throws -> [UInt8] {
        guard id < highWater else { throw BoltError.corrupted("page \(id): out of bounds: \(highWater)") }
        let ps = pageSize
        var buf = try file.read(at: Int64(id) * Int64(ps), count: ps)
        guard buf.count == ps else { throw BoltError.corrupted("page \(id): beyond the end of the file") }
        let hid = buf.u64(0)
        guard hid == id else { throw BoltError.corrupted("page \(id): header has page id \(hid)") }
        let overflow = UInt64(buf.u32(12))
        if overflow > 0 {
            guard id + overflow < highWater else {
                throw BoltError.corrupted("page \(id): overflow \(overflow) beyond the high-water mark \(highWater)")
            }
            let end = Int64(id + overflow + 1) * Int64(ps)
            guard end <= (try file.size()) else { throw BoltError.corrupted("page \(id): overflow beyond the end of the file") }
            let rest = try file.read(at: Int64(id + 1) * Int64(ps), count: Int(overflow) * ps)
            guard rest.count == Int(overflow) * ps else { throw BoltError.corrupted("page \(id): short read") }
            buf.append(contentsOf: rest)
        }
        return buf
    }

    func cacheInvalidate(_ pages: [UInt64: [UInt8]]) {
        cache.remove(pages.keys)
    }

    func cacheWritten(_ pages: [UInt64: [UInt8]]) {
        for (id, buf) in pages where buf.u16(8) & (branchPageFlag | leafPageFlag) != 0 {
            if let p = try? Page(data: buf, base: 0, validating: false) { cache.put(id, p) }
        }
    }

    // MARK: - Allocation (writer only)

    /// `count` contiguous pages: from the free list, else at the high-water mark.
    func allocate(tx: BoltTx, count: Int) throws -> UInt64 {
        let id = try freelist.allocate(txid: tx.meta.txid, count: count)
        if id != 0 { return id }
        let top = tx.meta.pgid
        let minsz = Int(top + UInt64(count) + 1) * pageSize
        if minsz >= datasz {
            // bbolt remaps here; only the mapping size is modelled (it decides file growth).
            let fileSize = Int(try file.size())
            datasz = try BoltDB.mmapSize(max(fileSize, minsz), pageSize: pageSize)
        }
        tx.meta.pgid += UInt64(count)
        return top
    }

    /// bbolt's grow: extends the file (truncate + fsync) to the mapping size, or by AllocSize
    /// once the mapping is larger than that.
    func grow(to size: Int) throws {
        var sz = size
        if sz <= filesz { return }
        if datasz < options.allocSize { sz = datasz } else { sz += options.allocSize }
        if !options.noGrowSync && !options.readOnly {
            try file.truncate(to: Int64(sz))
            try file.sync()
        }
        filesz = sz
    }
}
