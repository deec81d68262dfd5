import EtcdProto
import FileIO
import Foundation
import WAL

/// etcd's `member/snap` directory of Raft snapshots (etcd: etcdserver/api/snap): one file
/// per snapshot named `<term>-<index>.snap` (16 hex digits each), holding a snappb.Snapshot —
/// the CRC-32C of `data` and `data`, a marshalled raftpb.Snapshot whose own data is the
/// member's v2 store in JSON (see `V2Store`).
struct SnapDirectory {
    let dir: String
    let fs: any FileSystem

    static func fileName(term: UInt64, index: UInt64) -> String {
        hex16(term) + "-" + hex16(index) + ".snap"
    }

    private static func hex16(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, 16 - s.count)) + s
    }

    /// The .snap files, newest (highest term, then index) first.
    func names() throws -> [String] {
        try fs.contentsOfDirectory(dir).filter { $0.hasSuffix(".snap") && $0.count == 38 }.sorted(by: >)
    }

    /// Writes the snapshot durably (file content, then the directory entry).
    func save(_ snap: Raftpb_Snapshot) throws {
        let data: [UInt8] = try snap.serializedBytes()
        var s = Snappb_snapshot()
        s.crc = CRC32C.checksum(data)
        s.data = Data(data)
        let path = Paths.join(dir, Self.fileName(term: snap.metadata.term, index: snap.metadata.index))
        do {
            try fs.writeFile(path, try s.serializedBytes(), permissions: 0o666)
            try fs.syncDirectory(dir)
        } catch {
            try? fs.remove(path)
            throw error
        }
    }

    /// The newest snapshot that reads back intact; damaged files are skipped (etcd renames
    /// them to .broken) and reported through `skip`.
    func loadNewest(skip: (String, String) -> Void = { _, _ in }) throws -> Raftpb_Snapshot? {
        for name in try names() {
            let path = Paths.join(dir, name)
            do {
                let bytes = try fs.readFile(path)
                guard !bytes.isEmpty else { throw SnapError.empty }
                let s = try Snappb_snapshot(serializedBytes: bytes)
                guard CRC32C.checksum(s.data) == s.crc else { throw SnapError.crcMismatch }
                return try Raftpb_Snapshot(serializedBytes: s.data)
            } catch {
                skip(path, "\(error)")
                try? fs.rename(path, to: path + ".broken")
            }
        }
        return nil
    }

    /// Removes the oldest .snap files beyond `keep` (etcd's --max-snapshots; 0 keeps all).
    func purge(keep: Int) {
        guard keep > 0, let all = try? names(), all.count > keep else { return }
        for name in all[keep...] { try? fs.remove(Paths.join(dir, name)) }
    }

    /// Removes the databases received from a leader (`<index>.snap.db`): once applied they
    /// are the backend file, and they may hold values as they were before a migration.
    func removeReceivedDatabases() {
        for name in (try? fs.contentsOfDirectory(dir)) ?? [] where name.hasSuffix(".snap.db") {
            try? fs.remove(Paths.join(dir, name))
        }
    }

    enum SnapError: Error, CustomStringConvertible {
        case empty, crcMismatch
        var description: String {
            switch self {
            case .empty: return "snap: empty snapshot"
            case .crcMismatch: return "snap: crc mismatch"
            }
        }
    }
}

/// etcd 3.4's v2 store as it appears in a snapshot: the JSON of its node tree, of which a v3
/// member only uses the cluster metadata under /0 (`/0/members/<id>/raftAttributes`,
/// `.../attributes`, `/0/version`) and /1. swetcd writes that subset as etcd lays it out,
/// so that real etcd restores its membership from a swetcd snapshot, and reads the members
/// from etcd's (the snapshot `etcdctl snapshot restore` writes has only raftAttributes).
enum V2Store {
    /// The snapshot data for `members` and `clusterVersion`, with `index` as every node's
    /// created/modified index and the store's CurrentIndex.
    static func json(members: [Member], clusterVersion: String?, index: UInt64) -> Data {
        func node(_ path: String, value: String = "", children: [(String, String)]?) -> String {
            var s = #"{"Path":\#(quote(path)),"CreatedIndex":\#(index),"ModifiedIndex":\#(index),"#
            s += #""ExpireTime":"0001-01-01T00:00:00Z","Value":\#(quote(value)),"Children":"#
            if let children {
                s += "{" + children.map { "\(quote($0.0)):\($0.1)" }.joined(separator: ",") + "}"
            } else {
                s += "null"
            }
            return s + "}"
        }
        var memberNodes: [(String, String)] = []
        for m in members.sorted(by: { $0.id < $1.id }) {
            let id = String(m.id, radix: 16)
            let base = "/0/members/\(id)"
            var raft = #"{"peerURLs":\#(list(m.peerURLs))"#
            if m.isLearner { raft += #","isLearner":true"# }
            raft += "}"
            var kids = [("raftAttributes", node(base + "/raftAttributes", value: raft, children: nil))]
            if !m.name.isEmpty || !m.clientURLs.isEmpty {
                let attrs = MemberAttributes(name: m.name, clientURLs: m.clientURLs).json
                kids.insert(("attributes", node(base + "/attributes", value: attrs, children: nil)), at: 0)
            }
            memberNodes.append((id, node(base, children: kids)))
        }
        var zero = [("members", node("/0/members", children: memberNodes))]
        if let clusterVersion { zero.append(("version", node("/0/version", value: clusterVersion, children: nil))) }
        let root = node("/", children: [("0", node("/0", children: zero)), ("1", node("/1", children: []))])
        return Data(#"{"Root":\#(root),"CurrentIndex":\#(index),"CurrentVersion":2}"#.utf8)
    }

    /// The members (and cluster version) recorded in a v2 store snapshot: raftAttributes
    /// give peer URLs and learner status, attributes (when present) name and client URLs.
    static func members(from data: Data) -> (members: [Member], clusterVersion: String?)? {
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let tree = root["Root"] as? [String: Any] else { return nil }
        func child(_ n: [String: Any]?, _ name: String) -> [String: Any]? {
            (n?["Children"] as? [String: Any])?[name] as? [String: Any]
        }
        let zero = child(tree, "0")
        var out: [Member] = []
        for (key, value) in (child(zero, "members")?["Children"] as? [String: Any]) ?? [:] {
            guard let id = UInt64(key, radix: 16), let m = value as? [String: Any],
                  let raftJSON = child(m, "raftAttributes")?["Value"] as? String,
                  let raft = (try? JSONSerialization.jsonObject(with: Data(raftJSON.utf8))) as? [String: Any]
            else { continue }
            var member = Member(id: id, name: "", peerURLs: raft["peerURLs"] as? [String] ?? [],
                                isLearner: raft["isLearner"] as? Bool ?? false)
            if let attrsJSON = child(m, "attributes")?["Value"] as? String, let attrs = MemberAttributes(json: attrsJSON) {
                member.name = attrs.name
                member.clientURLs = attrs.clientURLs
            }
            out.append(member)
        }
        return (out.sorted { $0.id < $1.id }, child(zero, "version")?["Value"] as? String)
    }

    private static func list(_ xs: [String]) -> String { MemberContext.list(xs) }
    private static func quote(_ s: String) -> String { MemberContext.quote(s) }
}
