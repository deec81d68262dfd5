import Synchronization

/// What survives a simulated power cut of `FaultyFileSystem`.
///
/// The model is a page cache over a disk: every write is visible to reads at once, but the
/// disk holds only what was synced. At a power cut every unsynced change is lost, except:
/// - the last unsynced page write of a file may be *torn*: a prefix of it (whole
///   `tearGranularity` units, counted from the file start) reaches the disk, the rest of the
///   page keeps its old content (`tearLastWrite` is the probability, drawn per file);
/// - with `keepUnsynced > 0`, any other unsynced page write, size change or directory change
///   may have been written back before the cut anyway, independently and so out of order
///   (the kernel flushes dirty pages when it likes).
/// A name (create, rename, remove, mkdir) is durable only once its directory was synced.
public struct PowerLossModel: Sendable, Equatable {
    /// Page size of the simulated page cache: writes are split at these boundaries.
    public var pageSize: Int
    /// A torn page write keeps a prefix of whole units of this size: 512 models disks with
    /// atomic sectors (what etcd's WAL decoder assumes); 1 lets a tear end at any byte.
    public var tearGranularity: Int
    /// Probability that the last unsynced page write of each file is torn rather than lost.
    public var tearLastWrite: Double
    /// Probability that any other unsynced page write, size change or directory change
    /// reached the disk before the cut.
    public var keepUnsynced: Double

    public init(pageSize: Int = 4096, tearGranularity: Int = 512, tearLastWrite: Double = 0.5, keepUnsynced: Double = 0) {
        precondition(pageSize > 0 && tearGranularity > 0 && pageSize % tearGranularity == 0)
        self.pageSize = pageSize
        self.tearGranularity = tearGranularity
        self.tearLastWrite = tearLastWrite
        self.keepUnsynced = keepUnsynced
    }

    /// Every unsynced change is lost; nothing is torn.
    public static let dropUnsynced = PowerLossModel(tearLastWrite: 0, keepUnsynced: 0)
    /// Unsynced changes are lost; the last page write of each file is torn half of the time,
    /// at a sector boundary.
    public static let tornLastPage = PowerLossModel()
    /// As `tornLastPage`, but a tear may end at any byte.
    public static let tornLastPageAnyByte = PowerLossModel(tearGranularity: 1)
    /// Unsynced pages, size changes and names each reach the disk with probability 0.3, in any
    /// order, and the last page write of each file is torn half of the time.
    public static let writeback = PowerLossModel(tearLastWrite: 0.5, keepUnsynced: 0.3)
}

/// The kinds of operations `FaultyFileSystem` counts, for crash and fault injection.
public enum FileOperation: String, Sendable, CaseIterable {
    case create, write, truncate, preallocate, dataSync, sync, syncDirectory, rename, remove, mkdir
}

/// An in-memory file system that models the page cache and loses every unsynced change at a
/// simulated power cut (`crash()`), tearing the page being written, per a `PowerLossModel`
/// and a seeded random generator. After a crash this instance is dead (every call throws
/// `FileIOError.powerLost`, so the code that was running cannot touch the disk any more);
/// `reboot()` returns a new instance holding what survived on the disk.
///
/// Preallocated space costs no memory: only bytes up to the highest written offset are stored.
public final class FaultyFileSystem: FileSystem, @unchecked Sendable {
    // @unchecked: all mutable state lives in `state` (a Mutex); `stats` is itself Sendable.
    public let stats = IOStats()
    public let model: PowerLossModel
    private let state: Mutex<State>

    /// A fresh, empty disk (only "/" exists, durably).
    public init(seed: UInt64, model: PowerLossModel = .tornLastPage) {
        self.model = model
        self.state = Mutex(State(rng: SplitMix64(seed: seed), model: model))
    }

    private init(model: PowerLossModel, state: State) {
        self.model = model
        self.state = Mutex(state)
    }

    // MARK: - Power loss

    /// Simulates a power cut now: computes what the disk holds (synced data and names, plus
    /// what the model lets survive) and kills this instance. Idempotent.
    public func crash() {
        state.withLock { s in
            if s.disk == nil { s.disk = s.powerLossImage() }
        }
    }

