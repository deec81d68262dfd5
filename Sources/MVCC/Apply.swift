import Foundation
import SwiftProtobuf
import EtcdProto

// The request-level semantics of etcd's v3 applier (etcdserver/apply.go,
// applierV3backend) on top of the store's transaction views.

extension KVStore {
    // MARK: Range

    /// etcd: applierV3backend.Range.
    func applyRange(_ r: Etcdserverpb_RangeRequest, _ view: TxnView) throws(MVCCError) -> Etcdserverpb_RangeResponse {
        var limit = r.limit
        if r.sortOrder != .none || r.minModRevision != 0 || r.maxModRevision != 0
            || r.minCreateRevision != 0 || r.maxCreateRevision != 0 {
            // Fetch everything; sort and truncate afterwards.
            limit = 0
        }
        if limit > 0 {
            limit = limit &+ 1  // one extra for `more`
        }
        var rr = try rangeKeys(r.key, RangeEnd(requestRangeEnd: r.rangeEnd), limit: limit,
                               rev: r.revision, countOnly: r.countOnly, curRev: view.readRev)

        // `count` stays the number of keys in the range before these filters (etcd 3.4).
        if r.maxModRevision != 0 { rr.kvs.removeAll { $0.modRevision > r.maxModRevision } }
        if r.minModRevision != 0 { rr.kvs.removeAll { $0.modRevision < r.minModRevision } }
        if r.maxCreateRevision != 0 { rr.kvs.removeAll { $0.createRevision > r.maxCreateRevision } }
        if r.minCreateRevision != 0 { rr.kvs.removeAll { $0.createRevision < r.minCreateRevision } }

        var sortOrder = r.sortOrder
        if r.sortTarget != .key && sortOrder == .none {
            // Results come sorted by key ascending already; any other target means ascending.
            sortOrder = .ascend
        }
        if sortOrder != .none, let lessThan = KVStore.sortLess(r.sortTarget) {
            // etcd sorts with Go's (unstable) sort.Sort even for ASCEND by key, which is a
            // no-op on key-ordered input; ties of other targets come out in Go's order.
            switch sortOrder {
            case .ascend: GoSort.sort(&rr.kvs, by: lessThan)
            case .descend: GoSort.sort(&rr.kvs) { lessThan($1, $0) }  // sort.Reverse
            default: break
            }
        }

        var resp = Etcdserverpb_RangeResponse()
        if r.limit > 0 && rr.kvs.count > Int(r.limit) {
            rr.kvs.removeSubrange(Int(r.limit)...)
            resp.more = true
        }
        resp.header = header(rr.rev)
        resp.count = Int64(rr.count)
        if r.keysOnly {
            for i in rr.kvs.indices { rr.kvs[i].value = Data() }
        }
        resp.kvs = rr.kvs
        return resp
    }

    /// etcd's kvSortBy* Less functions (Go compares numbers as `a-b < 0`).
    /// nil for an unknown target (etcd would crash on a nil sorter; swetcd leaves the
    /// key order).
    static func sortLess(_ target: Etcdserverpb_RangeRequest.SortTarget) -> ((Mvccpb_KeyValue, Mvccpb_KeyValue) -> Bool)? {
        switch target {
        case .key: return { compareBytes($0.key, $1.key) < 0 }
        case .version: return { ($0.version &- $1.version) < 0 }
        case .create: return { ($0.createRevision &- $1.createRevision) < 0 }
        case .mod: return { ($0.modRevision &- $1.modRevision) < 0 }
        case .value: return { compareBytes($0.value, $1.value) < 0 }
        case .UNRECOGNIZED: return nil
        }
    }

    // MARK: Put

