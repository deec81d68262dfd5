import Foundation
import FileIO

/// Prepares the next segment ahead of time (etcd's filePipeline): a locked, preallocated
/// `0.tmp` / `1.tmp` in the WAL directory, so that a cut only writes the segment header,
/// syncs and renames. Preparation runs in the background as soon as the previous file was
/// taken.
final class FilePipeline: @unchecked Sendable {
    // @unchecked: mutable state is guarded by `cond`.
    private let fs: any FileSystem
    private let dir: String
    private let size: Int64
    private let background: Bool
    private let cond = NSCondition()
    private var count = 0
    private var ready: Result<(name: String, handle: any FileIOHandle), WALError>?
    private var preparing = false
    private var closed = false

    init(fs: any FileSystem, dir: String, size: Int64, background: Bool) {
        self.fs = fs
        self.dir = dir
        self.size = size
        self.background = background
        startPreparing()
    }

    /// The prepared file (its name in the WAL directory and a locked handle), waiting for it
    /// if need be; the next one is prepared right after. Rename it before calling again.
    func open() throws(WALError) -> (name: String, handle: any FileIOHandle) {
        cond.lock()
        while ready == nil && preparing { cond.wait() }
        if ready == nil && !closed {
            // Synchronous mode, or a background preparation never started.
            cond.unlock()
            let r = allocate()
            cond.lock()
            ready = r
        }
        guard let r = ready else {
            cond.unlock()
            throw .closed
        }
        ready = nil
        cond.unlock()
        let file = try r.get()
        startPreparing()
        return file
    }

    /// Stops preparing; removes a prepared file that was not taken.
    func close() {
        cond.lock()
        closed = true
        while preparing { cond.wait() }
        let leftover = ready
        ready = nil
        cond.unlock()
        if case .success(let f)? = leftover {
            try? fs.remove(Paths.join(dir, f.name))
            try? f.handle.close()
        }
    }

    private func startPreparing() {
        guard background else { return }
        cond.lock()
        guard !closed, !preparing, ready == nil else {
            cond.unlock()
            return
        }
        preparing = true
        cond.unlock()
        let thread = Thread { [self] in
            let r = allocate()
            cond.lock()
            preparing = false
            if closed, case .success(let f) = r {
                try? fs.remove(Paths.join(dir, f.name))
                try? f.handle.close()
            } else {
                ready = r
            }
            cond.broadcast()
            cond.unlock()
        }
        thread.name = "wal-file-pipeline"
        thread.start()
    }

    private func allocate() -> Result<(name: String, handle: any FileIOHandle), WALError> {
        // count % 2 so this file is never the one handed out last (not yet renamed).
        cond.lock()
        let name = "\(count % 2).tmp"
        cond.unlock()
        let path = Paths.join(dir, name)
        do {
            // Truncate: a leftover .tmp of a cut interrupted by a crash must not leak stale
            // records into the new segment.
            let h = try fs.open(path, options: [.read, .write, .create, .truncate])
            do {
                try lockWAL(h)
                try h.preallocate(to: size, keepSize: false)
            } catch {
                try? h.close()
                throw error
            }
            cond.lock()
            count += 1
            cond.unlock()
            return .success((name, h))
        } catch let e as FileIOError {
            if case .locked(let p) = e { return .failure(.locked(path: p)) }
            return .failure(.io(e))
        } catch {
            return .failure(.stopped(cause: "\(error)"))
        }
    }
}