    /// Arms a power cut just before the `n`-th counted operation from now (n ≥ 1): that
    /// operation throws `.powerLost` without taking effect, as does everything after it.
    /// `kinds` restricts which operations count (default: all mutating ones).
    public func crash(beforeOperation n: Int, counting kinds: Set<FileOperation> = Set(FileOperation.allCases)) {
        precondition(n >= 1)
        state.withLock { s in s.crashTrigger = (remaining: n, kinds: kinds) }
    }

    /// Cancels a power cut armed by `crash(beforeOperation:)` that has not fired.
    public func disarmCrash() {
        state.withLock { s in s.crashTrigger = nil }
    }

    /// Makes the next `count` operations of the given kinds fail with `.injected` (an I/O
    /// error such as EIO), without taking effect. The instance stays alive.
    public func injectFailure(on kinds: Set<FileOperation>, count: Int = 1) {
        state.withLock { s in s.failures = (remaining: count, kinds: kinds) }
    }

    /// Whether this instance lost power.
    public var isCrashed: Bool { state.withLock { $0.disk != nil } }

    /// The machine after the power cut: a new file system holding the disk image (everything
    /// on it is durable). Crashes this instance first if it is still alive.
    public func reboot() -> FaultyFileSystem {
        crash()
        let next = state.withLock { s -> State in
            var n = State(rng: SplitMix64(seed: s.rng.next()), model: s.model)
            n.nodes = s.disk!
            return n
        }
        return FaultyFileSystem(model: model, state: next)
    }

    /// Mutating operations performed so far (the clock of `crash(beforeOperation:)`).
    public var operationCount: Int { state.withLock { $0.operationCount } }

    // MARK: - Test helpers

    /// The current (visible) content of a file.
    public func contents(_ path: String) throws -> [UInt8] {
        try state.withLock { s in
            let id = try s.resolve(path)
            guard !s.nodes[id].isDirectory else { throw FileIOError.isADirectory(path: path) }
            return s.nodes[id].visibleContent()
        }
    }

    /// Replaces a file's content, durably (as if written and synced long ago): for setting up
    /// corrupt or truncated files in tests. The file must exist.
    public func setContents(_ path: String, _ bytes: [UInt8]) throws {
        try state.withLock { s in
            let id = try s.resolve(path)
            guard !s.nodes[id].isDirectory else { throw FileIOError.isADirectory(path: path) }
            s.nodes[id].bytes = bytes
            s.nodes[id].size = bytes.count
            s.nodes[id].pending = []
        }
    }

    /// Makes every file's data and every name durable (a clean shutdown's sync(2)).
    public func syncEverything() {
        state.withLock { s in
            for i in s.nodes.indices {
                s.nodes[i].pending = []
                s.nodes[i].durableEntries = s.nodes[i].entries
            }
        }
    }

    // MARK: - FileSystem

    public func open(_ path: String, options: OpenOptions, permissions: UInt32) throws -> any FileIOHandle {
        let (id, handleID) = try state.withLock { s -> (Int, UInt64) in
            try s.checkAlive()
            let (parent, name) = try s.resolveParent(path)
            var id: Int
            if let existing = s.nodes[parent].entries[name] {
                id = existing
                if s.nodes[id].isDirectory { throw FileIOError.isADirectory(path: path) }
                if options.contains(.create) && options.contains(.exclusive) { throw FileIOError.alreadyExists(path: path) }
                if options.contains(.truncate) {
                    try s.count(.truncate, path)
                    s.nodes[id].resize(to: 0)
                }
            } else {
                guard options.contains(.create) else { throw FileIOError.notFound(path: path) }
                try s.count(.create, path)
                id = s.nodes.count
                s.nodes.append(Node(isDirectory: false))
                s.nodes[parent].entries[name] = id
            }
            s.nextHandleID += 1
            s.openHandles.insert(s.nextHandleID)
            return (id, s.nextHandleID)
        }
        return FaultyFileHandle(fs: self, node: id, handleID: handleID, path: path, options: options)
    }

