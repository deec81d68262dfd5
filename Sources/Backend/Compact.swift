import FileIO

extension BoltDB {
    /// etcd's defragdb: copies every bucket of `source` (as of one read transaction) into
    /// `destination`, in key order with fill percent 0.9, committing every `limit` keys.
    /// Unlike etcd's (whose schema has none), nested buckets are copied as buckets, with
    /// their sequence numbers.
    public static func defragment(from source: BoltDB, into destination: BoltDB, limit: Int = 10000) throws {
        var tmptx = try destination.beginWrite()
        defer { tmptx.rollback() }
        let tx = try source.beginRead()
        defer { tx.rollback() }

        var count = 0
        func navigate(_ path: [[UInt8]]) throws -> BoltBucket {
            var b = try tmptx.createBucketIfNotExists(path[0])
            for name in path.dropFirst() { b = try b.createBucketIfNotExists(name) }
            b.fillPercent = 0.9
            return b
        }
        func copy(_ src: BoltBucket, _ path: [[UInt8]]) throws {
            if path.count > maxBucketNesting { throw BoltError.corrupted("buckets nested too deep") }
            var tmpb = try navigate(path)
            if src.sequence != 0 { try tmpb.setSequence(src.sequence) }
            let c = BoltCursor(bucket: src)
            var (k, v, f) = try c.firstRaw()
            while let kk = k {
                if f & bucketLeafFlag != 0 {
                    guard let child = try src.childBucket(kk) else { throw BoltError.corrupted("cannot open bucket") }
                    try copy(child, path + [Array(kk)])
                    tmpb = try navigate(path)
                } else {
                    count += 1
                    if count > limit {
                        try tmptx.commit()
                        tmptx = try destination.beginWrite()
                        tmpb = try navigate(path)
                        count = 0
                    }
                    try tmpb.put(Array(kk), Array(v ?? []))
                }
                (k, v, f) = try c.nextRaw()
            }
        }

        let root = try tx.root
        let c = BoltCursor(bucket: root)
        var (k, _, _) = try c.firstRaw()
        while let name = k {
            guard let b = try root.childBucket(name) else {
                throw BoltError.corrupted("backend: cannot defrag bucket \(String(decoding: name, as: UTF8.self))")
            }
            try copy(b, [Array(name)])
            (k, _, _) = try c.nextRaw()
        }
        try tmptx.commit()
    }

    /// bbolt's Compact: copies everything into `destination` with fill percent 1.0,
    /// committing whenever the copied keys and values exceed `txMaxSize` bytes (0: one
    /// transaction).
    public static func compact(from source: BoltDB, into destination: BoltDB, txMaxSize: Int64 = 0) throws {
        var tx = try destination.beginWrite()
        defer { tx.rollback() }
        var size: Int64 = 0

        func walk(_ b: BoltBucket, _ keys: [[UInt8]], depth: Int) throws {
            if depth > maxBucketNesting { throw BoltError.corrupted("buckets nested too deep") }
            let c = BoltCursor(bucket: b)
            var (k, v, f) = try c.firstRaw()
            while let kk = k {
                let isBucket = f & bucketLeafFlag != 0
                let value = isBucket ? nil : Array(v ?? [])
                let sz = Int64(kk.count + (value?.count ?? 0))
                if txMaxSize != 0 && size + sz > txMaxSize {
                    try tx.commit()
                    tx = try destination.beginWrite()
                    size = 0
                }
                size += sz
                var dst = try tx.bucket(keys[0])!
                for name in keys.dropFirst() { dst = try dst.bucket(name)! }
                dst.fillPercent = 1.0
                if isBucket {
                    guard let child = try b.childBucket(kk) else { throw BoltError.corrupted("cannot open bucket") }
                    let nb = try dst.createBucket(Array(kk))
                    try nb.setSequence(child.sequence)
                    try walk(child, keys + [Array(kk)], depth: depth + 1)
                } else {
                    try dst.put(Array(kk), value!)
                }
                (k, v, f) = try c.nextRaw()
            }
        }

        let src = try source.beginRead()
        defer { src.rollback() }
        try src.forEachBucket { name, b in
            let sz = Int64(name.count)
            if txMaxSize != 0 && size + sz > txMaxSize {
                try tx.commit()
                tx = try destination.beginWrite()
                size = 0
            }
            size += sz
            let nb = try tx.createBucket(name)
            try nb.setSequence(b.sequence)
            try walk(b, [name], depth: 1)
        }
        try tx.commit()
    }

    /// A defragmented copy made by `prepareDefragment`, waiting to replace the file.
    public struct DefragmentedCopy: Sendable {
        public let path: String
        public init(path: String) { self.path = path }
    }

    /// etcd's backend defrag on files: copies this database into a new file `db.tmp.*` in the
    /// same directory (opened with `tempOptions`, default: these options without an initial
    /// mapping size, as etcd opens it), closes both, renames the copy over this file, syncs
    /// the directory, and returns the reopened database. This instance is closed afterwards.
    /// No transaction may be open. On a copy failure the temporary file is removed and this
    /// database stays open.
    public func defragmentFile(limit: Int = 10000, tempOptions: BoltOptions? = nil, tempSuffix: UInt64? = nil) throws -> BoltDB {
        let copy = try prepareDefragment(limit: limit, tempOptions: tempOptions, tempSuffix: tempSuffix)
        return try finishDefragment(copy)
    }

    /// The first half of `defragmentFile`: the compact copy in `db.tmp.*`, made through a read
    /// transaction, so readers of this database go on meanwhile (a writer that commits during
    /// the copy is not in it: callers hold writers off).
    public func prepareDefragment(limit: Int = 10000, tempOptions: BoltOptions? = nil, tempSuffix: UInt64? = nil) throws -> DefragmentedCopy {
        let dir = Paths.dirname(path)
        var tmpOpts = tempOptions ?? options
        if tempOptions == nil { tmpOpts.initialMmapSize = 0 }
        var rng = SplitMix64(seed: tempSuffix ?? UInt64(truncatingIfNeeded: ObjectIdentifier(self).hashValue) ^ 0x5EED)
        var tmpPath = ""
        for _ in 0..<100 {
            tmpPath = Paths.join(dir, "db.tmp.\(rng.next() % 1_000_000_000)")
            do {
                let f = try fileSystem.open(tmpPath, options: [.read, .write, .create, .exclusive], permissions: 0o600)
                try f.close()
                break
            } catch FileIOError.alreadyExists {
                tmpPath = ""
                continue
            }
        }
        if tmpPath.isEmpty { throw BoltError.corrupted("cannot create a temporary file in \(dir)") }
        let tmp: BoltDB
        do {
            tmp = try BoltDB.open(path: tmpPath, fileSystem: fileSystem, options: tmpOpts)
        } catch {
            try? fileSystem.remove(tmpPath)
            throw error
        }
        do {
            try BoltDB.defragment(from: self, into: tmp, limit: limit)
            try tmp.close()
        } catch {
            try? tmp.close()
            try? fileSystem.remove(tmpPath)
            throw error
        }
        return DefragmentedCopy(path: tmpPath)
    }

    /// The second half: closes this database (no transaction may be open), renames the copy
    /// over its file, syncs the directory and returns the reopened database.
    public func finishDefragment(_ copy: DefragmentedCopy) throws -> BoltDB {
        try close()
        try fileSystem.rename(copy.path, to: path)
        try fileSystem.syncDirectory(Paths.dirname(path))
        return try BoltDB.open(path: path, fileSystem: fileSystem, options: options)
    }
}
