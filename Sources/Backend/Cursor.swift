/// A position in a bucket's B+tree: a stack of pages/nodes from the root to a leaf.
struct ElemRef {
    var page: Page?
    var node: Node?
    var index: Int

    init(page: Page?, node: Node?, index: Int) {
        self.page = page
        self.node = node
        self.index = index
    }

    @inline(__always) var isLeaf: Bool { node?.isLeaf ?? page!.isLeaf }
    /// Elements now (a node may change while the cursor is on it).
    @inline(__always) var count: Int { node?.inodes.count ?? page!.count }
}

/// Iterates a bucket's keys in byte order, both ways (bbolt's Cursor). `value` is nil for a
/// nested bucket. Only valid while its transaction is open; a cursor must not be shared
/// between threads. After changing the bucket, reposition the cursor (first/last/seek).
public final class BoltCursor {
    public let bucket: BoltBucket
    var stack: [ElemRef] = []

    init(bucket: BoltBucket) {
        self.bucket = bucket
    }

    public typealias Entry = (key: [UInt8], value: [UInt8]?)

    private func entry(_ r: (Bytes?, Bytes?, UInt32)) -> Entry? {
        guard let k = r.0 else { return nil }
        return (Array(k), r.2 & bucketLeafFlag != 0 ? nil : Array(r.1 ?? []))
    }

    /// The first key (nil if the bucket is empty).
    public func first() throws -> Entry? {
        try bucket.checkOpen()
        return entry(try firstRaw())
    }

    /// The last key (nil if the bucket is empty).
    public func last() throws -> Entry? {
        try bucket.checkOpen()
        return entry(try lastRaw())
    }

    /// The next key (nil at the end; the cursor then stays on the last key).
    public func next() throws -> Entry? {
        try bucket.checkOpen()
        return entry(try nextRaw())
    }

    /// The previous key (nil at the beginning).
    public func prev() throws -> Entry? {
        try bucket.checkOpen()
        return entry(try prevRaw())
    }

    /// The first key >= `key` (nil if there is none).
    public func seek(_ key: [UInt8]) throws -> Entry? {
        try bucket.checkOpen()
        return entry(try seekPublicRaw(Bytes(key)))
    }

    /// Deletes the key under the cursor (not a nested bucket).
    public func delete() throws {
        try bucket.checkWritable()
        let (k, _, flags) = keyValue()
        guard let k else { return }
        if flags & bucketLeafFlag != 0 { throw BoltError.incompatibleValue }
        try node().del(k)
    }

    // MARK: - Raw moves (slices into pages, plus element flags)

    typealias Raw = (Bytes?, Bytes?, UInt32)

    func firstRaw() throws -> Raw {
        stack.removeAll(keepingCapacity: true)
        let (p, n) = try bucket.pageNode(bucket.header.root)
        stack.append(ElemRef(page: p, node: n, index: 0))
        try goFirst()
        if stack[stack.count - 1].count == 0 { _ = try nextRaw() }
        return keyValue()
    }

    func lastRaw() throws -> Raw {
        stack.removeAll(keepingCapacity: true)
        let (p, n) = try bucket.pageNode(bucket.header.root)
        var ref = ElemRef(page: p, node: n, index: 0)
        ref.index = ref.count - 1
        stack.append(ref)
        try goLast()
        // Skip empty leaves (possible in a write transaction after deletes).
        if stack[stack.count - 1].count == 0 { return try prevRaw() }
        return keyValue()
    }

    func nextRaw() throws -> Raw {
        // Fast path: the next element of the same leaf.
        let top = stack.count - 1
        if top >= 0 {
            let ref = stack[top]
            if ref.index < ref.count - 1 {
                stack[top].index = ref.index + 1
                return Self.keyValue(ref.page, ref.node, ref.index + 1)
            }
        }
        while true {
            var i = stack.count - 1
            while i >= 0 {
                if stack[i].index < stack[i].count - 1 {
                    stack[i].index += 1
                    break
                }
                i -= 1
            }
            if i == -1 { return (nil, nil, 0) }
            stack.removeSubrange((i + 1)...)
            try goFirst()
            if stack[stack.count - 1].count == 0 { continue }
            return keyValue()
        }
    }

