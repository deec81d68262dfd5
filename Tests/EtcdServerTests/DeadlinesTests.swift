import Testing

@testable import EtcdServer

/// The request-timeout queue: every deadline fires once, not before it is due, in deadline
/// order (also when one is added with a shorter wait than the one before it), and the
/// queue can be used again after it ran empty.
@Suite struct DeadlinesTests {
    @Test func firesEachDeadlineOnceInOrderAndNeverEarly() async {
        let deadlines = Deadlines(resolution: .milliseconds(5))
        let waits: [Int] = [60, 40, 80, 40, 10, 100, 70]  // out of order on purpose
        let (fired, sink) = AsyncStream<(Int, ContinuousClock.Instant)>.makeStream()
        var due: [Int: ContinuousClock.Instant] = [:]
        for (i, ms) in waits.enumerated() {
            due[i] = .now + .milliseconds(ms)
            deadlines.add(after: .milliseconds(ms)) { sink.yield((i, .now)) }
        }
        var order: [Int] = []
        for await (i, at) in fired {
            #expect(at >= due[i]!, "deadline \(i) fired early")
            order.append(i)
            if order.count == waits.count { break }
        }
        // Fired in the order of the deadlines (the instants taken just before each add;
        // a preempted test thread may order them other than the waits alone would).
        #expect(order == due.keys.sorted { due[$0]! < due[$1]! })
        #expect(Set(order).count == waits.count)

        // Empty now (its timer stopped); a new deadline starts it again.
        let (again, sink2) = AsyncStream<Void>.makeStream()
        deadlines.add(after: .milliseconds(1)) { sink2.yield() }
        for await _ in again { break }
    }
}
