import Foundation
import Testing
import FileIO
@testable import Backend

/// Backend reads a file the real etcd 3.4.23 wrote (a fixture captured from a running server),
/// exactly as the real bbolt reads it, and keeps writing it in etcd's mode.
@Suite struct EtcdFileTests {
    func fixtureBytes() -> [UInt8] {
        var f = [UInt8](repeating: 0, count: EtcdWrittenFixture.fileSize)
        for (offset, b64) in EtcdWrittenFixture.segments {
            let d = Data(base64Encoded: b64, options: .ignoreUnknownCharacters)!
            f.replaceSubrange(offset..<offset + d.count, with: d)
        }
        return f
    }

    @Test func readsAFileWrittenByEtcd() throws {
        let fs = try memoryFS()
        try fs.writeFile("/db/db", fixtureBytes())
        let db = try BoltDB.open(path: "/db/db", fileSystem: fs, options: .etcd)
        #expect(db.metaInfo.freelistPage == nil)          // etcd writes no free list
        let dump = try dumpDB(db)
        var crc = CRC32C()
        crc.update(bytes(dump))
        #expect(crc.value == EtcdWrittenFixture.dumpCRC32C, "dump differs from the real bbolt's")
        #expect(dump.split(separator: "\n").count == EtcdWrittenFixture.dumpLines)
        #expect(try db.view { try $0.check() }.isEmpty)
        // etcd's schema and revisions: 40 puts, a delete, 5 puts after revision 1.
        try db.view { tx in
            for name in ["alarm", "auth", "authRoles", "authUsers", "cluster", "key", "lease", "members", "members_removed", "meta"] {
                #expect(try tx.bucket(bytes(name)) != nil, "bucket \(name)")
            }
            let last = try tx.bucket(bytes("key"))!.cursor().last()!
            #expect(last.key.count == 17 && last.key[8] == UInt8(ascii: "_"))
            #expect(last.key.u64(0).bigEndian == 47)
            #expect(try tx.bucket(bytes("cluster"))!.get(bytes("clusterVersion")) == bytes("3.4.0"))
        }
        // Continue writing it as etcd would.
        try db.update { tx in
            let k = try tx.bucket(bytes("key"))!
            k.fillPercent = 0.9
            for r in 48..<600 as Range<UInt64> {
                var key = [UInt8](repeating: 0, count: 17)
                key.setU64(0, r.bigEndian)
                key[8] = UInt8(ascii: "_")
                try k.put(key, value(Int(r), size: 100))
            }
        }
        #expect(try db.view { try $0.check() }.isEmpty)
        try db.close()
        guard BboltTool.path != nil else { return }
        let dir = TempDir("etcdfile")
        defer { dir.cleanup() }
        try PosixFileSystem().writeFile(dir.file("db"), try fs.contents("/db/db"))
        let (code, out, _) = BboltTool.call(["check", dir.file("db")])
        #expect(code == 0 && out == "OK\n", "\(out)")
        let goDump = BboltTool.call(["dump", dir.file("db")]).1
        var o = BoltOptions()
        o.readOnly = true
        #expect(try dumpDB(try BoltDB.open(path: dir.file("db"), fileSystem: PosixFileSystem(), options: o)) == goDump)
    }
}