    /// etcd: applierV3backend.Put with a txn (the lease check of a plain put is done by
    /// the caller, `put`). Throws `.keyNotFound` before changing anything.
    func applyPut(_ p: Etcdserverpb_PutRequest, _ view: inout TxnView) throws(MVCCError) -> Etcdserverpb_PutResponse {
        var value = p.value
        var sealed = Sealed.isMarked(p)
        var lease = p.lease
        var prev: Mvccpb_KeyValue?  // as stored
        if p.ignoreValue || p.ignoreLease || p.prevKv {
            prev = liveKVs(p.key, .single, atRev: view.readRev, stored: true).first
        }
        if p.ignoreValue || p.ignoreLease {
            guard prev != nil else { throw .keyNotFound }
        }
        if p.ignoreValue, let prev {
            value = prev.value
            sealed = Sealed.isMarked(prev)
        }
        if p.ignoreLease, let prev { lease = prev.lease }

        var resp = Etcdserverpb_PutResponse()
        if p.prevKv, let prev { resp.prevKv = try log.opened(prev) }
        txnPut(p.key, value, lease: lease, sealed: sealed, &view)
        resp.header = header(view.beginRev + 1)
        return resp
    }

    // MARK: DeleteRange

    /// etcd: applierV3backend.DeleteRange.
    func applyDeleteRange(_ dr: Etcdserverpb_DeleteRangeRequest, _ view: inout TxnView) -> Etcdserverpb_DeleteRangeResponse {
        let end = RangeEnd(requestRangeEnd: dr.rangeEnd)
        var resp = Etcdserverpb_DeleteRangeResponse()
        if dr.prevKv {
            resp.prevKvs = liveKVs(dr.key, end, atRev: view.readRev)
        }
        resp.deleted = txnDeleteRange(dr.key, end, &view)
        // beginRev + 1 if this or an earlier op of the txn changed something.
        resp.header = header(view.readRev)
        return resp
    }

    // MARK: Txn

    /// The branch each txn (the outer one, then its nested ones) takes, decided up
    /// front on the state before the txn. etcd: compareToPath's []bool, as a tree.
    struct TxnPath {
        var succeeded: Bool
        /// One per request_txn op of the taken branch, in order.
        var nested: [TxnPath]
    }

    /// etcd: applierV3backend.Txn.
    func applyTxn(_ rt: Etcdserverpb_TxnRequest) throws(MVCCError) -> Etcdserverpb_TxnResponse {
        let isWrite = !KVStore.isTxnReadonly(rt)
        let readRev = currentRev
        let path = compareToPath(rt, atRev: readRev)
        if isWrite {
            try checkRequests(rt, path, .put, atRev: readRev)
        }
        try checkRequests(rt, path, .range, atRev: readRev)

        var view = TxnView(isWrite: isWrite, beginRev: currentRev)
        var resp = applyTxnOps(rt, path, &view)
        resp.header = header(view.readRev)
        if isWrite {
            endWrite(view)
        }
        return resp
    }

    /// etcd: isTxnReadonly — only top-level range ops (a nested txn counts as a write).
    public static func isTxnReadonly(_ rt: Etcdserverpb_TxnRequest) -> Bool {
        for op in rt.success {
            guard case .requestRange? = op.request else { return false }
        }
        for op in rt.failure {
            guard case .requestRange? = op.request else { return false }
        }
        return true
    }

    func compareToPath(_ rt: Etcdserverpb_TxnRequest, atRev: Int64) -> TxnPath {
        var ok = true
        for c in rt.compare where !applyCompare(c, atRev: atRev) {
            ok = false
            break
        }
        var path = TxnPath(succeeded: ok, nested: [])
        for op in ok ? rt.success : rt.failure {
            if case .requestTxn(let nested)? = op.request {
                path.nested.append(compareToPath(nested, atRev: atRev))
            }
        }
        return path
    }

    /// etcd: applyCompare. Every key in the range must satisfy the compare; with no
    /// key in the range, a VALUE compare fails and the others compare against an
    /// empty KeyValue (revisions, version and lease 0).
    func applyCompare(_ compare: Etcdserverpb_Compare, atRev: Int64) -> Bool {
        var c = compare
        if Sealed.isMarked(c) {
            // A value compare on a covered key was sealed on submit, like a put's value.
            c.unknownFields = UnknownStorage()
            c.value = log.openApplying(c.key, c.value, "the compared value of key \(String(decoding: c.key, as: UTF8.self)) being applied")
        }
        let kvs = liveKVs(c.key, RangeEnd(requestRangeEnd: c.rangeEnd), atRev: atRev)
        if kvs.isEmpty {
            if c.target == .value { return false }
            return KVStore.compareKV(c, Mvccpb_KeyValue())
        }
        for kv in kvs where !KVStore.compareKV(c, kv) {
            return false
        }
        return true
    }

