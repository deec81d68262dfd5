import Foundation
import Testing
@testable import EtcdConfig

// Behaviour checked against /usr/bin/etcd 3.4.23 (Debian, go1.19.8). The
// observed output is quoted next to each test; timestamps are normalised.

@Suite struct DefaultsTests {
    @Test func noFlagsGivesEtcdDefaults() throws {
        let c = try config([])
        #expect(c.name == "default")
        #expect(c.dataDir == "default.etcd")
        #expect(c.walDir == "")
        #expect(c.effectiveWALDir == "default.etcd/member/wal")
        #expect(c.listenClientURLs.map(\.description) == ["http://localhost:2379"])
        #expect(c.advertiseClientURLs.map(\.description) == ["http://localhost:2379"])
        #expect(c.listenPeerURLs.map(\.description) == ["http://localhost:2380"])
        #expect(c.initialAdvertisePeerURLs.map(\.description) == ["http://localhost:2380"])
        #expect(c.listenMetricsURLs.isEmpty)
        #expect(c.initialCluster == "default=http://localhost:2380")
        #expect(c.initialClusterToken == "etcd-cluster")
        #expect(c.initialClusterState == "new")
        #expect(c.maxRequestBytes == 1_572_864)
        #expect(c.maxTxnOps == 128)
        #expect(c.quotaBackendBytes == 0)
        #expect(c.snapshotCount == 100_000)
        #expect(c.heartbeatIntervalMs == 100)
        #expect(c.electionTimeoutMs == 1000)
        #expect(c.maxSnapshots == 5 && c.maxWALs == 5)
        #expect(c.maxConcurrentStreams == UInt32.max)
        #expect(c.logger == "capnslog")
        #expect(c.logLevel == "info")
        #expect(c.logOutputs == ["default"])
        #expect(c.debug == false)
        #expect(c.grpcKeepAliveMinTime == .seconds(5))
        #expect(c.grpcKeepAliveInterval == .seconds(7200))
        #expect(c.grpcKeepAliveTimeout == .seconds(20))
        #expect(c.preVote == false && c.peerAutoTLS == false && c.experimentalInitialCorruptCheck == false)
        #expect(c.strictReconfigCheck == true)
        #expect(c.enableV2 == false)
        #expect(c.enableGRPCGateway == true)
        #expect(c.autoCompactionRetention == "0" && c.autoCompactionMode == "periodic")
        #expect(c.backendBatchInterval == .zero && c.backendBatchLimit == 0)
        #expect(c.unsafeNoFsync == false && c.forceNewCluster == false)
        #expect(c.cors == ["*"] && c.hostWhitelist == ["*"])
        #expect(c.authToken == "simple" && c.bcryptCost == 10 && c.authTokenTTL == 300)
        #expect(c.metrics == "basic")
        #expect(c.experimentalWarningApplyDuration == .milliseconds(100))
        #expect(c.proxy == "off" && c.discoveryFallback == "proxy")
        #expect(c.explicitlySet.isEmpty)
        #expect(c.notHonoured.isEmpty)
    }

    @Test func defaultRunPrintsTheCapnslogDeprecationAndDataDirNote() throws {
        // etcd 3.4.23 with no flags (first lines of stderr):
        //   [WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead
        //   ... I | etcdmain: etcd Version: 3.4.23
        //   ...
        //   ... W | etcdmain: no data-dir provided, using default data-dir ./default.etcd
        let c = try config([])
        #expect(c.earlyOutput == [.raw("[WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead\n")])
        #expect(c.loggingSetupWarnings == ["[WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead"])
        #expect(c.parseWarnings == ["[WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead"])
        let log = c.startupLog(cpus: 2, availableCPUs: 2)
        #expect(log.first?.message == "etcd Version: 3.4.23\n")
        #expect(log.last?.message == "no data-dir provided, using default data-dir ./default.etcd")
        #expect(log.last?.capnsLevel == .warning)
        #expect(log.last?.package == "etcdmain")
        #expect(log.contains { $0.message == "setting maximum number of CPUs to 2, total number of available CPUs is 2" })
    }

    @Test func dataDirDefaultsFromName() throws {
        let c = try config(["--name", "infra1"])
        #expect(c.dataDir == "infra1.etcd")
        // etcd: UpdateDefaultClusterFromName rewrites the default initial cluster with the name.
        #expect(c.initialCluster == "infra1=http://localhost:2380")
        let c2 = try config(["--name", "n", "--initial-advertise-peer-urls", "http://127.0.0.1:2380,http://10.0.0.1:2380"])
        #expect(c2.initialCluster == "n=http://10.0.0.1:2380,n=http://127.0.0.1:2380")
        let c3 = try config(["--name", "n", "--initial-cluster", "n=http://127.0.0.1:1"])
        #expect(c3.initialCluster == "n=http://127.0.0.1:1")
        let c4 = try config(["--data-dir", "/x/y"])
        #expect(c4.dataDir == "/x/y")
        #expect(c4.postParseLog.isEmpty)
    }

