import Dispatch
import EtcdProto
import FileIO
import Foundation
import MVCC
import Synchronization

/// One client Watch stream (etcd: serverWatchStream + mvcc.watchStream): many watchers,
/// responses in one ordered queue.
///
/// Ordering and completeness come from the member's state lock: a watcher is registered and
/// its history (from start_revision) read from the store in one critical section, and every
/// applied write hands its events to the registered watchers inside the same lock, in apply
/// order. So each watcher sees every revision from its start once, in order, with all the
/// events of a revision in one response; writers never wait for a watcher (responses queue
/// in memory until the stream takes them).
public final class WatchSession: Sendable {
    public let responses: AsyncStream<Etcdserverpb_WatchResponse>
    let continuation: AsyncStream<Etcdserverpb_WatchResponse>.Continuation
    let id: Int
    /// Weak: the member holds its sessions; a session its stream (or a timer) still uses
    /// after the member is gone does nothing.
    weak let server: EtcdServer?
    private let progressTimer = TimerHolder()

    struct Watcher {
        var key: Data
        /// nil: the one key; empty: every key >= key; else [key, end).
        var end: Data?
        /// Events below this revision are not delivered (future start revisions).
        var minRev: Int64
        var noPut: Bool
        var noDelete: Bool
        var prevKV: Bool
        var fragment: Bool
        var progressNotify: Bool
        /// etcd elides the next progress notification after an event.
        var sentSinceProgress = false

        func matches(_ k: Data) -> Bool {
            guard let end else { return k == key }
            if k.lexicographicallyPrecedes(key) { return false }
            return end.isEmpty || k.lexicographicallyPrecedes(end)
        }
    }

    init(server: EtcdServer, id: Int) {
        self.server = server
        self.id = id
        (responses, continuation) = AsyncStream.makeStream()
    }

    /// A WatchCreateRequest (etcd's recvLoop create case).
    public func create(_ r: Etcdserverpb_WatchCreateRequest) {
        server?.watchCreate(self, r)
    }

    public func cancel(_ watchID: Int64) {
        server?.watchCancel(self, watchID)
    }

    /// A progress request: the current revision, with watch ID -1 (etcd 3.4).
    public func progress() {
        server?.watchProgressRequest(self)
    }

    /// Every `interval`, watchers created with progress_notify get an empty response with
    /// the current revision, unless an event went out since the last one (etcd: 10 minutes).
    func startProgress(interval: Duration) {
        let t = DispatchSource.makeTimerSource(queue: DispatchQueue.global())
        let ms = Int(interval.totalNanoseconds / 1_000_000)
        t.schedule(deadline: .now() + .milliseconds(ms), repeating: .milliseconds(max(ms, 1)))
        t.setEventHandler { [weak self] in
            guard let self else { return }
            self.server?.watchProgressTick(self)
        }
        t.resume()
        progressTimer.set(t)
    }

    /// The client went away: its watchers go.
    public func close() {
        progressTimer.cancel()
        server?.watchClose(self)
        continuation.finish()
    }
}

extension EtcdServer {
    /// A new Watch stream.
    public func watchSession() -> WatchSession {
        let id = state.withLock { s -> Int in
            s.nextWatchSession += 1
            return s.nextWatchSession
        }
        let session = WatchSession(server: self, id: id)
        state.withLock { $0.watchSessions[id] = WatchSessionState(session: session) }
        session.startProgress(interval: config.watchProgressNotifyInterval)
        return session
    }

    /// A progress request's answer, queued under the state lock like events, so it follows
    /// every event already applied.
    func watchProgressRequest(_ session: WatchSession) {
        state.withLock { s in
            var resp = Etcdserverpb_WatchResponse()
            resp.watchID = -1
            resp.header = header(s.kv.currentRevision, &s)
            session.continuation.yield(resp)
        }
    }

    private func header(_ revision: Int64, _ s: inout State) -> Etcdserverpb_ResponseHeader {
        var h = Etcdserverpb_ResponseHeader()
        h.revision = revision
        h.clusterID = clusterID
        h.memberID = memberID
        h.raftTerm = s.term
        return h
    }

    func watchCreate(_ session: WatchSession, _ r: Etcdserverpb_WatchCreateRequest) {
        state.withLock { s in
            guard var ss = s.watchSessions[session.id] else { return }
            defer { s.watchSessions[session.id] = ss }
            let key = r.key.isEmpty ? Data([0]) : r.key
            let end: Data? = r.rangeEnd.isEmpty ? nil : (r.rangeEnd == Data([0]) ? Data() : r.rangeEnd)
            let current = s.kv.currentRevision
            var created = Etcdserverpb_WatchResponse()
            created.header = header(current, &s)
            created.created = true
            // etcd's watchStream.Watch checks.
            var id = r.watchID
            var failure: String?
            if let end, !end.isEmpty, !key.lexicographicallyPrecedes(end) {
                failure = "mvcc: watcher range is empty"
            } else if r.watchID != 0 && ss.watchers[r.watchID] != nil {
                failure = "mvcc: duplicate watch ID provided on the WatchStream"
            }
            if r.watchID == 0 && failure == nil {
                // etcd's AutoWatchID: the next free ID from 0.
                while ss.watchers[ss.nextID] != nil { ss.nextID += 1 }
                id = ss.nextID
                ss.nextID += 1
            }
            if let failure {
                created.watchID = -1
                created.canceled = true
                created.cancelReason = failure
                session.continuation.yield(created)
                return
            }
            created.watchID = id
            session.continuation.yield(created)
            var w = WatchSession.Watcher(
                key: key, end: end, minRev: r.startRevision == 0 ? current + 1 : r.startRevision,
                noPut: r.filters.contains(.noput), noDelete: r.filters.contains(.nodelete),
                prevKV: r.prevKv, fragment: r.fragment, progressNotify: r.progressNotify)
            // A start revision in the past: catch up from the store now (etcd's unsynced
            // watchers), or cancel with the compact revision if it was compacted away.
            if w.minRev <= current {
                let compacted = s.kv.compactedRevision
                if w.minRev < compacted {
                    var resp = Etcdserverpb_WatchResponse()
                    resp.header = header(0, &s)
                    resp.watchID = id
                    resp.canceled = true
                    resp.compactRevision = compacted
                    session.continuation.yield(resp)
                    return
                }
                let history = ((try? s.kv.events(since: w.minRev)) ?? []).filter { w.matches($0.kv.key) }
                // At most 1,000 revisions per response (etcd's watchBatchMaxRevs).
                var batch: [Mvccpb_Event] = []
                var revs = 0
                var lastRev: Int64 = -1
                for ev in history {
                    if ev.kv.modRevision != lastRev {
                        if revs == 1000 {
                            send(batch, to: &w, id: id, revision: current, session, &s)
                            batch = []
                            revs = 0
                        }
                        revs += 1
                        lastRev = ev.kv.modRevision
                    }
                    batch.append(ev)
                }
                if !batch.isEmpty { send(batch, to: &w, id: id, revision: current, session, &s) }
                w.minRev = current + 1
            }
            ss.watchers[id] = w
        }
    }

