import EtcdProto

extension KVStore {
    /// The size of an empty etcd 3.4 database file (bbolt meta, freelist and bucket pages),
    /// as `etcdctl endpoint status` reports it for a new member.
    public static let emptyDBSize: Int64 = 20_480

    /// Until the Backend stores revisions in a bbolt file, the size such a file would need
    /// for what the store retains: an empty database plus, per retained revision, its
    /// 17-byte revision key and (approximately) its encoded KeyValue. Reported as db_size and db_size_in_use.
    public var estimatedDBSize: Int64 {
        log.entries.reduce(Self.emptyDBSize) { total, e in
            // key and value, plus about 32 bytes for the revisions, version, lease and tags.
            total + 17 + Int64(e.kv.key.count + e.kv.value.count + 32)
        }
    }
}
