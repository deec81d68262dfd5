// etcd's checks of --initial-cluster against this member, made when the member
// has no WAL yet (etcdserver.NewServer: VerifyBootstrap for a new cluster,
// VerifyJoinExisting otherwise). They are not made at parse time: a member that
// restarts from its data dir ignores --initial-cluster.
//
// Observed from etcd 3.4.23 (exit 1; capnslog, after its startup lines):
//   C | etcdmain: couldn't find local name "default" in the initial cluster configuration
//   C | etcdmain: --initial-cluster has default=http://127.0.0.1:1111 but missing from --initial-advertise-peer-urls=http://127.0.0.1:31307 (resolved urls: "http://127.0.0.1:31307" != "http://127.0.0.1:1111")
//   C | etcdmain: --initial-advertise-peer-urls has http://127.0.0.1:2222 but missing from --initial-cluster=default=http://127.0.0.1:2222,default=http://127.0.0.1:31307
//   C | etcdmain: initial cluster b=http://127.0.0.1:31307,default=http://127.0.0.1:31307 has duplicate url
// and with --logger=zap:
//   {"level":"warn",...,"caller":"etcdmain/etcd.go:176","msg":"failed to start etcd","error":"couldn't find local name ..."}
//   {"level":"fatal",...,"caller":"etcdmain/etcd.go:271","msg":"discovery failed","error":"couldn't find local name ..."}

extension EtcdConfig {
    /// Resolves a host name for URL comparison (etcd resolves with DNS); the
    /// default maps "localhost" to 127.0.0.1 and leaves everything else as is.
    public static let defaultResolver: @Sendable (String) -> String = { host in host == "localhost" ? "127.0.0.1" : host }

    /// The initial-cluster checks etcd makes before bootstrapping a member that has
    /// no WAL; nil when they pass. Call only when the data dir holds no WAL.
    public func verifyInitialCluster(resolve: (String) -> String = EtcdConfig.defaultResolver) -> ConfigError? {
        guard let message = initialClusterProblem(resolve: resolve) else { return nil }
        return bootstrapError(message)
    }

    /// The error text alone (nil when the checks pass).
    public func initialClusterProblem(resolve: (String) -> String = EtcdConfig.defaultResolver) -> String? {
        if !discovery.isEmpty || !discoverySRV.isEmpty {
            return nil // discovery is not supported by swetcd; see notHonoured
        }
        let map: InitialClusterMap
        do {
            map = try InitialClusterMap.parse(initialCluster)
        } catch {
            return "error setting up initial cluster: \(error.message)"
        }
        guard map.members[name] != nil else { return ConfigMessages.localNameMissing(name) }
        if initialClusterState == "new" {
            if let problem = advertiseMatchesCluster(map, resolve: resolve) { return problem }
        }
        if Self.hasDuplicateURL(map) { return ConfigMessages.duplicateURL(map.description) }
        if initialClusterState == "new" {
            if map.description.isEmpty && discovery.isEmpty { return ConfigMessages.clusterUnset }
        } else if !discovery.isEmpty {
            return ConfigMessages.discoveryWhenJoining
        }
        return nil
    }

    /// The failure as etcd prints it (capnslog "C | etcdmain: <err>", or zap's two lines); exit 1.
    public func bootstrapError(_ message: String) -> ConfigError {
        let spec = logSpec
        if spec.logger == "zap" {
            return ConfigError(
                message: message, exitCode: 1,
                lines: [
                    .log(LogEntry(.warning, "etcdmain", message, zap: .warn, ConfigMessages.zapFailedToStart,
                                  fields: [.error(message)], caller: "etcdmain/etcd.go:176")),
                    .log(LogEntry(.critical, "etcdmain", message, zap: .fatal, ConfigMessages.zapDiscoveryFailed,
                                  fields: [.error(message)], caller: "etcdmain/etcd.go:271")),
                ],
                logSpec: spec)
        }
        return ConfigError(message: message, exitCode: 1, lines: [.log(LogEntry(.critical, "etcdmain", message))], logSpec: spec)
    }

    private func advertiseMatchesCluster(_ map: InitialClusterMap, resolve: (String) -> String) -> String? {
        let clusterURLs = (map.members[name] ?? []).sorted { $0.description < $1.description }
        let advertised = initialAdvertisePeerURLs.sorted { $0.description < $1.description }
        let apStrings = advertised.map(\.description)
        var err = ""
        if clusterURLs.count != advertised.count {
            err = "len(\(goQuoteList(apStrings))) != len(\(goQuoteList(clusterURLs.map(\.description))))"
        } else if clusterURLs == advertised {
            return nil
        } else {
            func resolved(_ list: [EtcdURL]) -> [EtcdURL] {
                list.map { u in
                    var r = u
                    if let hp = goSplitHostPort(u.host), !isIPLiteral(hp.host) {
                        let ip = resolve(hp.host)
                        r.host = ip.contains(":") ? "[\(ip)]:\(hp.port)" : "\(ip):\(hp.port)"
                    }
                    return r
                }.sorted { $0.description < $1.description }
            }
            let a = resolved(advertised)
            let b = resolved(clusterURLs)
            if let i = a.indices.first(where: { a[$0] != b[$0] }) {
                err = "resolved urls: \(goQuote(a[i].description)) != \(goQuote(b[i].description))"
            } else {
                return nil
            }
        }
        let apSet = Set(apStrings)
        let initSet = Set(clusterURLs.map(\.description))
        let missingFromAP = initSet.subtracting(apSet).sorted()
        if !missingFromAP.isEmpty {
            let mstr = missingFromAP.map { "\(name)=\($0)" }.joined(separator: ",")
            return ConfigMessages.initialClusterMissingFromAdvertise(mstr, apStrings.joined(separator: ","), err)
        }
        let own = InitialClusterMap(members: [name: initialAdvertisePeerURLs]).description
        let missingFromCluster = apSet.subtracting(initSet).sorted()
        if !missingFromCluster.isEmpty {
            return ConfigMessages.advertiseMissingFromInitialCluster(missingFromCluster.joined(separator: ","), own)
        }
        return ConfigMessages.failedToResolve(apStrings.joined(separator: ","), own, err)
    }

    private static func hasDuplicateURL(_ map: InitialClusterMap) -> Bool {
        var seen = Set<String>()
        for urls in map.members.values {
            for u in urls where !seen.insert(u.description).inserted { return true }
        }
        return false
    }
}