    public func contentsOfDirectory(_ path: String) throws -> [String] {
        try state.withLock { s in
            try s.checkAlive()
            let id = try s.resolve(path)
            guard s.nodes[id].isDirectory else { throw FileIOError.notADirectory(path: path) }
            return s.nodes[id].entries.keys.sorted()
        }
    }

    public func createDirectory(_ path: String, permissions: UInt32) throws {
        try state.withLock { s in
            try s.checkAlive()
            let (parent, name) = try s.resolveParent(path)
            if s.nodes[parent].entries[name] != nil { throw FileIOError.alreadyExists(path: path) }
            try s.count(.mkdir, path)
            let id = s.nodes.count
            s.nodes.append(Node(isDirectory: true))
            s.nodes[parent].entries[name] = id
        }
    }

    public func rename(_ from: String, to: String) throws {
        stats.record { $0.renames += 1 }
        try state.withLock { s in
            try s.checkAlive()
            let (fromParent, fromName) = try s.resolveParent(from)
            guard let id = s.nodes[fromParent].entries[fromName] else { throw FileIOError.notFound(path: from) }
            let (toParent, toName) = try s.resolveParent(to)
            if let target = s.nodes[toParent].entries[toName], target != id {
                if s.nodes[target].isDirectory {
                    guard s.nodes[id].isDirectory else { throw FileIOError.isADirectory(path: to) }
                    guard s.nodes[target].entries.isEmpty else { throw FileIOError.directoryNotEmpty(path: to) }
                } else if s.nodes[id].isDirectory {
                    throw FileIOError.notADirectory(path: to)
                }
            }
            if s.nodes[id].isDirectory && s.isAncestor(id, of: toParent) {
                throw FileIOError.system(operation: "rename", path: from, errno: 22)  // EINVAL
            }
            try s.count(.rename, from)
            s.nodes[fromParent].entries[fromName] = nil
            s.nodes[toParent].entries[toName] = id
        }
    }

    public func remove(_ path: String) throws {
        try state.withLock { s in
            try s.checkAlive()
            let (parent, name) = try s.resolveParent(path)
            guard let id = s.nodes[parent].entries[name] else { throw FileIOError.notFound(path: path) }
            if s.nodes[id].isDirectory && !s.nodes[id].entries.isEmpty { throw FileIOError.directoryNotEmpty(path: path) }
            try s.count(.remove, path)
            s.nodes[parent].entries[name] = nil
        }
    }

    public func exists(_ path: String) -> Bool {
        state.withLock { s in (try? s.resolve(path)) != nil && s.disk == nil }
    }

    public func isDirectory(_ path: String) -> Bool {
        state.withLock { s in
            guard s.disk == nil, let id = try? s.resolve(path) else { return false }
            return s.nodes[id].isDirectory
        }
    }

    public func syncDirectory(_ path: String) throws {
        stats.record { $0.directorySyncs += 1 }
        try state.withLock { s in
            try s.checkAlive()
            let id = try s.resolve(path)
            guard s.nodes[id].isDirectory else { throw FileIOError.notADirectory(path: path) }
            try s.count(.syncDirectory, path)
            s.nodes[id].durableEntries = s.nodes[id].entries
        }
    }

    public func lockDirectory(_ path: String) throws -> any DirectoryLock {
        let owner = try state.withLock { s -> UInt64 in
            try s.checkAlive()
            let id = try s.resolve(path)
            guard s.nodes[id].isDirectory else { throw FileIOError.notADirectory(path: path) }
            if s.lockOwners[id] != nil { throw FileIOError.locked(path: path) }
            s.nextHandleID += 1
            s.lockOwners[id] = s.nextHandleID
            return s.nextHandleID
        }
        return FaultyDirectoryLock(fs: self, path: path, owner: owner)
    }

    // MARK: - Calls from handles

    fileprivate func withHandle<T>(_ h: FaultyFileHandle, _ body: (inout State) throws -> T) throws -> T {
        try state.withLock { s in
            try s.checkAlive()
            guard s.openHandles.contains(h.handleID) else { throw FileIOError.closed(path: h.path) }
            return try body(&s)
        }
    }

