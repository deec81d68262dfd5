import Encryption
import EtcdProto
import FileIO
import Foundation
import Testing

@testable import EtcdServer

/// Encryption at rest in the member: covered values are sealed before they enter the log,
/// so no file of the data dir (WAL, .snap, db with its free pages) nor a snapshot holds their
/// plaintext; clients read plaintext; hashes are those of the same history unencrypted.
@Suite struct EncryptionAtRestTests {
    static func encryptor(_ providers: String, file: String = "/etc/enc.yaml") throws -> ValueEncryptor {
        let yaml = """
        apiVersion: apiserver.config.k8s.io/v1
        kind: EncryptionConfiguration
        resources:
          - resources: ["secrets", "configmaps"]
            providers:
        \(providers)
        """
        return ValueEncryptor(config: try EncryptionConfig.parse(yaml, file: file), prefixes: .kubernetes, file: file)
    }

    static let key1 = Data((0..<32).map { UInt8($0 &* 7 &+ 3) }).base64EncodedString()
    static let aescbc = """
              - aescbc:
                  keys:
                    - name: key1
                      secret: \(key1)
              - identity: {}
        """

    static func start(_ fs: FaultyFileSystem, _ e: ValueEncryptor?) async throws -> EtcdServer {
        try await RequestPathTests().makeServer(fs: fs) { $0.encryption = e }
    }

    static func random32(_ rng: inout SplitMix64) -> Data {
        Data((0..<4).flatMap { _ in withUnsafeBytes(of: rng.next()) { Array($0) } })
    }

    static func put(_ s: EtcdServer, _ key: String, _ value: Data, prevKv: Bool = false) async throws -> Etcdserverpb_PutResponse {
        var p = Etcdserverpb_PutRequest()
        p.key = Data(key.utf8)
        p.value = value
        p.prevKv = prevKv
        return try await s.put(p)
    }

    static func get(_ s: EtcdServer, _ key: String) async throws -> Data? {
        var r = Etcdserverpb_RangeRequest()
        r.key = Data(key.utf8)
        return try await s.range(r).kvs.first?.value
    }

    /// Every file under `dir`, whole.
    static func files(_ fs: FaultyFileSystem, _ dir: String) throws -> [(String, [UInt8])] {
        var out: [(String, [UInt8])] = []
        for name in try fs.contentsOfDirectory(dir) {
            let path = dir + "/" + name
            if fs.isDirectory(path) { out += try files(fs, path) } else { out.append((path, try fs.contents(path))) }
        }
        return out
    }

