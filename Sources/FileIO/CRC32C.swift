/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of etcd's WAL
/// (Go's `crc32.MakeTable(crc32.Castagnoli)`).
///
/// `update(crc, bytes)` continues a checksum the way Go's `crc32.Update` does: the running
/// value is the finished CRC of everything so far, so `update(update(0, a), b) ==
/// checksum(a + b)`. The WAL's rolling CRC is exactly this, chained over the data of every
/// record.
///
/// Software slicing-by-16: sixteen 256-entry tables, sixteen input bytes per step (no hardware
/// instructions: Swift cannot reach SSE4.2's crc32 without a C module).
public enum CRC32C {
    public static let polynomial: UInt32 = 0x82F6_3B78

    /// CRC-32C of `bytes`.
    @inlinable
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        update(0, bytes)
    }

    /// Continues `crc` (a finished CRC-32C, 0 to start) over `bytes`.
    public static func update(_ crc: UInt32, _ bytes: some Sequence<UInt8>) -> UInt32 {
        if let r = bytes.withContiguousStorageIfAvailable({ update(crc, UnsafeRawBufferPointer($0)) }) {
            return r
        }
        return update(crc, Array(bytes))
    }

    /// Continues `crc` over raw memory.
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard var p = bytes.baseAddress, bytes.count > 0 else { return crc }
        var n = bytes.count
        var c = ~crc
        tables.withUnsafeBufferPointer { tp in
            let t = tp.baseAddress!
            while n >= 16 {
                let lo = UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)) ^ UInt64(c)
                let hi = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
                c = t[15 * 256 + Int(lo & 0xFF)]
                    ^ t[14 * 256 + Int((lo >> 8) & 0xFF)]
                    ^ t[13 * 256 + Int((lo >> 16) & 0xFF)]
                    ^ t[12 * 256 + Int((lo >> 24) & 0xFF)]
                    ^ t[11 * 256 + Int((lo >> 32) & 0xFF)]
                    ^ t[10 * 256 + Int((lo >> 40) & 0xFF)]
                    ^ t[9 * 256 + Int((lo >> 48) & 0xFF)]
                    ^ t[8 * 256 + Int(lo >> 56)]
                    ^ t[7 * 256 + Int(hi & 0xFF)]
                    ^ t[6 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((hi >> 16) & 0xFF)]
                    ^ t[4 * 256 + Int((hi >> 24) & 0xFF)]
                    ^ t[3 * 256 + Int((hi >> 32) & 0xFF)]
                    ^ t[2 * 256 + Int((hi >> 40) & 0xFF)]
                    ^ t[1 * 256 + Int((hi >> 48) & 0xFF)]
                    ^ t[Int(hi >> 56)]
                p += 16
                n -= 16
            }
            while n > 0 {
                c = t[Int((c ^ UInt32(p.load(as: UInt8.self))) & 0xFF)] ^ (c >> 8)
                p += 1
                n -= 1
            }
        }
        return ~c
    }

    /// tables[k*256 + b]: the CRC contribution of byte b followed by k zero bytes.
    static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 16 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ polynomial : c >> 1 }
            t[i] = c
        }
        for k in 1..<16 {
            for i in 0..<256 {
                let prev = t[(k - 1) * 256 + i]
                t[k * 256 + i] = (prev >> 8) ^ t[Int(prev & 0xFF)]
            }
        }
        return t
    }()
}