    fileprivate func release(owner: UInt64) {
        state.withLock { s in
            s.openHandles.remove(owner)
            for (node, o) in s.lockOwners where o == owner { s.lockOwners[node] = nil }
        }
    }

    // MARK: - State

    /// A change not yet synced, with what it replaced (so the durable content can be rebuilt).
    fileprivate enum Pending {
        /// `old` is what [offset, offset+old.count) held before (only the materialized part).
        case write(offset: Int, new: [UInt8], old: [UInt8], oldSize: Int, oldMaterialized: Int)
        /// `cut` is the materialized tail the resize removed.
        case resize(newSize: Int, oldSize: Int, cut: [UInt8], oldMaterialized: Int)
    }

    fileprivate struct Node {
        var isDirectory: Bool
        /// File: the materialized prefix of the visible content; bytes in [bytes.count, size) are 0.
        var bytes: [UInt8] = []
        var size = 0
        /// File: unsynced changes, oldest first.
        var pending: [Pending] = []
        /// Directory: visible and durable names.
        var entries: [String: Int] = [:]
        var durableEntries: [String: Int] = [:]

        init(isDirectory: Bool) { self.isDirectory = isDirectory }

        func visibleContent() -> [UInt8] {
            var out = bytes
            if out.count < size { out.append(contentsOf: repeatElement(0, count: size - out.count)) }
            return out
        }

        mutating func write(_ data: UnsafeRawBufferPointer, at offset: Int) {
            let oldMaterialized = bytes.count
            let overlapEnd = min(offset + data.count, bytes.count)
            let old = offset < overlapEnd ? Array(bytes[offset..<overlapEnd]) : []
            pending.append(.write(offset: offset, new: Array(data), old: old, oldSize: size, oldMaterialized: oldMaterialized))
            Node.apply(data, at: offset, to: &bytes)
            size = max(size, offset + data.count)
        }

        mutating func resize(to newSize: Int) {
            let cut = newSize < bytes.count ? Array(bytes[newSize...]) : []
            pending.append(.resize(newSize: newSize, oldSize: size, cut: cut, oldMaterialized: bytes.count))
            if newSize < bytes.count { bytes.removeSubrange(newSize...) }
            size = newSize
        }

        static func apply(_ data: UnsafeRawBufferPointer, at offset: Int, to bytes: inout [UInt8]) {
            if offset > bytes.count { bytes.append(contentsOf: repeatElement(0, count: offset - bytes.count)) }
            let overlap = min(data.count, bytes.count - offset)
            if overlap > 0 {
                bytes.withUnsafeMutableBytes { dst in
                    dst.baseAddress!.advanced(by: offset).copyMemory(from: data.baseAddress!, byteCount: overlap)
                }
            }
            if overlap < data.count { bytes.append(contentsOf: data[overlap...]) }
        }

        /// The content as of the last sync: undo the pending changes, newest first.
        func durableImage() -> (bytes: [UInt8], size: Int) {
            var b = bytes
            var sz = size
            for p in pending.reversed() {
                switch p {
                case let .write(offset, _, old, oldSize, oldMaterialized):
                    if !old.isEmpty { b.replaceSubrange(offset..<offset + old.count, with: old) }
                    if b.count > oldMaterialized { b.removeSubrange(oldMaterialized...) }
                    sz = oldSize
                case let .resize(_, oldSize, cut, oldMaterialized):
                    b.append(contentsOf: cut)
                    if b.count > oldMaterialized { b.removeSubrange(oldMaterialized...) }
                    sz = oldSize
                }
            }
            return (b, sz)
        }
    }

