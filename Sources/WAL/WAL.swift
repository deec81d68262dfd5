import CoreMetrics
import Foundation
import Synchronization
import EtcdProto
import FileIO

/// etcd 3.4's write-ahead log: `member/wal/%016x-%016x.wal` segments of framed walpb.Records
/// with a rolling CRC-32C, readable by etcd and reading etcd's.
///
/// Life cycle (as etcd's wal package):
/// - `WAL.create(dir:metadata:fs:)` makes a new WAL (in `dir.tmp`, renamed into place) and is
///   ready to append;
/// - `WAL.open(dir:at:fs:)` locks the segments from the one holding `snapshot` on, and
///   `readAll()` returns what they hold after that snapshot, repairs a torn tail, and makes
///   the WAL ready to append;
/// - `submit`/`save`, `saveSnapshot`, `sync` append; `releaseLockTo` lets old segments go;
///   `close()` syncs and unlocks.
///
/// Appends go through one writer thread with group commit: every request submitted while
/// the writer writes and fdatasyncs one batch forms the next batch, written with one write
/// and made durable with one fdatasync. A request completes (its ticket, `save` returns) when
/// etcd's `Save` would have returned: after the fdatasync covering it — or, when it only
/// moves the commit index (raft.MustSync is false), once written. Nothing is ever
/// acknowledged before the sync that covers it, and no sync is skipped. If a write or sync
/// fails, the WAL stops: every pending and later request fails (fail-stop, as etcd panics).
public final class WAL: @unchecked Sendable {
    /// etcd's etcd_disk_wal_fsync_duration_seconds (through swift-metrics; made per WAL, so
    /// a metrics system bootstrapped before the WAL opens receives it).
    private let fsyncTimer = CoreMetrics.Timer(label: "etcd_disk_wal_fsync_duration_seconds")

