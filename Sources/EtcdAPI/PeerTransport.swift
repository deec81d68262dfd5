import EtcdProto
import EtcdServer
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import SwiftProtobuf
import Synchronization

/// etcd's peer wire, pipeline path: every Raft message is an HTTP/1.1 `POST /raft` of the
/// marshalled raftpb.Message with etcd's headers (X-Server-From, X-Server-Version,
/// X-Min-Cluster-Version, X-Etcd-Cluster-ID, X-Raft-To), answered 204. One sender per peer
/// keeps a connection and pipelines up to `maxInflight` requests on it, in order; what a
/// peer cannot take (not connected, queue full) is dropped and the peer reported
/// unreachable, so a dead peer never holds up the others or the Raft loop.
public final class HTTPPeerTransport: PeerTransport, @unchecked Sendable {
    struct Identity {
        var localID: UInt64 = 0
        var clusterID: UInt64 = 0
    }

    static let serverVersion = EtcdServer.etcdVersion
    static let minClusterVersion = "3.0.0"

    let group: any EventLoopGroup
    let logger: Logger
    private let identity = Mutex(Identity())
    private let senders = Mutex<[UInt64: PeerSender]>([:])
    private let serverRef = Mutex<EtcdServer?>(nil)
    private let active = Mutex<[UInt64: ContinuousClock.Instant]>([:])

    /// A fault hook for partition tests: while set, nothing is sent to peers and everything
    /// they send is refused, as if the network between this member and the others were cut.
    public let isolated = Atomic<Bool>(false)

    public init(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singletonMultiThreadedEventLoopGroup,
                logger: Logger = Logger(label: "rafthttp")) {
        self.group = group
        self.logger = logger
    }

    /// The member the peer listener hands messages to (nil until it starts).
    public var server: EtcdServer? { serverRef.withLock { $0 } }

    public func attach(_ server: EtcdServer) {
        identity.withLock { $0 = Identity(localID: server.memberID, clusterID: server.clusterID) }
        serverRef.withLock { $0 = server }
    }

    public func send(_ messages: [Raftpb_Message]) {
        if isolated.load(ordering: .relaxed) { return }
        let byPeer = senders.withLock { $0 }
        for m in messages {
            guard let sender = byPeer[m.to] else { continue }
            sender.enqueue(m)
        }
    }

    public func setPeers(_ peers: [UInt64: [String]]) {
        let id = identity.withLock { $0 }
        let stale = senders.withLock { senders -> [PeerSender] in
            var stale: [PeerSender] = []
            for (pid, sender) in senders where peers[pid] != sender.urls {
                stale.append(sender)
                senders[pid] = nil
            }
            for (pid, urls) in peers where senders[pid] == nil {
                guard let target = PeerURL(urls.first ?? "") else { continue }
                senders[pid] = PeerSender(
                    peerID: pid, urls: urls, target: target, loop: group.next(), headers: Self.headers(id, to: pid),
                    unreachable: { [weak self] in self?.server?.reportUnreachable(pid) },
                    activity: { [weak self] up in
                        self?.active.withLock { a in
                            if !up { a[pid] = nil } else if a[pid] == nil { a[pid] = .now }
                        }
                    })
            }
            return stale
        }
        for s in stale { s.close() }
    }

    public func activeSince(_ id: UInt64) -> ContinuousClock.Instant? { active.withLock { $0[id] } }

    public func stop() {
        let all = senders.withLock { s -> [PeerSender] in defer { s.removeAll() }; return Array(s.values) }
        for s in all { s.close() }
        serverRef.withLock { $0 = nil }
    }

    static func headers(_ id: Identity, to peer: UInt64) -> HTTPHeaders {
        var h = HTTPHeaders()
        h.add(name: "Content-Type", value: "application/protobuf")
        h.add(name: "X-Server-From", value: String(id.localID, radix: 16))
        h.add(name: "X-Server-Version", value: serverVersion)
        h.add(name: "X-Min-Cluster-Version", value: minClusterVersion)
        h.add(name: "X-Etcd-Cluster-ID", value: String(id.clusterID, radix: 16))
        h.add(name: "X-Raft-To", value: String(peer, radix: 16))
        return h
    }

    // MARK: - Requests that want an answer (membership, lease and promote forwarding)

    public func isSwetcd(_ peerURLs: [String]) async -> Bool? {
        for url in peerURLs {
            guard let target = PeerURL(url),
                  let r = try? await PeerHTTP.request(group: group, target: target, method: .GET, path: "/swetcd/version")
            else { continue }
            return r.status == 200
        }
        return nil
    }

