import Foundation
import Testing
@testable import EtcdConfig

let capnslogWarning = "[WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead\n"

@Suite struct ValidationTests {
    @Test func messagesAfterLoggingSetup() throws {
        // Observed with etcd 3.4.23 (exit 1), each preceded by the capnslog [WARNING] line:
        let cases: [([String], String)] = [
            (["--election-timeout", "10"], "--election-timeout[10ms] should be at least as 5 times as --heartbeat-interval[100ms]"),
            (["--heartbeat-interval", "1000"], "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[1000ms]"),
            (["--heartbeat-interval", "0"], "--heartbeat-interval must be >0 (set to 0ms)"),
            (["--election-timeout", "0"], "--election-timeout must be >0 (set to 0ms)"),
            (["--election-timeout", "60000"], "--election-timeout[60000ms] is too long, and should be set less than 50000ms"),
            (["--auto-compaction-mode", "foo"], "unknown auto-compaction-mode \"foo\""),
            (["--listen-client-urls", "http://example.com:2379", "--advertise-client-urls", "http://127.0.0.1:2379"], "expected IP in URL for binding (http://example.com:2379)"),
            (["--initial-advertise-peer-urls", "http://:2380"], "--initial-advertise-peer-urls \"http://:2380\" must be \"host:port\" (unexpected empty host (http://:2380))"),
            (["--discovery", "http://d.example/x"], "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\""),
            (["--experimental-enable-lease-checkpoint-persist"], "setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint"),
        ]
        for (args, message) in cases {
            let extra = args.first == "--discovery" ? ["--initial-cluster", "default=http://localhost:2380"] : []
            let e = try failure(args + extra)
            #expect(e.message == message, "\(args)")
            #expect(e.exitCode == 1)
            #expect(stderrText(e) == capnslogWarning + "\(ts) E | etcdmain: error verifying flags, \(message). See 'etcd --help'.\n", "\(args)")
        }
        // --discovery alone clears the default initial cluster, so it is not a conflict.
        #expect(try config(["--discovery", "http://d.example/x"]).initialCluster == "")
    }

