import Crypto
import Foundation

/// A member of the cluster, as etcd's `membership.Member`.
public struct Member: Sendable, Equatable {
    public var id: UInt64
    public var name: String
    public var peerURLs: [String]
    public var clientURLs: [String]
    public var isLearner: Bool

    public init(id: UInt64, name: String, peerURLs: [String], clientURLs: [String] = [], isLearner: Bool = false) {
        self.id = id
        self.name = name
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
        self.isLearner = isLearner
    }
}

/// Member and cluster IDs exactly as etcd derives them, so that the same flags give
/// the same IDs as etcd.
public enum MemberIDs {
    /// etcd's `NewMember`: the first 8 bytes (big-endian) of
    /// sha1(sorted peer URLs joined with "" + cluster token [+ unix seconds when adding a member]).
    public static func memberID(peerURLs: [String], clusterToken: String, addedAt unixSeconds: Int64? = nil) -> UInt64 {
        var bytes = Array(peerURLs.sorted().joined().utf8)
        bytes += Array(clusterToken.utf8)
        if let unixSeconds { bytes += Array(String(unixSeconds).utf8) }
        return firstUInt64(of: Insecure.SHA1.hash(data: bytes))
    }

    /// etcd's `RaftCluster.genID`: the first 8 bytes of sha1 over the sorted member IDs, each big-endian.
    public static func clusterID(memberIDs: [UInt64]) -> UInt64 {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(memberIDs.count * 8)
        for id in memberIDs.sorted() {
            withUnsafeBytes(of: id.bigEndian) { bytes += $0 }
        }
        return firstUInt64(of: Insecure.SHA1.hash(data: bytes))
    }

    private static func firstUInt64(of digest: Insecure.SHA1.Digest) -> UInt64 {
        digest.withUnsafeBytes { raw in
            raw.prefix(8).reduce(0) { ($0 << 8) | UInt64($1) }
        }
    }
}

/// The bootstrap cluster (`--initial-cluster`, parsed by EtcdConfig): each member's name
/// and peer URLs.
public struct InitialCluster: Sendable, Equatable {
    public var peerURLsByName: [String: [String]]

    public init(peerURLsByName: [String: [String]]) {
        self.peerURLsByName = peerURLsByName
    }

    /// The bootstrap members with their IDs, sorted by ID as etcd lists them.
    public func members(clusterToken: String) -> [Member] {
        peerURLsByName.map { name, urls in
            let sorted = urls.sorted()
            return Member(
                id: MemberIDs.memberID(peerURLs: sorted, clusterToken: clusterToken),
                name: name, peerURLs: sorted)
        }.sorted { $0.id < $1.id }
    }
}

/// A member's published attributes, in etcd's JSON form (`{"name":...,"clientURLs":[...]}`).
struct MemberAttributes: Codable, Equatable {
    var name: String
    var clientURLs: [String]

    init(name: String, clientURLs: [String]) {
        self.name = name
        self.clientURLs = clientURLs
    }

    init?(json: String) {
        guard let v = try? JSONDecoder().decode(Self.self, from: Data(json.utf8)) else { return nil }
        self = v
    }

    var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }
}

/// The context of a ConfChange that adds a member: etcd's JSON of `membership.Member`
/// (`{"id":...,"peerURLs":[...],"isLearner":true,"name":"...","clientURLs":[...]}`,
/// empty fields omitted), written byte for byte as etcd writes it.
struct MemberContext: Equatable {
    var id: UInt64
    var peerURLs: [String]
    var isLearner: Bool
    var name: String
    var clientURLs: [String]

    init(member m: Member) {
        id = m.id
        peerURLs = m.peerURLs
        isLearner = m.isLearner
        name = m.name
        clientURLs = m.clientURLs
    }

    init?(json: Data) {
        guard let obj = try? JSONSerialization.jsonObject(with: json) as? [String: Any] else { return nil }
        id = (obj["id"] as? NSNumber)?.uint64Value ?? 0
        peerURLs = obj["peerURLs"] as? [String] ?? []
        isLearner = obj["isLearner"] as? Bool ?? false
        name = obj["name"] as? String ?? ""
        clientURLs = obj["clientURLs"] as? [String] ?? []
    }

    var json: Data {
        var out = #"{"id":\#(id),"peerURLs":\#(Self.list(peerURLs))"#
        if isLearner { out += #","isLearner":true"# }
        if !name.isEmpty { out += #","name":\#(Self.quote(name))"# }
        if !clientURLs.isEmpty { out += #","clientURLs":\#(Self.list(clientURLs))"# }
        return Data((out + "}").utf8)
    }

    static func list(_ xs: [String]) -> String { JSONText.list(xs) }
    static func quote(_ s: String) -> String { JSONText.quote(s) }
}

/// JSON string literals as Go's encoding/json writes them (slashes unescaped), for the JSON
/// swetcd writes by hand: member records, the v2 store, gateway errors.
public enum JSONText {
    public static func quote(_ s: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])) ?? Data("[\"\"]".utf8)
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }

    public static func list(_ xs: [String]) -> String { "[" + xs.map(quote).joined(separator: ",") + "]" }
}