    public func fetchCluster(from peerURLs: [String]) async throws(EtcdError) -> (clusterID: UInt64, members: [Member]) {
        for url in peerURLs {
            guard let target = PeerURL(url),
                  let r = try? await PeerHTTP.request(group: group, target: target, method: .GET, path: "/members"),
                  r.status == 200,
                  let cid = r.headers.first(name: "X-Etcd-Cluster-ID").flatMap({ UInt64($0, radix: 16) }),
                  let members = PeerMembersJSON.decode(r.body)
            else { continue }
            return (cid, members)
        }
        throw EtcdError(.unavailable, "cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs")
    }

    public func forwardLeaseRenew(_ r: Etcdserverpb_LeaseKeepAliveRequest, to peerURLs: [String]) async throws(EtcdError)
        -> Etcdserverpb_LeaseKeepAliveResponse {
        let body = try forwarded(r)
        let bytes = try await post("/leases", body, to: peerURLs)
        do { return try Etcdserverpb_LeaseKeepAliveResponse(serializedBytes: bytes) } catch { throw .leaderChanged }
    }

    public func forwardLeaseTimeToLive(_ r: Etcdserverpb_LeaseTimeToLiveRequest, to peerURLs: [String]) async throws(EtcdError)
        -> Etcdserverpb_LeaseTimeToLiveResponse {
        var internalRequest = Leasepb_LeaseInternalRequest()
        internalRequest.leaseTimeToLiveRequest = r
        let bytes = try await post("/leases/internal", try forwarded(internalRequest), to: peerURLs)
        do {
            return try Leasepb_LeaseInternalResponse(serializedBytes: bytes).leaseTimeToLiveResponse
        } catch {
            throw .leaderChanged
        }
    }

    public func sendSnapshot(_ m: Raftpb_Message, db: [UInt8], done: @escaping @Sendable (Bool) -> Void) {
        if isolated.load(ordering: .relaxed) { return done(false) }
        let id = identity.withLock { $0 }
        guard let urls = senders.withLock({ $0[m.to]?.urls }), let target = PeerURL(urls.first ?? "") else { return done(false) }
        var headers = Self.headers(id, to: m.to)
        headers.replaceOrAdd(name: "Content-Type", value: "application/octet-stream")
        guard let body = SnapshotWire.encode(m, db: db) else { return done(false) }
        let logger = self.logger
        Task {
            do {
                let r = try await PeerHTTP.request(group: group, target: target, method: .POST, path: "/raft/snapshot",
                                                   headers: headers, body: body, timeout: .seconds(120))
                if r.status != 204 { logger.warning("snapshot to \(String(m.to, radix: 16)) refused: HTTP \(r.status)") }
                done(r.status == 204)
            } catch {
                logger.warning("cannot send a snapshot to \(String(m.to, radix: 16)): \(error)")
                done(false)
            }
        }
    }

    public func forwardPromote(_ id: UInt64, to peerURLs: [String]) async throws(EtcdError) {
        _ = try await post("/members/promote/\(id)", [], to: peerURLs)
    }

    private func forwarded(_ m: some SwiftProtobuf.Message) throws(EtcdError) -> [UInt8] {
        do { return try m.serializedBytes() as [UInt8] } catch { throw EtcdError(.internal, "swetcd: \(error)") }
    }

    /// POSTs to the first peer URL that answers; etcd's errors come back by status and text.
    private func post(_ path: String, _ body: [UInt8], to peerURLs: [String]) async throws(EtcdError) -> [UInt8] {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/protobuf")
        for url in peerURLs {
            guard let target = PeerURL(url),
                  let r = try? await PeerHTTP.request(group: group, target: target, method: .POST, path: path,
                                                      headers: headers, body: body)
            else { continue }
            if r.status == 200 { return r.body }
            throw PeerErrors.decode(status: r.status, body: r.body)
        }
        throw .leaderChanged
    }
}

/// The wire form of an EtcdError between members: the status etcd's peer handlers use, and
/// the message as text.
enum PeerErrors {
    static func status(_ e: EtcdError) -> HTTPResponseStatus {
        switch e {
        case .leaseNotFound, .memberNotFound: return .notFound
        case .notLeader: return .preconditionFailed
        default: return .internalServerError
        }
    }

    static func decode(status: Int, body: [UInt8]) -> EtcdError {
        let text = String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let known: [EtcdError] = [.leaseNotFound, .memberNotFound, .notLeader, .memberNotLearner, .learnerNotReady,
                                  .notEnoughStartedMembers, .noLeader, .timeout, .leaderChanged]
        return known.first { $0.message == text } ?? EtcdError(.unavailable, text.isEmpty ? "etcdserver: leader changed" : text)
    }
}

/// `http://host:port` of a peer URL.
struct PeerURL: Equatable {
    var host: String
    var port: Int

