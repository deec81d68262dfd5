import Foundation
import EtcdProto

/// The in-memory stand-in for etcd's `key` bucket: every change, keyed by its
/// revision, in revision order. A put stores the full KeyValue; a delete stores a
/// tombstone whose KeyValue carries only the key (as etcd's backend does).
/// Compaction removes the revisions <= the compact revision that the index no
/// longer needs. etcd: mvcc/kvstore_txn.go (UnsafeSeqPut), kvstore_compaction.go.
struct RevisionLog {
    struct Entry {
        var rev: Revision
        var kv: Mvccpb_KeyValue
        var isTombstone: Bool
    }

    private(set) var entries: [Entry] = []

    var count: Int { entries.count }

    mutating func append(_ rev: Revision, _ kv: Mvccpb_KeyValue, tombstone: Bool) {
        precondition(entries.isEmpty || entries[entries.count - 1].rev < rev, "revision log must grow")
        entries.append(Entry(rev: rev, kv: kv, isTombstone: tombstone))
    }

    /// First position whose revision is >= `rev`.
    func lowerBound(_ rev: Revision) -> Int {
        var lo = 0, hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[mid].rev < rev { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    func kv(at rev: Revision) -> Mvccpb_KeyValue? {
        let i = lowerBound(rev)
        guard i < entries.count, entries[i].rev == rev else { return nil }
        return entries[i].kv
    }

    /// Deletes every entry with main revision <= `rev` not in `keep`.
    mutating func compact(_ rev: Int64, keep: Set<Revision>) {
        let end = lowerBound(Revision(main: rev + 1))
        var kept: [Entry] = []
        kept.reserveCapacity(keep.count + entries.count - end)
        for i in 0..<end where keep.contains(entries[i].rev) {
            kept.append(entries[i])
        }
        kept.append(contentsOf: entries[end...])
        entries = kept
    }

    /// The changes with main revision >= `rev` as watch events (etcd: kvsToEvents:
    /// a tombstone becomes a DELETE whose kv has only the key and mod_revision).
    func events(since rev: Int64) -> [Mvccpb_Event] {
        let start = lowerBound(Revision(main: rev))
        var out: [Mvccpb_Event] = []
        out.reserveCapacity(entries.count - start)
        for e in entries[start...] {
            out.append(Self.event(e))
        }
        return out
    }

    static func event(_ e: Entry) -> Mvccpb_Event {
        var ev = Mvccpb_Event()
        var kv = e.kv
        if e.isTombstone {
            ev.type = .delete
            kv.modRevision = e.rev.main
        } else {
            ev.type = .put
        }
        ev.kv = kv
        return ev
    }
}
