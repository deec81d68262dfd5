#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one-writer-at-a-time lock: held from `beginWrite` to `commit`/`rollback`, which may run
/// on another thread than the one that took it (so not a plain pthread mutex).
final class WriterLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var held = false

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    /// Waits until the lock is free, then takes it.
    func lock() {
        pthread_mutex_lock(mutex)
        while held { pthread_cond_wait(cond, mutex) }
        held = true
        pthread_mutex_unlock(mutex)
    }

    /// Takes the lock if it is free.
    func tryLock() -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if held { return false }
        held = true
        return true
    }

    func unlock() {
        pthread_mutex_lock(mutex)
        precondition(held, "WriterLock.unlock without lock")
        held = false
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
    }
}
