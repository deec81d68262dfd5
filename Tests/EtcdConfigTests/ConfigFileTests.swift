import Foundation
import Testing
@testable import EtcdConfig

@Suite struct ConfigFileTests {
    @Test func fileReplacesFlagsAndEnvironment() throws {
        // $ ETCD_NAME=x etcd --config-file c1.yaml --name ignored --max-txn-ops 5
        //   [WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead
        //   ... I | etcdmain: Loading server configuration from "c1.yaml". Other configuration command line flags and environment variables will be ignored if provided.
        //   ... I | etcdmain: etcd Version: 3.4.23
        // (no notes about ETCD_NAME; unknown keys such as bogus-key are ignored)
        let dir = TempDir()
        let path = dir.write("c1.yaml", """
            name: cfgname
            data-dir: d2
            listen-client-urls: http://127.0.0.1:23791
            advertise-client-urls: http://127.0.0.1:23791
            listen-peer-urls: http://127.0.0.1:23801,http://10.0.0.1:23801
            initial-advertise-peer-urls: http://127.0.0.1:23801
            initial-cluster: cfgname=http://127.0.0.1:23801
            max-txn-ops: 77
            snapshot-count: 0x10
            pre-vote: yes
            quota-backend-bytes: 1e3
            grpc-keepalive-min-time: 1000000000
            log-outputs: [stderr]
            bogus-key: 1
            client-transport-security:
              cert-file: /c.pem
              client-cert-auth: true
            peer-transport-security:
              auto-tls: true
            proxy-dial-timeout: 7
            """)
        let c = try config(["--config-file", path, "--name", "ignored", "--max-txn-ops", "5"], env: ["ETCD_NAME": "x", "ETCD_BOGUS": "1"])
        #expect(c.configFile == path)
        #expect(c.name == "cfgname")
        #expect(c.dataDir == "d2")
        #expect(c.maxTxnOps == 77)
        #expect(c.snapshotCount == 16)
        #expect(c.preVote)
        #expect(c.quotaBackendBytes == 1000)
        #expect(c.grpcKeepAliveMinTime == .seconds(1))
        #expect(c.logOutputs == ["stderr"])
        #expect(c.listenClientURLs.map(\.description) == ["http://127.0.0.1:23791"])
        #expect(c.listenPeerURLs.map(\.description) == ["http://10.0.0.1:23801", "http://127.0.0.1:23801"])
        #expect(c.initialCluster == "cfgname=http://127.0.0.1:23801")
        #expect(c.clientTLS.certFile == "/c.pem" && c.clientTLS.clientCertAuth)
        #expect(c.peerAutoTLS)
        #expect(c.proxyDialTimeoutMs == 7)
        // config-file defaults differ from the flag defaults
        #expect(c.autoCompactionMode == "" && c.autoCompactionRetention == "")
        #expect(c.enableGRPCGateway == false)
        #expect(c.earlyOutput == [.raw(capnslogWarning)])
        #expect(c.preBannerLog.map(\.message) == ["Loading server configuration from \(goQuote(path)). Other configuration command line flags and environment variables will be ignored if provided."])
        #expect(c.explicitlySet["name"] == "cfgname")
        #expect(c.explicitlySet["max-txn-ops"] == "77")
        #expect(c.notHonoured.contains("cert-file") && c.notHonoured.contains("peer-auto-tls"))
        #expect(!c.notHonoured.contains("name"))
    }

