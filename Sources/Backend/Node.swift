/// An element of a node: a key/value (leaf) or a key/child page (branch).
struct INode {
    var flags: UInt32 = 0
    var pgid: UInt64 = 0
    var key: Bytes
    var value: Bytes
}

/// An in-memory, deserialized page of a write transaction (bbolt's node.go): changed by
/// puts and deletes, then rebalanced, split and written to fresh pages at commit.
final class Node {
    unowned let bucket: BoltBucket
    var isLeaf: Bool
    var unbalanced = false
    var spilled = false
    /// The first key when the node was read or last spilled: its key in the parent.
    var key: Bytes?
    var pgid: UInt64 = 0
    /// Overflow count of the page the node was read from (to free it).
    var overflow: UInt32 = 0
    var parent: Node?
    var children: [Node] = []
    var inodes: [INode] = []

    init(bucket: BoltBucket, isLeaf: Bool, parent: Node?) {
        self.bucket = bucket
        self.isLeaf = isLeaf
        self.parent = parent
        bucket.tx.track(self)
    }

    var tx: BoltTx { bucket.tx }

    func root() -> Node {
        var n = self
        while let p = n.parent { n = p }
        return n
    }

    var minKeys: Int { isLeaf ? 1 : 2 }
    var elementSize: Int { isLeaf ? leafElementSize : branchElementSize }

    /// Serialized size.
    func size() -> Int {
        var sz = pageHeaderSize
        let el = elementSize
        for i in inodes.indices { sz += el + inodes[i].key.count + inodes[i].value.count }
        return sz
    }

    func childAt(_ index: Int) throws -> Node {
        if isLeaf { throw BoltError.corrupted("invalid childAt(\(index)) on a leaf node") }
        guard index >= 0 && index < inodes.count else { throw BoltError.corrupted("child index \(index) out of range") }
        return try bucket.node(inodes[index].pgid, parent: self)
    }

    /// Index of the first inode whose key is >= `key` (sort.Search).
    func lowerBound(_ key: Bytes) -> (index: Int, exact: Bool) {
        var lo = 0, hi = inodes.count
        var exact = false
        while lo < hi {
            let mid = (lo + hi) >> 1
            let c = compareBytes(inodes[mid].key, key)
            if c == 0 { exact = true }
            if c != -1 { hi = mid } else { lo = mid + 1 }
        }
        return (lo, exact)
    }

    func childIndex(_ child: Node) -> Int { lowerBound(child.key ?? []).index }

    func nextSibling() throws -> Node? {
        guard let parent else { return nil }
        let index = parent.childIndex(self)
        if index >= parent.inodes.count - 1 { return nil }
        return try parent.childAt(index + 1)
    }

    func prevSibling() throws -> Node? {
        guard let parent else { return nil }
        let index = parent.childIndex(self)
        if index == 0 { return nil }
        return try parent.childAt(index - 1)
    }

    /// Inserts or replaces the inode at `oldKey`.
    func put(oldKey: Bytes, newKey: Bytes, value: Bytes, pgid: UInt64, flags: UInt32) throws {
        if pgid >= tx.meta.pgid {
            throw BoltError.corrupted("pgid (\(pgid)) above high water mark (\(tx.meta.pgid))")
        }
        precondition(!oldKey.isEmpty && !newKey.isEmpty, "put: zero-length key")
        let (index, _) = lowerBound(oldKey)
        let exact = index < inodes.count && bytesEqual(inodes[index].key, oldKey)
        let inode = INode(flags: flags, pgid: pgid, key: newKey, value: value)
        if exact { inodes[index] = inode } else { inodes.insert(inode, at: index) }
    }

    func del(_ key: Bytes) {
        let (index, _) = lowerBound(key)
        guard index < inodes.count && bytesEqual(inodes[index].key, key) else { return }
        inodes.remove(at: index)
        unbalanced = true
    }

    /// Reads the node from a page.
    func read(_ p: Page) {
        pgid = p.id
        overflow = p.overflow
        isLeaf = p.isLeaf
        inodes.removeAll(keepingCapacity: true)
        inodes.reserveCapacity(p.count)
        for i in 0..<p.count {
            if isLeaf {
                let e = p.leaf(i)
                inodes.append(INode(flags: e.flags, pgid: 0, key: p.data[e.key], value: p.data[e.value]))
            } else {
                let e = p.branch(i)
                inodes.append(INode(flags: 0, pgid: e.pgid, key: p.data[e.key], value: []))
            }
        }
        key = inodes.first?.key
    }