    func prevRaw() throws -> Raw {
        while true {
            var i = stack.count - 1
            while i >= 0 {
                if stack[i].index > 0 {
                    stack[i].index -= 1
                    break
                }
                stack.removeLast()
                i -= 1
            }
            if stack.isEmpty { return (nil, nil, 0) }
            try goLast()
            if stack[stack.count - 1].count == 0 { continue }
            return keyValue()
        }
    }

    /// Seek as the public Seek: past the end of a leaf moves on to the next one.
    func seekPublicRaw(_ key: Bytes) throws -> Raw {
        var r = try seekRaw(key)
        let top = stack[stack.count - 1]
        if top.index >= top.count { r = try nextRaw() }
        return r
    }

    /// Positions the cursor at the first key >= `key` within the leaf the search ends in.
    func seekRaw(_ key: Bytes) throws -> Raw {
        stack.removeAll(keepingCapacity: true)
        try search(key, bucket.header.root)
        return keyValue()
    }

    private func push(_ ref: ElemRef) throws {
        if stack.count >= maxTreeDepth {
            throw BoltError.corrupted("tree deeper than \(maxTreeDepth) levels (a cycle?)")
        }
        stack.append(ref)
    }

    private func childPgid(_ ref: ElemRef) throws -> UInt64 {
        guard ref.index >= 0 && ref.index < ref.count else { throw BoltError.corrupted("cursor index out of range") }
        if let n = ref.node { return n.inodes[ref.index].pgid }
        return ref.page!.childPgid(ref.index)
    }

    private func goFirst() throws {
        while true {
            let ref = stack[stack.count - 1]
            if ref.isLeaf { break }
            let (p, n) = try bucket.pageNode(try childPgid(ref))
            try push(ElemRef(page: p, node: n, index: 0))
        }
    }

    private func goLast() throws {
        while true {
            let ref = stack[stack.count - 1]
            if ref.isLeaf { break }
            let (p, n) = try bucket.pageNode(try childPgid(ref))
            var next = ElemRef(page: p, node: n, index: 0)
            next.index = next.count - 1
            try push(next)
        }
    }

    private func search(_ key: Bytes, _ pgid: UInt64) throws {
        var pgid = pgid
        while true {
            let (p, n) = try bucket.pageNode(pgid)
            var e = ElemRef(page: p, node: n, index: 0)
            if e.isLeaf {
                e.index = n?.lowerBound(key).index ?? p!.search(key).index
                try push(e)
                return
            }
            let (index, exact) = n?.lowerBound(key) ?? p!.search(key)
            e.index = (!exact && index > 0) ? index - 1 : index
            if e.count == 0 { throw BoltError.corrupted("empty branch") }
            if e.index >= e.count { e.index = e.count - 1 }
            try push(e)
            pgid = try childPgid(e)
        }
    }

    /// Key, value and flags of the current leaf element; nil at the end of a page.
    func keyValue() -> Raw {
        guard let ref = stack.last else { return (nil, nil, 0) }
        return Self.keyValue(ref.page, ref.node, ref.index)
    }

    @inline(__always)
    static func keyValue(_ page: Page?, _ node: Node?, _ index: Int) -> Raw {
        if let n = node {
            guard index >= 0 && index < n.inodes.count else { return (nil, nil, 0) }
            let inode = n.inodes[index]
            return (inode.key, inode.value, inode.flags)
        }
        let p = page!
        guard index >= 0 && index < p.count else { return (nil, nil, 0) }
        let e = p.leaf(index)
        return (p.data[e.key], p.data[e.value], e.flags)
    }

    /// The leaf node the cursor is on, materializing the nodes from the root down.
    func node() throws -> Node {
        guard !stack.isEmpty else { throw BoltError.corrupted("accessing a node with a zero-length cursor stack") }
        if let n = stack[stack.count - 1].node, n.isLeaf { return n }
        var n: Node
        if let root = stack[0].node { n = root } else { n = try bucket.node(stack[0].page!.id, parent: nil) }
        for ref in stack.dropLast() {
            if n.isLeaf { throw BoltError.corrupted("expected branch node") }
            n = try n.childAt(ref.index)
        }
        if !n.isLeaf { throw BoltError.corrupted("expected leaf node") }
        return n
    }
}