    @Test func envConfigFileAndDefaults() throws {
        let dir = TempDir()
        let path = dir.write("empty.yaml", "")
        // An empty file: embed defaults; other flags ignored.
        let c = try config(["--listen-client-urls", "http://127.0.0.1:1"], env: ["ETCD_CONFIG_FILE": path])
        #expect(c.listenClientURLs.map(\.description) == ["http://localhost:2379"])
        #expect(c.dataDir == "default.etcd")
        // Keys match case-insensitively; `~` leaves the default.
        let p2 = dir.write("case.yaml", "NAME: foo\nmax-txn-ops: 12\nwal-dir: ~\n")
        let c2 = try config(["--config-file", p2])
        #expect(c2.name == "foo" && c2.maxTxnOps == 12 && c2.walDir == "")
        #expect(c2.initialCluster == "foo=http://localhost:2380")
        // A zap logger from the file
        let p3 = dir.write("zap.yaml", "logger: zap\nname: zz\n")
        let c3 = try config(["--config-file", p3])
        #expect(c3.logger == "zap" && c3.earlyOutput.isEmpty)
        // {"level":"info",...,"caller":"etcdmain/config.go:312","msg":"loaded server configuration, other configuration command line flags and environment variables will be ignored if provided","path":"z.yaml"}
        // {"level":"warn",...,"caller":"etcdmain/etcd.go:119","msg":"'data-dir' was empty; using default","data-dir":"zz.etcd"}
        let log = c3.startupLog(cpus: 2, availableCPUs: 2)
        #expect(log.count == 2)
        #expect(log[0].zapMessage == "loaded server configuration, other configuration command line flags and environment variables will be ignored if provided")
        #expect(log[0].zapFields == [.string("path", p3)])
        #expect(log[0].caller == "etcdmain/config.go:312")
        #expect(log[1].zapMessage == "'data-dir' was empty; using default")
        #expect(log[1].zapFields == [.string("data-dir", "zz.etcd")])
        #expect(log[1].caller == "etcdmain/etcd.go:119")
    }

    @Test func decodeErrors() throws {
        // All observed with etcd 3.4.23 (exit 1):
        //   ... I | etcdmain: Loading server configuration from "<file>". Other configuration command line flags and environment variables will be ignored if provided.
        //   ... E | etcdmain: error verifying flags, <message>. See 'etcd --help'.
        let prefix = "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal "
        let cases: [(String, String)] = [
            ("name: [\n", "error converting YAML to JSON: yaml: line 1: did not find expected node content"),
            ("max-txn-ops: abc\n", prefix + "string into Go struct field configYAML.max-txn-ops of type uint"),
            ("name: [a]\n", prefix + "array into Go struct field configYAML.name of type string"),
            ("hello\n", prefix + "string into Go value of type embed.configYAML"),
            ("grpc-keepalive-min-time: 5s\n", prefix + "string into Go struct field configYAML.grpc-keepalive-min-time of type time.Duration"),
            ("max-txn-ops: -1\n", prefix + "number -1 into Go struct field configYAML.max-txn-ops of type uint"),
            ("log-outputs: stderr\n", prefix + "string into Go struct field configYAML.log-outputs of type []string"),
            ("client-transport-security:\n  cert-file: 5\n  client-cert-auth: abc\n", prefix + "number into Go struct field securityConfig.client-transport-security.cert-file of type string"),
            ("name: 123\n", prefix + "number into Go struct field configYAML.name of type string"),
            ("name: yes\nmax-txn-ops: 12\n", prefix + "bool into Go struct field configYAML.name of type string"),
            ("NAME: foo\nmax-txn-ops: 1.5\n", prefix + "number 1.5 into Go struct field configYAML.max-txn-ops of type uint"),
            ("proxy-failure-wait: x\n", prefix + "string into Go struct field configProxy.proxy-failure-wait of type uint"),
        ]
        let dir = TempDir()
        for (i, (yaml, message)) in cases.enumerated() {
            let path = dir.write("f\(i).yaml", yaml)
            let e = try failure(["--config-file", path])
            #expect(e.message == message, "\(yaml)")
            #expect(e.exitCode == 1)
            let text = stderrText(e)
            let expectedTail = """
                \(ts) I | etcdmain: Loading server configuration from \(goQuote(path)). Other configuration command line flags and environment variables will be ignored if provided.
                \(ts) E | etcdmain: error verifying flags, \(message). See 'etcd --help'.

                """
            #expect(text.hasSuffix(expectedTail), "\(yaml)\n\(text)")
        }
    }

