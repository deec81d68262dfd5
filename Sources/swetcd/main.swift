import Dispatch
import Encryption
import EtcdAPI
import EtcdConfig
import EtcdServer
import Foundation
import Logging
import Metrics
import Prometheus
import Synchronization

// swetcd: etcd's command line, environment and config file; then the member and one
// client listener per --listen-client-urls entry, until SIGTERM or SIGINT.

// `swetcd encryption status ...`: a client command, not a member.
if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == "encryption" {
    exit(await EncryptionStatusCommand.run(Array(CommandLine.arguments.dropFirst(2))))
}

let outcome: ParseOutcome
do {
    outcome = try EtcdConfig.parse(
        arguments: Array(CommandLine.arguments.dropFirst()),
        environment: ProcessInfo.processInfo.environment)
} catch {
    error.write()
    exit(error.exitCode)
}

let config: EtcdConfig
switch outcome {
case .printVersion(let text), .printHelp(let text):
    text.write()
    exit(0)
case .run(let c):
    config = c
}

config.writeEarlyOutput()
do {
    LoggingSystem.bootstrap(try makeLogHandlerFactory(config: config))
} catch {
    error.write()
    exit(error.exitCode)
}

let cpus = ProcessInfo.processInfo.activeProcessorCount
for entry in config.startupLog(cpus: cpus, availableCPUs: cpus) + config.notHonouredLog {
    entry.emit(logger: config.logger)
}
// A new member checks its initial cluster; a restarting one takes its cluster from the WAL.
if !FileManager.default.fileExists(atPath: config.effectiveWALDir), let error = config.verifyInitialCluster() {
    error.write()
    exit(error.exitCode)
}

// One Prometheus registry for the process: the WAL and Backend record their timers through
// swift-metrics into it, and /metrics on every client URL emits it with etcd's names.
let metrics = MetricsEndpoint()
var metricsFactory = PrometheusMetricsFactory(registry: metrics.registry)
for label in MetricsEndpoint.histogramLabels { metricsFactory.durationHistogramBuckets[label] = MetricsEndpoint.diskBuckets }
MetricsSystem.bootstrap(metricsFactory)

let embedLog = Logger(label: "embed")
let mainLog = Logger(label: "etcdmain")
let advertised = config.advertiseClientURLs.map(\.description)
if config.logger == "zap" {
    LogEntry(.info, "embed", "starting an etcd server", fields: [
        .string("etcd-version", "3.4.23"), .string("name", config.name), .string("data-dir", config.dataDir),
        .string("member-dir", config.dataDir + "/member"), .strings("advertise-client-urls", advertised),
        .strings("listen-client-urls", config.listenClientURLs.map(\.description)),
    ], caller: "embed/etcd.go:299").emit(logger: config.logger)
} else {
    for line in [
        "name = \(config.name)", "data dir = \(config.dataDir)", "member dir = \(config.dataDir)/member",
        "heartbeat = \(config.heartbeatIntervalMs)ms", "election = \(config.electionTimeoutMs)ms",
        "snapshot count = \(config.snapshotCount)", "advertise client URLs = \(advertised.joined(separator: ","))",
    ] {
        embedLog.info("\(line)")
    }
}

let initialCluster: InitialCluster
do {
    let map = try config.initialClusterMap()
    initialCluster = InitialCluster(peerURLsByName: map.members.mapValues { $0.map(\.description) })
} catch {
    mainLog.critical("\(error)")
    exit(1)
}

var serverConfig = ServerConfig(
    name: config.name, clusterToken: config.initialClusterToken,
    initialCluster: initialCluster,
    advertiseClientURLs: config.advertiseClientURLs.map(\.description),
    maxRequestBytes: Int(config.maxRequestBytes), maxTxnOps: Int(config.maxTxnOps),
    dataDir: config.dataDir, walDir: config.walDir.isEmpty ? nil : config.walDir,
    heartbeatMs: Int(config.heartbeatIntervalMs), electionMs: Int(config.electionTimeoutMs),
    preVote: config.preVote, unsafeNoFsync: config.unsafeNoFsync)