    /// Writes the elements into `buf` at `base` (where the page header starts); the header's
    /// id and overflow are the caller's.
    func write(into buf: inout [UInt8], base: Int) throws {
        if inodes.count >= 0xFFFF { throw BoltError.corrupted("inode overflow: \(inodes.count) (pgid=\(pgid))") }
        let pageID = buf.u64(base)
        try buf.withUnsafeMutableBytes { raw in
            raw.setU16(base + 8, raw.u16(base + 8) | (isLeaf ? leafPageFlag : branchPageFlag))
            raw.setU16(base + 10, UInt16(inodes.count))
            if inodes.isEmpty { return }
            var off = base + pageHeaderSize + elementSize * inodes.count
            for i in inodes.indices {
                let item = inodes[i]
                let e = base + pageHeaderSize + i * 16
                let pos = UInt32(off - e)
                if isLeaf {
                    raw.setU32(e, item.flags)
                    raw.setU32(e + 4, pos)
                    raw.setU32(e + 8, UInt32(item.key.count))
                    raw.setU32(e + 12, UInt32(item.value.count))
                } else {
                    if item.pgid == pageID { throw BoltError.corrupted("write: circular dependency occurred") }
                    raw.setU32(e, pos)
                    raw.setU32(e + 4, UInt32(item.key.count))
                    raw.setU64(e + 8, item.pgid)
                }
                item.key.withUnsafeBytes { k in
                    if k.count > 0 { (raw.baseAddress! + off).copyMemory(from: k.baseAddress!, byteCount: k.count) }
                }
                off += item.key.count
                item.value.withUnsafeBytes { v in
                    if v.count > 0 { (raw.baseAddress! + off).copyMemory(from: v.baseAddress!, byteCount: v.count) }
                }
                off += item.value.count
            }
        }
    }

    // MARK: - Split

    /// Splits the node into page-sized nodes at exactly bbolt's split points (repeated
    /// splitTwo), in one pass: each part's inodes are copied once, so a node that gathered
    /// many thousands of keys in one batch (a large delete's tombstones) splits in linear
    /// time and memory. (Copying the remainder at every split was quadratic in both.)
    func split(pageSize: Int) -> [Node] {
        var fillPercent = bucket.fillPercent
        if !(fillPercent >= BoltBucket.minFillPercent) { fillPercent = BoltBucket.minFillPercent }
        if fillPercent > BoltBucket.maxFillPercent { fillPercent = BoltBucket.maxFillPercent }
        let threshold = Int(Double(pageSize) * fillPercent)
        // Where each part after the first begins.
        var cuts: [Int] = []
        var start = 0
        while !fits(inodes[start...], pageSize: pageSize) {
            let cut = start + splitIndex(inodes[start...], threshold: threshold)
            cuts.append(cut)
            start = cut
        }
        guard !cuts.isEmpty else { return [self] }
        if parent == nil {
            let p = Node(bucket: bucket, isLeaf: false, parent: nil)
            p.children = [self]
            parent = p
        }
        var nodes: [Node] = [self]
        nodes.reserveCapacity(cuts.count + 1)
        for (i, cut) in cuts.enumerated() {
            let next = Node(bucket: bucket, isLeaf: isLeaf, parent: parent)
            parent!.children.append(next)
            next.inodes = Array(inodes[cut..<(i + 1 < cuts.count ? cuts[i + 1] : inodes.count)])
            nodes.append(next)
            tx.stats.split += 1
        }
        inodes = Array(inodes[..<cuts[0]])
        return nodes
    }

    /// bbolt's splitTwo stop condition: too few keys to split, or small enough for one page.
    private func fits(_ inodes: ArraySlice<INode>, pageSize: Int) -> Bool {
        if inodes.count <= minKeysPerPage * 2 { return true }
        var sz = pageHeaderSize
        for i in inodes.indices {
            sz += elementSize + inodes[i].key.count + inodes[i].value.count
            if sz >= pageSize { return false }
        }
        return true
    }

    /// bbolt's splitIndex: the offset (within `inodes`) where the first page fills up.
    private func splitIndex(_ inodes: ArraySlice<INode>, threshold: Int) -> Int {
        var sz = pageHeaderSize
        var index = 0
        var i = 0
        let base = inodes.startIndex
        while i < inodes.count - minKeysPerPage {
            index = i
            let elsize = elementSize + inodes[base + i].key.count + inodes[base + i].value.count
            if index >= minKeysPerPage && sz + elsize > threshold { break }
            sz += elsize
            i += 1
        }
        return index
    }

