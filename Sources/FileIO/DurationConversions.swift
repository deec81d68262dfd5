import Dispatch

extension Duration {
    /// The whole duration in nanoseconds (sub-nanosecond parts dropped).
    public var totalNanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }

    /// The duration for Dispatch's timers and deadlines.
    public var dispatchInterval: DispatchTimeInterval { .nanoseconds(Int(totalNanoseconds)) }
}