    fileprivate struct State {
        var nodes: [Node] = [Node(isDirectory: true)]  // node 0 is "/"
        var rng: SplitMix64
        let model: PowerLossModel
        var openHandles: Set<UInt64> = []
        var nextHandleID: UInt64 = 0
        /// Locked node → owner (a handle or directory-lock id).
        var lockOwners: [Int: UInt64] = [:]
        var operationCount = 0
        var crashTrigger: (remaining: Int, kinds: Set<FileOperation>)?
        var failures: (remaining: Int, kinds: Set<FileOperation>)?
        /// Set at the power cut: the nodes as the disk holds them.
        var disk: [Node]?

        init(rng: SplitMix64, model: PowerLossModel) {
            self.rng = rng
            self.model = model
        }

        func checkAlive() throws {
            if disk != nil { throw FileIOError.powerLost }
        }

        /// Counts a mutating operation; fires an armed crash or injected failure.
        mutating func count(_ op: FileOperation, _ path: String) throws {
            if var t = crashTrigger, t.kinds.contains(op) {
                t.remaining -= 1
                crashTrigger = t
                if t.remaining <= 0 {
                    crashTrigger = nil
                    disk = powerLossImage()
                    throw FileIOError.powerLost
                }
            }
            if var f = failures, f.kinds.contains(op), f.remaining > 0 {
                f.remaining -= 1
                failures = f.remaining > 0 ? f : nil
                throw FileIOError.injected(operation: op.rawValue, path: path)
            }
            operationCount += 1
        }

        static func components(_ path: String) -> [String] {
            var out: [String] = []
            for c in path.split(separator: "/", omittingEmptySubsequences: true) {
                if c == "." { continue }
                if c == ".." { if !out.isEmpty { out.removeLast() }; continue }
                out.append(String(c))
            }
            return out
        }

        func resolve(_ path: String) throws -> Int {
            var id = 0
            for c in State.components(path) {
                guard nodes[id].isDirectory else { throw FileIOError.notADirectory(path: path) }
                guard let next = nodes[id].entries[c] else { throw FileIOError.notFound(path: path) }
                id = next
            }
            return id
        }

        func resolveParent(_ path: String) throws -> (Int, String) {
            var comps = State.components(path)
            guard let name = comps.popLast() else { throw FileIOError.isADirectory(path: path) }
            var id = 0
            for c in comps {
                guard let next = nodes[id].entries[c] else { throw FileIOError.notFound(path: path) }
                guard nodes[next].isDirectory else { throw FileIOError.notADirectory(path: path) }
                id = next
            }
            return (id, name)
        }

        func isAncestor(_ a: Int, of b: Int) -> Bool {
            if a == b { return true }
            for (i, n) in nodes.enumerated() where n.isDirectory && n.entries.values.contains(b) {
                return isAncestor(a, of: i)
            }
            return false
        }

        /// What the disk holds after a power cut now.
        mutating func powerLossImage() -> [Node] {
            var disk: [Node] = []
            disk.reserveCapacity(nodes.count)
            for node in nodes {
                var d = Node(isDirectory: node.isDirectory)
                if node.isDirectory {
                    let keep = node.entries != node.durableEntries && rng.chance(model.keepUnsynced)
                    d.entries = keep ? node.entries : node.durableEntries
                    d.durableEntries = d.entries
                } else {
                    var (b, size) = node.durableImage()
                    let lastWrite = node.pending.lastIndex { if case .write = $0 { return true } else { return false } }
                    for (i, p) in node.pending.enumerated() {
                        switch p {
                        case let .resize(newSize, _, _, _):
                            if rng.chance(model.keepUnsynced) {
                                if newSize < b.count { b.removeSubrange(newSize...) }
                                size = newSize
                            }
                        case let .write(offset, new, _, _, _):
                            // Split at page boundaries: each page reaches the disk on its own.
                            var start = 0
                            while start < new.count {
                                let fileOff = offset + start
                                let end = min(new.count, start + model.pageSize - fileOff % model.pageSize)
                                let isLast = i == lastWrite && end == new.count
                                var keep = 0
                                if isLast && rng.chance(model.tearLastWrite) {
                                    // A prefix of whole tear units (absolute), strictly inside the piece.
                                    let g = model.tearGranularity
                                    let firstCut = (fileOff / g + 1) * g - fileOff
                                    let cuts = firstCut < end - start ? (end - start - 1 - firstCut) / g + 1 : 0
                                    if cuts > 0 { keep = firstCut + Int(rng.next() % UInt64(cuts)) * g }
                                } else if rng.chance(model.keepUnsynced) {
                                    keep = end - start
                                }
                                if keep > 0 {
                                    new.withUnsafeBytes { raw in
                                        Node.apply(UnsafeRawBufferPointer(rebasing: raw[start..<start + keep]), at: fileOff, to: &b)
                                    }
                                    size = max(size, fileOff + keep)
                                }
                                start = end
                            }
                        }
                    }
                    d.bytes = b
                    d.size = size
                }
                disk.append(d)
            }
            return disk
        }
    }