    // MARK: - Spill

    /// Writes the node (and its children first) to freshly allocated dirty pages, splitting it
    /// where it is too large for one page.
    func spill() throws {
        if spilled { return }
        let tx = self.tx
        children.sort { a, b in
            guard let ak = a.inodes.first?.key else { return b.inodes.first != nil }
            guard let bk = b.inodes.first?.key else { return false }
            return compareBytes(ak, bk) == -1
        }
        var i = 0
        while i < children.count {
            try children[i].spill()
            i += 1
        }
        children = []

        let nodes = split(pageSize: tx.db.pageSize)
        for node in nodes {
            if node.pgid > 0 {
                try tx.db.freelist.free(txid: tx.meta.txid, id: node.pgid, overflow: node.overflow, isFreelistPage: false)
                node.pgid = 0
            }
            let ps = tx.db.pageSize
            let count = (node.size() + ps - 1) / ps
            let id = try tx.allocate(count: count)
            if id >= tx.meta.pgid { throw BoltError.corrupted("pgid (\(id)) above high water mark (\(tx.meta.pgid))") }
            node.pgid = id
            node.overflow = UInt32(count - 1)
            try tx.writeNode(node, to: id)
            node.spilled = true

            if let parent = node.parent {
                guard let first = node.inodes.first?.key else { throw BoltError.corrupted("spill: empty node") }
                let key = node.key ?? first
                try parent.put(oldKey: key, newKey: first, value: [], pgid: node.pgid, flags: 0)
                node.key = first
            }
            tx.stats.spill += 1
        }

        if let parent, parent.pgid == 0 {
            children = []
            try parent.spill()
        }
    }

    // MARK: - Rebalance

    /// Merges the node with a sibling when it is below 25% of a page or has too few keys.
    func rebalance() throws {
        if !unbalanced { return }
        unbalanced = false
        tx.stats.rebalance += 1

        let threshold = tx.db.pageSize / 4
        if size() > threshold && inodes.count > minKeys { return }

        guard let parent else {
            // The root: collapse a branch with a single child.
            if !isLeaf && inodes.count == 1 {
                let child = try bucket.node(inodes[0].pgid, parent: self)
                isLeaf = child.isLeaf
                inodes = child.inodes
                children = child.children
                for inode in inodes where !isLeaf {
                    if let c = bucket.nodes?[inode.pgid] { c.parent = self }
                }
                child.parent = nil
                bucket.nodes?[child.pgid] = nil
                try child.free()
            }
            return
        }

        if inodes.isEmpty {
            parent.del(key ?? [])
            parent.removeChild(self)
            bucket.nodes?[pgid] = nil
            try free()
            try parent.rebalance()
            return
        }

        guard parent.inodes.count > 1 else { throw BoltError.corrupted("parent must have at least 2 children") }

        let useNextSibling = parent.childIndex(self) == 0
        guard let target = try (useNextSibling ? nextSibling() : prevSibling()) else {
            throw BoltError.corrupted("rebalance: missing sibling")
        }

        if useNextSibling {
            if !target.isLeaf {
                for inode in target.inodes {
                    if let child = bucket.nodes?[inode.pgid] {
                        child.parent?.removeChild(child)
                        child.parent = self
                        children.append(child)
                    }
                }
            }
            inodes.append(contentsOf: target.inodes)
            parent.del(target.key ?? [])
            parent.removeChild(target)
            bucket.nodes?[target.pgid] = nil
            try target.free()
        } else {
            if !isLeaf {
                for inode in inodes {
                    if let child = bucket.nodes?[inode.pgid] {
                        child.parent?.removeChild(child)
                        child.parent = target
                        target.children.append(child)
                    }
                }
            }
            target.inodes.append(contentsOf: inodes)
            parent.del(key ?? [])
            parent.removeChild(self)
            bucket.nodes?[pgid] = nil
            try free()
        }
        try parent.rebalance()
    }

    func removeChild(_ target: Node) {
        if let i = children.firstIndex(where: { $0 === target }) { children.remove(at: i) }
    }

    /// Adds the node's page to the pending frees.
    func free() throws {
        if pgid != 0 {
            try tx.db.freelist.free(txid: tx.meta.txid, id: pgid, overflow: overflow, isFreelistPage: false)
            pgid = 0
        }
    }
}
