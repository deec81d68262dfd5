import FileIO

/// Segment file names: `%016x-%016x.wal` (sequence, raft index of the segment's first entry).
public enum SegmentName {
    public static func make(sequence: UInt64, index: UInt64) -> String {
        hex16(sequence) + "-" + hex16(index) + ".wal"
    }

    /// (sequence, index) of a well-formed segment name, nil otherwise.
    public static func parse(_ name: String) -> (sequence: UInt64, index: UInt64)? {
        let u = Array(name.utf8)
        guard u.count == 16 + 1 + 16 + 4, u[16] == UInt8(ascii: "-"),
              name.hasSuffix(".wal"),
              let seq = parseHex(u[0..<16]), let idx = parseHex(u[17..<33])
        else { return nil }
        return (seq, idx)
    }

    /// The segment names in a directory, sorted (other files, e.g. `*.tmp`, ignored).
    static func list(_ fs: any FileSystem, _ dir: String) throws -> [String] {
        try fs.contentsOfDirectory(dir).filter { parse($0) != nil }.sorted()
    }

    /// The last position whose first index is ≤ `index` (etcd's searchIndex).
    static func search(_ names: [String], index: UInt64) -> Int? {
        for i in names.indices.reversed() where parse(names[i])!.index <= index {
            return i
        }
        return nil
    }

    /// Whether the sequence numbers increase by one (etcd's isValidSeq).
    static func isValidSequence(_ names: some Collection<String>) -> Bool {
        var last: UInt64 = 0
        for n in names {
            let seq = parse(n)!.sequence
            if last != 0 && last != seq &- 1 { return false }
            last = seq
        }
        return true
    }

    private static func hex16(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    private static func parseHex(_ bytes: ArraySlice<UInt8>) -> UInt64? {
        var v: UInt64 = 0
        for b in bytes {
            let d: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = b - UInt8(ascii: "A") + 10
            default: return nil
            }
            v = v << 4 | UInt64(d)
        }
        return v
    }
}
