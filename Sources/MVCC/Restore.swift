import Backend
import Encryption
import EtcdProto
import FileIO
import Foundation

extension KVStore {
    /// etcd's store.restore: the index from the `key` bucket in revision order (a tombstone
    /// of a key not seen yet is skipped; a key's first put restores its generation with the
    /// stored create revision and version), currentRev from the last revision (at least the
    /// compact revision), compactMainRev from finishedCompactRev, and a compaction scheduled
    /// but not finished is done again.
    func restore() throws(MVCCError) {
        var scheduled: Int64 = 0
        do {
            let view = try backend.readView()
            defer { view.close() }
            if let b = try view.get(Schema.meta, Schema.consistentIndexKey) {
                consistentIndex = Schema.readUInt64BE(b) ?? 0
                appliedIndex = consistentIndex
            }
            if let b = try view.get(Schema.meta, Schema.finishedCompactKey), let r = Revision(key: b) {
                compactMainRev = r.main
            }
            if let b = try view.get(Schema.meta, Schema.scheduledCompactKey), let r = Revision(key: b) {
                scheduled = r.main
            }
            for e in try view.scan(Schema.key, from: Revision(main: 1).key(), to: nil) {
                guard let rev = Revision(key: e.key) else { throw MVCCError.storage("bad revision key in the key bucket") }
                let kv = try Mvccpb_KeyValue(serializedBytes: e.value)
                if Sealed.isMarked(kv) {
                    sealedKeyNames.insert(ValueCipher.keyLabel(of: kv.value) ?? "unreadable")
                }
                currentRev = rev.main
                let tombstone = e.key.count == 18
                if tombstone || kv.lease == 0 {
                    restoredLeaseItems[kv.key] = nil
                } else {
                    restoredLeaseItems[kv.key] = kv.lease
                }
                if let ki = index.keyIndex(kv.key) {
                    if tombstone {
                        ki.tombstone(rev)
                    } else {
                        ki.put(rev)
                    }
                } else if !tombstone {
                    index.restore(kv.key, created: Revision(main: kv.createRevision), modified: rev, version: kv.version)
                }
            }
        } catch let e as MVCCError {
            throw e
        } catch {
            throw .storage("cannot restore the store from the backend: \(error)")
        }
        if currentRev < compactMainRev { currentRev = compactMainRev }
        if scheduled != 0 && scheduled > compactMainRev {
            compactMainRev = scheduled
            log.compact(scheduled, keep: index.compact(scheduled))
        }
    }
}

extension BatchedBackend {
    /// A backend on a fresh in-memory file (tests, and stores that need no persistence).
    public static func inMemory() -> BatchedBackend {
        let fs = FaultyFileSystem(seed: 0)
        do {
            var o = BoltOptions.etcd
            o.noSync = true
            try fs.createDirectories("/mem")
            return BatchedBackend(db: try BoltDB.open(path: "/mem/db", fileSystem: fs, options: o))
        } catch {
            preconditionFailure("in-memory backend: \(error)")
        }
    }
}
