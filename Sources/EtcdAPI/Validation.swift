import EtcdProto
import EtcdServer
import Foundation

/// etcd's request checks, made before a request is proposed (etcd's `api/v3rpc/key.go`).
enum Validation {
    static func check(_ r: Etcdserverpb_RangeRequest) throws(EtcdError) {
        if r.key.isEmpty { throw .emptyKey }
    }

    static func check(_ r: Etcdserverpb_PutRequest) throws(EtcdError) {
        if r.key.isEmpty { throw .emptyKey }
        if r.ignoreValue && !r.value.isEmpty { throw .valueProvided }
        if r.ignoreLease && r.lease != 0 { throw .leaseProvided }
    }

    static func check(_ r: Etcdserverpb_DeleteRangeRequest) throws(EtcdError) {
        if r.key.isEmpty { throw .emptyKey }
    }

    /// The op-count limit applies to the largest of compare/success/failure; nested txns get
    /// what is left of the limit. Then puts and deletes of one branch must not overlap.
    static func check(_ r: Etcdserverpb_TxnRequest, maxTxnOps: Int) throws(EtcdError) {
        try checkOps(r, maxTxnOps: maxTxnOps)
        _ = try checkIntervals(r.success)
        _ = try checkIntervals(r.failure)
    }

    private static func checkOps(_ r: Etcdserverpb_TxnRequest, maxTxnOps: Int) throws(EtcdError) {
        let opc = max(r.compare.count, r.success.count, r.failure.count)
        if opc > maxTxnOps { throw .tooManyOps }
        for c in r.compare where c.key.isEmpty { throw .emptyKey }
        for op in r.success + r.failure {
            switch op.request {
            case .requestRange(let q): try check(q)
            case .requestPut(let q): try check(q)
            case .requestDeleteRange(let q): try check(q)
            case .requestTxn(let q): try checkOps(q, maxTxnOps: maxTxnOps - opc)
            case nil: throw .keyNotFound
            }
        }
    }

    /// A deleted interval [begin, end); `end == nil` is unbounded (etcd's affine "" end).
    /// A single-key delete is the interval [key, key+"\0").
    struct Interval {
        var begin: Data
        var end: Data?

        func contains(_ key: Data) -> Bool {
            begin.lexicographicallyPrecedes(key) || begin == key
                ? (end.map { key.lexicographicallyPrecedes($0) } ?? true)
                : false
        }
    }

    /// etcd's `checkIntervals`: puts of one level may not repeat a key nor fall in a range
    /// deleted at that level or below; then/else branches of a nested txn may put the same key.
    static func checkIntervals(_ ops: [Etcdserverpb_RequestOp]) throws(EtcdError) -> (puts: Set<Data>, dels: [Interval]) {
        var dels: [Interval] = []
        for op in ops {
            guard case .requestDeleteRange(let d) = op.request else { continue }
            if d.rangeEnd.isEmpty {
                dels.append(Interval(begin: d.key, end: d.key + [0]))
            } else {
                dels.append(Interval(begin: d.key, end: d.rangeEnd))
            }
        }
        var puts = Set<Data>()
        for op in ops {
            guard case .requestTxn(let t) = op.request else { continue }
            let (putsThen, delsThen) = try checkIntervals(t.success)
            let (putsElse, delsElse) = try checkIntervals(t.failure)
            for k in putsThen {
                if puts.contains(k) || dels.contains(where: { $0.contains(k) }) { throw .duplicateKey }
                puts.insert(k)
            }
            for k in putsElse {
                if puts.contains(k) && !putsThen.contains(k) { throw .duplicateKey }
                if dels.contains(where: { $0.contains(k) }) { throw .duplicateKey }
                puts.insert(k)
            }
            dels += delsThen + delsElse
        }
        for op in ops {
            guard case .requestPut(let p) = op.request else { continue }
            if puts.contains(p.key) || dels.contains(where: { $0.contains(p.key) }) { throw .duplicateKey }
            puts.insert(p.key)
        }
        return (puts, dels)
    }
}
