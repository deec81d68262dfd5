import EtcdProto
import Foundation

/// Why a storage read could not be served.
public enum RaftStorageError: Error, Equatable, Sendable {
    /// The index lies before the first retained entry (compacted into a snapshot).
    case compacted
    /// The index lies after the last entry.
    case unavailable
    /// A snapshot older than the one already held was offered.
    case snapshotOutOfDate
    /// The snapshot is being produced; ask again later.
    case snapshotTemporarilyUnavailable
}

/// The stable log that the caller fills from `Ready` (entries, hard state, snapshot)
/// and Raft reads back: etcd's `raft.Storage`. Everything in it is durable: Raft treats
/// entries below its own unstable tail as persisted.
///
/// Storage holds, in index order: a snapshot (index `firstIndex()-1`, whose term is
/// still known), then the entries `firstIndex()...lastIndex()`.
public protocol RaftStorage: AnyObject {
    /// The persisted hard state and the configuration of the latest snapshot.
    func initialState() throws -> (hardState: Raftpb_HardState, confState: Raftpb_ConfState)
    /// Entries in `lo..<hi`, at least one if any exist, at most `maxSize` bytes otherwise.
    /// Throws `.compacted` when `lo` lies at or before the snapshot.
    func entries(_ lo: UInt64, _ hi: UInt64, maxSize: UInt64) throws -> [Raftpb_Entry]
    /// The term of entry `i`, for `firstIndex()-1 ... lastIndex()`.
    func term(_ i: UInt64) throws -> UInt64
    func firstIndex() throws -> UInt64
    func lastIndex() throws -> UInt64
    /// The most recent snapshot (sent to followers that are too far behind).
    func snapshot() throws -> Raftpb_Snapshot
}

/// An in-memory `RaftStorage` (etcd's `MemoryStorage`): the caller appends what Ready
/// tells it to persist after writing it to its WAL, and Raft reads it back.
/// Not thread-safe: confine it with its RawNode.
public final class MemoryStorage: RaftStorage {
    public private(set) var hardState = Raftpb_HardState()
    public internal(set) var currentSnapshot = Raftpb_Snapshot()
    /// ents[0] is a dummy holding the snapshot's index and term.
    private var ents: [Raftpb_Entry]

    public init() {
        var dummy = Raftpb_Entry()
        dummy.index = 0
        dummy.term = 0
        ents = [dummy]
    }

    public func initialState() throws -> (hardState: Raftpb_HardState, confState: Raftpb_ConfState) {
        (hardState, currentSnapshot.metadata.confState)
    }

    public func setHardState(_ hs: Raftpb_HardState) {
        hardState = hs
    }

    private var offset: UInt64 { ents[0].index }
    private var last: UInt64 { ents[0].index + UInt64(ents.count) - 1 }

    public func entries(_ lo: UInt64, _ hi: UInt64, maxSize: UInt64) throws -> [Raftpb_Entry] {
        let off = offset
        if lo <= off { throw RaftStorageError.compacted }
        precondition(hi <= last + 1, "entries' hi(\(hi)) is out of bound lastindex(\(last))")
        if ents.count == 1 { throw RaftStorageError.unavailable }
        return limitSize(Array(ents[Int(lo - off)..<Int(hi - off)]), maxSize)
    }

    public func term(_ i: UInt64) throws -> UInt64 {
        let off = offset
        if i < off { throw RaftStorageError.compacted }
        if i - off >= UInt64(ents.count) { throw RaftStorageError.unavailable }
        return ents[Int(i - off)].term
    }

    public func firstIndex() throws -> UInt64 { offset + 1 }
    public func lastIndex() throws -> UInt64 { last }
    public func snapshot() throws -> Raftpb_Snapshot { currentSnapshot }

    /// Replaces the whole content with a snapshot (received from the leader).
    public func applySnapshot(_ snap: Raftpb_Snapshot) throws {
        if currentSnapshot.metadata.index >= snap.metadata.index { throw RaftStorageError.snapshotOutOfDate }
        currentSnapshot = snap
        var dummy = Raftpb_Entry()
        dummy.index = snap.metadata.index
        dummy.term = snap.metadata.term
        ents = [dummy]
    }

    /// Records a snapshot of the state machine at applied index `i` (which must be
    /// in the log) so that the log before it may be compacted.
    @discardableResult
    public func createSnapshot(_ i: UInt64, confState: Raftpb_ConfState?, data: Data) throws -> Raftpb_Snapshot {
        if i <= currentSnapshot.metadata.index { throw RaftStorageError.snapshotOutOfDate }
        precondition(i <= last, "snapshot \(i) is out of bound lastindex(\(last))")
        currentSnapshot.metadata.index = i
        currentSnapshot.metadata.term = ents[Int(i - offset)].term
        if let cs = confState { currentSnapshot.metadata.confState = cs }
        currentSnapshot.data = data
        return currentSnapshot
    }

    /// Discards the entries before `compactIndex` (the entry at it stays as the new dummy).
    public func compact(_ compactIndex: UInt64) throws {
        let off = offset
        if compactIndex <= off { throw RaftStorageError.compacted }
        precondition(compactIndex <= last, "compact \(compactIndex) is out of bound lastindex(\(last))")
        let i = Int(compactIndex - off)
        var dummy = Raftpb_Entry()
        dummy.index = ents[i].index
        dummy.term = ents[i].term
        var kept = [dummy]
        kept.append(contentsOf: ents[(i + 1)...])
        ents = kept
    }

    /// Appends entries, overwriting any existing suffix from `entries[0].index` on.
    public func append(_ entries: [Raftpb_Entry]) {
        guard var first = entries.first else { return }
        let firstKept = offset + 1
        let lastNew = first.index + UInt64(entries.count) - 1
        if lastNew < firstKept { return }
        var entries = entries[...]
        if firstKept > first.index {
            entries = entries.dropFirst(Int(firstKept - first.index))
            first = entries.first!
        }
        let at = first.index - offset
        precondition(at <= UInt64(ents.count), "missing log entry [last: \(last), append at: \(first.index)]")
        ents.removeSubrange(Int(at)...)
        ents.append(contentsOf: entries)
    }
}
