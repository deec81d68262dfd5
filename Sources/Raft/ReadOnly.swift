import EtcdProto
import Foundation

/// A ReadIndex request waiting for a quorum to confirm the leader's leadership.
struct ReadIndexStatus {
    var request: Raftpb_Message
    /// The leader's commit index when the request arrived.
    var index: UInt64
    var acks: Set<UInt64> = []
}

/// The leader's queue of ReadIndex requests, keyed by their request context
/// (etcd's `readOnly`). Heartbeats carry the context of the newest request; an ack
/// for it confirms it and every request queued before it.
struct ReadOnlyQueue {
    let option: ReadOnlyOption
    private(set) var pending: [Data: ReadIndexStatus] = [:]
    private(set) var queue: [Data] = []

    init(option: ReadOnlyOption) { self.option = option }

    mutating func addRequest(index: UInt64, _ m: Raftpb_Message) {
        let ctx = m.entries[0].data
        if pending[ctx] != nil { return }
        pending[ctx] = ReadIndexStatus(request: m, index: index)
        queue.append(ctx)
    }

    /// Records a heartbeat ack carrying `context`; returns who acked it so far.
    mutating func recvAck(from id: UInt64, context: Data) -> Set<UInt64>? {
        guard pending[context] != nil else { return nil }
        pending[context]!.acks.insert(id)
        return pending[context]!.acks
    }

    /// Dequeues the request with `context` and every request before it.
    mutating func advance(context: Data) -> [ReadIndexStatus] {
        guard let pos = queue.firstIndex(of: context) else { return [] }
        let done = queue[...pos].map { pending.removeValue(forKey: $0)! }
        queue.removeFirst(pos + 1)
        return done
    }

    var lastPendingRequestContext: Data? { queue.last }
}
