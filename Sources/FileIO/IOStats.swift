import Synchronization

/// Counters of the calls made through one file system, for tests and benchmarks
/// (e.g. group commit: fdatasync calls per 1,000 appends).
public final class IOStats: Sendable {
    public struct Counters: Sendable, Equatable {
        /// `FileIOHandle.dataSync()` calls (fdatasync).
        public var dataSyncs = 0
        /// `FileIOHandle.sync()` calls (fsync of a file).
        public var fileSyncs = 0
        /// `FileSystem.syncDirectory(_:)` calls (fsync of a directory).
        public var directorySyncs = 0
        /// `FileIOHandle.write` calls and the bytes they wrote.
        public var writes = 0
        public var bytesWritten: Int64 = 0
        /// `FileIOHandle.read` calls.
        public var reads = 0
        /// `preallocate` calls.
        public var preallocations = 0
        /// `FileSystem.rename` calls.
        public var renames = 0

        public init() {}

        /// All syncs of file data (fdatasync + fsync of files).
        public var fileDataSyncs: Int { dataSyncs + fileSyncs }
    }

    private let state = Mutex(Counters())

    public init() {}

    /// A consistent copy of the counters.
    public var counters: Counters { state.withLock { $0 } }

    public func reset() { state.withLock { $0 = Counters() } }

    func record(_ update: (inout Counters) -> Void) {
        state.withLock { update(&$0) }
    }
}