    /// Whether `needle` (random, so never all zeros) occurs in `haystack`; a preallocated
    /// file's zero tail is skipped.
    static func contains(_ haystack: [UInt8], _ needle: Data) -> Bool {
        var end = haystack.count
        haystack.withUnsafeBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            var w = words.count
            while w > 0 && words[w - 1] == 0 { w -= 1 }
            end = min(raw.count, (w + 1) * 8)
        }
        return Data(haystack[..<end]).range(of: needle) != nil
    }

    /// The same history written with and without encryption (puts, a put with prev_kv, a txn
    /// comparing a covered value, ignore_value, deletes): every covered plaintext is absent
    /// from every file and from a snapshot, uncovered values and all keys are there in clear;
    /// reads, prev_kv and HashKV are the same as unencrypted; without the key the member
    /// does not start, naming the key.
    @Test func coveredValuesNeverReachTheDisk() async throws {
        var rng = SplitMix64(seed: 8)
        var covered: [(String, Data)] = []
        var uncovered: [(String, Data)] = []
        for i in 0..<20 {
            covered.append(("/registry/secrets/ns/s\(i)", Self.random32(&rng)))
            uncovered.append(("/registry/pods/ns/p\(i)", Self.random32(&rng)))
        }
        let compared = Self.random32(&rng)
        func history(_ s: EtcdServer) async throws -> [String] {
            var seen: [String] = []
            for ((ck, cv), (uk, uv)) in zip(covered, uncovered) {
                _ = try await Self.put(s, ck, compared)
                let r = try await Self.put(s, ck, cv, prevKv: true)
                seen.append(r.prevKv.value.base64EncodedString())
                _ = try await Self.put(s, uk, uv)
            }
            var txn = Etcdserverpb_TxnRequest()
            var c = Etcdserverpb_Compare()
            c.key = Data(covered[0].0.utf8)
            c.target = .value
            c.value = covered[0].1
            txn.compare = [c]
            var op = Etcdserverpb_RequestOp()
            var p = Etcdserverpb_PutRequest()
            p.key = Data("/registry/configmaps/ns/txn".utf8)
            p.value = covered[1].1
            op.requestPut = p
            txn.success = [op]
            seen.append("txn \(try await s.txn(txn).succeeded)")
            var keep = Etcdserverpb_PutRequest()
            keep.key = Data(covered[2].0.utf8)
            keep.ignoreValue = true
            keep.prevKv = true
            seen.append(try await s.put(keep).prevKv.value.base64EncodedString())
            var del = Etcdserverpb_DeleteRangeRequest()
            del.key = Data(covered[3].0.utf8)
            del.prevKv = true
            seen.append(try await s.deleteRange(del).prevKvs.map { $0.value.base64EncodedString() }.joined())
            for (k, _) in covered + uncovered { seen.append(try await Self.get(s, k)?.base64EncodedString() ?? "-") }
            var hkv = Etcdserverpb_HashKVRequest()
            hkv.revision = 0
            seen.append("hashkv \(try s.hashKV(hkv).hash)")
            return seen
        }

        let plainFS = FaultyFileSystem(seed: 31)
        let plain = try await Self.start(plainFS, nil)
        let expected = try await history(plain)
        plain.stop()

        let fs = FaultyFileSystem(seed: 31)
        let e = try Self.encryptor(Self.aescbc)
        let s = try await Self.start(fs, e)
        #expect(try await history(s) == expected)
        #expect(try await Self.get(s, "/registry/configmaps/ns/txn") == covered[1].1)
        let (_, pieces) = try s.backendSnapshot()
        var snapshot: [UInt8] = []
        for try await piece in pieces { if case .chunk(let d) = piece { snapshot += d } }
        s.stop()

        let all = try Self.files(fs, "/data") + [("snapshot", snapshot)]
        #expect(all.contains { $0.0.hasSuffix(".wal") } && all.contains { $0.0.hasSuffix("/db") })
        for (path, bytes) in all {
            for (k, v) in covered + [("compared", compared)] {
                #expect(!Self.contains(bytes, v), "the plaintext of \(k) is in \(path)")
            }
        }
        let db = try #require(all.first { $0.0.hasSuffix("/db") }?.1)
        for (k, v) in uncovered { #expect(Self.contains(db, v) && Self.contains(db, Data(k.utf8))) }
        for (k, _) in covered { #expect(Self.contains(db, Data(k.utf8)), "the key \(k) is stored in clear") }

        await #expect {
            _ = try await Self.start(fs, nil)
        } throws: { error in
            "\(error)".contains("\"aescbc:key1\"") && "\(error)".contains("--encryption-provider-config")
        }
        let other = try Self.encryptor("""
                      - aescbc:
                          keys:
                            - name: key2
                              secret: \(Self.key1)
                """)
        await #expect {
            _ = try await Self.start(fs, other)
        } throws: { error in
            "\(error)".contains("\"aescbc:key1\"") && "\(error)".contains("/etc/enc.yaml does not list")
        }
        let again = try await Self.start(fs, e)
        defer { again.stop() }
        for (k, v) in covered.dropFirst(4) + uncovered { #expect(try await Self.get(again, k) == v) }
    }

    /// A value that itself looks encrypted (a Kubernetes API server encrypting on its own) is
    /// stored like any other and returned exactly as written; a client cannot mark a value as
    /// sealed with swetcd's own field.
    @Test func valuesThatLookEncryptedAreReturnedAsWritten() async throws {
        let e = try Self.encryptor(Self.aescbc)
        for encryption in [nil, e] {
            let s = try await Self.start(FaultyFileSystem(seed: 5), encryption)
            defer { s.stop() }
            let lookalike = Data("k8s:enc:aescbc:v1:key1:0123456789abcdef0123456789abcdef".utf8)
            for key in ["/registry/secrets/ns/a", "/other/a"] {
                _ = try await Self.put(s, key, lookalike)
                #expect(try await Self.get(s, key) == lookalike)
                var p = Etcdserverpb_PutRequest()
                p.key = Data(key.utf8)
                p.value = lookalike
                let marked = try Etcdserverpb_PutRequest(serializedBytes: try p.serializedBytes() + [0xC0, 0x3E, 0x01])
                #expect(!marked.unknownFields.data.isEmpty)
                _ = try await s.put(marked)
                #expect(try await Self.get(s, key) == lookalike)
            }
        }
    }
}