    init?(_ s: String) {
        guard let u = URL(string: s), u.scheme == "http", let host = u.host else { return nil }
        self.host = host == "localhost" ? "127.0.0.1" : host
        self.port = u.port ?? 80
    }
}

/// One peer's pipeline: a connection on one event loop, messages POSTed in order with up to
/// `maxInflight` unanswered, a bounded queue, reconnects paced by `retryAfter`.
final class PeerSender: @unchecked Sendable {
    static let maxInflight = 64
    static let maxQueued = 4096
    static let retryAfter = TimeAmount.milliseconds(100)

    let peerID: UInt64
    let urls: [String]
    private let target: PeerURL
    private let loop: any EventLoop
    private let headers: HTTPHeaders
    private let unreachable: @Sendable () -> Void
    /// Told true on every answered message, false when the connection is lost or refused.
    private let activity: @Sendable (Bool) -> Void
    // Everything below lives on `loop`.
    private var channel: (any Channel)?
    private var connecting = false
    private var closed = false
    private var queue: [Raftpb_Message] = []
    private var inflight = 0
    private var lastFailure: NIODeadline = .distantPast
    /// What is in flight, oldest first: true for a probe.
    private var inflightKinds: [Bool] = []
    private var lastAnswer: NIODeadline = .distantPast
    private var prober: RepeatedTask?
    static let probeInterval = TimeAmount.milliseconds(500)

    init(peerID: UInt64, urls: [String], target: PeerURL, loop: any EventLoop, headers: HTTPHeaders,
         unreachable: @escaping @Sendable () -> Void, activity: @escaping @Sendable (Bool) -> Void) {
        self.activity = activity
        self.peerID = peerID
        self.urls = urls
        self.target = target
        self.loop = loop
        self.headers = headers
        self.unreachable = unreachable
        // A peer we have nothing to say to is still probed (etcd keeps streams to every peer),
        // so that "connected since" stays true for the reconfiguration checks.
        prober = loop.scheduleRepeatedTask(initialDelay: Self.probeInterval, delay: Self.probeInterval) { [weak self] _ in
            self?.probe()
        }
    }

    private func probe() {
        guard !closed, inflight == 0, queue.isEmpty, NIODeadline.now() - lastAnswer >= Self.probeInterval else { return }
        guard let channel else {
            if !connecting && NIODeadline.now() >= lastFailure + Self.retryAfter { connect() }
            return
        }
        var h = headers
        h.add(name: "Host", value: "\(target.host):\(target.port)")
        h.replaceOrAdd(name: "Content-Length", value: "0")
        channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/raft/probing", headers: h)),
                      promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        inflight += 1
        inflightKinds.append(true)
    }

    func enqueue(_ m: Raftpb_Message) {
        loop.execute { [self] in
            guard !closed else { return }
            if queue.count >= Self.maxQueued {
                unreachable()
                return
            }
            queue.append(m)
            pump()
        }
    }

    func close() {
        loop.execute { [self] in
            closed = true
            prober?.cancel()
            queue.removeAll()
            channel?.close(promise: nil)
            channel = nil
        }
    }

    private func pump() {
        guard !closed else { return }
        guard let channel else {
            connect()
            return
        }
        var wrote = false
        while inflight < Self.maxInflight, !queue.isEmpty {
            let m = queue.removeFirst()
            guard let body = try? m.serializedBytes() as [UInt8] else { continue }
            var h = headers
            h.add(name: "Host", value: "\(target.host):\(target.port)")
            h.add(name: "Content-Length", value: String(body.count))
            channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: "/raft", headers: h)),
                          promise: nil)
            channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil)
            channel.write(HTTPClientRequestPart.end(nil), promise: nil)
            inflight += 1
            inflightKinds.append(false)
            wrote = true
        }
        if wrote { channel.flush() }
    }

    private func connect() {
        guard !connecting else { return }
        if NIODeadline.now() < lastFailure + Self.retryAfter {
            dropQueued()
            return
        }
        connecting = true
        ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(1))
            .channelInitializer { [self] ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHTTPClientHandlers()
                    try ch.pipeline.syncOperations.addHandler(PipelineResponses(sender: self))
                }
            }
            .connect(host: target.host, port: target.port)
            .whenComplete { [self] result in
                connecting = false
                switch result {
                case .success(let ch):
                    if closed {
                        ch.close(promise: nil)
                        return
                    }
                    channel = ch
                    inflight = 0
                    inflightKinds = []
                    pump()
                case .failure:
                    activity(false)
                    lastFailure = .now()
                    dropQueued()
                }
            }
    }

    private func dropQueued() {
        guard !queue.isEmpty else { return }
        queue.removeAll()
        unreachable()
    }

    // Called by PipelineResponses on the loop.
    func answered(status: HTTPResponseStatus) {
        inflight = max(0, inflight - 1)
        let wasProbe = inflightKinds.isEmpty ? false : inflightKinds.removeFirst()
        lastAnswer = .now()
        if wasProbe {
            activity(status == .ok)
        } else if status != .noContent {
            activity(false)
            unreachable()
        } else {
            activity(true)
        }
        pump()
    }

    func disconnected(_ ch: any Channel) {
        guard channel === ch else { return }
        activity(false)
        channel = nil
        lastFailure = .now()
        if inflight > 0 { unreachable() }
        inflight = 0
        inflightKinds = []
        dropQueued()
    }
}