    fileprivate func mutate<T>(_ h: FaultyFileHandle, _ op: FileOperation, _ body: (inout Node) throws -> T) throws -> T {
        try withHandle(h) { s in
            try s.count(op, h.path)
            return try body(&s.nodes[h.node])
        }
    }
}

final class FaultyFileHandle: FileIOHandle, @unchecked Sendable {
    // @unchecked: immutable after init; all state is in the file system's Mutex.
    let path: String
    fileprivate let fs: FaultyFileSystem
    fileprivate let node: Int
    fileprivate let handleID: UInt64
    private let options: OpenOptions

    fileprivate init(fs: FaultyFileSystem, node: Int, handleID: UInt64, path: String, options: OpenOptions) {
        self.fs = fs
        self.node = node
        self.handleID = handleID
        self.path = path
        self.options = options
    }

    deinit { fs.release(owner: handleID) }

    private func requireWrite(_ op: String) throws {
        guard options.contains(.write) else { throw FileIOError.badAccess(path: path, operation: op) }
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        try requireWrite("write")
        try fs.mutate(self, .write) { $0.write(bytes, at: Int(offset)) }
        fs.stats.record { $0.writes += 1; $0.bytesWritten += Int64(bytes.count) }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int {
        guard options.contains(.read) else { throw FileIOError.badAccess(path: path, operation: "read") }
        let n = try fs.withHandle(self) { s -> Int in
            let node = s.nodes[self.node]
            let off = Int(offset)
            guard off < node.size else { return 0 }
            let n = min(buffer.count, node.size - off)
            let materialized = max(0, min(n, node.bytes.count - off))
            if materialized > 0 {
                node.bytes.withUnsafeBytes { src in
                    buffer.baseAddress!.copyMemory(from: src.baseAddress! + off, byteCount: materialized)
                }
            }
            if materialized < n {
                (buffer.baseAddress! + materialized).initializeMemory(as: UInt8.self, repeating: 0, count: n - materialized)
            }
            return n
        }
        fs.stats.record { $0.reads += 1 }
        return n
    }

    func size() throws -> Int64 {
        try fs.withHandle(self) { s in Int64(s.nodes[self.node].size) }
    }

    func truncate(to size: Int64) throws {
        try requireWrite("truncate")
        try fs.mutate(self, .truncate) { $0.resize(to: Int(size)) }
    }

    func preallocate(to size: Int64, keepSize: Bool) throws {
        try requireWrite("preallocate")
        fs.stats.record { $0.preallocations += 1 }
        if size <= 0 || keepSize { return }
        try fs.mutate(self, .preallocate) { n in
            if n.size < Int(size) { n.resize(to: Int(size)) }
        }
    }

    func dataSync() throws {
        fs.stats.record { $0.dataSyncs += 1 }
        try fs.mutate(self, .dataSync) { $0.pending.removeAll(keepingCapacity: true) }
    }

    func sync() throws {
        fs.stats.record { $0.fileSyncs += 1 }
        try fs.mutate(self, .sync) { $0.pending.removeAll(keepingCapacity: true) }
    }

    func tryLock() throws {
        try fs.withHandle(self) { s in
            if let owner = s.lockOwners[self.node] {
                if owner == self.handleID { return }
                throw FileIOError.locked(path: self.path)
            }
            s.lockOwners[self.node] = self.handleID
        }
    }

    func close() throws {
        fs.release(owner: handleID)
    }
}

final class FaultyDirectoryLock: DirectoryLock, @unchecked Sendable {
    let path: String
    private let fs: FaultyFileSystem
    private let owner: UInt64

    init(fs: FaultyFileSystem, path: String, owner: UInt64) {
        self.fs = fs
        self.path = path
        self.owner = owner
    }

    func unlock() throws { fs.release(owner: owner) }
    deinit { fs.release(owner: owner) }
}