    /// etcd: compareKV. A target_union of another kind compares as 0 / empty bytes;
    /// an unknown result is true; an unknown target compares as equal.
    static func compareKV(_ c: Etcdserverpb_Compare, _ kv: Mvccpb_KeyValue) -> Bool {
        func cmp(_ a: Int64, _ b: Int64) -> Int { a < b ? -1 : (a > b ? 1 : 0) }
        let result: Int
        switch c.target {
        case .value: result = compareBytes(kv.value, c.value)
        case .create: result = cmp(kv.createRevision, c.createRevision)
        case .mod: result = cmp(kv.modRevision, c.modRevision)
        case .version: result = cmp(kv.version, c.version)
        case .lease: result = cmp(kv.lease, c.lease)
        case .UNRECOGNIZED: result = 0
        }
        switch c.result {
        case .equal: return result == 0
        case .notEqual: return result != 0
        case .greater: return result > 0
        case .less: return result < 0
        case .UNRECOGNIZED: return true
        }
    }

    enum RequestCheck { case put, range }

    /// etcd: checkRequests with checkRequestPut / checkRequestRange, on the taken
    /// branches only, against the state before the txn.
    func checkRequests(_ rt: Etcdserverpb_TxnRequest, _ path: TxnPath, _ check: RequestCheck,
                       atRev: Int64) throws(MVCCError) {
        var nested = 0
        for op in path.succeeded ? rt.success : rt.failure {
            switch op.request {
            case .requestTxn(let t)?:
                try checkRequests(t, path.nested[nested], check, atRev: atRev)
                nested += 1
            case .requestPut(let p)? where check == .put:
                if p.ignoreValue || p.ignoreLease {
                    if index.get(p.key, atRev: atRev) == nil { throw .keyNotFound }
                }
                if p.lease != 0 && !leaseExists(p.lease) { throw .leaseNotFound }
            case .requestRange(let r)? where check == .range:
                // Note: a negative revision is compared too (etcd quirk: -2 on a fresh
                // store, or any negative revision once compacted, is "compacted").
                if r.revision == 0 { continue }
                if r.revision > atRev { throw .futureRevision }
                if r.revision < compactMainRev { throw .compacted }
            default:
                continue
            }
        }
    }

    /// etcd: newTxnResp + applyTxn. Cannot fail: everything that can was checked.
    func applyTxnOps(_ rt: Etcdserverpb_TxnRequest, _ path: TxnPath, _ view: inout TxnView) -> Etcdserverpb_TxnResponse {
        var resp = Etcdserverpb_TxnResponse()
        resp.header = Etcdserverpb_ResponseHeader()  // nested txns keep an empty header, as etcd
        resp.succeeded = path.succeeded
        var nested = 0
        for op in path.succeeded ? rt.success : rt.failure {
            var out = Etcdserverpb_ResponseOp()
            switch op.request {
            case .requestRange(let r)?:
                do {
                    out.responseRange = try applyRange(r, view)
                } catch {
                    preconditionFailure("unexpected error during txn: \(error)")
                }
            case .requestPut(let p)?:
                do {
                    out.responsePut = try applyPut(p, &view)
                } catch {
                    // Only reachable when an earlier op of this txn deleted the key that
                    // an ignore_value/ignore_lease put needs (the gRPC layer's duplicate-key
                    // check normally rejects such txns). etcd panics here; swetcd writes
                    // the put without the ignore flags instead.
                    var plain = p
                    plain.ignoreValue = false
                    plain.ignoreLease = false
                    do {
                        out.responsePut = try applyPut(plain, &view)
                    } catch {
                        preconditionFailure("unexpected error during txn: \(error)")
                    }
                }
            case .requestDeleteRange(let d)?:
                out.responseDeleteRange = applyDeleteRange(d, &view)
            case .requestTxn(let t)?:
                out.responseTxn = applyTxnOps(t, path.nested[nested], &view)
                nested += 1
            case nil:
                // Empty op: etcd's gRPC layer rejects it ("etcdserver: key not found");
                // here it gets an empty response.
                break
            }
            resp.responses.append(out)
        }
        return resp
    }
}
