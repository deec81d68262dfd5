import Backend
import Foundation

/// An MVCC revision: `main` is the store revision a write transaction commits at,
/// `sub` orders the individual changes inside that transaction (0, 1, 2, ...).
/// etcd: mvcc/revision.go. Ordered by (main, sub).
struct Revision: Hashable, Comparable, Sendable, CustomStringConvertible {
    var main: Int64
    var sub: Int64

    init(main: Int64, sub: Int64 = 0) {
        self.main = main
        self.sub = sub
    }

    static func < (a: Revision, b: Revision) -> Bool {
        a.main != b.main ? a.main < b.main : a.sub < b.sub
    }

    var description: String { "\(main).\(sub)" }
}

/// Lexicographic comparison of byte strings, as Go's `bytes.Compare`: -1, 0 or 1.
@inline(__always)
func compareBytes(_ a: Data, _ b: Data) -> Int {
    a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in compareRaw(pa, pb) } }
}

/// The end of a key range as etcd's index understands it (after `mkGteRange`).
enum RangeEnd: Sendable {
    /// Just the one key (range_end empty).
    case single
    /// Every key >= key (range_end == "\0").
    case unbounded
    /// [key, end)
    case before(Data)

    /// etcd's `mkGteRange`: an empty range_end is a single key, "\0" means "to the end".
    init(requestRangeEnd end: Data) {
        if end.isEmpty {
            self = .single
        } else if end.count == 1 && end.first == 0 {
            self = .unbounded
        } else {
            self = .before(end)
        }
    }
}
