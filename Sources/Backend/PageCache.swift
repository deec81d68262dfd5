import Synchronization

/// Validated branch/leaf pages by id, shared by all transactions, bounded in bytes (the
/// oldest insertions go first). The writer replaces the pages it writes before it writes the
/// meta page that makes them visible; a page that an open reader can see is never rewritten
/// (the freelist keeps it pending), so a cached page is never stale for anyone who can reach it.
final class PageCache: Sendable {
    private struct State {
        var pages: [UInt64: Page] = [:]
        var order: [UInt64] = []
        var head = 0
        var bytes = 0
    }

    private let state = Mutex(State())
    let limit: Int

    init(limit: Int) { self.limit = limit }

    func get(_ id: UInt64) -> Page? {
        state.withLock { $0.pages[id] }
    }

    func put(_ id: UInt64, _ page: Page) {
        let size = page.data.count
        if size > limit / 4 { return }
        state.withLock { s in
            if let old = s.pages.updateValue(page, forKey: id) {
                s.bytes -= old.data.count
            } else {
                s.order.append(id)
            }
            s.bytes += size
            while s.bytes > limit && s.head < s.order.count {
                let victim = s.order[s.head]
                s.head += 1
                if let old = s.pages.removeValue(forKey: victim) { s.bytes -= old.data.count }
            }
            if s.order.count - s.head > 2 * s.pages.count + 1024 {
                // Drop ids that were removed or re-inserted since (keep each live id once,
                // at its oldest position).
                var seen = Set<UInt64>()
                var kept: [UInt64] = []
                kept.reserveCapacity(s.pages.count)
                for id in s.order[s.head...] where s.pages[id] != nil && seen.insert(id).inserted { kept.append(id) }
                s.order = kept
                s.head = 0
            } else if s.head > 1024 && s.head * 2 > s.order.count {
                s.order.removeFirst(s.head)
                s.head = 0
            }
        }
    }

    func remove<S: Sequence>(_ ids: S) where S.Element == UInt64 {
        state.withLock { s in
            for id in ids {
                if let old = s.pages.removeValue(forKey: id) { s.bytes -= old.data.count }
            }
        }
    }

    func removeAll() {
        state.withLock { $0 = State() }
    }
}