    @Test func defaultHostReplacesDefaultAdvertiseWhenListeningOnAllAddresses() throws {
        let c = try config(
            ["--listen-peer-urls", "http://0.0.0.0:2380", "--listen-client-urls", "http://0.0.0.0:2379",
             "--advertise-client-urls", "http://localhost:2379"],
            defaultHost: "10.1.2.3")
        #expect(c.initialAdvertisePeerURLs.map(\.description) == ["http://10.1.2.3:2380"])
        #expect(c.advertiseClientURLs.map(\.description) == ["http://10.1.2.3:2379"])
        #expect(c.postParseLog.first?.message == "advertising using detected default host \"10.1.2.3\"")
    }

    @Test func tableCoversEveryFlagOfEtcdHelp() {
        // Every "--flag" that `etcd --help` lists is accepted.
        let names = HelpText.flags.split(separator: "\n").compactMap { line -> String? in
            let t = line.drop { $0 == " " }
            guard t.hasPrefix("--") else { return nil }
            return String(t.dropFirst(2).prefix { $0 != " " })
        }
        #expect(names.count == 80)
        for n in names {
            #expect(FlagTable.byName[n] != nil, "missing flag \(n)")
        }
        #expect(Set(FlagTable.all.map(\.name)).count == FlagTable.all.count)
    }
}

@Suite struct FlagSyntaxTests {
    @Test func allFourSyntaxForms() throws {
        for args in [["-name", "a"], ["--name", "a"], ["-name=a"], ["--name=a"]] {
            #expect(try config(args).name == "a")
        }
        #expect(try config(["--max-txn-ops", "7"]).maxTxnOps == 7)
        #expect(try config(["-max-txn-ops=7"]).maxTxnOps == 7)
        // base prefixes as Go's strconv.ParseUint(s, 0, 64)
        #expect(try config(["--max-txn-ops=0x10"]).maxTxnOps == 16)
        #expect(try config(["--max-txn-ops=010"]).maxTxnOps == 8)
        #expect(try config(["--max-txn-ops=1_000"]).maxTxnOps == 1000)
        #expect(try config(["--quota-backend-bytes=-1"]).quotaBackendBytes == -1)
        #expect(try config(["--snapshot-count", "5"]).snapshotCount == 5)
        #expect(try config(["--backend-batch-interval", "1m30s"]).backendBatchInterval == .seconds(90))
        #expect(try config(["--grpc-keepalive-min-time", "1.5s"]).grpcKeepAliveMinTime == .milliseconds(1500))
        #expect(try config(["--max-concurrent-streams", "100"]).maxConcurrentStreams == 100)
    }

    @Test func booleansTakeNoSeparateValue() throws {
        #expect(try config(["--pre-vote"]).preVote == true)
        #expect(try config(["-pre-vote"]).preVote == true)
        #expect(try config(["--pre-vote=true"]).preVote == true)
        #expect(try config(["--pre-vote=T"]).preVote == true)
        #expect(try config(["--pre-vote=1"]).preVote == true)
        #expect(try config(["--strict-reconfig-check=false"]).strictReconfigCheck == false)
        #expect(try config(["--pre-vote=false"]).preVote == false)
        // `--pre-vote false`: "false" is a positional argument.
        // etcd: E | etcdmain: error verifying flags, 'false' is not a valid flag. See 'etcd --help'.  (exit 1)
        let e = try failure(["--pre-vote", "false"])
        #expect(e.message == "'false' is not a valid flag")
        #expect(e.exitCode == 1)
    }

    @Test func lastValueWinsAndValuesMayStartWithDash() throws {
        #expect(try config(["--name", "a", "--name", "b"]).name == "b")
        #expect(try config(["--name", "--x"]).name == "--x")
        #expect(try config(["--name="]).name == "")
    }

    @Test func explicitlySetRecordsRawValues() throws {
        let c = try config(["--name", "a", "--pre-vote", "--max-txn-ops=0x10"])
        #expect(c.explicitlySet == ["name": "a", "pre-vote": "true", "max-txn-ops": "0x10"])
    }

