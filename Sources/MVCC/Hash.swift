import Backend
import FileIO
import Foundation

extension KVStore {
    /// etcd's Maintenance.Hash: CRC-32C over every bucket in name order — its name, then each
    /// key and value — leaving out meta/consistent_index (etcd's DefaultIgnores), values swetcd encrypted as plaintext. Also the
    /// current revision.
    public func hash() throws(MVCCError) -> (hash: UInt32, revision: Int64) {
        do {
            let view = try backend.readView()
            defer { view.close() }
            var crc: UInt32 = 0
            for bucket in Schema.allBuckets.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                crc = CRC32C.update(crc, bucket)
                for (k, v) in try view.scan(bucket, from: [], to: nil) {
                    if bucket == Schema.meta && k == Schema.consistentIndexKey { continue }
                    crc = CRC32C.update(crc, k)
                    crc = CRC32C.update(crc, bucket == Schema.key ? try log.plaintextBytes(v) : v)
                }
            }
            return (crc, currentRev)
        } catch {
            throw .storage("cannot hash the backend: \(error)")
        }
    }

    /// etcd's HashByRev (Maintenance.HashKV): CRC-32C over "key" and then each revision key
    /// and (plaintext) value of the `key` bucket up to `revision` (0: the current one), leaving out the
    /// revisions at or below the compaction that a compaction at `revision` would remove.
    /// Returns the hash, the current revision and the compact revision.
    public func hashKV(revision: Int64) throws(MVCCError) -> (hash: UInt32, revision: Int64, compactRevision: Int64) {
        let compactRev = compactMainRev
        if revision > 0 && revision <= compactRev { throw .compacted }
        if revision > 0 && revision > currentRev { throw .futureRevision }
        let rev = revision == 0 ? currentRev : revision
        let keep = index.keep(rev)
        do {
            let view = try backend.readView()
            defer { view.close() }
            var crc = CRC32C.update(0, Schema.key)
            let upper = Revision(main: rev + 1)
            let lower = Revision(main: compactRev + 1)
            for (k, v) in try view.scan(Schema.key, from: [], to: upper.key()) {
                guard let r = Revision(key: k) else { continue }
                if r < lower && !keep.isEmpty && !keep.contains(r) { continue }
                crc = CRC32C.update(crc, k)
                crc = CRC32C.update(crc, try log.plaintextBytes(v))
            }
            return (crc, currentRev, compactRev)
        } catch {
            throw .storage("cannot hash the key bucket: \(error)")
        }
    }
}

extension TreeIndex {
    /// The revisions a compaction at `rev` would keep, without compacting (etcd: treeIndex.Keep).
    func keep(_ rev: Int64) -> Set<Revision> {
        var out = Set<Revision>()
        visit(Data(), .unbounded) { ki in
            if let r = ki.keep(atRev: rev) { out.insert(r) }
        }
        return out
    }
}

extension KeyIndex {
    /// The revision a compaction at `atRev` would keep for this key, if any (etcd: keyIndex.keep).
    func keep(atRev: Int64) -> Revision? {
        guard !generations.isEmpty else { return nil }
        var gi = 0
        while gi < generations.count - 1 {
            let g = generations[gi]
            if g.revs[g.revs.count - 1].main > atRev { break }
            gi += 1
        }
        let g = generations[gi]
        guard !g.isEmpty else { return nil }
        let n = g.lastIndex(atOrBefore: atRev)
        if n < 0 { return nil }
        if n == g.revs.count - 1 && gi != generations.count - 1 { return nil }  // a tombstone
        return g.revs[n]
    }
}