/// swetcd's encryption log records decode what they encode, and random bytes in their
/// place are refused or decoded, never a crash (seeded).
@Suite struct EncryptionRecordTests {
    @Test func recordsRoundTripAndRandomBytesNeverCrash() throws {
        let items: [(revisionKey: [UInt8], stored: [UInt8])] = [(Array(repeating: 1, count: 17), [1, 2, 3]), (Array(repeating: 2, count: 17), [])]
        guard case .rewrite(let back)? = EncryptionRecord(EncryptionRecord.rewrite(items).request) else {
            Issue.record("a rewrite record does not decode")
            return
        }
        #expect(back.map(\.revisionKey) == items.map(\.revisionKey) && back.map(\.stored) == items.map(\.stored))
        guard case .completed? = EncryptionRecord(EncryptionRecord.completed.request) else {
            Issue.record("a completion record does not decode")
            return
        }
        #expect(EncryptionRecord(Etcdserverpb_InternalRaftRequest()) == nil)
        var rng = SplitMix64(seed: 77)
        let valid = try EncryptionRecord.rewrite(items).request.serializedBytes() as [UInt8]
        for i in 0..<5000 {
            var bytes: [UInt8]
            if i % 2 == 0 {
                bytes = valid
                for _ in 0..<(1 + Int(rng.next() % 4)) { bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next()) }
                bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count + 1))))
            } else {
                bytes = EncryptionRecord.rewriteTag + (0..<Int(rng.next() % 40)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            }
            if let r = try? Etcdserverpb_InternalRaftRequest(serializedBytes: bytes) { _ = EncryptionRecord(r) }
        }
    }
}

@Suite struct MigrationProgressTests {
    let settle = Duration.seconds(7)

    /// Two reloads in quick succession (a key added, then moved first, each with SIGHUP), the
    /// loop reading the first of them while the file already holds the second: its pass
    /// rewrites everything, the next pass sees the second generation and finds nothing left.
    /// Completion must still be recorded (it was not: the reload cleared "rewrote").
    @Test func aReloadBetweenRewriteAndCompletionStillRecordsCompletion() {
        let t0 = ContinuousClock.now
        var p = MigrationProgress()
        p.observe(0, at: t0)
        #expect(p.passEnded(rewritten: 0, at: t0, settle: settle) == .done)
        p.completionRecorded()
        #expect(p.done == 0)

        p.observe(1, at: t0 + .seconds(10))
        #expect(p.passEnded(rewritten: 300, at: t0 + .seconds(10), settle: settle) == .again)
        p.observe(2, at: t0 + .seconds(10))
        #expect(p.passEnded(rewritten: 0, at: t0 + .seconds(11), settle: settle) == .wait)
        #expect(p.passEnded(rewritten: 0, at: t0 + .seconds(17), settle: settle) == .recordCompletion)
        p.completionRecorded()
        #expect(p.done == 2 && !p.rewrote)
        // Nothing rewritten since: the next generation finishes without a record.
        p.observe(3, at: t0 + .seconds(20))
        #expect(p.passEnded(rewritten: 0, at: t0 + .seconds(30), settle: settle) == .done)
    }

    /// The configuration loaded at start (generation 0) completes without waiting; a later
    /// one waits out one request timeout after it was loaded.
    @Test func onlyAReloadWaitsOutARequestTimeout() {
        let t0 = ContinuousClock.now
        var p = MigrationProgress()
        p.observe(0, at: t0)
        #expect(p.passEnded(rewritten: 5, at: t0, settle: settle) == .again)
        #expect(p.passEnded(rewritten: 0, at: t0, settle: settle) == .recordCompletion)
        p.completionRecorded()
        p.observe(1, at: t0 + .seconds(1))
        #expect(p.passEnded(rewritten: 1, at: t0 + .seconds(1), settle: settle) == .again)
        #expect(p.passEnded(rewritten: 0, at: t0 + .seconds(7), settle: settle) == .wait)
        #expect(p.passEnded(rewritten: 0, at: t0 + .seconds(8), settle: settle) == .recordCompletion)
    }
}
