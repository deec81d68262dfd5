import Foundation
import EtcdProto
@testable import MVCC

func b(_ s: String) -> Data { Data(s.utf8) }
func s(_ d: Data) -> String { String(decoding: d, as: UTF8.self) }

/// Small request builders so tests read like etcdctl sessions.
extension KVStore {
    @discardableResult
    func put(_ key: String, _ value: String, lease: Int64 = 0, prevKv: Bool = false,
             ignoreValue: Bool = false, ignoreLease: Bool = false) throws(MVCCError) -> Etcdserverpb_PutResponse {
        try put(putReq(key, value, lease: lease, prevKv: prevKv, ignoreValue: ignoreValue, ignoreLease: ignoreLease))
    }

    @discardableResult
    func del(_ key: String, _ end: String? = nil, prevKv: Bool = false) throws(MVCCError) -> Etcdserverpb_DeleteRangeResponse {
        try deleteRange(delReq(key, end, prevKv: prevKv))
    }

    func get(_ key: String, _ end: String? = nil, rev: Int64 = 0,
             _ configure: (inout Etcdserverpb_RangeRequest) -> Void = { _ in }) throws(MVCCError) -> Etcdserverpb_RangeResponse {
        try range(rangeReq(key, end, rev: rev, configure))
    }

    @discardableResult
    func compact(_ rev: Int64) throws(MVCCError) -> Etcdserverpb_CompactionResponse {
        var r = Etcdserverpb_CompactionRequest()
        r.revision = rev
        return try compact(r)
    }
}

func putReq(_ key: String, _ value: String, lease: Int64 = 0, prevKv: Bool = false,
            ignoreValue: Bool = false, ignoreLease: Bool = false) -> Etcdserverpb_PutRequest {
    var r = Etcdserverpb_PutRequest()
    r.key = b(key)
    r.value = b(value)
    r.lease = lease
    r.prevKv = prevKv
    r.ignoreValue = ignoreValue
    r.ignoreLease = ignoreLease
    return r
}

func delReq(_ key: String, _ end: String? = nil, prevKv: Bool = false) -> Etcdserverpb_DeleteRangeRequest {
    var r = Etcdserverpb_DeleteRangeRequest()
    r.key = b(key)
    if let end { r.rangeEnd = b(end) }
    r.prevKv = prevKv
    return r
}

func rangeReq(_ key: String, _ end: String? = nil, rev: Int64 = 0,
              _ configure: (inout Etcdserverpb_RangeRequest) -> Void = { _ in }) -> Etcdserverpb_RangeRequest {
    var r = Etcdserverpb_RangeRequest()
    r.key = b(key)
    if let end { r.rangeEnd = b(end) }
    r.revision = rev
    configure(&r)
    return r
}

/// "\0": range_end meaning "every key >= key".
let fromKey = "\u{0}"

extension Etcdserverpb_RequestOp {
    static func range(_ r: Etcdserverpb_RangeRequest) -> Self { var o = Self(); o.requestRange = r; return o }
    static func put(_ r: Etcdserverpb_PutRequest) -> Self { var o = Self(); o.requestPut = r; return o }
    static func del(_ r: Etcdserverpb_DeleteRangeRequest) -> Self { var o = Self(); o.requestDeleteRange = r; return o }
    static func txn(_ r: Etcdserverpb_TxnRequest) -> Self { var o = Self(); o.requestTxn = r; return o }
}

func txnReq(_ compares: [Etcdserverpb_Compare], success: [Etcdserverpb_RequestOp] = [],
            failure: [Etcdserverpb_RequestOp] = []) -> Etcdserverpb_TxnRequest {
    var t = Etcdserverpb_TxnRequest()
    t.compare = compares
    t.success = success
    t.failure = failure
    return t
}

enum CmpValue {
    case version(Int64), create(Int64), mod(Int64), value(String), lease(Int64)
}

func cmp(_ key: String, _ result: Etcdserverpb_Compare.CompareResult, _ v: CmpValue, end: String? = nil) -> Etcdserverpb_Compare {
    var c = Etcdserverpb_Compare()
    c.key = b(key)
    c.result = result
    if let end { c.rangeEnd = b(end) }
    switch v {
    case .version(let x): c.target = .version; c.version = x
    case .create(let x): c.target = .create; c.createRevision = x
    case .mod(let x): c.target = .mod; c.modRevision = x
    case .value(let x): c.target = .value; c.value = b(x)
    case .lease(let x): c.target = .lease; c.lease = x
    }
    return c
}

func kv(_ key: String, _ value: String, create: Int64, mod: Int64, version: Int64, lease: Int64 = 0) -> Mvccpb_KeyValue {
    var k = Mvccpb_KeyValue()
    k.key = b(key)
    k.value = b(value)
    k.createRevision = create
    k.modRevision = mod
    k.version = version
    k.lease = lease
    return k
}

/// Runs `body` and returns the MVCCError it throws, or nil.
/// (Untyped closure: Swift 6 does not infer typed throws for closures.)
func mvccError<T>(_ body: () throws -> T) -> MVCCError? {
    do {
        _ = try body()
        return nil
    } catch let error as MVCCError {
        return error
    } catch {
        fatalError("unexpected error \(error)")
    }
}

/// Runs `body` and captures its outcome.
func result<T>(_ body: () throws -> T) -> Result<T, MVCCError> {
    do {
        return .success(try body())
    } catch let error as MVCCError {
        return .failure(error)
    } catch {
        fatalError("unexpected error \(error)")
    }
}

func keys(_ r: Etcdserverpb_RangeResponse) -> [String] { r.kvs.map { s($0.key) } }

/// A Range over the whole key space at `revision` (0: the current one).
func wholeKeySpace(at revision: Int64 = 0) -> Etcdserverpb_RangeRequest {
    var r = Etcdserverpb_RangeRequest()
    r.key = Data([0])
    r.rangeEnd = Data([0])
    r.revision = revision
    return r
}
