import Foundation

/// etcd 3.4's backend schema: the bucket names and the fixed keys it writes, byte for byte
/// (mvcc/kvstore.go, lease/lessor.go, etcdserver/api/membership/store.go,
/// etcdserver/api/v3alarm/alarms.go, auth/store.go). The one place these names live.
public enum Schema {
    public static let key = Array("key".utf8)
    public static let meta = Array("meta".utf8)
    public static let lease = Array("lease".utf8)
    public static let alarm = Array("alarm".utf8)
    public static let cluster = Array("cluster".utf8)
    public static let members = Array("members".utf8)
    public static let membersRemoved = Array("members_removed".utf8)
    public static let auth = Array("auth".utf8)
    public static let authUsers = Array("authUsers".utf8)
    public static let authRoles = Array("authRoles".utf8)

    /// Every bucket a fresh etcd 3.4 member creates, in the order it creates them.
    public static let allBuckets = [key, meta, lease, alarm, members, membersRemoved, cluster, auth, authUsers, authRoles]

    // meta
    public static let consistentIndexKey = Array("consistent_index".utf8)
    public static let scheduledCompactKey = Array("scheduledCompactRev".utf8)
    public static let finishedCompactKey = Array("finishedCompactRev".utf8)
    // cluster
    public static let clusterVersionKey = Array("clusterVersion".utf8)
    // auth: 8-byte big-endian revision, 1 on a fresh member.
    public static let authRevisionKey = Array("authRevision".utf8)

    /// members / members_removed: the member ID in lowercase hex, unpadded (types.ID.String).
    public static func memberKey(_ id: UInt64) -> [UInt8] { Array(String(id, radix: 16).utf8) }

    /// What members_removed holds for each removed member.
    public static let removedValue = Array("removed".utf8)

    public static func uint64BE(_ v: UInt64) -> [UInt8] {
        withUnsafeBytes(of: v.bigEndian) { Array($0) }
    }

    public static func readUInt64BE(_ b: [UInt8]) -> UInt64? {
        guard b.count == 8 else { return nil }
        return b.reduce(0) { $0 << 8 | UInt64($1) }
    }
}

extension Revision {
    /// etcd's revision key: 8-byte big-endian main, '_', 8-byte big-endian sub; a trailing
    /// 't' marks a tombstone (mvcc/revision.go revToBytes, kvstore.go appendMarkTombstone).
    func key(tombstone: Bool = false) -> [UInt8] {
        var b = [UInt8]()
        b.reserveCapacity(18)
        withUnsafeBytes(of: UInt64(bitPattern: main).bigEndian) { b.append(contentsOf: $0) }
        b.append(UInt8(ascii: "_"))
        withUnsafeBytes(of: UInt64(bitPattern: sub).bigEndian) { b.append(contentsOf: $0) }
        if tombstone { b.append(UInt8(ascii: "t")) }
        return b
    }

    /// The revision of a revision key (17 bytes, or 18 with the tombstone mark).
    init?(key b: [UInt8]) {
        guard b.count == 17 || (b.count == 18 && b[17] == UInt8(ascii: "t")), b[8] == UInt8(ascii: "_") else { return nil }
        var m: UInt64 = 0, s: UInt64 = 0
        for i in 0..<8 { m = m << 8 | UInt64(b[i]) }
        for i in 9..<17 { s = s << 8 | UInt64(b[i]) }
        self.init(main: Int64(bitPattern: m), sub: Int64(bitPattern: s))
    }
}
