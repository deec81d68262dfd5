import Foundation
import Testing
import EtcdProto
@testable import MVCC

/// Deterministic PRNG (SplitMix64) so a failing seed reproduces.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A trivially simple reference for the store: a full copy of the key -> KeyValue map at
/// every revision, and etcd's applier rules written out as directly as possible.
struct ReferenceModel {
    typealias KV = Mvccpb_KeyValue
    /// states[rev] = the whole store at `rev`; states[0] is unused, states[1] is the fresh store.
    var states: [[Data: KV]] = [[:], [:]]
    var compactRev: Int64 = -1
    var events: [Mvccpb_Event] = []
    var rev: Int64 { Int64(states.count - 1) }

    static func bytesCmp(_ a: Data, _ b: Data) -> Int {
        a == b ? 0 : (a.lexicographicallyPrecedes(b) ? -1 : 1)
    }

    static func inRange(_ k: Data, _ key: Data, _ end: Data) -> Bool {
        if end.isEmpty { return k == key }
        if end == Data([0]) { return bytesCmp(k, key) >= 0 }
        return bytesCmp(k, key) >= 0 && bytesCmp(k, end) < 0
    }

    static func select(_ state: [Data: KV], _ key: Data, _ end: Data) -> [KV] {
        state.values.filter { inRange($0.key, key, end) }.sorted { bytesCmp($0.key, $1.key) < 0 }
    }

    /// A write in progress on a copy of the latest map.
    struct Work {
        var map: [Data: KV]
        let base: Int64
        var evs: [Mvccpb_Event] = []
        var readRev: Int64 { evs.isEmpty ? base : base + 1 }
    }

    func header(_ rev: Int64) -> Etcdserverpb_ResponseHeader {
        var h = Etcdserverpb_ResponseHeader()
        h.revision = rev
        return h
    }

    mutating func commit(_ w: Work) {
        if !w.evs.isEmpty {
            states.append(w.map)
            events += w.evs
        }
    }

    // MARK: ops

    func range(_ r: Etcdserverpb_RangeRequest, _ w: Work) -> Result<Etcdserverpb_RangeResponse, MVCCError> {
        let cur = w.readRev
        if r.revision > cur { return .failure(.futureRevision) }
        let at = r.revision <= 0 ? cur : r.revision
        if at < compactRev { return .failure(.compacted) }
        let state = at == w.base + 1 ? w.map : states[Int(at)]
        let all = Self.select(state, r.key, r.rangeEnd)
        var kvs = r.countOnly ? [] : all
        let filtered = r.minModRevision != 0 || r.maxModRevision != 0 || r.minCreateRevision != 0 || r.maxCreateRevision != 0
        if r.sortOrder == .none && !filtered && r.limit > 0 {
            // etcd quirk: without an explicit order (and no filters) only the first limit+1
            // keys are fetched, so a non-key sort target sorts just those.
            kvs = Array(kvs.prefix(Int(r.limit) + 1))
        }
        if r.maxModRevision != 0 { kvs = kvs.filter { $0.modRevision <= r.maxModRevision } }
        if r.minModRevision != 0 { kvs = kvs.filter { $0.modRevision >= r.minModRevision } }
        if r.maxCreateRevision != 0 { kvs = kvs.filter { $0.createRevision <= r.maxCreateRevision } }
        if r.minCreateRevision != 0 { kvs = kvs.filter { $0.createRevision >= r.minCreateRevision } }
        var order = r.sortOrder
        if r.sortTarget != .key && order == .none { order = .ascend }
        if order != .none {
            let less: (KV, KV) -> Bool
            switch r.sortTarget {
            case .key: less = { Self.bytesCmp($0.key, $1.key) < 0 }
            case .version: less = { $0.version < $1.version }
            case .create: less = { $0.createRevision < $1.createRevision }
            case .mod: less = { $0.modRevision < $1.modRevision }
            case .value: less = { Self.bytesCmp($0.value, $1.value) < 0 }
            default: fatalError()
            }
            // Go's unstable sort: the order of ties is part of etcd's behaviour (GoSortTests).
            if order == .ascend { GoSort.sort(&kvs, by: less) } else { GoSort.sort(&kvs) { less($1, $0) } }
        }
        var resp = Etcdserverpb_RangeResponse()
        if r.limit > 0 && kvs.count > Int(r.limit) {
            kvs = Array(kvs.prefix(Int(r.limit)))
            resp.more = true
        }
        if r.keysOnly { kvs = kvs.map { var k = $0; k.value = Data(); return k } }
        resp.header = header(cur)
        resp.count = Int64(all.count)
        resp.kvs = kvs
        return .success(resp)
    }