/// Counts the answers to a sender's pipelined POSTs.
final class PipelineResponses: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    private let sender: PeerSender
    private var status: HTTPResponseStatus = .ok

    init(sender: PeerSender) { self.sender = sender }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): status = h.status
        case .body: break
        case .end: sender.answered(status: status)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        sender.disconnected(context.channel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// One request on its own connection, with a deadline (forwarding and cluster discovery).
enum PeerHTTP {
    struct Reply {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
    }

    static func request(group: any EventLoopGroup, target: PeerURL, method: HTTPMethod, path: String,
                        headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [],
                        timeout: TimeAmount = .seconds(5)) async throws -> Reply {
        let loop = group.next()
        let promise = loop.makePromise(of: Reply.self)
        let channel = try await ClientBootstrap(group: loop)
            .connectTimeout(.seconds(1))
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHTTPClientHandlers()
                    try ch.pipeline.syncOperations.addHandler(OneReply(promise: promise))
                }
            }
            .connect(host: target.host, port: target.port).get()
        var h = headers
        h.add(name: "Host", value: "\(target.host):\(target.port)")
        h.add(name: "Content-Length", value: String(body.count))
        h.add(name: "Connection", value: "close")
        channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: h)), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let timer = loop.scheduleTask(in: timeout) {
            promise.fail(ChannelError.connectTimeout(timeout))
            channel.close(promise: nil)
        }
        defer {
            timer.cancel()
            channel.close(promise: nil)
        }
        return try await promise.futureResult.get()
    }

    final class OneReply: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPClientResponsePart
        let promise: EventLoopPromise<Reply>
        var reply = Reply(status: 0, headers: HTTPHeaders(), body: [])

        init(promise: EventLoopPromise<Reply>) { self.promise = promise }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h):
                reply.status = Int(h.status.code)
                reply.headers = h.headers
            case .body(let b):
                reply.body += b.readableBytesView
            case .end:
                promise.succeed(reply)
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(ChannelError.ioOnClosedChannel)
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            promise.fail(error)
            context.close(promise: nil)
        }
    }
}

/// etcd's peer `/members` answer: `[{"id":...,"peerURLs":[...],"name":...,"clientURLs":[...]}]`
/// (isLearner when set).
enum PeerMembersJSON {
    static func encode(_ members: [Member]) -> String {
        "[" + members.map { m in
            var out = #"{"id":\#(m.id),"peerURLs":\#(JSONText.list(m.peerURLs))"#
            if m.isLearner { out += #","isLearner":true"# }
            out += #","name":\#(JSONText.quote(m.name)),"clientURLs":\#(JSONText.list(m.clientURLs))}"#
            return out
        }.joined(separator: ",") + "]"
    }

    static func decode(_ body: [UInt8]) -> [Member]? {
        guard let list = try? JSONSerialization.jsonObject(with: Data(body)) as? [[String: Any]] else { return nil }
        return list.map { o in
            Member(id: (o["id"] as? NSNumber)?.uint64Value ?? 0, name: o["name"] as? String ?? "",
                   peerURLs: o["peerURLs"] as? [String] ?? [], clientURLs: o["clientURLs"] as? [String] ?? [],
                   isLearner: o["isLearner"] as? Bool ?? false)
        }
    }
}

/// etcd's merged snapshot on the wire: the MsgSnap with an 8-byte big-endian length in front
/// (its messageEncoder), then the database file.
enum SnapshotWire {
    static func encode(_ m: Raftpb_Message, db: [UInt8]) -> [UInt8]? {
        guard let msg = try? m.serializedBytes() as [UInt8] else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(8 + msg.count + db.count)
        withUnsafeBytes(of: UInt64(msg.count).bigEndian) { out += $0 }
        out += msg
        out += db
        return out
    }

    static func decode(_ body: [UInt8]) -> (Raftpb_Message, [UInt8])? {
        guard body.count >= 8 else { return nil }
        let n = body.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard n <= UInt64(body.count - 8) else { return nil }
        let end = 8 + Int(n)
        guard let m = try? Raftpb_Message(serializedBytes: Array(body[8..<end])) else { return nil }
        return (m, Array(body[end...]))
    }
}