    @Test func urlListsAreParsedSortedAndKept() throws {
        let c = try config([
            "--listen-client-urls", "http://127.0.0.1:2379,http://10.0.0.1:2379",
            "--advertise-client-urls", " http://127.0.0.1:2379 ",
        ])
        #expect(c.listenClientURLs.map(\.description) == ["http://10.0.0.1:2379", "http://127.0.0.1:2379"])
        #expect(c.advertiseClientURLs.map(\.description) == ["http://127.0.0.1:2379"])
        #expect(c.listenClientURLs[1].hostname == "127.0.0.1" && c.listenClientURLs[1].port == "2379")
        let u = try config(["--listen-client-urls", "unix://localhost:1234", "--advertise-client-urls", "unix://localhost:1234"])
        #expect(u.listenClientURLs == [url("unix://localhost:1234")])
        let v6 = try config(["--listen-client-urls", "http://[::1]:2379", "--advertise-client-urls", "http://[::1]:2379"])
        #expect(v6.listenClientURLs[0].hostname == "::1")
    }

    @Test func listsOfStrings() throws {
        let c = try config(["--log-outputs", "stdout", "--host-whitelist", "b,a,b", "--cors", "http://a.example:80,http://b.example:80", "--cipher-suites", "X,Y"])
        #expect(c.logOutputs == ["stdout"])
        #expect(c.hostWhitelist == ["a", "b"])
        #expect(c.cors == ["http://a.example:80", "http://b.example:80"])
        #expect(c.cipherSuites == ["X", "Y"])
    }

    @Test func unknownFlag() throws {
        // $ etcd --bogus ; echo $?
        //   flag provided but not defined: -bogus
        //   Usage: ... (the usage text)
        //   2
        let e = try failure(["--bogus"])
        #expect(e.message == "flag provided but not defined: -bogus")
        #expect(e.exitCode == 2)
        #expect(stderrText(e) == "flag provided but not defined: -bogus\n" + usage)
        // `-bogus=1` reports the name without the value.
        #expect(try failure(["-bogus=1"]).message == "flag provided but not defined: -bogus")
    }

    @Test func badValues() throws {
        // All observed with etcd 3.4.23, exit code 2, followed by the usage text:
        let cases: [([String], String)] = [
            (["--max-txn-ops=abc"], "invalid value \"abc\" for flag -max-txn-ops: parse error"),
            (["--heartbeat-interval=x"], "invalid value \"x\" for flag -heartbeat-interval: parse error"),
            (["--listen-client-urls=foo"], "invalid value \"foo\" for flag -listen-client-urls: URL scheme must be http, https, unix, or unixs: foo"),
            (["--initial-cluster-state=bad"], "invalid value \"bad\" for flag -initial-cluster-state: invalid value"),
            (["--pre-vote=maybe"], "invalid boolean value \"maybe\" for -pre-vote: parse error"),
            (["--max-concurrent-streams=abc"], "invalid value \"abc\" for flag -max-concurrent-streams: strconv.ParseUint: parsing \"abc\": invalid syntax"),
            (["--max-concurrent-streams=5000000000"], "invalid value \"5000000000\" for flag -max-concurrent-streams: strconv.ParseUint: parsing \"5000000000\": value out of range"),
            (["--max-txn-ops=99999999999999999999999"], "invalid value \"99999999999999999999999\" for flag -max-txn-ops: value out of range"),
            (["--max-txn-ops=-1"], "invalid value \"-1\" for flag -max-txn-ops: parse error"),
            (["--backend-batch-interval=5"], "invalid value \"5\" for flag -backend-batch-interval: parse error"),
            (["--name"], "flag needs an argument: -name"),
            (["---x"], "bad flag syntax: ---x"),
            (["-=x"], "bad flag syntax: -=x"),
            (["--listen-peer-urls", "http://a:1/path"], "invalid value \"http://a:1/path\" for flag -listen-peer-urls: URL must not contain a path: http://a:1/path"),
            (["--advertise-client-urls", "http://a"], "invalid value \"http://a\" for flag -advertise-client-urls: URL address does not have the form \"host:port\": http://a"),
            (["--listen-client-urls", "http://a:x"], "invalid value \"http://a:x\" for flag -listen-client-urls: parse \"http://a:x\": invalid port \":x\" after host"),
            (["--listen-client-urls", "://a:1"], "invalid value \"://a:1\" for flag -listen-client-urls: parse \"://a:1\": missing protocol scheme"),
            (["--discovery-fallback", "x"], "invalid value \"x\" for flag -discovery-fallback: invalid value"),
            (["--proxy", "x"], "invalid value \"x\" for flag -proxy: invalid value"),
        ]
        for (args, message) in cases {
            let e = try failure(args)
            #expect(e.message == message, "\(args)")
            #expect(e.exitCode == 2, "\(args)")
            #expect(stderrText(e) == message + "\n" + usage, "\(args)")
        }
    }