    func put(_ p: Etcdserverpb_PutRequest, _ w: inout Work, lenient: Bool) -> Result<Etcdserverpb_PutResponse, MVCCError> {
        let prev = w.map[p.key]
        var ignoreValue = p.ignoreValue, ignoreLease = p.ignoreLease
        if (ignoreValue || ignoreLease) && prev == nil {
            if !lenient { return .failure(.keyNotFound) }
            ignoreValue = false  // swetcd's answer to a case where etcd panics
            ignoreLease = false
        }
        let rev = w.base + 1
        var kv = KV()
        kv.key = p.key
        kv.value = ignoreValue ? prev!.value : p.value
        kv.lease = ignoreLease ? prev!.lease : p.lease
        kv.createRevision = prev?.createRevision ?? rev
        kv.version = (prev?.version ?? 0) + 1
        kv.modRevision = rev
        w.map[p.key] = kv
        var ev = Mvccpb_Event()
        ev.type = .put
        ev.kv = kv
        w.evs.append(ev)
        var resp = Etcdserverpb_PutResponse()
        resp.header = header(rev)
        if p.prevKv, let prev { resp.prevKv = prev }
        return .success(resp)
    }

    func delete(_ d: Etcdserverpb_DeleteRangeRequest, _ w: inout Work) -> Etcdserverpb_DeleteRangeResponse {
        let victims = Self.select(w.map, d.key, d.rangeEnd)
        var resp = Etcdserverpb_DeleteRangeResponse()
        if d.prevKv { resp.prevKvs = victims }
        for v in victims {
            w.map[v.key] = nil
            var ev = Mvccpb_Event()
            ev.type = .delete
            var kv = KV()
            kv.key = v.key
            kv.modRevision = w.base + 1
            ev.kv = kv
            w.evs.append(ev)
        }
        resp.deleted = Int64(victims.count)
        resp.header = header(w.readRev)
        return resp
    }

    func compareHolds(_ c: Etcdserverpb_Compare, _ state: [Data: KV]) -> Bool {
        let kvs = Self.select(state, c.key, c.rangeEnd)
        if kvs.isEmpty && c.target == .value { return false }
        for kv in kvs.isEmpty ? [KV()] : kvs {
            let r: Int
            func n(_ a: Int64, _ b: Int64) -> Int { a == b ? 0 : (a < b ? -1 : 1) }
            switch c.target {
            case .version: r = n(kv.version, c.version)
            case .create: r = n(kv.createRevision, c.createRevision)
            case .mod: r = n(kv.modRevision, c.modRevision)
            case .value: r = Self.bytesCmp(kv.value, c.value)
            case .lease: r = n(kv.lease, c.lease)
            default: r = 0
            }
            let ok: Bool
            switch c.result {
            case .equal: ok = r == 0
            case .notEqual: ok = r != 0
            case .greater: ok = r > 0
            case .less: ok = r < 0
            default: ok = true
            }
            if !ok { return false }
        }
        return true
    }

    func branch(_ t: Etcdserverpb_TxnRequest, _ pre: [Data: KV]) -> (Bool, [Etcdserverpb_RequestOp]) {
        let ok = t.compare.allSatisfy { compareHolds($0, pre) }
        return (ok, ok ? t.success : t.failure)
    }

    func check(_ t: Etcdserverpb_TxnRequest, _ pre: [Data: KV], puts: Bool) -> MVCCError? {
        for op in branch(t, pre).1 {
            switch op.request {
            case .requestTxn(let n)?:
                if let e = check(n, pre, puts: puts) { return e }
            case .requestPut(let p)? where puts:
                if (p.ignoreValue || p.ignoreLease) && pre[p.key] == nil { return .keyNotFound }
                if p.lease != 0 { return .leaseNotFound }
            case .requestRange(let r)? where !puts:
                if r.revision != 0 && r.revision > rev { return .futureRevision }
                if r.revision != 0 && r.revision < compactRev { return .compacted }
            default: break
            }
        }
        return nil
    }

    func apply(_ t: Etcdserverpb_TxnRequest, _ pre: [Data: KV], _ w: inout Work) -> Etcdserverpb_TxnResponse {
        let (ok, ops) = branch(t, pre)
        var resp = Etcdserverpb_TxnResponse()
        resp.header = Etcdserverpb_ResponseHeader()
        resp.succeeded = ok
        for op in ops {
            var out = Etcdserverpb_ResponseOp()
            switch op.request {
            case .requestRange(let r)?: out.responseRange = try! range(r, w).get()
            case .requestPut(let p)?: out.responsePut = try! put(p, &w, lenient: true).get()
            case .requestDeleteRange(let d)?: out.responseDeleteRange = delete(d, &w)
            case .requestTxn(let n)?: out.responseTxn = apply(n, pre, &w)
            case nil: break
            }
            resp.responses.append(out)
        }
        return resp
    }

