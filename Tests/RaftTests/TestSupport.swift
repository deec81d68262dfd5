import EtcdProto
import Foundation
@testable import Raft

// MARK: - Building blocks

func entry(_ term: UInt64, _ index: UInt64, _ data: String? = nil) -> Raftpb_Entry {
    var e = Raftpb_Entry()
    e.term = term
    e.index = index
    e.type = .entryNormal
    if let data { e.data = Data(data.utf8) }
    return e
}

/// Entries with the given terms at indexes 1, 2, ...
func entries(terms: [UInt64], from first: UInt64 = 1) -> [Raftpb_Entry] {
    terms.enumerated().map { entry($0.element, first + UInt64($0.offset)) }
}

func msg(_ type: Raftpb_MessageType, from: UInt64 = 0, to: UInt64 = 0, term: UInt64 = 0,
         logTerm: UInt64 = 0, index: UInt64 = 0, commit: UInt64 = 0,
         entries: [Raftpb_Entry] = [], reject: Bool = false, rejectHint: UInt64 = 0,
         context: Data? = nil) -> Raftpb_Message {
    var m = Raftpb_Message()
    m.type = type
    m.from = from
    m.to = to
    m.term = term
    m.logTerm = logTerm
    m.index = index
    m.commit = commit
    m.entries = entries
    m.reject = reject
    m.rejectHint = rejectHint
    if let context { m.context = context }
    return m
}

func confState(voters: [UInt64], learners: [UInt64] = []) -> Raftpb_ConfState {
    var cs = Raftpb_ConfState()
    cs.voters = voters
    cs.learners = learners
    return cs
}

func confChange(_ type: Raftpb_ConfChangeType, _ node: UInt64) -> Raftpb_ConfChange {
    var cc = Raftpb_ConfChange()
    cc.type = type
    cc.nodeID = node
    return cc
}

/// A storage for a fresh cluster whose configuration is given up front (as etcd's
/// tests do), optionally holding some entries already.
func newStorage(voters: [UInt64], learners: [UInt64] = [], entries ents: [Raftpb_Entry] = []) -> MemoryStorage {
    let s = MemoryStorage()
    s.currentSnapshot.metadata.confState = confState(voters: voters, learners: learners)
    s.append(ents)
    return s
}

func testConfig(_ id: UInt64, storage: MemoryStorage, election: Int = 10, heartbeat: Int = 1,
                seed: UInt64 = 0) -> RaftConfig {
    var c = RaftConfig(id: id, electionTick: election, heartbeatTick: heartbeat, storage: storage,
                       randomSeed: seed == 0 ? id : seed)
    c.maxSizePerMsg = raftNoLimit
    c.maxInflightMsgs = 256
    return c
}

/// A bare state machine (for paper tests that look at one node's reactions).
func newRaft(_ id: UInt64, peers: [UInt64], learners: [UInt64] = [], election: Int = 10, heartbeat: Int = 1,
             storage: MemoryStorage? = nil, configure: (inout RaftConfig) -> Void = { _ in }) -> RaftCore {
    let s = storage ?? newStorage(voters: peers, learners: learners)
    var c = testConfig(id, storage: s, election: election, heartbeat: heartbeat)
    configure(&c)
    return try! RaftCore(config: c)
}

extension RaftCore {
    /// Takes the pending outgoing messages.
    func readMessages() -> [Raftpb_Message] {
        let m = msgs.map(\.message)
        msgs = []
        return m
    }

    /// Persists the unstable log into `storage` the way a caller would and tells the
    /// state machine (so that a leader counts its own entries).
    func persist() {
        let s = log.storage as! MemoryStorage
        if let snap = log.unstable.snapshot { try! s.applySnapshot(snap) }
        let ents = log.unstable.entries
        s.append(ents)
        advance(appliedIndex: 0, committedEntries: [], lastEntry: ents.last.map { ($0.index, $0.term) },
                snapshotIndex: log.unstable.snapshot?.metadata.index)
    }

    func stepOrFail(_ m: Raftpb_Message) { try? step(m) }

    /// Ticks until the randomized election timeout fires.
    func tickUntilElection() {
        for _ in 0..<(2 * electionTimeout) {
            if role == .candidate || role == .preCandidate { return }
            tick()
        }
    }

    var entryTerms: [UInt64] { log.allEntries().map(\.term) }
}

// MARK: - A network of RawNodes driven through Ready

/// One member: a RawNode, its "disk" (MemoryStorage) and its applied entries.
final class TestNode {
    let id: UInt64
    let storage: MemoryStorage
    var node: RawNode
    var applied: [Raftpb_Entry] = []
    var readStates: [ReadState] = []
    var confState: Raftpb_ConfState

    init(id: UInt64, storage: MemoryStorage, configure: (inout RaftConfig) -> Void = { _ in }) {
        self.id = id
        self.storage = storage
        var c = testConfig(id, storage: storage)
        configure(&c)
        node = try! RawNode(config: c)
        confState = storage.currentSnapshot.metadata.confState
    }

    /// Runs one Ready cycle; returns the messages to deliver.
    func processReady() -> [Raftpb_Message] {
        guard node.hasReady else { return [] }
        let rd = node.ready()
        if let snap = rd.snapshot {
            try! storage.applySnapshot(snap)
            confState = snap.metadata.confState
        }
        storage.append(rd.entries)
        if let hs = rd.hardState { storage.setHardState(hs) }
        for e in rd.committedEntries {
            if e.type == .entryConfChange {
                let cc = try! Raftpb_ConfChange(serializedBytes: e.data)
                confState = node.applyConfChange(cc)
            }
            applied.append(e)
        }
        readStates += rd.readStates
        node.advance(rd)
        return rd.allMessages
    }

