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
    /// The index and term of the entry before the first stored one (the snapshot's).
    private var offset: UInt64 = 0
    private var offsetTerm: UInt64 = 0
    /// The entries `offset+1 ... last`.
    private var log = PackedEntries()

    public init() {}

    public func initialState() throws -> (hardState: Raftpb_HardState, confState: Raftpb_ConfState) {
        (hardState, currentSnapshot.metadata.confState)
    }

    public func setHardState(_ hs: Raftpb_HardState) {
        hardState = hs
    }

    private var last: UInt64 { offset + UInt64(log.count) }

    public func entries(_ lo: UInt64, _ hi: UInt64, maxSize: UInt64) throws -> [Raftpb_Entry] {
        if lo <= offset { throw RaftStorageError.compacted }
        precondition(hi <= last + 1, "entries' hi(\(hi)) is out of bound lastindex(\(last))")
        if log.count == 0 { throw RaftStorageError.unavailable }
        return limitSize((lo..<hi).lazy.map { self.log.entry(at: Int($0 - self.offset - 1), index: $0) }, maxSize)
    }

    public func term(_ i: UInt64) throws -> UInt64 {
        if i < offset { throw RaftStorageError.compacted }
        if i > last { throw RaftStorageError.unavailable }
        return i == offset ? offsetTerm : log.term(at: Int(i - offset - 1))
    }

    public func firstIndex() throws -> UInt64 { offset + 1 }
    public func lastIndex() throws -> UInt64 { last }
    public func snapshot() throws -> Raftpb_Snapshot { currentSnapshot }

    /// Replaces the whole content with a snapshot (received from the leader).
    public func applySnapshot(_ snap: Raftpb_Snapshot) throws {
        if currentSnapshot.metadata.index >= snap.metadata.index { throw RaftStorageError.snapshotOutOfDate }
        currentSnapshot = snap
        offset = snap.metadata.index
        offsetTerm = snap.metadata.term
        log = PackedEntries()
    }

    /// Records a snapshot of the state machine at applied index `i` (which must be
    /// in the log) so that the log before it may be compacted.
    @discardableResult
    public func createSnapshot(_ i: UInt64, confState: Raftpb_ConfState?, data: Data) throws -> Raftpb_Snapshot {
        if i <= currentSnapshot.metadata.index { throw RaftStorageError.snapshotOutOfDate }
        precondition(i <= last, "snapshot \(i) is out of bound lastindex(\(last))")
        currentSnapshot.metadata.index = i
        currentSnapshot.metadata.term = try term(i)
        if let cs = confState { currentSnapshot.metadata.confState = cs }
        currentSnapshot.data = data
        return currentSnapshot
    }

    /// Discards the entries up to `compactIndex` (whose index and term stay known).
    public func compact(_ compactIndex: UInt64) throws {
        if compactIndex <= offset { throw RaftStorageError.compacted }
        precondition(compactIndex <= last, "compact \(compactIndex) is out of bound lastindex(\(last))")
        offsetTerm = try term(compactIndex)
        log.removeFirst(Int(compactIndex - offset))
        offset = compactIndex
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
        precondition(first.index <= last + 1, "missing log entry [last: \(last), append at: \(first.index)]")
        log.truncate(to: Int(first.index - firstKept))
        for e in entries { log.append(e) }
    }
}