    @Test func listenClientURLsWithoutAdvertise() throws {
        // $ etcd --listen-client-urls http://127.0.0.1:23790
        //   [WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead
        //   ... E | etcdmain: error verifying flags, --advertise-client-urls is required when --listen-client-urls is set explicitly. See 'etcd --help'.
        //   ... E | etcdmain: When listening on specific address(es), this etcd process must advertise accessible url(s) to each connected client.
        let e = try failure(["--listen-client-urls", "http://127.0.0.1:23790"])
        #expect(stderrText(e) == capnslogWarning + """
            \(ts) E | etcdmain: error verifying flags, --advertise-client-urls is required when --listen-client-urls is set explicitly. See 'etcd --help'.
            \(ts) E | etcdmain: When listening on specific address(es), this etcd process must advertise accessible url(s) to each connected client.

            """)
        // $ etcd --logger zap --listen-client-urls http://127.0.0.1:23790
        //   {"level":"warn","ts":"...","caller":"etcdmain/etcd.go:66","msg":"failed to verify flags","error":"--advertise-client-urls is required when --listen-client-urls is set explicitly"}
        //   {"level":"warn","ts":"...","caller":"etcdmain/etcd.go:73","msg":"advertise client URLs are not set","error":"--advertise-client-urls is required when --listen-client-urls is set explicitly"}
        let z = try failure(["--logger", "zap", "--listen-client-urls", "http://127.0.0.1:23790"])
        #expect(stderrText(z) == """
            {"level":"warn","ts":"\(zts)","caller":"etcdmain/etcd.go:66","msg":"failed to verify flags","error":"--advertise-client-urls is required when --listen-client-urls is set explicitly"}
            {"level":"warn","ts":"\(zts)","caller":"etcdmain/etcd.go:73","msg":"advertise client URLs are not set","error":"--advertise-client-urls is required when --listen-client-urls is set explicitly"}

            """)
        // A (v2) proxy keeps the default advertise URLs.
        #expect(try config(["--proxy", "on", "--listen-client-urls", "http://127.0.0.1:1"]).advertiseClientURLs.map(\.description) == ["http://localhost:2379"])
    }

    @Test func zapErrorsGoToTheLogOutputs() throws {
        // $ etcd --logger zap --log-outputs stdout --election-timeout 10  → the JSON line on stdout, nothing on stderr.
        let e = try failure(["--logger", "zap", "--log-outputs", "stdout", "--election-timeout", "10"])
        let rendered = e.render(now: fixedDate, timeZone: utc)
        #expect(rendered.count == 1)
        #expect(rendered[0].target == .stdout)
        #expect(rendered[0].text == "{\"level\":\"warn\",\"ts\":\"\(zts)\",\"caller\":\"etcdmain/etcd.go:66\",\"msg\":\"failed to verify flags\",\"error\":\"--election-timeout[10ms] should be at least as 5 times as --heartbeat-interval[100ms]\"}\n")
        // Time zones: TZ=Europe/Paris → "2026-11-26T17:00:47.407+0100".
        let paris = e.render(now: fixedDate, timeZone: TimeZone(identifier: "Europe/Paris")!)
        #expect(paris[0].text.contains("\"ts\":\"2026-11-26T16:55:30.618+0100\""))
    }

    @Test func loggingErrors() throws {
        // $ etcd --logger bogus → E | etcdmain: error verifying flags, unknown logger option "bogus". See 'etcd --help'.  (no [WARNING])
        let l = try failure(["--logger", "bogus"])
        #expect(stderrText(l) == "\(ts) E | etcdmain: error verifying flags, unknown logger option \"bogus\". See 'etcd --help'.\n")
        // $ etcd --log-outputs /tmp/x.log (capnslog)
        let o = try failure(["--log-outputs", "/tmp/x.log"])
        #expect(stderrText(o) == capnslogWarning + "\(ts) E | etcdmain: error verifying flags, unknown log-output \"/tmp/x.log\" (only supports \"default\", \"stderr\", \"stdout\"). See 'etcd --help'.\n")
        // $ etcd --logger zap --log-outputs default,stderr
        #expect(try failure(["--logger", "zap", "--log-outputs", "default,stderr"]).message == "multi logoutput for \"default\" is not supported yet")
        // $ etcd --logger zap --log-outputs /nonexistent/x.log
        //   ... E | etcdmain: error verifying flags, open sink "/nonexistent/x.log": open /nonexistent/x.log: no such file or directory. See 'etcd --help'.
        let s = try failure(["--logger", "zap", "--log-outputs", "/nonexistent/x.log"])
        #expect(stderrText(s) == "\(ts) E | etcdmain: error verifying flags, open sink \"/nonexistent/x.log\": open /nonexistent/x.log: no such file or directory. See 'etcd --help'.\n")
        // $ etcd --log-output=stderr --log-outputs=stderr
        #expect(try failure(["--log-output=stderr", "--log-outputs=stderr"]).message == "'--log-output=[\"stderr\"]' and '--log-outputs=[\"stderr\"]' are incompatible; only set --log-outputs")
        // capnslog accepts one output only.
        #expect(try failure(["--log-outputs", "stderr,stdout"]).message == "--logger=capnslog supports only 1 value in '--log-outputs', got [\"stderr\" \"stdout\"]")
    }

    @Test func unknownLogLevelPanicsLikeEtcd() throws {
        // $ etcd --log-level bogus ; echo $?
        //   [WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead
        //   panic: unknown level "bogus"
        //   (goroutine trace)
        //   2
        let e = try failure(["--log-level", "bogus"])
        #expect(e.exitCode == 2)
        #expect(stderrText(e).hasPrefix(capnslogWarning + "panic: unknown level \"bogus\"\n"))
        #expect(try failure(["--logger", "zap", "--log-level", "bogus"]).exitCode == 2)
        // with --debug capnslog never converts the level
        #expect(try config(["--debug", "--log-level", "bogus"]).debug)
    }

    @Test func deprecationWarnings() throws {
        // $ etcd --debug --election-timeout 10
        //   [WARNING] Deprecated '--debug' flag is set to true (use '--log-level=debug' instead
        //   [WARNING] Deprecated '--debug' flag is set to true with inconsistent '--log-level=info' flag
        //   [WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead
        let d = try failure(["--debug", "--election-timeout", "10"])
        #expect(stderrText(d).hasPrefix("""
            [WARNING] Deprecated '--debug' flag is set to true (use '--log-level=debug' instead
            [WARNING] Deprecated '--debug' flag is set to true with inconsistent '--log-level=info' flag
            [WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead

            """))
        // $ etcd --debug --log-level=debug --log-outputs=stderr --election-timeout 10
        //   ... 15:59:38.986403 [pkg_logger.go:118] E | etcdmain: error verifying flags, ...
        let dc = try failure(["--debug", "--log-level=debug", "--log-outputs=stderr", "--election-timeout", "10"])
        #expect(stderrText(dc).contains("\(ts) [pkg_logger.go:118] E | etcdmain: error verifying flags"))
        // $ etcd --log-output=stderr --election-timeout 10
        //   [WARNING] Deprecated '--log-output' flag is set to ["stderr"]
        //   Please use '--log-outputs' flag
        let o = try failure(["--log-output=stderr", "--election-timeout", "10"])
        #expect(stderrText(o).hasPrefix("[WARNING] Deprecated '--log-output' flag is set to [\"stderr\"]\nPlease use '--log-outputs' flag\n" + capnslogWarning))
        // $ etcd --log-package-levels=etcdmain=DEBUG --election-timeout 10
        let p = try failure(["--log-package-levels=etcdmain=DEBUG", "--election-timeout", "10"])
        #expect(stderrText(p).hasPrefix(capnslogWarning + "[WARNING] Deprecated '--log-package-levels=etcdmain=DEBUG' flag is set; use '--logger=zap' flag instead\n"))
        // zap prints none of them
        let z = try config(["--logger", "zap"])
        #expect(z.earlyOutput.isEmpty)
        #expect(z.logSpec == LogSpec(logger: "zap", outputs: ["default"]))
    }

    @Test func notHonouredListsSetFeaturesSwetcdLacks() throws {
        let c = try config(["--enable-v2", "--auto-tls=false", "--cors", "http://a.example:1", "--pre-vote", "--max-txn-ops", "5", "--experimental-initial-corrupt-check"])
        // --auto-tls=false equals the default: nothing to warn about.
        #expect(c.notHonoured == ["cors", "enable-v2", "experimental-initial-corrupt-check"])
        let honoured = FlagTable.all.filter(\.honoured).map(\.name)
        #expect(honoured.contains("name") && honoured.contains("max-txn-ops"))
    }

    @Test func leaseCheckpointWithoutPersistWarns() throws {
        // etcd 3.4.23 with capnslog crashes here (nil zap logger); swetcd logs the zap warning text.
        let c = try config(["--experimental-enable-lease-checkpoint"])
        #expect(c.postParseLog.contains { $0.message.hasPrefix("Detected that checkpointing is enabled without persistence") })
    }
}

@Suite struct BootstrapTests {
    @Test func localNameMissing() throws {
        // $ etcd --data-dir d1 ... --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster foo=http://127.0.0.1:23800
        //   2026-11-26 15:56:41.550765 C | etcdmain: couldn't find local name "default" in the initial cluster configuration
        //   (exit 1)
        let c = try config(["--initial-advertise-peer-urls", "http://127.0.0.1:23800", "--initial-cluster", "foo=http://127.0.0.1:23800"])
        let e = try #require(c.verifyInitialCluster())
        #expect(e.message == "couldn't find local name \"default\" in the initial cluster configuration")
        #expect(e.exitCode == 1)
        #expect(stderrText(e) == "\(ts) C | etcdmain: couldn't find local name \"default\" in the initial cluster configuration\n")

        let z = try config(["--logger", "zap", "--initial-cluster", "foo=http://127.0.0.1:23800"])
        let ze = try #require(z.verifyInitialCluster())
        // {"level":"warn",...,"caller":"etcdmain/etcd.go:176","msg":"failed to start etcd","error":"couldn't find local name \"default\" in the initial cluster configuration"}
        // {"level":"fatal",...,"caller":"etcdmain/etcd.go:271","msg":"discovery failed","error":"couldn't find local name \"default\" in the initial cluster configuration","stacktrace":"..."}
        #expect(stderrText(ze) == """
            {"level":"warn","ts":"\(zts)","caller":"etcdmain/etcd.go:176","msg":"failed to start etcd","error":"couldn't find local name \\"default\\" in the initial cluster configuration"}
            {"level":"fatal","ts":"\(zts)","caller":"etcdmain/etcd.go:271","msg":"discovery failed","error":"couldn't find local name \\"default\\" in the initial cluster configuration"}

            """)
    }

    @Test func advertiseMismatches() throws {
        // C | etcdmain: --initial-cluster has default=http://127.0.0.1:1111 but missing from --initial-advertise-peer-urls=http://127.0.0.1:31307 (resolved urls: "http://127.0.0.1:31307" != "http://127.0.0.1:1111")
        let a = try config(["--initial-advertise-peer-urls", "http://127.0.0.1:31307", "--initial-cluster", "default=http://127.0.0.1:1111"])
        #expect(a.initialClusterProblem() == "--initial-cluster has default=http://127.0.0.1:1111 but missing from --initial-advertise-peer-urls=http://127.0.0.1:31307 (resolved urls: \"http://127.0.0.1:31307\" != \"http://127.0.0.1:1111\")")
        // C | etcdmain: --initial-advertise-peer-urls has http://127.0.0.1:2222 but missing from --initial-cluster=default=http://127.0.0.1:2222,default=http://127.0.0.1:31307
        let b = try config(["--initial-advertise-peer-urls", "http://127.0.0.1:31307,http://127.0.0.1:2222", "--initial-cluster", "default=http://127.0.0.1:31307"])
        #expect(b.initialClusterProblem() == "--initial-advertise-peer-urls has http://127.0.0.1:2222 but missing from --initial-cluster=default=http://127.0.0.1:2222,default=http://127.0.0.1:31307")
        // C | etcdmain: initial cluster b=http://127.0.0.1:31307,default=http://127.0.0.1:31307 has duplicate url
        let d = try config(["--initial-advertise-peer-urls", "http://127.0.0.1:31307", "--initial-cluster", "default=http://127.0.0.1:31307,b=http://127.0.0.1:31307"])
        #expect(d.initialClusterProblem() == "initial cluster b=http://127.0.0.1:31307,default=http://127.0.0.1:31307 has duplicate url")
        // localhost resolves to 127.0.0.1
        let l = try config(["--initial-cluster", "default=http://127.0.0.1:2380"])
        #expect(l.initialClusterProblem() == nil)
        #expect(try config([]).verifyInitialCluster() == nil)
        // a joining member is not checked against its advertise URLs
        let j = try config(["--initial-cluster-state", "existing", "--initial-cluster", "default=http://127.0.0.1:9,x=http://127.0.0.1:8"])
        #expect(j.initialClusterProblem() == nil)
        let bad = try config(["--initial-cluster", "default=foo"])
        #expect(bad.initialClusterProblem() == "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: foo")
    }
}