if config.backendBatchInterval > .zero { serverConfig.backendBatchInterval = config.backendBatchInterval }
if config.backendBatchLimit > 0 { serverConfig.backendBatchLimit = config.backendBatchLimit }
serverConfig.snapshotCount = config.snapshotCount
serverConfig.maxSnapshots = Int(config.maxSnapshots)
serverConfig.maxWALs = Int(config.maxWALs)
serverConfig.quotaBackendBytes = config.quotaBackendBytes
let autoCompaction: AutoCompactor.Mode?
do {
    autoCompaction = try AutoCompactor.parse(
        mode: config.autoCompactionMode, retention: config.autoCompactionRetention.isEmpty ? "0" : config.autoCompactionRetention,
        parseDuration: GoDuration.parse)
} catch {
    mainLog.critical("\(error.message)")
    exit(1)
}
// Encryption at rest: a file that does not load stops the member before anything is written.
if !config.encryptionProviderConfig.isEmpty {
    do {
        serverConfig.encryption = try ValueEncryptor.load(file: config.encryptionProviderConfig, prefixes: config.encryptionResourcePrefixes)
    } catch {
        mainLog.critical("\(error)")
        exit(1)
    }
}
// The peer URLs listen before the member starts: a new cluster elects its leader through them.
serverConfig.joinExisting = config.initialClusterState == "existing"
serverConfig.strictReconfigCheck = config.strictReconfigCheck
let peerTransport = HTTPPeerTransport()
serverConfig.peerTransport = peerTransport
serverConfig.onRemoved = { exit(0) }
// A fault hook for partition tests only (never set in production): with
// SWETCD_TEST_PEER_FAULTS=1, SIGUSR1 cuts this member off from its peers and SIGUSR2 heals.
var faultSources: [DispatchSourceSignal] = []
if ProcessInfo.processInfo.environment["SWETCD_TEST_PEER_FAULTS"] == "1" {
    for (sig, cut) in [(SIGUSR1, true), (SIGUSR2, false)] {
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .main)
        source.setEventHandler {
            peerTransport.isolated.store(cut, ordering: .relaxed)
            mainLog.warning("fault hook: peer traffic \(cut ? "cut" : "restored")")
        }
        source.resume()
        faultSources.append(source)
    }
}
var peerListeners: [PeerListener] = []
for url in config.listenPeerURLs {
    do {
        peerListeners.append(try await PeerListener.bind(host: url.hostname, port: Int(url.port) ?? 2380, transport: peerTransport))
    } catch {
        mainLog.critical("listen tcp \(url.host): \(listenErrorText(error))")
        exit(1)
    }
}
let server: EtcdServer
do {
    server = try await EtcdServer.start(
        config: serverConfig,
        logger: Logger(label: "etcdserver"))
} catch {
    mainLog.critical("\(error.message)")
    exit(1)
}
// --encryption-provider-config-automatic-reload: the file is read again when it changes
// (checked every second) and on SIGHUP; a file that does not load is reported and the
// configuration in use stays.
var reloadSources: [DispatchSourceProtocol] = []
if config.encryptionProviderConfigAutomaticReload && !config.encryptionProviderConfig.isEmpty {
    let file = config.encryptionProviderConfig
    let prefixes = config.encryptionResourcePrefixes
    let lastText = Mutex<String?>(try? String(contentsOfFile: file, encoding: .utf8))
    let reload: @Sendable (Bool) -> Void = { forced in
        let text = try? String(contentsOfFile: file, encoding: .utf8)
        guard forced || lastText.withLock({ $0 != text }) else { return }
        lastText.withLock { $0 = text }
        do {
            server.encryption.replace(try ValueEncryptor.load(file: file, prefixes: prefixes))
            mainLog.notice("loaded the encryption provider config \(file)")
        } catch {
            mainLog.error("\(error); the configuration loaded before stays in use")
        }
    }
    signal(SIGHUP, SIG_IGN)
    let hup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .main)
    hup.setEventHandler { reload(true) }
    hup.resume()
    let timer = DispatchSource.makeTimerSource(queue: .main)
    timer.schedule(deadline: .now() + 1, repeating: 1)
    timer.setEventHandler { reload(false) }
    timer.resume()
    reloadSources = [hup, timer]
}
let compactor = autoCompaction.map { server.startAutoCompaction($0, formatDuration: GoDuration.format) }

var options = ClientServer.Options()
options.keepaliveMinTime = config.grpcKeepAliveMinTime
options.keepaliveInterval = config.grpcKeepAliveInterval
options.keepaliveTimeout = config.grpcKeepAliveTimeout

// Client URLs serve gRPC and HTTP; --listen-metrics-urls serve the same listener for /metrics
// and /health (as etcd's metrics listener), logged as etcd logs them.
let listeners: [(url: EtcdURL, server: ClientServer, metricsOnly: Bool)] =
    config.listenClientURLs.map { url in
        (url, ClientServer(server: server, host: url.hostname, port: Int(url.port) ?? 2379, options: options, metrics: metrics), false)
    } + config.listenMetricsURLs.map { url in
        (url, ClientServer(server: server, host: url.hostname, port: Int(url.port) ?? 2379, options: options, metrics: metrics), true)
    }

// SIGTERM / SIGINT: stop accepting, finish what is in flight, exit.
signal(SIGTERM, SIG_IGN)
signal(SIGINT, SIG_IGN)
var signalSources: [DispatchSourceSignal] = []
for sig in [SIGTERM, SIGINT] {
    let source = DispatchSource.makeSignalSource(signal: sig, queue: .main)
    source.setEventHandler {
        mainLog.notice("received \(sig == SIGTERM ? "terminated" : "interrupt") signal, shutting down...", metadata: ["pkg": "pkg/osutil"])
        Logger(label: "etcdserver").info("skipped leadership transfer for single voting member cluster")
        for l in listeners { l.server.shutDown() }
        server.stop()
        peerTransport.stop()
        for l in peerListeners { l.close() }
    }
    source.resume()
    signalSources.append(source)
}

let exitCode: Int32 = await withTaskGroup(of: Int32.self) { group in
    for l in listeners {
        group.addTask {
            do {
                try await l.server.serve()
                return 0
            } catch {
                mainLog.critical("listen tcp \(l.url.host): \(listenErrorText(error))")
                for other in listeners { other.server.shutDown() }
                return 1
            }
        }
        group.addTask {
            guard await l.server.boundPort != nil else { return 0 }
            if l.metricsOnly {
                LogEntry(.info, "embed", "listening for metrics on \(l.url.description)",
                         zap: .info, "serving metrics", fields: [.string("address", l.url.description)],
                         caller: "embed/etcd.go:714").emit(logger: config.logger)
                return 0
            }
            let address = "\(l.url.hostname == "localhost" ? "127.0.0.1" : l.url.hostname):\(await l.server.boundPort ?? 0)"
            if config.logger != "zap" { embedLog.info("ready to serve client requests") }
            LogEntry(.notice, "embed", "serving insecure client requests on \(address), this is strongly discouraged!",
                     zap: .info, "serving client traffic insecurely; this is strongly discouraged!",
                     fields: [.string("address", address)], caller: "embed/serve.go:145").emit(logger: config.logger)
            return 0
        }
    }
    var worst: Int32 = 0
    for await code in group { worst = max(worst, code) }
    return worst
}
exit(exitCode)
