import EtcdProto
import Foundation
import Testing

@testable import EtcdServer

@Suite struct MemberIDTests {
    // Real etcd 3.4.23 with no flags logs "starting member 8e9e05c52164694d in cluster cdf818194e3a8c32".
    @Test func defaultMemberAndClusterIDsMatchEtcd() throws {
        let cluster = InitialCluster(peerURLsByName: ["default": ["http://localhost:2380"]])
        let members = cluster.members(clusterToken: "etcd-cluster")
        #expect(members.count == 1)
        #expect(hex(members[0].id) == "8e9e05c52164694d")
        #expect(hex(MemberIDs.clusterID(memberIDs: members.map(\.id))) == "cdf818194e3a8c32")
    }

    @Test func peerURLsAreSortedBeforeHashing() {
        let a = MemberIDs.memberID(peerURLs: ["http://b:2380", "http://a:2380"], clusterToken: "t")
        let b = MemberIDs.memberID(peerURLs: ["http://a:2380", "http://b:2380"], clusterToken: "t")
        #expect(a == b)
        #expect(a != MemberIDs.memberID(peerURLs: ["http://a:2380", "http://b:2380"], clusterToken: "u"))
    }

    @Test func membersAreListedByIDWithSortedURLs() {
        let c = InitialCluster(peerURLsByName: ["a": ["http://3:2380", "http://1:2380"], "b": ["http://2:2380"]])
        let ms = c.members(clusterToken: "etcd-cluster")
        #expect(ms.map(\.id) == ms.map(\.id).sorted())
        #expect(ms.first { $0.name == "a" }?.peerURLs == ["http://1:2380", "http://3:2380"])
    }
}

@Suite struct RequestPathTests {
    func makeServer(maxRequestBytes: Int = 1_572_864) throws -> EtcdServer {
        try EtcdServer(config: ServerConfig(
            initialCluster: InitialCluster(peerURLsByName: ["default": ["http://localhost:2380"]]),
            advertiseClientURLs: ["http://localhost:2379"], maxRequestBytes: maxRequestBytes))
    }

    @Test func freshMemberLooksLikeEtcdAfterBootstrap() throws {
        let s = try makeServer()
        #expect(s.raftTerm == 2)
        #expect(s.currentRevision == 1)
        let st = s.status()
        #expect(st.leader == s.memberID)
        #expect(st.raftIndex == 4)  // conf change, leader's empty entry, cluster version, attributes
        #expect(st.raftAppliedIndex == st.raftIndex)
        #expect(s.members.map(\.clientURLs) == [["http://localhost:2379"]])
        #expect(s.members.map(\.name) == ["default"])
    }

    @Test func writesAdvanceRevisionAndRaftIndexTogether() async throws {
        let s = try makeServer()
        var put = Etcdserverpb_PutRequest()
        put.key = Data("foo".utf8)
        put.value = Data("bar".utf8)
        let r1 = try await s.put(put)
        #expect(r1.header.revision == 2)
        let r2 = try await s.put(put)
        #expect(r2.header.revision == 3)
        #expect(s.status().raftIndex == 6)
        var get = Etcdserverpb_RangeRequest()
        get.key = Data("foo".utf8)
        let g = try s.range(get)
        #expect(g.kvs.first?.version == 2)
        var h = Etcdserverpb_ResponseHeader()
        s.fill(&h)
        #expect(h.clusterID == s.clusterID && h.memberID == s.memberID && h.raftTerm == 2 && h.revision == 3)
    }

    @Test func requestOverMaxRequestBytesIsRefusedBeforeProposing() async throws {
        let s = try makeServer(maxRequestBytes: 64)
        var put = Etcdserverpb_PutRequest()
        put.key = Data("k".utf8)
        put.value = Data(repeating: 7, count: 100)
        await #expect(throws: EtcdError.requestTooLarge) { try await s.put(put) }
        #expect(s.status().raftIndex == 4)
        #expect(s.currentRevision == 1)
    }

    @Test func applyErrorsReachTheHandler() async throws {
        let s = try makeServer()
        var put = Etcdserverpb_PutRequest()
        put.key = Data("k".utf8)
        put.ignoreValue = true
        await #expect(throws: EtcdError.keyNotFound) { try await s.put(put) }
        var c = Etcdserverpb_CompactionRequest()
        c.revision = 5
        await #expect(throws: EtcdError.futureRevision) { try await s.compact(c) }
    }

    @Test func concurrentProposersEachGetTheirOwnResult() async throws {
        let s = try makeServer()
        let revisions = try await withThrowingTaskGroup(of: Int64.self) { group in
            for i in 0..<50 {
                group.addTask {
                    var put = Etcdserverpb_PutRequest()
                    put.key = Data("k\(i)".utf8)
                    return try await s.put(put).header.revision
                }
            }
            return try await group.reduce(into: [Int64]()) { $0.append($1) }
        }
        #expect(Set(revisions) == Set(2...51))
    }

    @Test func unknownLocalNameIsRejected() throws {
        #expect(throws: EtcdError.self) {
            try EtcdServer(config: ServerConfig(
                name: "other", initialCluster: InitialCluster(peerURLsByName: ["default": ["http://localhost:2380"]]),
                advertiseClientURLs: []))
        }
    }
}
