import Backend
import Encryption
import EtcdProto
import Foundation
import SwiftProtobuf

/// etcd's `key` bucket: every change keyed by its revision (see `Schema`), in the backend.
/// A put stores the full KeyValue; a delete stores a tombstone (revision key + 't') whose
/// KeyValue carries only the key, as etcd's backend does. Compaction sweeps the revisions
/// <= the compact revision that the index no longer needs and records scheduledCompactRev
/// and finishedCompactRev in `meta`. etcd: mvcc/kvstore_txn.go, kvstore_compaction.go.
///
/// Values swetcd encrypted are stored marked (see `Sealed`); every read here returns them
/// decrypted by `open`, except `storedKVs`, which returns them as stored.
struct RevisionLog {
    let backend: BatchedBackend
    /// Decrypts sealed values (nil: no encryption configured; a sealed value is then an error).
    var open: SealedValueOpener?

    struct Entry {
        var rev: Revision
        var isTombstone: Bool
    }

    /// Every retained revision, in order (a full scan: for tests and diagnostics).
    var entries: [Entry] {
        do {
            let view = try backend.readView()
            defer { view.close() }
            return try view.scan(Schema.key, from: [], to: nil).compactMap { e in
                Revision(key: e.key).map { Entry(rev: $0, isTombstone: e.key.count == 18) }
            }
        } catch {
            preconditionFailure("cannot scan the key bucket: \(error)")
        }
    }

    func append(_ rev: Revision, _ kv: Mvccpb_KeyValue, tombstone: Bool, sealed: Bool = false) {
        backend.put(Schema.key, rev.key(tombstone: tombstone), Sealed.storedBytes(kv, sealed: sealed), sequential: true)
    }

    /// A sealed value being applied: a member that cannot decrypt it stops (etcd panics on an
    /// unreadable backend alike); `what` names it in the message.
    func openApplying(_ key: Data, _ value: Data, _ what: @autoclosure () -> String) -> Data {
        do {
            guard let open else { throw MVCCError.storage("no --encryption-provider-config is given") }
            return try open(key, value)
        } catch {
            fatalError("swetcd: cannot decrypt \(what()): \(error)")
        }
    }

    /// `kv` as clients see it: a sealed value decrypted, the mark dropped.
    func opened(_ kv: Mvccpb_KeyValue, _ rev: Revision? = nil) throws(MVCCError) -> Mvccpb_KeyValue {
        guard Sealed.isMarked(kv) else { return kv }
        var out = kv
        out.unknownFields = UnknownStorage()
        let at = rev.map { " at revision \($0.main)" } ?? ""
        guard let open else {
            throw .storage("the value of key \(String(decoding: kv.key, as: UTF8.self))\(at) is encrypted (key \(ValueCipher.keyLabel(of: kv.value) ?? "unknown")), and no --encryption-provider-config is given")
        }
        do {
            out.value = try open(kv.key, kv.value)
        } catch {
            throw .storage("cannot decrypt the value of key \(String(decoding: kv.key, as: UTF8.self))\(at): \(error)")
        }
        return out
    }

    /// The stored bytes of a `key` bucket entry as etcd would store it: sealed values
    /// decrypted (Hash and HashKV are over plaintext, so equal to etcd's for the same history).
    func plaintextBytes(_ stored: [UInt8]) throws(MVCCError) -> [UInt8] {
        guard stored.count >= Sealed.mark.count, stored.suffix(Sealed.mark.count).elementsEqual(Sealed.mark) else { return stored }
        let kv: Mvccpb_KeyValue
        do {
            kv = try Mvccpb_KeyValue(serializedBytes: stored)
        } catch {
            throw .storage("bad KeyValue in the key bucket: \(error)")
        }
        guard Sealed.isMarked(kv) else { return stored }
        return Sealed.storedBytes(try opened(kv), sealed: false)
    }

    /// The KeyValues stored at `revs` (puts: the index never asks for a tombstone).
    func kvs(at revs: [Revision]) throws(MVCCError) -> [Mvccpb_KeyValue] {
        var out = try storedKVs(at: revs)
        for i in out.indices where Sealed.isMarked(out[i]) { out[i] = try opened(out[i], revs[i]) }
        return out
    }

    /// The KeyValues at `revs` as stored: sealed ones still encrypted and marked.
    func storedKVs(at revs: [Revision]) throws(MVCCError) -> [Mvccpb_KeyValue] {
        if revs.isEmpty { return [] }
        do {
            let view = try backend.readView()
            defer { view.close() }
            var out: [Mvccpb_KeyValue] = []
            out.reserveCapacity(revs.count)
            for r in revs {
                guard let v = try view.get(Schema.key, r.key()) else {
                    throw MVCCError.storage("revision \(r) is missing from the key bucket")
                }
                out.append(try Mvccpb_KeyValue(serializedBytes: v))
            }
            return out
        } catch let e as MVCCError {
            throw e
        } catch {
            throw .storage("cannot read the key bucket: \(error)")
        }
    }

    /// Deletes every revision with main <= `rev` not in `keep`; records the compaction.
    func compact(_ rev: Int64, keep: Set<Revision>) {
        let bound = Revision(main: rev).key()
        backend.put(Schema.meta, Schema.scheduledCompactKey, bound)
        backend.sweep(Schema.key, below: Revision(main: rev + 1).key()) { k in
            guard let r = Revision(key: k) else { return true }
            return keep.contains(r)
        }
        backend.put(Schema.meta, Schema.finishedCompactKey, bound)
    }

    /// The changes with main revision >= `rev` as watch events (etcd: kvsToEvents: a
    /// tombstone becomes a DELETE whose kv has only the key and mod_revision).
    func events(since rev: Int64) throws(MVCCError) -> [Mvccpb_Event] {
        do {
            let view = try backend.readView()
            defer { view.close() }
            return try view.scan(Schema.key, from: Revision(main: max(rev, 0)).key(), to: nil).map { e in
                guard let r = Revision(key: e.key) else { throw MVCCError.storage("bad revision key in the key bucket") }
                var ev = Mvccpb_Event()
                var kv = try Mvccpb_KeyValue(serializedBytes: e.value)
                if e.key.count == 18 {
                    ev.type = .delete
                    kv.modRevision = r.main
                } else {
                    ev.type = .put
                }
                ev.kv = try opened(kv, r)
                return ev
            }
        } catch let e as MVCCError {
            throw e
        } catch {
            throw .storage("cannot read the key bucket: \(error)")
        }
    }
}