    func timedSync(_ h: any FileIOHandle) throws {
        let start = DispatchTime.now().uptimeNanoseconds
        try h.dataSync()
        fsyncTimer.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - start))
    }

    // @unchecked: the queue and phase are guarded by `cond`; writer state is touched only by
    // the writer thread (or before it starts / after it stopped); segments by their Mutex.

    public struct Options: Sendable {
        /// Preallocated size of a segment, and the size past which the WAL cuts a new one
        /// (etcd's SegmentSizeBytes, 64,000,000).
        public var segmentBytes: Int64
        /// Skip fdatasync (etcd's --unsafe-no-fsync). Never in benchmarks or normal tests.
        public var unsafeNoFsync: Bool
        /// Prepare the next segment on a background thread (true, as etcd) or at the cut.
        public var prepareSegmentsInBackground: Bool
        /// Receives informational messages (new segment, repair).
        public var log: (@Sendable (String) -> Void)?

        public init(segmentBytes: Int64 = 64_000_000, unsafeNoFsync: Bool = false,
                    prepareSegmentsInBackground: Bool = true, log: (@Sendable (String) -> Void)? = nil) {
            precondition(segmentBytes > 0)
            self.segmentBytes = segmentBytes
            self.unsafeNoFsync = unsafeNoFsync
            self.prepareSegmentsInBackground = prepareSegmentsInBackground
            self.log = log
        }
    }

    /// Identifies a submitted request; complete when the WAL has saved it.
    public struct Ticket: Sendable, Hashable, Comparable {
        public let sequence: UInt64
        /// A ticket that is complete from the start (an empty save, as etcd's shortcut).
        public static let done = Ticket(sequence: 0)
        public static func < (a: Ticket, b: Ticket) -> Bool { a.sequence < b.sequence }
    }

    /// What `readAll()` returns.
    public struct Contents: Sendable {
        public var metadata: Data
        public var hardState: Raftpb_HardState
        /// Entries after the snapshot index, later records for an index replacing earlier ones.
        public var entries: [Raftpb_Entry]
    }

    public let dir: String
    public let fs: any FileSystem
    public let options: Options

    // MARK: state

    struct Segment: Sendable {
        var name: String
        let handle: any FileIOHandle
    }

    private enum Request {
        case save(hardState: (state: Raftpb_HardState, bytes: [UInt8])?, entries: [(index: UInt64, bytes: [UInt8])])
        case snapshot(bytes: [UInt8], index: UInt64)
        case sync
        /// Continue in a new segment from here on, named after `index` (nil: the next entry).
        case cut(index: UInt64?)
    }

    private enum Phase { case reading, appending, closed }

    /// Locked segment files, oldest first; the last one is the tail being appended to.
    private let segments: Mutex<[Segment]>

    // Guarded by `cond`.
    private let cond = NSCondition()
    private var phase: Phase
    private var queue: [(seq: UInt64, request: Request)] = []
    private var lastSubmitted: UInt64 = 0
    private var lastCompleted: UInt64 = 0
    private var failure: WALError?
    private var waiters: [UInt64: [@Sendable (WALError?) -> Void]] = [:]
    private var writerRunning = false
    private var closing = false
    /// A batch is being written, by the writer thread or by a caller of `saveNow`.
    private var writing = false
    /// Callers of `saveNow` and `close` waiting for `writing` to end.
    private var waitingForWriter = 0

    // Read phase.
    private var decoder: Decoder?
    private var start = Walpb_Snapshot()

    // Writer state.
    private var encoder: Encoder?
    private var pipeline: FilePipeline?
    /// Index of the last entry saved (names the next segment).
    private var lastEntryIndex: UInt64 = 0
    /// The last hard state saved (written at the head of each new segment).
    private var hardState = Raftpb_HardState()
    private var metadata: [UInt8] = []

    private init(dir: String, fs: any FileSystem, options: Options, segments: [Segment], phase: Phase) {
        self.dir = Paths.clean(dir)
        self.fs = fs
        self.options = options
        self.segments = Mutex(segments)
        self.phase = phase
    }

    // MARK: - Create / open

    /// Whether `dir` holds any WAL segment (etcd's wal.Exist).
    public static func exists(dir: String, fs: any FileSystem) -> Bool {
        ((try? SegmentName.list(fs, dir)) ?? []).isEmpty == false
    }

    /// Creates a WAL in `dir` (which must not hold one; its parent must exist) with
    /// `metadata` at the head of every segment, ready to append. The first segment is
    /// written in `dir.tmp` — crc, metadata and an empty snapshot record, synced — and the
    /// directory is renamed into place and its parent synced, so creation is atomic.
    public static func create(dir: String, metadata: Data, fs: any FileSystem, options: Options = Options()) throws(WALError) -> WAL {
        let dir = Paths.clean(dir)
        if exists(dir: dir, fs: fs) { throw .exists(dir: dir) }
        let tmpdir = dir + ".tmp"
        try io {
            try fs.removeAll(tmpdir)
            try fs.createDirectories(tmpdir)
        }
        let name = SegmentName.make(sequence: 0, index: 0)
        let handle: any FileIOHandle = try io {
            let h = try fs.open(Paths.join(tmpdir, name), options: [.read, .write, .create])
            do {
                try lockWAL(h)
                try h.preallocate(to: options.segmentBytes, keepSize: false)
            } catch {
                try? h.close()
                throw error
            }
            return h
        }
        let w = WAL(dir: dir, fs: fs, options: options, segments: [Segment(name: name, handle: handle)], phase: .appending)
        w.metadata = Array(metadata)
        do {
            var enc = Encoder(handle: handle, offset: 0, crc: 0)
            try io {
                try enc.encode(.crc, nil)
                try enc.encode(.metadata, w.metadata)
                try enc.encode(.snapshot, WALFraming.marshal(Walpb_Snapshot.with { $0.index = 0; $0.term = 0 }))
                try enc.flush()
            }
            w.encoder = enc
            try w.syncTail()
            try io {
                // The segment's name must survive the rename: sync the directory holding it
                // (etcd leaves this to the file system).
                try fs.syncDirectory(tmpdir)
                try fs.removeAll(dir)
                try fs.rename(tmpdir, to: dir)
                try fs.syncDirectory(Paths.dirname(dir))
            }
        } catch {
            w.releaseAll()
            throw error
        }
        w.startAppending()
        return w
    }

    /// Opens the WAL in `dir` for reading from `snapshot` on and then appending: locks every
    /// segment from the last one starting at or before `snapshot.index`. Fails with
    /// `.locked` if another WAL (in this process or another, etcd included) holds them.
    /// Call `readAll()` next.
    public static func open(dir: String, at snapshot: Walpb_Snapshot, fs: any FileSystem, options: Options = Options()) throws(WALError) -> WAL {
        let dir = Paths.clean(dir)
        let names: [String]
        do {
            names = try SegmentName.list(fs, dir)
        } catch FileIOError.notFound {
            throw .fileNotFound(dir: dir)
        } catch {
            throw .io(error as? FileIOError ?? .notFound(path: dir))
        }
        guard !names.isEmpty, let first = SegmentName.search(names, index: snapshot.index),
              SegmentName.isValidSequence(names[first...])
        else { throw .fileNotFound(dir: dir) }

        var opened: [Segment] = []
        for name in names[first...] {
            let path = Paths.join(dir, name)
            do {
                let h = try fs.open(path, options: .readWrite)
                do {
                    try lockWAL(h)
                } catch {
                    try? h.close()
                    throw error
                }
                opened.append(Segment(name: name, handle: h))
            } catch {
                for s in opened { try? s.handle.close() }
                if case FileIOError.locked = error { throw .locked(path: path) }
                throw .io(error as? FileIOError ?? .notFound(path: path))
            }
        }
        let w = WAL(dir: dir, fs: fs, options: options, segments: opened, phase: .reading)
        w.start = snapshot
        w.decoder = Decoder(opened.map { Decoder.Source(name: $0.name, handle: $0.handle) })
        return w
    }

    // MARK: - Read

    /// Reads every record after the snapshot given to `open`: the metadata, the last hard
    /// state, and the entries after the snapshot index (a later record for an index replaces
    /// the earlier one and drops those after it, as raft's log truncation requires).
    ///
    /// A torn tail in the last segment (an interrupted write: record cut short, zeroed, or
    /// with an all-zero sector) is repaired as etcd's wal.Repair does: the file is copied to
    /// `<segment>.broken`, truncated after the last complete record and synced; the rest of
    /// the segment is zeroed and preallocated again. Any other damage — a CRC mismatch or an
    /// unparsable record anywhere before that — throws an error naming the file and offset.
    /// After a successful `readAll` the WAL appends after the last record read. On error the
    /// WAL releases its locks and is closed.
    public func readAll() throws(WALError) -> Contents {
        cond.lock()
        guard phase == .reading, var decoder = self.decoder else {
            let p = phase
            cond.unlock()
            throw p == .closed ? .closed : .alreadyRead
        }
        self.decoder = nil
        cond.unlock()
        do {
            let contents = try read(&decoder)
            startAppending()
            return contents
        } catch {
            cond.lock()
            phase = .closed
            cond.unlock()
            releaseAll()
            throw error
        }
    }

    private func read(_ decoder: inout Decoder) throws(WALError) -> Contents {
        var metadata: [UInt8]?
        var state = Raftpb_HardState()
        var entries: [Raftpb_Entry] = []
        var match = false
        var torn: (offset: Int64, reason: String)?

        loop: while true {
            switch try decoder.next() {
            case .end:
                break loop
            case .torn(let offset, let reason):
                torn = (offset, reason)
                break loop
            case .record(let rec, let file, let offset):
                let name = decoder.sources[file].name
                switch RecordType(rawValue: rec.type) {
                case .entry:
                    let e: Raftpb_Entry
                    do {
                        e = try Raftpb_Entry(serializedBytes: rec.data ?? [])
                    } catch {
                        throw .corruptRecord(file: name, offset: offset, reason: "raftpb.Entry: \(error)")
                    }
                    if e.index > start.index {
                        let up = e.index - start.index - 1
                        if up > UInt64(entries.count) {
                            throw .sliceOutOfRange(file: name, offset: offset, index: e.index)
                        }
                        entries.removeSubrange(Int(up)...)
                        entries.append(e)
                    }
                    lastEntryIndex = e.index
                case .state:
                    do {
                        state = try Raftpb_HardState(serializedBytes: rec.data ?? [])
                    } catch {
                        throw .corruptRecord(file: name, offset: offset, reason: "raftpb.HardState: \(error)")
                    }
                case .metadata:
                    let data = rec.data ?? []
                    if let m = metadata, m != data { throw .metadataConflict(file: name, offset: offset) }
                    metadata = data
                case .crc:
                    let running = decoder.crc
                    // A fresh decoder (reading from a later segment) has nothing to compare.
                    if running != 0 && rec.crc != running { throw .crcChainMismatch(file: name, offset: offset) }
                    decoder.updateCRC(rec.crc)
                case .snapshot:
                    let snap: Walpb_Snapshot
                    do {
                        snap = try Walpb_Snapshot(serializedBytes: rec.data ?? [])
                    } catch {
                        throw .corruptRecord(file: name, offset: offset, reason: "walpb.Snapshot: \(error)")
                    }
                    if snap.index == start.index {
                        if snap.term != start.term { throw .snapshotMismatch(file: name, offset: offset) }
                        match = true
                    }
                case nil:
                    throw .unexpectedRecordType(type: rec.type, file: name, offset: offset)
                }
            }
        }

        let tail = decoder.sources[decoder.sources.count - 1]
        let end = decoder.lastValidOffset
        if let torn {
            log("repairing \(tail.name): torn record at offset \(torn.offset) (\(torn.reason)); saving a copy as \(tail.name).broken")
            try io {
                try copyFile(tail.handle, to: Paths.join(dir, tail.name + ".broken"))
                try tail.handle.truncate(to: torn.offset)
                try tail.handle.sync()
            }
        }
        // etcd's ZeroToEnd: a zero word or a torn write may be followed by non-zero garbage;
        // zero everything after the last record so new records are never read together
        // with stale bytes, keep the segment preallocated, and make that durable before the
        // first append.
        try io {
            let size = try tail.handle.size()
            try tail.handle.truncate(to: end)
            try tail.handle.preallocate(to: max(size, options.segmentBytes), keepSize: false)
            if !options.unsafeNoFsync { try timedSync(tail.handle) }
        }
        if !match { throw .snapshotNotFound(index: start.index, term: start.term) }

        self.metadata = metadata ?? []
        self.hardState = state
        self.encoder = Encoder(handle: tail.handle, offset: end, crc: decoder.crc)
        start = Walpb_Snapshot()
        return Contents(metadata: Data(metadata ?? []), hardState: state, entries: entries)
    }

    private func copyFile(_ from: any FileIOHandle, to path: String) throws {
        let out = try fs.open(path, options: [.write, .create, .truncate])
        defer { try? out.close() }
        let size = try from.size()
        var off: Int64 = 0
        while off < size {
            let chunk = try from.read(at: off, count: Int(min(Int64(1 << 20), size - off)))
            if chunk.isEmpty { break }
            try out.write(chunk, at: off)
            off += Int64(chunk.count)
        }
        try out.sync()
    }

    // MARK: - Append

    /// Queues entries and a hard state for the next batch and returns at once (the caller
    /// may send to peers meanwhile); the ticket completes when they are saved. Entries are
    /// written in submission order; their indexes are the caller's (raft's) business.
    /// An empty hard state (term, vote, commit all 0) is not written; an empty request
    /// returns `.done`, as etcd's Save does nothing for it.
    ///
    /// Entries are marshalled as etcd's gogo code does: Type, Term and Index always, Data
    /// when present (`hasData`): leave `data` unset for raft's empty entries.
    public func submit(hardState: Raftpb_HardState = Raftpb_HardState(), entries: [Raftpb_Entry] = []) throws(WALError) -> Ticket {
        guard let save = saveRequest(hardState, entries) else { return .done }
        return try enqueue(save)
    }

    /// Queues a snapshot record (always synced).
    public func submitSnapshot(_ snapshot: Walpb_Snapshot) throws(WALError) -> Ticket {
        try enqueue(.snapshot(bytes: WALFraming.marshal(snapshot), index: snapshot.index))
    }

    /// Queues a cut: what is submitted after it goes to a new segment (so the segments before
    /// hold only what was written before; see `releaseAllButTail`).
    /// `index`: name the new segment after this index instead of the next entry's, so that
    /// a snapshot record at `index` written next opens from it (etcd opens a WAL at a
    /// snapshot from the last segment named at or below the snapshot's index).
    public func submitCut(namedAt index: UInt64? = nil) throws(WALError) -> Ticket {
        try enqueue(.cut(index: index))
    }

    /// Queues a sync of everything submitted so far.
    public func submitSync() throws(WALError) -> Ticket {
        try enqueue(.sync)
    }

    /// Saves entries and a hard state (etcd's `Save`), returning once durable.
    public func save(hardState: Raftpb_HardState = Raftpb_HardState(), entries: [Raftpb_Entry] = []) async throws {
        try await wait(for: submit(hardState: hardState, entries: entries))
    }

    /// Saves a snapshot record (etcd's `SaveSnapshot`), returning once durable.
    public func saveSnapshot(_ snapshot: Walpb_Snapshot) async throws {
        try await wait(for: submitSnapshot(snapshot))
    }

    /// Syncs everything submitted so far.
    public func sync() async throws {
        try await wait(for: submitSync())
    }

    /// Waits until the request of `ticket` is saved; throws if the WAL stopped first.
    public func wait(for ticket: Ticket) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
            onComplete(ticket) { error in
                if let error { c.resume(throwing: error) } else { c.resume() }
            }
        }
    }

    /// Blocks the calling thread until the request of `ticket` is saved (for callers that
    /// are not async; never call it from a Swift concurrency task).
    public func waitBlocking(for ticket: Ticket) throws(WALError) {
        let sem = DispatchSemaphore(value: 0)
        let result = Mutex<WALError?>(nil)
        onComplete(ticket) { error in
            result.withLock { $0 = error }
            sem.signal()
        }
        sem.wait()
        if let e = result.withLock({ $0 }) { throw e }
    }

    /// Calls `body` (on the writer thread, or at once) when `ticket` is saved or the WAL
    /// stopped; `body` receives the error in the latter case.
    public func onComplete(_ ticket: Ticket, _ body: @escaping @Sendable (WALError?) -> Void) {
        cond.lock()
        if ticket.sequence <= lastCompleted {
            cond.unlock()
            body(nil)
            return
        }
        if let f = failure {
            cond.unlock()
            body(f)
            return
        }
        if phase == .closed && !writerRunning {
            cond.unlock()
            body(.closed)
            return
        }
        waiters[ticket.sequence, default: []].append(body)
        cond.unlock()
    }

    /// Lets go of the locks of segments that hold only entries before `index`, keeping the
    /// newest segment that starts below it (etcd's ReleaseLockTo: with segments starting at
    /// 1…6, releaseLockTo(4) releases 1 and 2 and keeps 3). The tail is never released.
    public func releaseLockTo(_ index: UInt64) {
        let released: [Segment] = segments.withLock { segs in
            guard !segs.isEmpty else { return [] }
            var smaller = segs.count - 1
            for (i, s) in segs.enumerated() {
                // A segment still under its .tmp name is the newest: it counts as "not below".
                if (SegmentName.parse(s.name)?.index ?? .max) >= index {
                    smaller = i - 1
                    break
                }
            }
            guard smaller > 0 else { return [] }
            let out = Array(segs[0..<smaller])
            segs.removeFirst(smaller)
            return out
        }
        for s in released { try? s.handle.close() }
    }

    /// Lets go of every segment but the tail when the tail starts at or before `index + 1`:
    /// the others then hold only entries up to `index` (after a snapshot at `index` and a cut).
    /// Returns whether it did.
    @discardableResult
    public func releaseAllButTail(coveredBy index: UInt64) -> Bool {
        let released: [Segment]? = segments.withLock { segs in
            guard segs.count > 1, let start = SegmentName.parse(segs[segs.count - 1].name)?.index,
                  start <= index + 1 else { return nil }
            let out = Array(segs.dropLast())
            segs.removeFirst(segs.count - 1)
            return out
        }
        for s in released ?? [] { try? s.handle.close() }
        return released != nil
    }

    /// Names of the segments this WAL holds locked, oldest first.
    public var lockedSegmentNames: [String] {
        segments.withLock { $0.map(\.name) }
    }

    /// Finishes every submitted request, syncs the tail, removes the prepared next segment
    /// and releases all locks. Idempotent.
    public func close() throws(WALError) {
        cond.lock()
        if phase == .closed && !writerRunning && closing {
            cond.unlock()
            return
        }
        let wasAppending = phase == .appending
        phase = .closed
        closing = true
        cond.broadcast()
        waitingForWriter += 1
        while writerRunning || writing { cond.wait() }
        waitingForWriter -= 1
        let failed = failure
        cond.unlock()

        pipeline?.close()
        pipeline = nil
        var err: WALError?
        if wasAppending && failed == nil, encoder != nil {
            do {
                try io { try encoder!.flush() }
                try syncTail()
            } catch {
                err = error
            }
        }
        encoder = nil
        releaseAll()
        if let err { throw err }
    }

    // MARK: - Writer

    private func isEmpty(_ s: Raftpb_HardState) -> Bool {
        s.term == 0 && s.vote == 0 && s.commit == 0
    }

    /// A save of `hardState` (unless empty) and `entries`, marshalled; nil when there is
    /// nothing to save (etcd's Save does nothing then).
    private func saveRequest(_ hardState: Raftpb_HardState, _ entries: [Raftpb_Entry]) -> Request? {
        let hs = isEmpty(hardState) ? nil : (state: hardState, bytes: WALFraming.marshal(hardState))
        if hs == nil && entries.isEmpty { return nil }
        return .save(hardState: hs, entries: entries.map { (index: $0.index, bytes: WALFraming.marshal($0)) })
    }

    /// Throws unless requests may be appended (a stopped WAL gives its failure). Under `cond`.
    private func checkAppending() throws(WALError) {
        if let f = failure { throw f }
        switch phase {
        case .reading: throw .notReadyForAppend
        case .closed: throw .closed
        case .appending: break
        }
    }

    private func enqueue(_ r: Request) throws(WALError) -> Ticket {
        cond.lock()
        defer { cond.unlock() }
        try checkAppending()
        lastSubmitted += 1
        queue.append((lastSubmitted, r))
        // The writer, and any `saveNow` caller waiting for its turn.
        cond.broadcast()
        return Ticket(sequence: lastSubmitted)
    }

    /// Saves entries and a hard state on the calling thread (etcd's `Save`), after
    /// everything submitted before it: for a caller that would only block on the ticket,
    /// this saves the two thread wake-ups of a hand-over to the writer and back. Returns
    /// once saved (synced when entries, a term or a vote are in it), as `waitBlocking`.
    public func saveNow(hardState: Raftpb_HardState = Raftpb_HardState(), entries: [Raftpb_Entry] = []) throws(WALError) {
        guard let save = saveRequest(hardState, entries) else { return }
        cond.lock()
        waitingForWriter += 1
        while (!queue.isEmpty || writing) && failure == nil && phase == .appending { cond.wait() }
        waitingForWriter -= 1
        do {
            try checkAppending()
        } catch {
            cond.unlock()
            throw error
        }
        writing = true
        lastSubmitted += 1
        let seq = lastSubmitted
        cond.unlock()
        var error: WALError?
        do {
            try process([(seq, save)])
        } catch let e {
            error = e
        }
        finish(through: seq, error: error)
        if error != nil { throw cond.withLock { failure } ?? .closed }
    }

    private func startAppending() {
        pipeline = FilePipeline(fs: fs, dir: dir, size: options.segmentBytes, background: options.prepareSegmentsInBackground)
        cond.lock()
        phase = .appending
        writerRunning = true
        cond.unlock()
        let t = Thread { [self] in writerLoop() }
        t.name = "wal-writer"
        t.start()
    }

    private func writerLoop() {
        while true {
            cond.lock()
            while (queue.isEmpty && !closing) || writing { cond.wait() }
            if queue.isEmpty {
                cond.unlock()
                break
            }
            let batch = queue
            queue.removeAll(keepingCapacity: true)
            writing = true
            cond.unlock()

            var error: WALError?
            do {
                try process(batch)
            } catch let e {
                error = e
            }
            finish(through: batch[batch.count - 1].seq, error: error)
            if error != nil { break }
        }
        cond.lock()
        writerRunning = false
        cond.broadcast()
        cond.unlock()
    }

    /// Writes one batch: all its records, then one fdatasync (or a cut, which syncs).
    private func process(_ batch: [(seq: UInt64, request: Request)]) throws(WALError) {
        var mustSync = false
        for (_, request) in batch {
            switch request {
            case .save(let hs, let entries):
                for e in entries {
                    try io { try encoder!.encode(.entry, e.bytes) }
                    lastEntryIndex = e.index
                }
                if let hs {
                    // raft.MustSync: a new term or vote must be durable; a commit index alone need not.
                    if hs.state.term != hardState.term || hs.state.vote != hardState.vote { mustSync = true }
                    try io { try encoder!.encode(.state, hs.bytes) }
                    hardState = hs.state
                }
                if !entries.isEmpty { mustSync = true }
            case .snapshot(let bytes, let index):
                try io { try encoder!.encode(.snapshot, bytes) }
                if lastEntryIndex < index { lastEntryIndex = index }
                mustSync = true
            case .sync:
                mustSync = true
            case .cut(let index):
                try cut(namedAt: index)
                mustSync = false
                continue
            }
            if encoder!.offset >= options.segmentBytes {
                try cut()
                mustSync = false
            }
        }
        try io { try encoder!.flush() }
        if mustSync { try syncTail() }
    }

    private func syncTail() throws(WALError) {
        if options.unsafeNoFsync { return }
        try io { try timedSync(encoder!.handle) }
    }

    /// Closes the tail segment (truncated to its records, synced) and continues in a new one
    /// named after the next entry index: the prepared .tmp file gets the crc, metadata and
    /// hard-state records, is synced, renamed into place, and the directory synced.
    private func cut(namedAt index: UInt64? = nil) throws(WALError) {
        let tail = encoder!.handle
        let end = encoder!.offset
        try io {
            try encoder!.flush()
            try tail.truncate(to: end)
        }
        try syncTail()

        let tailName = segments.withLock { $0[$0.count - 1].name }
        guard let seq = SegmentName.parse(tailName)?.sequence else { throw .badWALName(tailName) }
        let name = SegmentName.make(sequence: seq + 1, index: min(index ?? .max, lastEntryIndex + 1))
        let next = try pipeline!.open()
        segments.withLock { $0.append(Segment(name: next.name, handle: next.handle)) }

        var enc = Encoder(handle: next.handle, offset: 0, crc: encoder!.crc)
        try io {
            try enc.encode(.crc, nil)
            try enc.encode(.metadata, metadata)
            if !isEmpty(hardState) { try enc.encode(.state, WALFraming.marshal(hardState)) }
            try enc.flush()
        }
        encoder = enc
        try syncTail()
        try io {
            try fs.rename(Paths.join(dir, next.name), to: Paths.join(dir, name))
            try fs.syncDirectory(dir)
        }
        segments.withLock { $0[$0.count - 1].name = name }
        log("created a new WAL segment \(Paths.join(dir, name))")
    }

    /// Completes every request up to `seq`, or fails every pending one.
    private func finish(through seq: UInt64, error: WALError?) {
        var ready: [@Sendable (WALError?) -> Void] = []
        cond.lock()
        writing = false
        // Wake only who waits for this write to end: the writer when requests queued up
        // meanwhile, `saveNow` and `close` callers.
        if !queue.isEmpty || waitingForWriter > 0 { cond.broadcast() }
        if let error {
            let stopped: WALError
            if case .stopped = error { stopped = error } else { stopped = .stopped(cause: error.description) }
            failure = stopped
            queue.removeAll()
            for (_, cbs) in waiters { ready.append(contentsOf: cbs) }
            waiters.removeAll()
            cond.unlock()
            for cb in ready { cb(stopped) }
            return
        }
        lastCompleted = seq
        for (s, cbs) in waiters where s <= seq {
            ready.append(contentsOf: cbs)
            waiters[s] = nil
        }
        cond.unlock()
        for cb in ready { cb(nil) }
    }

    private func releaseAll() {
        let all = segments.withLock { segs -> [Segment] in
            let out = segs
            segs.removeAll()
            return out
        }
        for s in all { try? s.handle.close() }
    }

    private func log(_ message: String) {
        options.log?(message)
    }
}