    func watchCancel(_ session: WatchSession, _ watchID: Int64) {
        state.withLock { s in
            guard s.watchSessions[session.id]?.watchers.removeValue(forKey: watchID) != nil else { return }
            var resp = Etcdserverpb_WatchResponse()
            resp.header = header(s.kv.currentRevision, &s)
            resp.watchID = watchID
            resp.canceled = true
            session.continuation.yield(resp)
        }
    }

    func watchClose(_ session: WatchSession) {
        _ = state.withLock { $0.watchSessions.removeValue(forKey: session.id) }
    }

    func watchProgressTick(_ session: WatchSession) {
        state.withLock { s in
            guard var ss = s.watchSessions[session.id] else { return }
            let rev = s.kv.currentRevision
            for (id, w) in ss.watchers where w.progressNotify {
                if !w.sentSinceProgress {
                    var resp = Etcdserverpb_WatchResponse()
                    resp.header = header(rev, &s)
                    resp.watchID = id
                    session.continuation.yield(resp)
                }
                ss.watchers[id]?.sentSinceProgress = false
            }
            s.watchSessions[session.id] = ss
        }
    }

    /// Called in apply order, under the state lock, with the events of one write.
    func notifyWatchers(_ events: [Mvccpb_Event], _ s: inout State) {
        guard !events.isEmpty, !s.watchSessions.isEmpty else { return }
        let rev = events[0].kv.modRevision
        for sid in Array(s.watchSessions.keys) {
            guard var ss = s.watchSessions[sid] else { continue }
            for id in Array(ss.watchers.keys) {
                guard var w = ss.watchers[id], rev >= w.minRev else { continue }
                let mine = events.filter { w.matches($0.kv.key) }
                if mine.isEmpty { continue }
                send(mine, to: &w, id: id, revision: rev, ss.session, &s)
                ss.watchers[id] = w
            }
            s.watchSessions[sid] = ss
        }
    }

    /// Filters, prev_kv (the key at the revision before, for updates and deletes) and
    /// fragmentation, then the response(s).
    private func send(_ events: [Mvccpb_Event], to w: inout WatchSession.Watcher, id: Int64, revision: Int64,
                      _ session: WatchSession, _ s: inout State) {
        var out: [Mvccpb_Event] = []
        for var ev in events {
            if ev.type == .put && w.noPut { continue }
            if ev.type == .delete && w.noDelete { continue }
            let isCreate = ev.type == .put && ev.kv.createRevision == ev.kv.modRevision
            if w.prevKV && !isCreate {
                var r = Etcdserverpb_RangeRequest()
                r.key = ev.kv.key
                r.revision = ev.kv.modRevision - 1
                if let prev = try? s.kv.range(r).kvs.first { ev.prevKv = prev }
            }
            out.append(ev)
        }
        // etcd sends nothing when filters removed every event.
        if out.isEmpty && !events.isEmpty { return }
        w.sentSinceProgress = true
        var resp = Etcdserverpb_WatchResponse()
        resp.header = header(revision, &s)
        resp.watchID = id
        resp.events = out
        func size(_ r: Etcdserverpb_WatchResponse) -> Int { (try? r.serializedBytes() as [UInt8])?.count ?? 0 }
        // etcd's watch server limit: --max-request-bytes plus gRPC's 512 KiB overhead.
        let limit = config.maxRequestBytes + 512 * 1024
        if w.fragment, out.count > 1, size(resp) >= limit {
            // etcd's sendFragments: events are added while the response stays under the limit
            // (at least one each); fragment is set on all but the last.
            var idx = 0
            while true {
                var cur = resp
                cur.events = []
                cur.fragment = true
                while idx < out.count {
                    cur.events.append(out[idx])
                    if cur.events.count > 1 && size(cur) >= limit {
                        cur.events.removeLast()
                        break
                    }
                    idx += 1
                }
                if idx == out.count { cur.fragment = false }
                session.continuation.yield(cur)
                if !cur.fragment { return }
            }
        }
        session.continuation.yield(resp)
    }
}

/// A Watch stream's watchers, in the member's state.
struct WatchSessionState {
    let session: WatchSession
    var watchers: [Int64: WatchSession.Watcher] = [:]
    var nextID: Int64 = 0
}
