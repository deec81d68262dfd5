#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Keys and values inside the backend: slices that share the storage of the page (or caller
/// array) they came from, so reading a page into a node copies no key or value bytes.
typealias Bytes = ArraySlice<UInt8>

/// bytes.Compare: lexicographic order of unsigned bytes, shorter prefix first.
@inline(__always)
func compareBytes(_ a: Bytes, _ b: Bytes) -> Int {
    a.withUnsafeBytes { pa in
        b.withUnsafeBytes { pb in compareRaw(pa, pb) }
    }
}

/// The one byte-order comparison (MVCC's keys, kept as Data, use it too).
@inline(__always)
package func compareRaw(_ pa: UnsafeRawBufferPointer, _ pb: UnsafeRawBufferPointer) -> Int {
    let n = min(pa.count, pb.count)
    if n > 0 {
        let r = memcmp(pa.baseAddress!, pb.baseAddress!, n)
        if r != 0 { return r < 0 ? -1 : 1 }
    }
    return pa.count == pb.count ? 0 : (pa.count < pb.count ? -1 : 1)
}

@inline(__always)
func bytesEqual(_ a: Bytes, _ b: Bytes) -> Bool {
    a.count == b.count && compareBytes(a, b) == 0
}

// MARK: - Little-endian fields (bbolt writes its structs in host order; every platform etcd
// ships on is little-endian, so the file format is little-endian).

extension UnsafeRawBufferPointer {
    @inline(__always) func u16(_ off: Int) -> UInt16 { UInt16(littleEndian: loadUnaligned(fromByteOffset: off, as: UInt16.self)) }
    @inline(__always) func u32(_ off: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: off, as: UInt32.self)) }
    @inline(__always) func u64(_ off: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: off, as: UInt64.self)) }
}

extension UnsafeMutableRawBufferPointer {
    @inline(__always) func setU16(_ off: Int, _ v: UInt16) { storeBytes(of: v.littleEndian, toByteOffset: off, as: UInt16.self) }
    @inline(__always) func setU32(_ off: Int, _ v: UInt32) { storeBytes(of: v.littleEndian, toByteOffset: off, as: UInt32.self) }
    @inline(__always) func setU64(_ off: Int, _ v: UInt64) { storeBytes(of: v.littleEndian, toByteOffset: off, as: UInt64.self) }
}

extension Array where Element == UInt8 {
    @inline(__always) func u16(_ off: Int) -> UInt16 { withUnsafeBytes { $0.u16(off) } }
    @inline(__always) func u32(_ off: Int) -> UInt32 { withUnsafeBytes { $0.u32(off) } }
    @inline(__always) func u64(_ off: Int) -> UInt64 { withUnsafeBytes { $0.u64(off) } }
    @inline(__always) mutating func setU16(_ off: Int, _ v: UInt16) { withUnsafeMutableBytes { $0.setU16(off, v) } }
    @inline(__always) mutating func setU32(_ off: Int, _ v: UInt32) { withUnsafeMutableBytes { $0.setU32(off, v) } }
    @inline(__always) mutating func setU64(_ off: Int, _ v: UInt64) { withUnsafeMutableBytes { $0.setU64(off, v) } }
}

/// FNV-1a, 64 bits (Go's hash/fnv New64a): the meta page checksum.
func fnv64a(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes {
        h ^= UInt64(b)
        h = h &* 0x0000_0100_0000_01b3
    }
    return h
}