    var status: RaftStatus { node.status }
    var core: RaftCore { node.core }
    var appliedData: [String] { applied.filter { !$0.data.isEmpty && $0.type == .entryNormal }.map { String(decoding: $0.data, as: UTF8.self) } }
}

/// Nodes plus an in-order network with optional drops (etcd's test `network`).
final class Cluster {
    var nodes: [UInt64: TestNode] = [:]
    /// Directed links that drop everything.
    var cut: Set<[UInt64]> = []
    /// Message types that are dropped everywhere.
    var droppedTypes: Set<Raftpb_MessageType> = []
    var delivered: [Raftpb_Message] = []

    init(voters: [UInt64], learners: [UInt64] = [], configure: (inout RaftConfig) -> Void = { _ in }) {
        for id in voters + learners {
            nodes[id] = TestNode(id: id, storage: newStorage(voters: voters, learners: learners), configure: configure)
        }
    }

    /// A cluster started the way etcd starts one: empty storage, `bootstrap(peers:)`, so
    /// the log holds the initial configuration as ConfChange entries.
    init(bootstrapping voters: [UInt64], configure: (inout RaftConfig) -> Void = { _ in }) {
        for id in voters {
            let n = TestNode(id: id, storage: MemoryStorage(), configure: configure)
            try! n.node.bootstrap(peers: voters.map { RaftPeer(id: $0) })
            nodes[id] = n
        }
        stabilize()
    }

    /// Adds a node that knows nothing yet (it learns the configuration from the log).
    func addEmptyNode(_ id: UInt64, configure: (inout RaftConfig) -> Void = { _ in }) {
        nodes[id] = TestNode(id: id, storage: MemoryStorage(), configure: configure)
    }

    func proposeConfChange(_ id: UInt64, _ type: Raftpb_ConfChangeType, _ node: UInt64) {
        try? nodes[id]!.node.proposeConfChange(confChange(type, node))
        stabilize()
    }

    /// Elects `id` by ticking it until it campaigns (with everything else delivered).
    func elect(_ id: UInt64) {
        campaign(id)
        precondition(nodes[id]!.status.role == .leader, "\(id) did not win")
    }

    subscript(id: UInt64) -> TestNode { nodes[id]! }

    func isolate(_ id: UInt64) {
        for other in nodes.keys where other != id {
            cut.insert([id, other])
            cut.insert([other, id])
        }
    }

    func heal() {
        cut = []
        droppedTypes = []
    }

    /// Processes Readys and delivers messages until nothing moves.
    func stabilize(maxRounds: Int = 10_000) {
        for _ in 0..<maxRounds {
            var msgs: [Raftpb_Message] = []
            for id in nodes.keys.sorted() { msgs += nodes[id]!.processReady() }
            if msgs.isEmpty && !nodes.values.contains(where: { $0.node.hasReady }) { return }
            for m in msgs { deliver(m) }
        }
        fatalError("cluster did not stabilize")
    }

    func deliver(_ m: Raftpb_Message) {
        if cut.contains([m.from, m.to]) || droppedTypes.contains(m.type) { return }
        guard let n = nodes[m.to] else { return }
        delivered.append(m)
        try? n.node.step(m)
    }

    func campaign(_ id: UInt64) {
        try? nodes[id]!.node.campaign()
        stabilize()
    }

    @discardableResult
    func propose(_ id: UInt64, _ data: String) -> Bool {
        defer { stabilize() }
        do { try nodes[id]!.node.propose(Data(data.utf8)); return true } catch { return false }
    }

    func tick(_ id: UInt64, _ n: Int = 1) {
        for _ in 0..<n {
            nodes[id]!.node.tick()
            stabilize()
        }
    }

    func tickAll(_ n: Int = 1) {
        for _ in 0..<n {
            for id in nodes.keys.sorted() { nodes[id]!.node.tick() }
            stabilize()
        }
    }

    var leaders: [UInt64] { nodes.values.filter { $0.status.role == .leader }.map(\.id).sorted() }
}

/// A field-by-field rendering for comparing messages (proto2 presence bits aside).
func describe(_ m: Raftpb_Message) -> String {
    let ents = m.entries.map { "\($0.term)/\($0.index)\($0.data.isEmpty ? "" : ":" + String(decoding: $0.data, as: UTF8.self))" }
    return "\(m.type) \(m.from)->\(m.to) term=\(m.term) logTerm=\(m.logTerm) index=\(m.index) commit=\(m.commit) reject=\(m.reject) hint=\(m.rejectHint) ents=\(ents)"
}

func describe(_ ms: [Raftpb_Message]) -> [String] { ms.map(describe).sorted() }

func describe(_ e: Raftpb_Entry) -> String {
    "\(e.type) \(e.term)/\(e.index)" + (e.data.isEmpty ? "" : ":" + String(decoding: e.data, as: UTF8.self))
}

func describe(_ es: [Raftpb_Entry]) -> [String] { es.map(describe) }

/// The follower's answer to a MsgApp that it accepted.
func acceptAndReply(_ m: Raftpb_Message) -> Raftpb_Message {
    precondition(m.type == .msgApp)
    return msg(.msgAppResp, from: m.to, to: m.from, term: m.term, index: m.index + UInt64(m.entries.count))
}

/// Makes a fresh leader commit its empty entry (all followers ack), persisted and applied.
func commitNoopEntry(_ r: RaftCore) {
    precondition(r.role == .leader)
    r.persist()
    r.bcastAppend()
    for m in r.readMessages() where m.type == .msgApp { r.stepOrFail(acceptAndReply(m)) }
    _ = r.readMessages()
    r.persist()
    r.log.appliedTo(r.log.committed)
}

func ids(_ n: Int) -> [UInt64] { (1...UInt64(n)).map { $0 } }
