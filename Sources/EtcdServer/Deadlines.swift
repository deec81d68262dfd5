import Dispatch
import FileIO
import Synchronization

/// The request timeouts of one member: every proposal and every ReadIndex waits at most
/// `requestTimeout`, so deadlines arrive in the order they were set. One queue and one
/// sweep every `resolution` replace a Dispatch timer per request (each of which woke
/// Dispatch's timer thread and cost a heap insert), which showed in profiles of many
/// concurrent puts.
final class Deadlines: Sendable {
    private struct Entry {
        let deadline: ContinuousClock.Instant
        let fire: @Sendable () -> Void
    }

    private struct State {
        var entries: [Entry] = []
        var head = 0
        var timer: (any DispatchSourceTimer)?
    }

    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "swetcd.deadlines")
    private let resolution: Duration

    init(resolution: Duration = .milliseconds(20)) {
        self.resolution = resolution
    }

    /// Calls `fire` once `after` has passed (within `resolution`).
    /// Callers whose work finished meanwhile make `fire` a no-op (the waiter is gone).
    func add(after: Duration, _ fire: @escaping @Sendable () -> Void) {
        let entry = Entry(deadline: .now + after, fire: fire)
        let start: (any DispatchSourceTimer)? = state.withLock { s in
            // Deadlines come in order unless `after` differs between callers; keep the
            // queue sorted by inserting an earlier one at its place (rare).
            if let last = s.entries.last, s.entries.count > s.head, last.deadline > entry.deadline {
                var i = s.entries.count
                while i > s.head && s.entries[i - 1].deadline > entry.deadline { i -= 1 }
                s.entries.insert(entry, at: i)
            } else {
                s.entries.append(entry)
            }
            guard s.timer == nil else { return nil }
            let t = DispatchSource.makeTimerSource(queue: queue)
            s.timer = t
            return t
        }
        if let start {
            start.setEventHandler { [weak self] in self?.sweep() }
            start.schedule(deadline: .now() + resolution.dispatchInterval, repeating: resolution.dispatchInterval)
            start.resume()
        }
    }

    /// Fires every entry whose deadline has passed; stops the timer when none is left.
    private func sweep() {
        let now = ContinuousClock.now
        let due: [Entry] = state.withLock { s in
            var end = s.head
            while end < s.entries.count && s.entries[end].deadline <= now { end += 1 }
            let due = Array(s.entries[s.head..<end])
            s.head = end
            if s.head == s.entries.count {
                s.entries.removeAll(keepingCapacity: true)
                s.head = 0
                s.timer?.cancel()
                s.timer = nil
            } else if s.head > 1024 && s.head * 2 > s.entries.count {
                s.entries.removeFirst(s.head)
                s.head = 0
            }
            return due
        }
        for e in due { e.fire() }
    }

    deinit {
        state.withLock { $0.timer?.cancel() }
    }
}
