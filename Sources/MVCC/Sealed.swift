import Encryption
import EtcdProto
import Foundation
import SwiftProtobuf

/// Values swetcd encrypted (encryption at rest): whether a stored value is sealed is swetcd's
/// own persisted state, never guessed from the value's bytes. A sealed value is marked by
/// field 1000 = 1 (a field no etcd message has) on the message that carries it:
/// - on the PutRequest (and a txn's value Compare) in the Raft log, set by the member that
///   sealed the value on submit (any such field a client sends is cleared there first);
/// - on the KeyValue stored in the `key` bucket, written by the apply of that PutRequest.
///
/// etcd's own decoders skip the field, so a data dir or snapshot still opens in real etcd
/// (which then returns the `k8s:enc:` value as stored, for a Kubernetes API server with the
/// same EncryptionConfiguration to read).
public enum Sealed {
    /// Field 1000, varint 1.
    static let mark: [UInt8] = [0xC0, 0x3E, 0x01]

    /// Whether `message` carries the mark (and no other unknown field).
    public static func isMarked(_ message: some SwiftProtobuf.Message) -> Bool {
        message.unknownFields.data.elementsEqual(mark)
    }

    /// `message` with the mark set (`sealed`) or with every unknown field cleared.
    public static func marking<M: SwiftProtobuf.Message>(_ message: M, sealed: Bool) -> M {
        var m = message
        m.unknownFields = UnknownStorage()
        guard sealed else { return m }
        do {
            return try M(serializedBytes: try m.serializedBytes() + mark)
        } catch {
            preconditionFailure("\(M.protoMessageName) does not encode: \(error)")
        }
    }

    /// The stored bytes of `kv`, marked when `sealed`.
    static func storedBytes(_ kv: Mvccpb_KeyValue, sealed: Bool) -> [UInt8] {
        do {
            let bytes: [UInt8] = try kv.serializedBytes()
            return sealed ? bytes + mark : bytes
        } catch {
            preconditionFailure("KeyValue does not encode: \(error)")
        }
    }
}

/// Decrypts a sealed value: (etcd key, stored value) → plaintext, or an error naming the key.
public typealias SealedValueOpener = @Sendable (Data, Data) throws -> Data

extension KVStore {
    /// One stored put of the `key` bucket, as stored.
    public struct StoredValue: Sendable {
        /// The bucket key (etcd's revision key).
        public var revisionKey: [UInt8]
        public var kv: Mvccpb_KeyValue
        public var isSealed: Bool

        /// The key it is sealed with ("<provider>:<name>"), or nil when stored as written.
        public var sealingKey: String? {
            guard isSealed else { return nil }
            return ValueCipher.keyLabel(of: kv.value) ?? "unreadable"
        }
    }

    /// The puts stored at main revisions [from, to), in revision order (encryption
    /// migration and status; tombstones carry no value).
    public func storedValues(from: Int64, to: Int64) throws(MVCCError) -> [StoredValue] {
        do {
            let view = try backend.readView()
            defer { view.close() }
            return try view.scan(Schema.key, from: Revision(main: from).key(), to: Revision(main: to).key()).compactMap { e in
                guard e.key.count == 17 else { return nil }
                let kv = try Mvccpb_KeyValue(serializedBytes: e.value)
                return StoredValue(revisionKey: e.key, kv: kv, isSealed: Sealed.isMarked(kv))
            }
        } catch let e as MVCCError {
            throw e
        } catch {
            throw .storage("cannot read the key bucket: \(error)")
        }
    }

    /// `kv` (its value plaintext) in the stored form, with `value` (sealed or not) in place.
    public static func storedBytes(_ kv: Mvccpb_KeyValue, value: Data, sealed: Bool) -> [UInt8] {
        var out = kv
        out.unknownFields = UnknownStorage()
        out.value = value
        return Sealed.storedBytes(out, sealed: sealed)
    }

    /// The plaintext of a stored value.
    public func plaintext(_ stored: StoredValue) throws(MVCCError) -> Data {
        try log.opened(stored.kv).value
    }

    /// Replaces stored puts in place (encryption migration): same revisions, no events; an
    /// entry compacted away meanwhile is skipped. Returns how many were replaced.
    @discardableResult
    public func rewrite(_ items: [(revisionKey: [UInt8], stored: [UInt8])]) -> Int {
        var n = 0
        for (k, v) in items where k.count == 17 {
            guard (try? backend.get(Schema.key, k)) != nil else { continue }
            backend.put(Schema.key, k, v, sequential: false)
            n += 1
        }
        saveIndex()
        return n
    }
}
