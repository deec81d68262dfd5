import Foundation

/// One life of a key: from its creation to its deletion (the tombstone is the last
/// revision of a closed generation). etcd: mvcc/key_index.go `generation`.
struct Generation: Sendable {
    /// Number of puts (and the tombstone) in this generation, kept across compaction,
    /// so that `version` of older revisions can still be derived.
    var ver: Int64 = 0
    /// Revision of the put that created the key.
    var created = Revision(main: 0)
    /// Revisions of this generation in ascending order.
    var revs: [Revision] = []

    var isEmpty: Bool { revs.isEmpty }

    /// Position of the last revision with main <= `rev`, or -1.
    func lastIndex(atOrBefore rev: Int64) -> Int {
        var lo = 0, hi = revs.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if revs[mid].main <= rev { lo = mid + 1 } else { hi = mid }
        }
        return lo - 1
    }
}

/// All the revisions of one key, split into generations. The last generation is the
/// live one (empty once the key was deleted). etcd: mvcc/key_index.go `keyIndex`.
///
///     key "foo", put@1, put@2, delete@3, put@5:
///     generations: [ {1.0, 2.0, 3.0(t)}, {5.0} ]
final class KeyIndex {
    let key: Data
    private(set) var modified = Revision(main: 0)
    private(set) var generations: [Generation] = []

    init(key: Data) {
        self.key = key
    }

    /// True when the index holds no revision at all (fully compacted away).
    var isEmpty: Bool {
        generations.count == 1 && generations[0].isEmpty
    }

    func put(_ rev: Revision) {
        precondition(rev > modified, "keyIndex put: revision \(rev) not after \(modified)")
        if generations.isEmpty {
            generations.append(Generation())
        }
        let last = generations.count - 1
        if generations[last].revs.isEmpty {
            generations[last].created = rev
        }
        generations[last].revs.append(rev)
        generations[last].ver += 1
        modified = rev
    }

    /// Starts the index of a key restored from the backend: one generation created at
    /// `created`, holding `modified` as its latest revision, at `version`. etcd: keyIndex.restore.
    func restore(created: Revision, modified: Revision, version: Int64) {
        precondition(generations.isEmpty, "restore of a keyIndex in use")
        self.modified = modified
        generations = [Generation(ver: version, created: created, revs: [modified])]
    }

    /// Records a deletion: the tombstone closes the live generation. Returns false
    /// (etcd: ErrRevisionNotFound) if the key is not live.
    @discardableResult
    func tombstone(_ rev: Revision) -> Bool {
        precondition(!isEmpty && !generations.isEmpty, "tombstone on an empty keyIndex")
        if generations[generations.count - 1].isEmpty {
            return false
        }
        put(rev)
        generations.append(Generation())
        return true
    }

    /// The generation holding the key's state at `rev`, or nil if the key did not
    /// exist at `rev` (not yet created, or deleted at or before `rev`).
    /// etcd: keyIndex.findGeneration (a binary search here; same result).
    private func findGeneration(_ rev: Int64) -> Int? {
        // Only the last generation can be empty.
        var count = generations.count
        if count > 0 && generations[count - 1].isEmpty { count -= 1 }
        // Highest generation whose first revision is <= rev.
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if generations[mid].revs[0].main <= rev { lo = mid + 1 } else { hi = mid }
        }
        let g = lo - 1
        if g < 0 { return nil }
        if g != generations.count - 1, generations[g].revs[generations[g].revs.count - 1].main <= rev {
            return nil  // deleted at or before rev
        }
        return g
    }

    /// The revision of the key visible at `atRev`, with its generation's create
    /// revision and its version at that point. etcd: keyIndex.get.
    func get(atRev: Int64) -> (modified: Revision, created: Revision, version: Int64)? {
        guard let gi = findGeneration(atRev) else { return nil }
        let g = generations[gi]
        let n = g.lastIndex(atOrBefore: atRev)
        if n < 0 { return nil }
        return (g.revs[n], g.created, g.ver - Int64(g.revs.count - n - 1))
    }

    /// Drops every revision not needed to answer reads at revisions >= `atRev`, and
    /// adds to `keep` the revision (if any) that must stay in the backend: the latest
    /// revision <= atRev of the key, unless the key was deleted at or before atRev.
    /// etcd: keyIndex.compact / doCompact.
    func compact(atRev: Int64, keep: inout Set<Revision>) {
        precondition(!isEmpty, "compact on an empty keyIndex")
        var gi = 0
        // Skip generations that ended (tombstone) at or before atRev.
        while gi < generations.count - 1 {
            let g = generations[gi]
            if g.revs[g.revs.count - 1].main > atRev { break }
            gi += 1
        }
        if !generations[gi].isEmpty {
            let revs = generations[gi].revs
            let revIndex = generations[gi].lastIndex(atOrBefore: atRev)
            if revIndex >= 0 {
                keep.insert(revs[revIndex])
                generations[gi].revs.removeFirst(revIndex)
            }
            if generations[gi].revs.count == 1 && gi != generations.count - 1 {
                // Only the tombstone would be left: drop the generation (etcd does so too;
                // unreachable in practice, kept for parity).
                keep.remove(generations[gi].revs[0])
                gi += 1
            }
        }
        if gi > 0 {
            generations.removeFirst(gi)
        }
    }

    /// Every revision of the key with main >= `rev`, keeping only the last change of
    /// each main revision. etcd: keyIndex.since (used by watchers).
    func since(_ rev: Int64) -> [Revision] {
        let since = Revision(main: rev)
        var gi = generations.count - 1
        while gi > 0 {
            let g = generations[gi]
            if !g.isEmpty && since > g.created { break }
            gi -= 1
        }
        var out: [Revision] = []
        var last: Int64 = 0
        while gi < generations.count {
            for r in generations[gi].revs where !(since > r) {
                if r.main == last {
                    out[out.count - 1] = r
                    continue
                }
                out.append(r)
                last = r.main
            }
            gi += 1
        }
        return out
    }
}
