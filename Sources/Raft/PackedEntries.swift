import EtcdProto
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Log entries stored for little memory: each entry's payload is copied into a shared chunk
/// (1 MiB of anonymous mapped memory, returned to the system when compaction passes it), and
/// its term, flags and place are kept in a 24-byte slot. A `Raftpb_Entry` holding its own
/// `Data` costs about 200 bytes more per entry, which a log of 100,000 entries (etcd's
/// default --snapshot-count) turns into 20 MB. Entries are rebuilt, payload copied, when
/// read. Which optional fields were set is kept, so an entry reads back equal to what was
/// appended (unknown fields are dropped, as etcd's raftpb drops them). Not copyable: copies
/// would share (and overwrite) the same chunks.
struct PackedEntries: ~Copyable {
    private final class Chunk {
        let base: UnsafeMutableRawPointer
        let capacity: Int
        var fill = 0

        init(capacity: Int) {
            guard let p = mmap(nil, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                  p != MAP_FAILED
            else { fatalError("swetcd: cannot map \(capacity) bytes for the Raft log: errno \(errno)") }
            base = p
            self.capacity = capacity
        }

        deinit { munmap(base, capacity) }
    }

    private struct Slot {
        var term: UInt64
        /// The number of the chunk holding the payload (chunks are numbered from 0 for the life
        /// of the store; `chunks[0]` is number `chunkBase`). Never decreases along the slots.
        var chunk: UInt32
        var start: UInt32
        var count: UInt32
        /// Bits 0-1: the entry type; then which of term, index, type, data were set.
        var flags: UInt8
    }

    private static let typeMask: UInt8 = 0b11
    private static let hasTerm: UInt8 = 1 << 2
    private static let hasIndex: UInt8 = 1 << 3
    private static let hasType: UInt8 = 1 << 4
    private static let hasData: UInt8 = 1 << 5
    static let chunkSize = 1 << 20

    private var slots: [Slot] = []
    private var chunks: [Chunk] = []
    private var chunkBase: UInt32 = 0

    var count: Int { slots.count }

    func term(at i: Int) -> UInt64 { slots[i].term }

    /// Entry `i` (0-based) of the store, which holds log index `index`.
    func entry(at i: Int, index: UInt64) -> Raftpb_Entry {
        let s = slots[i]
        var e = Raftpb_Entry()
        if s.flags & Self.hasTerm != 0 { e.term = s.term }
        if s.flags & Self.hasIndex != 0 { e.index = index }
        if s.flags & Self.hasType != 0 { e.type = Raftpb_EntryType(rawValue: Int(s.flags & Self.typeMask)) ?? .entryNormal }
        if s.flags & Self.hasData != 0 {
            e.data = s.count == 0 ? Data() : Data(bytes: chunks[Int(s.chunk - chunkBase)].base + Int(s.start), count: Int(s.count))
        }
        return e
    }

    mutating func append(_ e: Raftpb_Entry) {
        var flags = UInt8(truncatingIfNeeded: e.type.rawValue) & Self.typeMask
        if e.hasTerm { flags |= Self.hasTerm }
        if e.hasIndex { flags |= Self.hasIndex }
        if e.hasType { flags |= Self.hasType }
        if e.hasData { flags |= Self.hasData }
        let n = e.hasData ? e.data.count : 0
        if n > 0, chunks.last.map({ $0.capacity - $0.fill < n }) ?? true {
            chunks.append(Chunk(capacity: max(Self.chunkSize, n)))
        }
        let number = chunkBase + UInt32(max(chunks.count - 1, 0))
        let start = chunks.last?.fill ?? 0
        if n > 0, let chunk = chunks.last {
            e.data.withUnsafeBytes { chunk.base.advanced(by: start).copyMemory(from: $0.baseAddress!, byteCount: n) }
            chunk.fill += n
        }
        slots.append(Slot(term: e.term, chunk: number, start: UInt32(start), count: UInt32(n), flags: flags))
    }

    /// Drops the first `n` entries, and the chunks only they used.
    mutating func removeFirst(_ n: Int) {
        slots.removeFirst(n)
        guard let first = slots.first else {
            chunks.removeAll()
            chunkBase = 0
            return
        }
        let unused = min(Int(first.chunk - chunkBase), chunks.count)
        chunks.removeFirst(unused)
        chunkBase += UInt32(unused)
    }

    /// Keeps the first `n` entries: what followed them is dropped and its space reused.
    mutating func truncate(to n: Int) {
        guard n < slots.count else { return }
        slots.removeSubrange(n...)
        guard let last = slots.last else {
            chunks.removeAll()
            chunkBase = 0
            return
        }
        let kept = min(Int(last.chunk - chunkBase) + 1, chunks.count)
        chunks.removeLast(chunks.count - kept)
        if kept > 0 { chunks[kept - 1].fill = Int(last.start + last.count) }
    }
}
