import Dispatch
import EtcdProto
import FileIO
import Foundation
import Synchronization

/// etcd's auto-compaction (etcdserver/api/v3compactor), driven by `tick(now:)` so tests can
/// run it on a synthetic clock; `start` runs it on a timer against a member.
///
/// - periodic (retention a duration; a bare integer means hours): every retention/10 (at most
///   every 6 minutes) the current revision is sampled; once a retention has passed since the
///   start (later: an interval of min(retention, 1h) since the last compaction), the store is
///   compacted to the revision sampled one retention ago.
/// - revision (retention a number of revisions): every 5 minutes, compact to
///   current - retention when that is positive and new.
public final class AutoCompactor: Sendable {
    public enum Mode: Sendable, Equatable {
        case periodic(Duration)
        case revision(Int64)
    }

    /// etcd's parseCompactionRetention: nil when disabled (retention 0). `parseDuration` is
    /// Go's time.ParseDuration in nanoseconds (EtcdConfig's GoDuration).
    public static func parse(mode: String, retention: String, parseDuration: (String) -> Int64?) throws(EtcdError) -> Mode? {
        if let n = Int64(retention), n >= 0 {
            if n == 0 { return nil }
            return mode == "revision" ? .revision(n) : .periodic(.seconds(n * 3600))
        }
        guard let ns = parseDuration(retention) else {
            throw EtcdError(.invalidArgument, "error parsing CompactionRetention: time: invalid duration \"\(retention)\"")
        }
        if ns <= 0 { return nil }
        return .periodic(.nanoseconds(ns))
    }

    public let mode: Mode
    private struct State {
        var start: ContinuousClock.Instant?
        var lastSuccess: ContinuousClock.Instant?
        var base: Duration = .zero
        var revs: [Int64] = []
        var prev: Int64 = 0
    }
    private let state = Mutex(State())
    private let timerLock = NSLock()
    nonisolated(unsafe) private var timer: DispatchSourceTimer?  // under timerLock
    private let currentRevision: @Sendable () -> Int64
    private let compact: @Sendable (Int64) -> Void

    /// `compact` is called with the revision to compact to (it logs and proposes).
    public init(mode: Mode, currentRevision: @escaping @Sendable () -> Int64, compact: @escaping @Sendable (Int64) -> Void) {
        self.mode = mode
        self.currentRevision = currentRevision
        self.compact = compact
    }

    /// How often `tick` runs.
    public var interval: Duration {
        switch mode {
        case .periodic(let p): return min(p, .seconds(3600)) / 10
        case .revision: return .seconds(300)
        }
    }

    /// One step of etcd's loop at time `now` (the first call starts the clock).
    public func tick(now: ContinuousClock.Instant) {
        let target: Int64? = state.withLock { s in
            switch mode {
            case .periodic(let period):
                if s.start == nil {
                    s.start = now
                    s.lastSuccess = now
                    s.base = period
                    s.revs = [currentRevision()]
                    return nil
                }
                // As etcd's loop: decide on the samples taken so far, then take this one.
                let retentions = Int(period / interval) + 1
                defer {
                    s.revs.append(currentRevision())
                    if s.revs.count > retentions { s.revs.removeFirst(s.revs.count - retentions) }
                }
                guard let last = s.lastSuccess, now - last >= s.base else { return nil }
                if s.base == period { s.base = min(period, .seconds(3600)) }
                s.lastSuccess = now
                return s.revs[0]
            case .revision(let retention):
                let rev = currentRevision() - retention
                if rev <= 0 || rev == s.prev { return nil }
                s.prev = rev
                return rev
            }
        }
        if let target { compact(target) }
    }

    /// Runs `tick` on a timer until `stop`.
    public func start() {
        let t = DispatchSource.makeTimerSource(queue: DispatchQueue.global())
        let ns = Int(interval.totalNanoseconds)
        t.schedule(deadline: .now(), repeating: .nanoseconds(max(ns, 1_000_000)))
        t.setEventHandler { [weak self] in self?.tick(now: .now) }
        timerLock.withLock { timer = t }
        t.resume()
    }

    public func stop() {
        timerLock.withLock {
            timer?.cancel()
            timer = nil
        }
    }
}

extension EtcdServer {
    /// Starts etcd's auto-compaction for `mode`: compactions go through the log like a
    /// client's, with etcd's log lines.
    /// `formatDuration` writes a period as Go does (EtcdConfig's GoDuration.format), for the logs.
    public func startAutoCompaction(_ mode: AutoCompactor.Mode, formatDuration: (Int64) -> String) -> AutoCompactor {
        let retention: String
        switch mode {
        case .periodic(let d):
            retention = formatDuration(d.totalNanoseconds)
        case .revision(let n): retention = "\(n) revisions"
        }
        let c = AutoCompactor(mode: mode, currentRevision: { [weak self] in self?.currentRevision ?? 0 }) { [weak self] rev in
            guard let self else { return }
            self.logger.notice("Starting auto-compaction at revision \(rev) (retention: \(retention))", metadata: ["pkg": "compactor"])
            Task {
                var r = Etcdserverpb_CompactionRequest()
                r.revision = rev
                do {
                    _ = try await self.compact(r)
                    self.logger.notice("Finished auto-compaction at revision \(rev)", metadata: ["pkg": "compactor"])
                } catch {
                    if (error as? EtcdError) == .compacted {
                        self.logger.notice("Finished auto-compaction at revision \(rev)", metadata: ["pkg": "compactor"])
                    } else {
                        self.logger.notice("Failed auto-compaction at revision \(rev) (\(error))", metadata: ["pkg": "compactor"])
                    }
                }
            }
        }
        c.start()
        return c
    }
}
