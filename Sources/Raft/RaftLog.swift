import EtcdProto

/// The tail of the log that has not reached stable storage yet: an optional incoming
/// snapshot followed by entries `offset...`. Everything before `offset` is in storage.
struct UnstableLog {
    var snapshot: Raftpb_Snapshot?
    var entries: [Raftpb_Entry] = []
    var offset: UInt64

    /// Known only while a snapshot is pending.
    var firstIndex: UInt64? { snapshot.map { $0.metadata.index + 1 } }

    var lastIndex: UInt64? {
        if !entries.isEmpty { return offset + UInt64(entries.count) - 1 }
        return snapshot?.metadata.index
    }

    func term(_ i: UInt64) -> UInt64? {
        if i < offset {
            if let s = snapshot, s.metadata.index == i { return s.metadata.term }
            return nil
        }
        guard let last = lastIndex, i <= last else { return nil }
        return entries[Int(i - offset)].term
    }

    /// Entries up to (i, t) were persisted: drop them, unless they were replaced meanwhile.
    mutating func stableTo(_ i: UInt64, _ t: UInt64) {
        guard let gt = term(i), gt == t, i >= offset else { return }
        entries.removeFirst(Int(i + 1 - offset))
        offset = i + 1
    }

    mutating func stableSnapTo(_ i: UInt64) {
        if let s = snapshot, s.metadata.index == i { snapshot = nil }
    }

    mutating func restore(_ s: Raftpb_Snapshot) {
        offset = s.metadata.index + 1
        entries = []
        snapshot = s
    }

    mutating func truncateAndAppend(_ ents: [Raftpb_Entry]) {
        let after = ents[0].index
        if after == offset + UInt64(entries.count) {
            entries.append(contentsOf: ents)
        } else if after <= offset {
            // Replace everything unstable (the stable part after `after` is overwritten
            // in storage when these entries are persisted).
            offset = after
            entries = ents
        } else {
            entries.removeSubrange(Int(after - offset)...)
            entries.append(contentsOf: ents)
        }
    }

    func slice(_ lo: UInt64, _ hi: UInt64) -> ArraySlice<Raftpb_Entry> {
        precondition(lo <= hi && lo >= offset && hi <= offset + UInt64(entries.count),
                     "unstable.slice[\(lo),\(hi)) out of bound [\(offset),\(offset + UInt64(entries.count))]")
        return entries[Int(lo - offset)..<Int(hi - offset)]
    }
}

/// The log as Raft sees it: stable storage followed by the unstable tail, with the
/// commit and apply cursors. Invariant: applied <= committed <= lastIndex.
final class RaftLog {
    let storage: any RaftStorage
    var unstable: UnstableLog
    /// The highest index known to be stored on a quorum.
    var committed: UInt64
    /// The highest index the application has applied (as told by `advance`).
    var applied: UInt64
    /// Byte limit of one batch of committed entries handed to the application.
    let maxNextEntriesSize: UInt64

    init(storage: any RaftStorage, maxNextEntriesSize: UInt64) {
        self.storage = storage
        self.maxNextEntriesSize = maxNextEntriesSize
        let first = RaftLog.must { try storage.firstIndex() }
        let last = RaftLog.must { try storage.lastIndex() }
        unstable = UnstableLog(offset: last + 1)
        committed = first - 1
        applied = first - 1
    }

    static func must<T>(_ body: () throws -> T) -> T {
        do { return try body() } catch { fatalError("raft storage failed: \(error)") }
    }

    var firstIndex: UInt64 {
        if let i = unstable.firstIndex { return i }
        return RaftLog.must { try storage.firstIndex() }
    }

    var lastIndex: UInt64 {
        if let i = unstable.lastIndex { return i }
        return RaftLog.must { try storage.lastIndex() }
    }

    /// The last index of our log that is known to be durable (persisted by the caller).
    /// While an incoming snapshot waits to be persisted nothing counts as durable.
    var persistedLastIndex: UInt64 {
        unstable.snapshot == nil ? unstable.offset - 1 : 0
    }

    var lastTerm: UInt64 {
        guard let t = term(lastIndex) else { fatalError("unexpected error when getting the last term") }
        return t
    }

    /// The term of entry `i`, or nil when `i` is compacted away or beyond the last index.
    /// The snapshot's own index (firstIndex-1) still has a term.
    func term(_ i: UInt64) -> UInt64? {
        let dummy = firstIndex - 1
        if i < dummy || i > lastIndex { return nil }
        if let t = unstable.term(i) { return t }
        do {
            return try storage.term(i)
        } catch let e as RaftStorageError where e == .compacted || e == .unavailable {
            return nil
        } catch {
            fatalError("raft storage failed: \(error)")
        }
    }

    func matchTerm(_ i: UInt64, _ t: UInt64) -> Bool {
        guard let x = term(i) else { return false }
        return x == t
    }

    /// Would a candidate with this last entry be at least as up to date as we are (§5.4.1)?
    func isUpToDate(lastIndex li: UInt64, term t: UInt64) -> Bool {
        let ourTerm = lastTerm
        return t > ourTerm || (t == ourTerm && li >= lastIndex)
    }

