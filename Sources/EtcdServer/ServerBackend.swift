import Backend
import EtcdProto
import Foundation
import MVCC

/// What the member keeps in the backend besides the key space, in etcd 3.4's buckets and
/// formats: members (`members`: hex ID → the member's JSON; `members_removed`: hex ID →
/// "removed"), the cluster version (`cluster`/clusterVersion), raised alarms (`alarm`: the
/// marshalled AlarmMember → empty) and the auth revision (`auth`/authRevision).
enum ServerBackend {
    struct Persisted {
        var members: [Member] = []
        var clusterVersion: String?
        var alarms: [Etcdserverpb_AlarmMember] = []
    }

    /// Creates every bucket of etcd's schema that is missing, and the auth revision a fresh
    /// etcd writes; commits at once, so a new file has etcd's layout from the start.
    static func createBuckets(_ backend: BatchedBackend) throws {
        for b in Schema.allBuckets { backend.createBucket(b) }
        if try backend.get(Schema.auth, Schema.authRevisionKey) == nil {
            backend.put(Schema.auth, Schema.authRevisionKey, Schema.uint64BE(1))
        }
        try backend.commit()
    }

    static func load(_ backend: BatchedBackend) throws -> Persisted {
        let view = try backend.readView()
        defer { view.close() }
        var p = Persisted()
        for (k, v) in try view.scan(Schema.members, from: [], to: nil) {
            guard let id = UInt64(String(decoding: k, as: UTF8.self), radix: 16),
                  let ctx = MemberContext(json: Data(v)) else { continue }
            p.members.append(Member(id: id, name: ctx.name, peerURLs: ctx.peerURLs, clientURLs: ctx.clientURLs,
                                    isLearner: ctx.isLearner))
        }
        p.members.sort { $0.id < $1.id }
        if let v = try view.get(Schema.cluster, Schema.clusterVersionKey) {
            p.clusterVersion = String(decoding: v, as: UTF8.self)
        }
        for (k, _) in try view.scan(Schema.alarm, from: [], to: nil) {
            if let a = try? Etcdserverpb_AlarmMember(serializedBytes: k) { p.alarms.append(a) }
        }
        return p
    }

    static func saveMember(_ m: Member, _ backend: BatchedBackend) {
        backend.put(Schema.members, Schema.memberKey(m.id), Array(MemberContext(member: m).json))
    }

    static func removeMember(_ id: UInt64, _ backend: BatchedBackend) {
        backend.delete(Schema.members, Schema.memberKey(id))
        backend.put(Schema.membersRemoved, Schema.memberKey(id), Schema.removedValue)
    }

    static func saveClusterVersion(_ version: String, _ backend: BatchedBackend) {
        backend.put(Schema.cluster, Schema.clusterVersionKey, Array(version.utf8))
    }

    /// An ACTIVATE puts the alarm, a DEACTIVATE deletes it (both idempotent, as etcd's).
    static func saveAlarm(_ r: Etcdserverpb_AlarmRequest, _ backend: BatchedBackend) {
        var m = Etcdserverpb_AlarmMember()
        m.memberID = r.memberID
        m.alarm = r.alarm
        guard r.alarm != .none, let key = try? m.serializedBytes() as [UInt8] else { return }
        switch r.action {
        case .activate: backend.put(Schema.alarm, key, [])
        case .deactivate: backend.delete(Schema.alarm, key)
        default: break
        }
    }
}
