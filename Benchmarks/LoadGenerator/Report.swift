import Foundation

/// etcd benchmark's report: summary, response time histogram, latency distribution,
/// error distribution; then one `JSON {…}` line for scripts.
struct Report {
    var latencies: [Double]  // seconds, one per successful request
    var errors: [String: Int]
    var elapsed: Double  // seconds, wall clock of the whole run
    var precise: Bool

    var successes: Int { latencies.count }
    var errorCount: Int { errors.values.reduce(0, +) }
    var requestsPerSecond: Double { elapsed > 0 ? Double(successes) / elapsed : 0 }

    /// Nearest-rank percentile of the sorted latencies, in seconds.
    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
        return sorted[min(max(rank, 0), sorted.count - 1)]
    }

    func render() -> String {
        let sorted = latencies.sorted()
        let fmt = precise ? "%4.6f" : "%4.4f"
        func f(_ v: Double) -> String { String(format: fmt, v) }
        var s = "\nSummary:\n"
        let mean = sorted.isEmpty ? 0 : sorted.reduce(0, +) / Double(sorted.count)
        let variance = sorted.isEmpty ? 0 : sorted.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(sorted.count)
        s += "  Total:\t\(f(elapsed)) secs.\n"
        s += "  Slowest:\t\(f(sorted.last ?? 0)) secs.\n"
        s += "  Fastest:\t\(f(sorted.first ?? 0)) secs.\n"
        s += "  Average:\t\(f(mean)) secs.\n"
        s += "  Stddev:\t\(f(variance.squareRoot())) secs.\n"
        s += "  Requests/sec:\t\(f(requestsPerSecond))\n"
        if let fastest = sorted.first, let slowest = sorted.last {
            s += "\nResponse time histogram:\n"
            let bucketCount = 10
            let width = (slowest - fastest) / Double(bucketCount)
            var bounds = (0..<bucketCount).map { fastest + width * Double($0) }
            bounds.append(slowest)
            var counts = [Int](repeating: 0, count: bounds.count)
            var b = 0
            for v in sorted {
                while b < bounds.count - 1 && v > bounds[b] { b += 1 }
                counts[b] += 1
            }
            let most = counts.max() ?? 1
            for (bound, count) in zip(bounds, counts) {
                let bar = String(repeating: "∎", count: most > 0 ? count * 40 / most : 0)
                s += "  \(f(bound)) [\(count)]\t|\(bar)\n"
            }
            s += "\nLatency distribution:\n"
            for p in [10.0, 25, 50, 75, 90, 95, 99, 99.9] {
                let label = p == p.rounded() ? String(Int(p)) : String(p)
                s += "  \(label)% in \(f(Self.percentile(sorted, p))) secs.\n"
            }
        }
        if !errors.isEmpty {
            s += "\nError distribution:\n"
            for (message, count) in errors.sorted(by: { $0.value > $1.value }) {
                s += "  [\(count)]\t\(message)\n"
            }
        }
        let ms = { (p: Double) in Self.percentile(sorted, p) * 1000 }
        s += "\nJSON {\"requests_per_s\": \(requestsPerSecond), \"p50_ms\": \(ms(50)), \"p90_ms\": \(ms(90)), "
        s += "\"p99_ms\": \(ms(99)), \"p999_ms\": \(ms(99.9)), \"total\": \(successes + errorCount), "
        s += "\"errors\": \(errorCount), \"elapsed_s\": \(elapsed)}"
        return s
    }
}