    /// Appends `ents` after (index, logTerm) if our log has that entry, truncating any
    /// conflicting suffix; advances commit to min(committed, last new index).
    /// Returns the last index of the appended run, or nil when (index, logTerm) does not match.
    func maybeAppend(index: UInt64, logTerm: UInt64, committed newCommit: UInt64, entries ents: [Raftpb_Entry]) -> UInt64? {
        guard matchTerm(index, logTerm) else { return nil }
        let lastNew = index + UInt64(ents.count)
        let ci = findConflict(ents)
        if ci != 0 {
            precondition(ci > committed, "entry \(ci) conflict with committed entry [committed(\(committed))]")
            append(Array(ents[Int(ci - (index + 1))...]))
        }
        commitTo(min(newCommit, lastNew))
        return lastNew
    }

    @discardableResult
    func append(_ ents: [Raftpb_Entry]) -> UInt64 {
        guard let first = ents.first else { return lastIndex }
        precondition(first.index - 1 >= committed, "after(\(first.index - 1)) is out of range [committed(\(committed))]")
        unstable.truncateAndAppend(ents)
        return lastIndex
    }

    /// The index of the first entry of `ents` that is new or conflicts with ours, or 0
    /// when we already hold all of them.
    func findConflict(_ ents: [Raftpb_Entry]) -> UInt64 {
        for e in ents where !matchTerm(e.index, e.term) {
            return e.index
        }
        return 0
    }

    /// The largest index <= `index` whose term is <= `term` (or that is compacted):
    /// every entry after it up to `index` has a larger term, so they cannot match a log
    /// whose entry at `index` has term `term`. Used for fast backtracking after a rejection.
    func findConflictByTerm(_ index: UInt64, _ term: UInt64) -> UInt64 {
        if index > lastIndex { return index }
        var i = index
        while true {
            guard let t = self.term(i), t > term else { break }
            i -= 1
        }
        return i
    }

    var unstableEntries: [Raftpb_Entry] { unstable.entries }

    /// The committed entries the application has not applied yet, limited to entries that
    /// are already durable here (so applying never races with persisting them).
    func nextCommittedEntries() -> [Raftpb_Entry] {
        let lo = max(applied + 1, firstIndex)
        let hi = min(committed, persistedLastIndex) + 1
        guard hi > lo else { return [] }
        do {
            return try slice(lo, hi, maxSize: maxNextEntriesSize)
        } catch {
            fatalError("unexpected error when getting unapplied entries (\(error))")
        }
    }

    var hasNextCommittedEntries: Bool {
        let lo = max(applied + 1, firstIndex)
        return min(committed, persistedLastIndex) + 1 > lo
    }

    func snapshot() throws -> Raftpb_Snapshot {
        if let s = unstable.snapshot { return s }
        return try storage.snapshot()
    }

    func commitTo(_ c: UInt64) {
        guard committed < c else { return }
        precondition(lastIndex >= c, "tocommit(\(c)) is out of range [lastIndex(\(lastIndex))]. Was the raft log corrupted, truncated, or lost?")
        committed = c
    }

    func appliedTo(_ i: UInt64) {
        guard i != 0 else { return }
        precondition(committed >= i && i >= applied, "applied(\(i)) is out of range [prevApplied(\(applied)), committed(\(committed))]")
        applied = i
    }

    func stableTo(_ i: UInt64, _ t: UInt64) { unstable.stableTo(i, t) }
    func stableSnapTo(_ i: UInt64) { unstable.stableSnapTo(i) }

    /// Commits `maxIndex` if it holds an entry of `term` (§5.4.2: a leader only commits
    /// by counting replicas of entries from its own term).
    func maybeCommit(_ maxIndex: UInt64, term t: UInt64) -> Bool {
        if maxIndex > committed, let x = term(maxIndex), x == t {
            commitTo(maxIndex)
            return true
        }
        return false
    }

    func restore(_ s: Raftpb_Snapshot) {
        committed = s.metadata.index
        unstable.restore(s)
    }

    /// Entries from `i` to the end, at most `maxSize` bytes (at least one).
    func entries(from i: UInt64, maxSize: UInt64) throws -> [Raftpb_Entry] {
        if i > lastIndex { return [] }
        return try slice(i, lastIndex + 1, maxSize: maxSize)
    }

    /// All entries from the first index (for tests and diagnostics).
    func allEntries() -> [Raftpb_Entry] {
        do { return try entries(from: firstIndex, maxSize: raftNoLimit) } catch { fatalError("\(error)") }
    }

    /// Entries in `lo..<hi`; throws `.compacted` when `lo` lies before the first index.
    func slice(_ lo: UInt64, _ hi: UInt64, maxSize: UInt64) throws -> [Raftpb_Entry] {
        precondition(lo <= hi, "invalid slice \(lo) > \(hi)")
        let fi = firstIndex
        if lo < fi { throw RaftStorageError.compacted }
        precondition(hi <= lastIndex + 1, "slice[\(lo),\(hi)) out of bound [\(fi),\(lastIndex)]")
        if lo == hi { return [] }
        var ents: [Raftpb_Entry] = []
        let off = unstable.offset
        if lo < off {
            let stored: [Raftpb_Entry]
            do {
                stored = try storage.entries(lo, min(hi, off), maxSize: maxSize)
            } catch RaftStorageError.compacted {
                throw RaftStorageError.compacted
            } catch RaftStorageError.unavailable {
                fatalError("entries[\(lo):\(min(hi, off))) is unavailable from storage")
            }
            // Storage cut the batch short for size: return what it gave.
            if UInt64(stored.count) < min(hi, off) - lo { return stored }
            ents = stored
        }
        if hi > off {
            ents.append(contentsOf: unstable.slice(max(lo, off), hi))
        }
        return limitSize(ents, maxSize)
    }
}