    mutating func txn(_ t: Etcdserverpb_TxnRequest) -> Result<Etcdserverpb_TxnResponse, MVCCError> {
        let pre = states[Int(rev)]
        if let e = check(t, pre, puts: true) ?? check(t, pre, puts: false) { return .failure(e) }
        var w = Work(map: pre, base: rev)
        var resp = apply(t, pre, &w)
        resp.header = header(w.readRev)
        commit(w)
        return .success(resp)
    }

    mutating func plainPut(_ p: Etcdserverpb_PutRequest) -> Result<Etcdserverpb_PutResponse, MVCCError> {
        if p.lease != 0 { return .failure(.leaseNotFound) }
        var w = Work(map: states[Int(rev)], base: rev)
        let r = put(p, &w, lenient: false)
        commit(w)
        return r
    }

    mutating func plainDelete(_ d: Etcdserverpb_DeleteRangeRequest) -> Etcdserverpb_DeleteRangeResponse {
        var w = Work(map: states[Int(rev)], base: rev)
        let r = delete(d, &w)
        commit(w)
        return r
    }

    mutating func compact(_ at: Int64) -> Result<Etcdserverpb_CompactionResponse, MVCCError> {
        if at <= compactRev { return .failure(.compacted) }
        if at > rev { return .failure(.futureRevision) }
        compactRev = at
        var resp = Etcdserverpb_CompactionResponse()
        resp.header = header(rev)
        return .success(resp)
    }
}

/// Random requests over a small key space (many ties, many overlapping ranges).
struct RequestGen {
    var rng: SplitMix64
    var model: ReferenceModel { didSet {} }

    static let keyPool = ["a", "b", "k0", "k1", "k10", "k2", "k3", "k4", "k5", "kk", "z", "\u{0}x", "\u{ff}"]
    static let valuePool = ["", "v0", "v1", "v2", "zz"]

    mutating func int(_ n: Int) -> Int { Int.random(in: 0..<n, using: &rng) }
    mutating func chance(_ pct: Int) -> Bool { int(100) < pct }
    mutating func key() -> Data { Data(Self.keyPool[int(Self.keyPool.count)].utf8) }
    mutating func value() -> Data { Data(Self.valuePool[int(Self.valuePool.count)].utf8) }
    mutating func end() -> Data {
        switch int(10) {
        case 0...3: return Data()
        case 4...6: return key()
        case 7: return Data([0])
        default: return Data("k3".utf8)
        }
    }
    mutating func revision() -> Int64 {
        switch int(10) {
        case 0...5: return 0
        case 6...8: return Int64(int(Int(model.rev) + 3)) - 1
        default: return max(model.compactRev, 0) + Int64(int(3)) - 1
        }
    }

    mutating func rangeReq() -> Etcdserverpb_RangeRequest {
        var r = Etcdserverpb_RangeRequest()
        r.key = key()
        r.rangeEnd = end()
        r.revision = revision()
        if chance(50) { r.limit = Int64(int(6)) }
        if chance(40) {
            r.sortOrder = .init(rawValue: int(3))!
            r.sortTarget = .init(rawValue: int(5))!
        }
        r.keysOnly = chance(10)
        r.countOnly = chance(10)
        r.serializable = chance(20)
        if chance(10) { r.minModRevision = Int64(int(Int(model.rev) + 1)) }
        if chance(10) { r.maxModRevision = Int64(int(Int(model.rev) + 1)) }
        if chance(10) { r.minCreateRevision = Int64(int(Int(model.rev) + 1)) }
        if chance(10) { r.maxCreateRevision = Int64(int(Int(model.rev) + 1)) }
        return r
    }

    mutating func putReq(inTxn: Bool) -> Etcdserverpb_PutRequest {
        var p = Etcdserverpb_PutRequest()
        p.key = key()
        p.value = value()
        p.prevKv = chance(30)
        if chance(8) { p.ignoreValue = true; p.value = Data() }
        if chance(5) { p.ignoreLease = true }
        if chance(2) && !p.ignoreLease { p.lease = 42 }
        return p
    }

    mutating func delReq() -> Etcdserverpb_DeleteRangeRequest {
        var d = Etcdserverpb_DeleteRangeRequest()
        d.key = key()
        d.rangeEnd = end()
        d.prevKv = chance(50)
        return d
    }

    mutating func compare() -> Etcdserverpb_Compare {
        var c = Etcdserverpb_Compare()
        c.key = key()
        if chance(20) { c.rangeEnd = end() }
        c.result = .init(rawValue: int(4))!
        c.target = .init(rawValue: int(5))!
        switch c.target {
        case .version: c.version = Int64(int(4))
        case .create: c.createRevision = Int64(int(Int(model.rev) + 2))
        case .mod: c.modRevision = Int64(int(Int(model.rev) + 2))
        case .value: c.value = value()
        default: c.lease = Int64(int(2))
        }
        return c
    }

