// bbolt's on-disk layout (page.go, db.go, bucket.go of go.etcd.io/bbolt 1.3.6).
//
// Every page starts with a 16-byte header:
//
//     0   id        u64   page id (offset / pageSize)
//     8   flags     u16   0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist
//     10  count     u16   number of elements (freelist: ids, 0xFFFF = count in first u64)
//     12  overflow  u32   number of extra contiguous pages that belong to this page
//
// Branch element (16 bytes each, right after the header):   pos u32, ksize u32, pgid u64
// Leaf element   (16 bytes each, right after the header):   flags u32, pos u32, ksize u32, vsize u32
// `pos` is the offset of the key from the element itself; the value follows the key.
// A leaf element with flags 0x01 is a nested bucket: its value is a 16-byte bucket header
// (root pgid u64, sequence u64) followed, when root == 0, by an inline leaf page.
//
// Meta page (pages 0 and 1, header + at offset 16):
//     magic u32 0xED0CDAED, version u32 2, pageSize u32, flags u32, root bucket (root u64,
//     sequence u64), freelist pgid u64, high-water pgid u64, txid u64, checksum u64
//     (FNV-64a of the 56 bytes before it). The valid meta with the higher txid wins.
//
// Freelist page: u64 page ids, sorted, after the header.

let pageHeaderSize = 16
let branchElementSize = 16
let leafElementSize = 16
let bucketHeaderSize = 16
let minKeysPerPage = 2

let branchPageFlag: UInt16 = 0x01
let leafPageFlag: UInt16 = 0x02
let metaPageFlag: UInt16 = 0x04
let freelistPageFlag: UInt16 = 0x10

let bucketLeafFlag: UInt32 = 0x01

let boltMagic: UInt32 = 0xED0C_DAED
let boltVersion: UInt32 = 2
/// meta.freelist when the free list is not written (NoFreelistSync).
let pgidNoFreelist: UInt64 = 0xFFFF_FFFF_FFFF_FFFF

/// bbolt.MaxKeySize / MaxValueSize.
public let boltMaxKeySize = 32768
public let boltMaxValueSize = (1 << 31) - 2

let maxMmapStep = 1 << 30
let maxMapSize = 0xFFFF_FFFF_FFFF
let maxAllocSize = 0x7FFF_FFFF

/// The most levels a cursor descends before it calls the tree corrupt (a cycle).
let maxTreeDepth = 128
/// The most levels of nested buckets a whole-file walk follows.
let maxBucketNesting = 512

func pageTypeName(_ flags: UInt16) -> String {
    if flags & branchPageFlag != 0 { return "branch" }
    if flags & leafPageFlag != 0 { return "leaf" }
    if flags & metaPageFlag != 0 { return "meta" }
    if flags & freelistPageFlag != 0 { return "freelist" }
    let hex = String(flags, radix: 16)
    return "unknown<\(hex.count < 2 ? "0" + hex : hex)>"
}

/// A read-only view of one branch or leaf page (with its overflow pages), validated once so
/// that every element lies inside the bytes: a corrupt file gives errors, never a crash.
/// `base` is where the page header starts in `data` (16 for an inline bucket's page).
struct Page: @unchecked Sendable {
    let data: [UInt8]
    let base: Int
    let id: UInt64
    let flags: UInt16
    let count: Int
    let overflow: UInt32

    var isLeaf: Bool { flags & leafPageFlag != 0 }
    var isBranch: Bool { !isLeaf }

    /// Parses and validates a branch or leaf page.
    init(data: [UInt8], base: Int, validating: Bool = true) throws {
        guard data.count - base >= pageHeaderSize else {
            throw BoltError.corrupted("page shorter than its header")
        }
        let (id, flags, count, overflow) = data.withUnsafeBytes { p in
            (p.u64(base), p.u16(base + 8), Int(p.u16(base + 10)), p.u32(base + 12))
        }
        self.data = data
        self.base = base
        self.id = id
        self.flags = flags
        self.count = count
        self.overflow = overflow
        if validating { try validate() }
    }

    private func validate() throws {
        guard flags & (branchPageFlag | leafPageFlag) != 0 else {
            throw BoltError.corrupted("page \(id): invalid page type: \(pageTypeName(flags))")
        }
        let end = data.count
        let elemsEnd = base + pageHeaderSize + count * 16
        guard elemsEnd <= end else {
            throw BoltError.corrupted("page \(id): \(count) elements do not fit in the page")
        }
        if isBranch && count == 0 {
            throw BoltError.corrupted("page \(id): branch page without elements")
        }
        try data.withUnsafeBytes { p in
            for i in 0..<count {
                let e = base + pageHeaderSize + i * 16
                let pos: Int, ksize: Int, vsize: Int
                if isLeaf {
                    pos = Int(p.u32(e + 4)); ksize = Int(p.u32(e + 8)); vsize = Int(p.u32(e + 12))
                } else {
                    pos = Int(p.u32(e)); ksize = Int(p.u32(e + 4)); vsize = 0
                }
                guard ksize > 0 else { throw BoltError.corrupted("page \(id): element \(i) has an empty key") }
                guard e + pos + ksize + vsize <= end else {
                    throw BoltError.corrupted("page \(id): element \(i) lies outside the page")
                }
            }
        }
    }

    @inline(__always) func elementOffset(_ i: Int) -> Int { base + pageHeaderSize + i * 16 }