    @Test func positionalArguments() throws {
        // $ etcd xxx
        //   2026-11-26 15:56:06.170018 E | etcdmain: error verifying flags, 'xxx' is not a valid flag. See 'etcd --help'.
        //   (exit 1)
        let e = try failure(["xxx"])
        #expect(e.message == "'xxx' is not a valid flag")
        #expect(e.exitCode == 1)
        #expect(stderrText(e) == "\(ts) E | etcdmain: error verifying flags, 'xxx' is not a valid flag. See 'etcd --help'.\n")
        // `--` ends the flags; `-` alone is an argument.
        #expect(try failure(["--", "--election-timeout", "10"]).message == "'--election-timeout' is not a valid flag")
        #expect(try failure(["-"]).message == "'-' is not a valid flag")
        #expect(try failure(["--name", "a", "b", "--bogus"]).message == "'b' is not a valid flag")
    }

    @Test func ignoredLegacyFlagsWarn() throws {
        // $ etcd -v --snapshot=5 --config x
        //   ... W | pkg/flags: flag "-v" is no longer supported - ignoring.
        //   ... W | pkg/flags: flag "-snapshot" is no longer supported - ignoring.
        //   ... W | pkg/flags: flag "-config" is no longer supported - ignoring.
        //   ... E | etcdmain: error verifying flags, 'x' is not a valid flag. See 'etcd --help'.
        let e = try failure(["-v", "--snapshot=5", "--config", "x"])
        #expect(stderrText(e) == """
            \(ts) W | pkg/flags: flag "-v" is no longer supported - ignoring.
            \(ts) W | pkg/flags: flag "-snapshot" is no longer supported - ignoring.
            \(ts) W | pkg/flags: flag "-config" is no longer supported - ignoring.
            \(ts) E | etcdmain: error verifying flags, 'x' is not a valid flag. See 'etcd --help'.

            """)
        let c = try config(["--vv", "--peer-heartbeat-interval=3"])
        #expect(c.parseWarnings.prefix(2) == [
            "flag \"-vv\" is no longer supported - ignoring.",
            "flag \"-peer-heartbeat-interval\" is no longer supported - ignoring.",
        ])
    }

    @Test func help() throws {
        // $ etcd --help  → usage on stderr, flags on stdout, exit 0. Also -h, -help, --h, --help=false.
        for args in [["--help"], ["-h"], ["-help"], ["--h"], ["--help=false", "--bogus"], ["--name", "a", "-h"]] {
            let outcome = try EtcdConfig.parse(arguments: args, environment: [:])
            guard case .printHelp(let out) = outcome else {
                Issue.record("\(args): \(outcome)")
                continue
            }
            #expect(out.stderr == [.raw(usage)])
            #expect(out.stdout.hasPrefix("\nMember:\n  --name 'default'\n    Human-readable name for this member.\n"))
            #expect(out.stdout.hasSuffix("  --log-package-levels ''\n    Specify a particular log level for each etcd package (eg: 'etcdmain=CRITICAL,etcdserver=DEBUG').\n\n"))
        }
        // An error before -h wins.
        #expect(try failure(["--bogus", "-h"]).exitCode == 2)
        // Same bytes as etcd 3.4.23 prints (md5 of `etcd --help` stdout: c50aab807372e80e840f4a4ed29e5f04, 187 lines).
        #expect(HelpText.flags.split(separator: "\n", omittingEmptySubsequences: false).count == 188)
        #expect(HelpText.usage == usage)
    }

    @Test func version() throws {
        let outcome = try EtcdConfig.parse(arguments: ["--version"], environment: [:])
        guard case .printVersion(let out) = outcome else {
            Issue.record("\(outcome)")
            return
        }
        let lines = out.stdout.split(separator: "\n")
        #expect(lines.first == "etcd Version: 3.4.23")
        #expect(lines[1] == "Git SHA: Not provided")
        #expect(lines.contains("swetcd Version: 0.1.0"))
        #expect(lines.contains { $0.hasPrefix("Swift Version: ") })
        #expect(out.stderr.isEmpty)
        // --version=false does not print; --version after an error does not either.
        #expect(try config(["--version=false"]).name == "default")
        #expect(try failure(["x", "--version"]).message == "'x' is not a valid flag")
    }
}
