import Foundation
import Testing
@testable import EtcdConfig

@Suite struct EnvironmentTests {
    @Test func envVarNames() {
        #expect(FlagTable.byName["name"]!.envKey == "ETCD_NAME")
        #expect(FlagTable.byName["initial-advertise-peer-urls"]!.envKey == "ETCD_INITIAL_ADVERTISE_PEER_URLS")
        #expect(FlagTable.byName["experimental-enable-v2v3"]!.envKey == "ETCD_EXPERIMENTAL_ENABLE_V2V3")
    }

    @Test func usedWhenTheFlagIsAbsent() throws {
        // $ ETCD_NAME=foo ETCD_DATA_DIR=d1 etcd ...
        //   ... I | pkg/flags: recognized and used environment variable ETCD_DATA_DIR=d1
        //   ... I | pkg/flags: recognized and used environment variable ETCD_NAME=foo
        // (flags are visited in name order)
        let c = try config([], env: ["ETCD_NAME": "foo", "ETCD_DATA_DIR": "d1", "PATH": "/bin", "ETCD_PRE_VOTE": "true"])
        #expect(c.name == "foo")
        #expect(c.dataDir == "d1")
        #expect(c.preVote)
        #expect(c.explicitlySet == ["name": "foo", "data-dir": "d1", "pre-vote": "true"])
        #expect(Array(c.parseWarnings.prefix(3)) == [
            "recognized and used environment variable ETCD_DATA_DIR=d1",
            "recognized and used environment variable ETCD_NAME=foo",
            "recognized and used environment variable ETCD_PRE_VOTE=true",
        ])
        guard case .capnslog(let e) = c.earlyOutput[0] else {
            Issue.record("not a capnslog line")
            return
        }
        #expect(e.capnsLevel == .info && e.package == "pkg/flags")
    }

    @Test func envListenClientURLsCountsAsSet() throws {
        // ETCD_LISTEN_CLIENT_URLS without an advertise URL is the same error as the flag.
        let e = try failure([], env: ["ETCD_LISTEN_CLIENT_URLS": "http://127.0.0.1:1"])
        #expect(e.message == "--advertise-client-urls is required when --listen-client-urls is set explicitly")
    }

    @Test func conflictWithTheCommandLine() throws {
        // $ ETCD_NAME=foo ETCD_BOGUS=1 etcd --logger zap --name bar --data-dir d1 ; echo $?
        //   2026-11-26 15:56:48.741413 C | pkg/flags: conflicting environment variable "ETCD_NAME" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)
        //   1
        // (here the environment is visited in sorted order, so ETCD_BOGUS is reported first)
        let e = try failure(["--logger", "zap", "--name", "bar"], env: ["ETCD_NAME": "foo"])
        #expect(e.exitCode == 1)
        #expect(e.message == "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)")
        #expect(stderrText(e) == "\(ts) C | pkg/flags: \(e.message)\n")
        // An empty variable conflicts too: $ ETCD_NAME= etcd --name x → the same C line.
        #expect(try failure(["--name", "x"], env: ["ETCD_NAME": ""]).exitCode == 1)
    }

    @Test func unknownVariablesWarn() throws {
        // $ ETCD_NAME=foo ETCD_BOGUS=1 ETCD_MAX_TXN_OPS=abc etcd --data-dir d1
        //   ... I | pkg/flags: recognized and used environment variable ETCD_NAME=foo
        //   ... W | pkg/flags: unrecognized environment variable ETCD_BOGUS=1
        //   ... E | etcdmain: error verifying flags, invalid value "abc" for ETCD_MAX_TXN_OPS: parse error. See 'etcd --help'.
        //   (exit 1)
        let e = try failure(["--data-dir", "d1"], env: ["ETCD_NAME": "foo", "ETCD_BOGUS": "1", "ETCD_MAX_TXN_OPS": "abc", "ETCDCTL_API": "3"])
        #expect(e.exitCode == 1)
        #expect(e.message == "invalid value \"abc\" for ETCD_MAX_TXN_OPS: parse error")
        #expect(stderrText(e) == """
            \(ts) I | pkg/flags: recognized and used environment variable ETCD_NAME=foo
            \(ts) W | pkg/flags: unrecognized environment variable ETCD_BOGUS=1
            \(ts) E | etcdmain: error verifying flags, invalid value "abc" for ETCD_MAX_TXN_OPS: parse error. See 'etcd --help'.

            """)
        // $ ETCD_NAME= etcd --election-timeout 10
        //   ... W | pkg/flags: unrecognized environment variable ETCD_NAME=
        let c = try config([], env: ["ETCD_NAME": ""])
        #expect(c.parseWarnings.first == "unrecognized environment variable ETCD_NAME=")
        #expect(c.name == "default")
    }

    @Test func envValueErrorsUseTheVariableName() throws {
        let e = try failure([], env: ["ETCD_LISTEN_PEER_URLS": "foo"])
        #expect(e.message == "invalid value \"foo\" for ETCD_LISTEN_PEER_URLS: URL scheme must be http, https, unix, or unixs: foo")
        let b = try failure([], env: ["ETCD_PRE_VOTE": "maybe"])
        #expect(b.message == "invalid value \"maybe\" for ETCD_PRE_VOTE: parse error")
    }
}
