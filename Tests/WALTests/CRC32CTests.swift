import Testing
import FileIO
@testable import WAL

/// Bit-at-a-time CRC-32C, the definition the fast version must agree with.
func referenceCRC32C(_ crc: UInt32, _ bytes: [UInt8]) -> UInt32 {
    var c = ~crc
    for b in bytes {
        c ^= UInt32(b)
        for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
    }
    return ~c
}

@Suite struct CRC32CTests {
    @Test func checkValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8]()) == 0)
        #expect(CRC32C.checksum(Array("a".utf8)) == 0xC1D0_4330)
    }

    /// RFC 3720 (iSCSI), appendix B.4.
    @Test func iscsiVectors() {
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).reversed().map { UInt8($0) }) == 0x113F_DB5C)
        let readPDU: [UInt8] = [
            0x01, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
            0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ]
        #expect(CRC32C.checksum(readPDU) == 0xD996_3A56)
    }

    /// Every length 0…600 at every start alignment 0…15 against the bitwise definition.
    @Test func agreesWithBitwiseDefinition() {
        var rng = SplitMix64(seed: 1)
        let data = (0..<700).map { _ in UInt8.random(in: 0...255, using: &rng) }
        for start in 0..<16 {
            for length in 0...600 {
                let slice = Array(data[start..<start + length])
                let seed = UInt32(truncatingIfNeeded: rng.next())
                #expect(CRC32C.update(seed, slice) == referenceCRC32C(seed, slice))
            }
        }
    }

    /// The WAL's rolling CRC: continuing over pieces equals the CRC of the whole.
    @Test func chaining() {
        var rng = SplitMix64(seed: 2)
        for _ in 0..<200 {
            let n = Int(rng.next() % 3000)
            let data = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let cut = n == 0 ? 0 : Int(rng.next() % UInt64(n + 1))
            #expect(CRC32C.update(CRC32C.checksum(data[..<cut]), data[cut...]) == CRC32C.checksum(data))
        }
    }

    @Test func nonContiguousSequence() {
        #expect(CRC32C.checksum("123456789".utf8) == 0xE306_9283)
    }
}