    @Test func missingFile() throws {
        // $ etcd --config-file nonexist.yaml
        //   ... I | etcdmain: Loading server configuration from "nonexist.yaml". Other configuration command line flags and environment variables will be ignored if provided.
        //   ... E | etcdmain: error verifying flags, open nonexist.yaml: no such file or directory. See 'etcd --help'.
        let e = try failure(["--config-file", "/nonexistent-dir/nonexist.yaml"])
        #expect(stderrText(e) == """
            \(ts) I | etcdmain: Loading server configuration from "/nonexistent-dir/nonexist.yaml". Other configuration command line flags and environment variables will be ignored if provided.
            \(ts) E | etcdmain: error verifying flags, open /nonexistent-dir/nonexist.yaml: no such file or directory. See 'etcd --help'.

            """)
    }

    @Test func validationErrorsInFileMode() throws {
        // $ etcd --config-file p10.yaml   (logger: zap, name: n1, initial-cluster-state: bad)
        //   ... I | etcdmain: Loading server configuration from "p10.yaml". ...
        //   ... E | etcdmain: error verifying flags, unexpected clusterState "bad". See 'etcd --help'.
        // (capnslog although the file asks for zap: etcd drops the logger with the failed config)
        let dir = TempDir()
        let path = dir.write("p10.yaml", "logger: zap\nname: n1\ninitial-cluster-state: bad\n")
        let e = try failure(["--config-file", path])
        #expect(stderrText(e) == """
            \(ts) I | etcdmain: Loading server configuration from \(goQuote(path)). Other configuration command line flags and environment variables will be ignored if provided.
            \(ts) E | etcdmain: error verifying flags, unexpected clusterState "bad". See 'etcd --help'.

            """)
    }

    @Test func fatalSetupErrors() throws {
        let dir = TempDir()
        // $ etcd --config-file p2.yaml  (listen-client-urls: foo)
        //   unexpected error setting up listen-client-urls: URL scheme must be http, https, unix, or unixs: foo
        let p2 = dir.write("p2.yaml", "listen-client-urls: foo\n")
        let e2 = try failure(["--config-file", p2])
        #expect(stderrText(e2) == "unexpected error setting up listen-client-urls: URL scheme must be http, https, unix, or unixs: foo\n")
        #expect(e2.exitCode == 1)
        // $ etcd --config-file p3.yaml  (advertise-client-urls: foo) — etcd's label says "advertise-peer-urls"
        let p3 = dir.write("p3.yaml", "advertise-client-urls: foo\n")
        #expect(stderrText(try failure(["--config-file", p3])) == "unexpected error setting up advertise-peer-urls: URL scheme must be http, https, unix, or unixs: foo\n")
        // $ etcd --config-file p.yaml  (proxy: bogus)
        //   [WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead
        //   2026-11-26 15:59:03.356200 I | unexpected error setting up proxyFlag: invalid value
        let p = dir.write("p.yaml", "proxy: bogus\n")
        let e = try failure(["--config-file", p])
        #expect(stderrText(e) == capnslogWarning + "\(ts) I | unexpected error setting up proxyFlag: invalid value\n")
        #expect(e.exitCode == 1)
    }
}

@Suite struct YAMLScalarTests {
    @Test func tagsStylesAndDates() throws {
        let dir = TempDir()
        // etcd 3.4.23 accepts all of these (observed: it then fails only on election-timeout)
        let p = dir.write("s.yaml", "a: &x foo\ninitial-cluster-token: *x\nname: 2024-1-2\ndiscovery-proxy: !!str 123\nwal-dir: '0x10'\nmax-txn-ops: !!int 5\n")
        let c = try config(["--config-file", p])
        #expect(c.initialClusterToken == "foo")
        #expect(c.name == "2024-01-02T00:00:00Z")
        #expect(c.discoveryProxy == "123")
        #expect(c.walDir == "0x10")
        #expect(c.maxTxnOps == 5)
    }
}