    mutating func ops(_ depth: Int) -> [Etcdserverpb_RequestOp] {
        var out: [Etcdserverpb_RequestOp] = []
        for _ in 0..<int(4) {
            var op = Etcdserverpb_RequestOp()
            switch int(10) {
            case 0...3: op.requestRange = rangeReq()
            case 4...6: op.requestPut = putReq(inTxn: true)
            case 7...8: op.requestDeleteRange = delReq()
            default:
                if depth < 2 { op.requestTxn = txnReq(depth + 1) } else { op.requestRange = rangeReq() }
            }
            out.append(op)
        }
        return out
    }

    mutating func txnReq(_ depth: Int) -> Etcdserverpb_TxnRequest {
        var t = Etcdserverpb_TxnRequest()
        t.compare = (0..<int(3)).map { _ in compare() }
        t.success = ops(depth)
        t.failure = ops(depth)
        return t
    }
}

@Suite struct RandomizedModelTests {
    @Test(arguments: [UInt64(1), 2, 3])
    func storeMatchesReferenceModel(seed: UInt64) throws {
        let store = KVStore()
        var gen = RequestGen(rng: SplitMix64(seed: seed), model: ReferenceModel())
        for step in 0..<3000 {
            let what = gen.int(100)
            switch what {
            case 0..<32:
                let p = gen.putReq(inTxn: false)
                let want = gen.model.plainPut(p)
                let got = result { try store.put(p) }
                #expect(got == want, "seed \(seed) step \(step) put \(p)")
            case 32..<44:
                let d = gen.delReq()
                let want = gen.model.plainDelete(d)
                let got = result { try store.deleteRange(d) }
                #expect(got == .success(want), "seed \(seed) step \(step) delete \(d)")
            case 44..<70:
                let r = gen.rangeReq()
                let want = gen.model.range(r, .init(map: [:], base: gen.model.rev))
                let got = result { try store.range(r) }
                #expect(got == want, "seed \(seed) step \(step) range \(r)")
            case 70..<99:
                let t = gen.txnReq(0)
                let want = gen.model.txn(t)
                let got = result { try store.txn(t) }
                #expect(got == want, "seed \(seed) step \(step) txn \(t)")
            default:
                let lo = max(gen.model.compactRev, 0) - 1
                // Mostly well behind the head, so plenty of history stays readable;
                // sometimes at/after the head or at/below the last compaction (errors).
                let at = gen.chance(20) ? lo + Int64(gen.int(Int(gen.model.rev - lo) + 3))
                                        : lo + Int64(gen.int(Int(gen.model.rev - lo) / 3 + 1))
                let want = gen.model.compact(at)
                var c = Etcdserverpb_CompactionRequest()
                c.revision = at
                let got = result { try store.compact(c) }
                #expect(got == want, "seed \(seed) step \(step) compact \(at)")
            }
            #expect(store.currentRevision == gen.model.rev)
            if step % 100 == 99 {
                try verifyHistory(store, gen.model, &gen.rng)
            }
            if store.currentRevision != gen.model.rev { return }  // diverged; stop the noise
        }
        try verifyHistory(store, gen.model, &gen.rng)
        // The run did real work: many revisions, a compaction, history still readable.
        #expect(gen.model.rev > 1000)
        #expect(gen.model.compactRev > 0)
        #expect(try store.events(since: 1).count < gen.model.events.count)
        print("seed \(seed): revision \(gen.model.rev), compacted at \(gen.model.compactRev), \(store.indexedKeyCount) keys indexed, \(store.retainedRevisionCount) revisions retained")
    }

    /// Full-keyspace reads at every readable revision, and the event log after the compaction point.
    func verifyHistory(_ store: KVStore, _ model: ReferenceModel, _ rng: inout SplitMix64) throws {
        let first = max(model.compactRev, 1)
        for at in first...model.rev {
            let r = wholeKeySpace(at: at)
            let got = try store.range(r)
            let want = try model.range(r, .init(map: [:], base: model.rev)).get()
            #expect(got == want, "history at \(at)")
        }
        if model.compactRev > 0 {
            var r = Etcdserverpb_RangeRequest()
            r.key = Data([0])
            r.rangeEnd = Data([0])
            r.revision = model.compactRev - 1
            #expect(mvccError { try store.range(r) } == .compacted)
        }
        let since = max(model.compactRev + 1, 1) + Int64.random(in: 0...3, using: &rng)
        #expect(try store.events(since: since) == model.events.filter { $0.kv.modRevision >= since })
    }
}
