import EtcdServer
import Foundation
import Prometheus

/// `/metrics` on the client URL, in Prometheus' text format with etcd's metric names: the
/// member's gauges are read at scrape time, the fsync and backend commit histograms come
/// from swift-metrics timers (WAL, Backend) recorded into the same registry, and the process
/// figures from /proc (etcdctl check datascale reads process_resident_memory_bytes).
public final class MetricsEndpoint: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let gauges: [String: Gauge]

    /// etcd's gauges, with the help text etcd gives them.
    static let gaugeHelp: [(String, String)] = [
        ("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not."),
        ("etcd_server_leader_changes_seen_total", "The number of leader changes seen."),
        ("etcd_server_proposals_committed_total", "The total number of consensus proposals committed."),
        ("etcd_server_proposals_applied_total", "The total number of consensus proposals applied."),
        ("etcd_server_proposals_pending", "The current number of pending proposals to commit."),
        ("etcd_server_proposals_failed_total", "The total number of failed proposals seen."),
        ("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes."),
        ("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes."),
        ("etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes."),
        ("etcd_debugging_mvcc_keys_total", "Total number of keys."),
        ("process_resident_memory_bytes", "Resident memory size in bytes."),
        ("process_virtual_memory_bytes", "Virtual memory size in bytes."),
    ]

    /// etcd's buckets for both disk histograms: 1 ms doubling 14 times.
    public static let diskBuckets: [Duration] = (0..<14).map { .microseconds(1000 << $0) }
    public static let histogramLabels = ["etcd_disk_wal_fsync_duration_seconds", "etcd_disk_backend_commit_duration_seconds"]

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var g: [String: Gauge] = [:]
        for (name, help) in Self.gaugeHelp { g[name] = registry.makeGauge(name: name, help: help) }
        gauges = g
    }

    public func render(_ server: EtcdServer) -> String {
        let m = server.metrics()
        set("etcd_server_has_leader", m.hasLeader ? 1 : 0)
        set("etcd_server_leader_changes_seen_total", Double(m.leaderChanges))
        set("etcd_server_proposals_committed_total", Double(m.proposalsCommitted))
        set("etcd_server_proposals_applied_total", Double(m.proposalsApplied))
        set("etcd_server_proposals_pending", Double(m.proposalsPending))
        set("etcd_server_proposals_failed_total", Double(m.proposalsFailed))
        set("etcd_server_quota_backend_bytes", Double(m.quotaBytes))
        set("etcd_mvcc_db_total_size_in_bytes", Double(m.dbSize))
        set("etcd_mvcc_db_total_size_in_use_in_bytes", Double(m.dbSizeInUse))
        set("etcd_debugging_mvcc_keys_total", Double(m.keys))
        let (rss, vsz) = Self.processMemory()
        set("process_resident_memory_bytes", Double(rss))
        set("process_virtual_memory_bytes", Double(vsz))
        // Encryption at rest, per resource of the configuration (as `swetcd encryption status`).
        if server.encryption.encryptor != nil, let status = try? server.encryptionStatus() {
            for r in status.resources {
                let labels = [("resource", r.resource)]
                registry.makeGauge(name: "swetcd_encryption_values", labels: labels,
                                   help: "Stored values (every revision kept) under the resource's key prefixes.").set(Double(r.values))
                registry.makeGauge(name: "swetcd_encryption_values_in_target_form", labels: labels,
                                   help: "Of those, values in the form the configuration's first provider wants.").set(Double(r.done))
                registry.makeGauge(name: "swetcd_encryption_completed", labels: labels,
                                   help: "1 when the resource's migration (EncryptionCompleted or DecryptionCompleted) is complete.").set(Double(r.done == r.values ? 1 : 0))
            }
        }
        return registry.emitToString()
    }

    private func set(_ name: String, _ v: Double) { gauges[name]?.set(v) }

    /// Resident and virtual size from /proc/self/statm (pages).
    static func processMemory() -> (Int, Int) {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return (0, 0) }
        let f = text.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        guard f.count >= 2 else { return (0, 0) }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        return (f[1] * page, f[0] * page)
    }
}
