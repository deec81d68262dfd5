import Backend
import EtcdProto
import Foundation

/// etcd's `key` bucket: every change keyed by its revision (see `Schema`), in the backend.
/// A put stores the full KeyValue; a delete stores a tombstone (revision key + 't') whose
/// KeyValue carries only the key, as etcd's backend does. Compaction sweeps the revisions
/// <= the compact revision that the index no longer needs and records scheduledCompactRev
/// and finishedCompactRev in `meta`. etcd: mvcc/kvstore_txn.go, kvstore_compaction.go.
struct RevisionLog {
    let backend: BatchedBackend

    struct Entry {
        var rev: Revision
        var isTombstone: Bool
    }

    /// Every retained revision, in order (a full scan: for tests and diagnostics).
    var entries: [Entry] {
        do {
            let view = try backend.readView()
            defer { view.close() }
            return try view.scan(Schema.key, from: [], to: nil).compactMap { e in
                Revision(key: e.key).map { Entry(rev: $0, isTombstone: e.key.count == 18) }
            }
        } catch {
            preconditionFailure("cannot scan the key bucket: \(error)")
        }
    }

    func append(_ rev: Revision, _ kv: Mvccpb_KeyValue, tombstone: Bool) {
        let value: [UInt8]
        do {
            value = try kv.serializedBytes()
        } catch {
            preconditionFailure("KeyValue does not encode: \(error)")
        }
        backend.put(Schema.key, rev.key(tombstone: tombstone), value, sequential: true)
    }

    /// The KeyValues stored at `revs` (puts: the index never asks for a tombstone).
    func kvs(at revs: [Revision]) throws(MVCCError) -> [Mvccpb_KeyValue] {
        if revs.isEmpty { return [] }
        do {
            let view = try backend.readView()
            defer { view.close() }
            var out: [Mvccpb_KeyValue] = []
            out.reserveCapacity(revs.count)
            for r in revs {
                guard let v = try view.get(Schema.key, r.key()) else {
                    throw MVCCError.storage("revision \(r) is missing from the key bucket")
                }
                out.append(try Mvccpb_KeyValue(serializedBytes: v))
            }
            return out
        } catch let e as MVCCError {
            throw e
        } catch {
            throw .storage("cannot read the key bucket: \(error)")
        }
    }

    /// Deletes every revision with main <= `rev` not in `keep`; records the compaction.
    func compact(_ rev: Int64, keep: Set<Revision>) {
        let bound = Revision(main: rev).key()
        backend.put(Schema.meta, Schema.scheduledCompactKey, bound)
        backend.sweep(Schema.key, below: Revision(main: rev + 1).key()) { k in
            guard let r = Revision(key: k) else { return true }
            return keep.contains(r)
        }
        backend.put(Schema.meta, Schema.finishedCompactKey, bound)
    }

    /// The changes with main revision >= `rev` as watch events (etcd: kvsToEvents: a
    /// tombstone becomes a DELETE whose kv has only the key and mod_revision).
    func events(since rev: Int64) throws(MVCCError) -> [Mvccpb_Event] {
        do {
            let view = try backend.readView()
            defer { view.close() }
            return try view.scan(Schema.key, from: Revision(main: max(rev, 0)).key(), to: nil).map { e in
                guard let r = Revision(key: e.key) else { throw MVCCError.storage("bad revision key in the key bucket") }
                var ev = Mvccpb_Event()
                var kv = try Mvccpb_KeyValue(serializedBytes: e.value)
                if e.key.count == 18 {
                    ev.type = .delete
                    kv.modRevision = r.main
                } else {
                    ev.type = .put
                }
                ev.kv = kv
                return ev
            }
        } catch let e as MVCCError {
            throw e
        } catch {
            throw .storage("cannot read the key bucket: \(error)")
        }
    }
}