    /// Leaf element i: flags and the absolute ranges of key and value in `data`.
    @inline(__always)
    func leaf(_ i: Int) -> (flags: UInt32, key: Range<Int>, value: Range<Int>) {
        let e = elementOffset(i)
        return data.withUnsafeBytes { p in
            let flags = p.u32(e), pos = Int(p.u32(e + 4)), ksize = Int(p.u32(e + 8)), vsize = Int(p.u32(e + 12))
            let k = e + pos
            return (flags, k..<k + ksize, k + ksize..<k + ksize + vsize)
        }
    }

    /// Branch element i: the absolute range of the key and the child page id.
    @inline(__always)
    func branch(_ i: Int) -> (key: Range<Int>, pgid: UInt64) {
        let e = elementOffset(i)
        return data.withUnsafeBytes { p in
            let pos = Int(p.u32(e)), ksize = Int(p.u32(e + 4))
            return (e + pos..<e + pos + ksize, p.u64(e + 8))
        }
    }

    @inline(__always) func key(_ i: Int) -> Bytes {
        isLeaf ? data[leaf(i).key] : data[branch(i).key]
    }

    @inline(__always) func childPgid(_ i: Int) -> UInt64 { branch(i).pgid }

    /// First index whose key is >= `key` (sort.Search over the elements), and whether a key
    /// equal to `key` was met during the search.
    func search(_ key: Bytes) -> (index: Int, exact: Bool) {
        let leafPage = isLeaf
        return data.withUnsafeBytes { p in
            key.withUnsafeBytes { kp in
                var lo = 0, hi = count
                var exact = false
                while lo < hi {
                    let mid = (lo + hi) >> 1
                    let e = base + pageHeaderSize + mid * 16
                    let pos: Int, ksize: Int
                    if leafPage { pos = Int(p.u32(e + 4)); ksize = Int(p.u32(e + 8)) } else { pos = Int(p.u32(e)); ksize = Int(p.u32(e + 4)) }
                    let c = compareRaw(UnsafeRawBufferPointer(rebasing: p[(e + pos)..<(e + pos + ksize)]), kp)
                    if c == 0 { exact = true }
                    if c != -1 { hi = mid } else { lo = mid + 1 }
                }
                return (lo, exact)
            }
        }
    }
}

/// The bucket header stored as a bucket's value (and as the root bucket in the meta).
struct BucketHeader: Equatable, Sendable {
    var root: UInt64
    var sequence: UInt64
}

/// The meta page content.
struct Meta: Equatable, Sendable {
    var magic: UInt32 = boltMagic
    var version: UInt32 = boltVersion
    var pageSize: UInt32
    var flags: UInt32 = 0
    var root: BucketHeader
    var freelist: UInt64
    var pgid: UInt64
    var txid: UInt64
    var checksum: UInt64 = 0

    init(pageSize: UInt32, root: BucketHeader, freelist: UInt64, pgid: UInt64, txid: UInt64) {
        self.pageSize = pageSize
        self.root = root
        self.freelist = freelist
        self.pgid = pgid
        self.txid = txid
    }

    /// Decodes the meta at `offset` (the start of the page) of `buf`, which must hold 80 bytes.
    init(decoding p: UnsafeRawBufferPointer, pageOffset o: Int) {
        let m = o + pageHeaderSize
        magic = p.u32(m)
        version = p.u32(m + 4)
        pageSize = p.u32(m + 8)
        flags = p.u32(m + 12)
        root = BucketHeader(root: p.u64(m + 16), sequence: p.u64(m + 24))
        freelist = p.u64(m + 32)
        pgid = p.u64(m + 40)
        txid = p.u64(m + 48)
        checksum = p.u64(m + 56)
    }

    func encodeBody(into p: UnsafeMutableRawBufferPointer, at m: Int) {
        p.setU32(m, magic)
        p.setU32(m + 4, version)
        p.setU32(m + 8, pageSize)
        p.setU32(m + 12, flags)
        p.setU64(m + 16, root.root)
        p.setU64(m + 24, root.sequence)
        p.setU64(m + 32, freelist)
        p.setU64(m + 40, pgid)
        p.setU64(m + 48, txid)
        p.setU64(m + 56, checksum)
    }

    /// FNV-64a of the 56 bytes before the checksum.
    func sum64() -> UInt64 {
        var buf = [UInt8](repeating: 0, count: 64)
        buf.withUnsafeMutableBytes { encodeBody(into: $0, at: 0) }
        return buf.withUnsafeBytes { fnv64a(UnsafeRawBufferPointer(rebasing: $0[0..<56])) }
    }

    /// bbolt's meta.validate: magic, version, then checksum (a zero checksum is accepted).
    func validate() throws {
        if magic != boltMagic { throw BoltError.invalid }
        if version != boltVersion { throw BoltError.versionMismatch }
        if checksum != 0 && checksum != sum64() { throw BoltError.checksum }
    }

    /// A full meta page as bbolt's meta.write produces it: page id = txid % 2 (unless given).
    func pageBytes(pageSize ps: Int, id: UInt64? = nil) -> [UInt8] {
        var m = self
        m.checksum = m.sum64()
        var buf = [UInt8](repeating: 0, count: ps)
        buf.withUnsafeMutableBytes { p in
            p.setU64(0, id ?? (txid % 2))
            p.setU16(8, metaPageFlag)
            m.encodeBody(into: p, at: pageHeaderSize)
        }
        return buf
    }
}
