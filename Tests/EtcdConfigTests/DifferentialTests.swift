import Foundation
import Testing
@testable import EtcdConfig

// Runs the same failing command lines through the real etcd 3.4.23
// (/usr/bin/etcd, Debian's etcd-server) and through EtcdConfig.parse, and
// compares stdout, stderr and the exit code after normalising timestamps.
// Only command lines that make etcd exit during configuration are used (no
// server ever starts). Skipped when /usr/bin/etcd is absent.

private let etcdPath = "/usr/bin/etcd"

private struct Observed: Equatable, CustomStringConvertible {
    var stdout: String
    var stderr: String
    var exitCode: Int32
    var description: String { "exit \(exitCode)\n--- stdout\n\(stdout)--- stderr\n\(stderr)" }
}

private func normalise(_ s: String) -> String {
    var out = s
    out = out.replacingOccurrences(of: #"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}"#, with: "TS", options: .regularExpression)
    out = out.replacingOccurrences(of: #""ts":"[^"]*""#, with: #""ts":"TS""#, options: .regularExpression)
    // Go's panic trace is not reproduced
    if let r = out.range(of: "goroutine 1 [running]:") { out = String(out[..<r.upperBound]) + "\n" }
    return out
}

private func runEtcd(_ args: [String], env: [String: String], cwd: String) throws -> Observed {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: etcdPath)
    p.arguments = args
    p.environment = env.merging(["TZ": "UTC", "PATH": "/usr/bin:/bin"]) { a, _ in a }
    p.currentDirectoryURL = URL(fileURLWithPath: cwd)
    let outPipe = Pipe()
    let errPipe = Pipe()
    p.standardOutput = outPipe
    p.standardError = errPipe
    try p.run()
    // Watchdog: a case that unexpectedly starts a server is stopped (and fails).
    let watchdog = DispatchWorkItem { if p.isRunning { p.terminate() } }
    DispatchQueue.global().asyncAfter(deadline: .now() + 10, execute: watchdog)
    let out = outPipe.fileHandleForReading.readDataToEndOfFile()
    let err = errPipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    watchdog.cancel()
    return Observed(stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self), exitCode: p.terminationStatus)
}

private func runSwetcd(_ args: [String], env: [String: String]) -> Observed {
    do {
        let outcome = try EtcdConfig.parse(arguments: args, environment: env)
        switch outcome {
        case .run: return Observed(stdout: "", stderr: "(swetcd would start the server)", exitCode: -1)
        case .printHelp(let out), .printVersion(let out):
            let err = renderOutput(out.stderr, spec: nil, now: fixedDate, timeZone: utc).map(\.text).joined()
            return Observed(stdout: out.stdout, stderr: err, exitCode: 0)
        }
    } catch {
        let rendered = error.render(now: fixedDate, timeZone: utc)
        return Observed(
            stdout: rendered.filter { $0.target == .stdout }.map(\.text).joined(),
            stderr: rendered.filter { $0.target == .stderr }.map(\.text).joined(),
            exitCode: error.exitCode)
    }
}

private struct Case: Sendable, CustomStringConvertible {
    var args: [String]
    var env: [String: String] = [:]
    var files: [String: String] = [:]
    var description: String {
        (env.map { "\($0)=\($1)" }.sorted() + ["etcd"] + args).joined(separator: " ")
    }
}

private let cases: [Case] = [
    Case(args: ["--bogus"]),
    Case(args: ["-bogus=1"]),
    Case(args: ["--max-txn-ops=abc"]),
    Case(args: ["--heartbeat-interval=x"]),
    Case(args: ["--listen-client-urls=foo"]),
    Case(args: ["--listen-client-urls", "http://a:x"]),
    Case(args: ["--listen-peer-urls", "http://127.0.0.1:1/p"]),
    Case(args: ["--initial-cluster-state=bad"]),
    Case(args: ["--pre-vote=maybe"]),
    Case(args: ["--max-concurrent-streams=abc"]),
    Case(args: ["--max-concurrent-streams=5000000000"]),
    Case(args: ["--max-txn-ops=99999999999999999999999"]),
    Case(args: ["--backend-batch-interval=5"]),
    Case(args: ["--name"]),
    Case(args: ["---x"]),
    Case(args: ["-=x"]),
    Case(args: ["xxx"]),
    Case(args: ["-"]),
    Case(args: ["--", "--election-timeout", "10"]),
    Case(args: ["--pre-vote", "false"]),
    Case(args: ["-v", "--snapshot=5", "--config", "x"]),
    Case(args: ["--help"]),
    Case(args: ["-h"]),
    Case(args: ["--help=false", "--bogus"]),
    Case(args: ["--election-timeout", "10"]),
    Case(args: ["--heartbeat-interval", "0"]),
    Case(args: ["--election-timeout", "60000"]),
    Case(args: ["--auto-compaction-mode", "foo"]),
    Case(args: ["--listen-client-urls", "http://127.0.0.1:23790"]),
    Case(args: ["--logger", "zap", "--listen-client-urls", "http://127.0.0.1:23790"]),
    Case(args: ["--logger", "zap", "--log-outputs", "stdout", "--election-timeout", "10"]),
    Case(args: ["--listen-client-urls", "http://example.com:2379", "--advertise-client-urls", "http://127.0.0.1:2379"]),
    Case(args: ["--initial-advertise-peer-urls", "http://:2380"]),
    Case(args: ["--discovery", "http://d.example/x", "--initial-cluster", "a=http://127.0.0.1:1"]),
    Case(args: ["--experimental-enable-lease-checkpoint-persist"]),
    Case(args: ["--logger", "bogus"]),
    Case(args: ["--log-level", "bogus"]),
    Case(args: ["--logger", "zap", "--log-level", "bogus"]),
    Case(args: ["--log-outputs", "/tmp/x.log"]),
    Case(args: ["--log-outputs", "stderr,stdout"]),
    Case(args: ["--logger", "zap", "--log-outputs", "default,stderr", "--election-timeout", "10"]),
    Case(args: ["--logger", "zap", "--log-outputs", "/nonexistent/x.log", "--election-timeout", "10"]),
    Case(args: ["--debug", "--election-timeout", "10"]),
    Case(args: ["--debug", "--log-level=debug", "--log-outputs=stderr", "--election-timeout", "10"]),
    Case(args: ["--log-output=stderr", "--election-timeout", "10"]),
    Case(args: ["--log-output=stderr", "--log-outputs=stderr", "--election-timeout", "10"]),
    Case(args: ["--log-package-levels=etcdmain=DEBUG", "--election-timeout", "10"]),
    Case(args: ["--log-package-levels=bogus", "--election-timeout", "10"]),
    Case(args: ["--data-dir", "d1"], env: ["ETCD_NAME": "foo", "ETCD_MAX_TXN_OPS": "abc"]),
    Case(args: ["--data-dir", "d1"], env: ["ETCD_BOGUS": "1", "ETCD_PRE_VOTE": "maybe"]),
    Case(args: ["--logger", "zap", "--name", "bar"], env: ["ETCD_NAME": "foo"]),
    Case(args: ["--name", "x"], env: ["ETCD_NAME": ""]),
    Case(args: ["--election-timeout", "10"], env: ["ETCD_NAME": ""]),
    Case(args: [], env: ["ETCD_ELECTION_TIMEOUT": "10", "ETCD_DATA_DIR": "d1"]),
    Case(args: [], env: ["ETCD_LISTEN_CLIENT_URLS": "http://127.0.0.1:1"]),
    Case(args: ["--config-file", "nonexist.yaml"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "name: [\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "max-txn-ops: abc\n"]),
    Case(args: [], env: ["ETCD_CONFIG_FILE": "f.yaml"], files: ["f.yaml": "max-txn-ops: abc\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "name: [a]\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "hello\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "grpc-keepalive-min-time: 5s\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "max-txn-ops: -1\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "log-outputs: stderr\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "client-transport-security:\n  cert-file: 5\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "name: 123\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "NAME: foo\nmax-txn-ops: 1.5\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "b: [\n  - x\n c\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "a: 'x\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "proxy: bogus\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "listen-client-urls: foo\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "advertise-client-urls: foo\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "logger: zap\nname: n1\ninitial-cluster-state: bad\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "election-timeout: 10\nproxy-failure-wait: x\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "proxy-failure-wait: x\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "logger: zap\nlog-outputs: [stdout]\nelection-timeout: 10\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "log-outputs: ~\nelection-timeout: 10\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "debug: true\nelection-timeout: 10\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "discovery-fallback: x\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "host-whitelist: a,b\nelection-timeout: 10\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "listen-peer-urls: http://example.com:1\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "initial-cluster-state: ''\nelection-timeout: 10\n"]),
    Case(args: ["--config-file", "f.yaml", "--bogus"], files: ["f.yaml": "name: x\n"]),
    Case(args: ["--config-file", "g.yaml"], env: ["ETCD_CONFIG_FILE": "f.yaml"], files: ["f.yaml": "name: [\n", "g.yaml": "max-txn-ops: x\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "a: &x foo\nname: *x\nelection-timeout: 10\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "---\nname: a\nelection-timeout: 10\n---\nname: [\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "name: 2024-01-01\nelection-timeout: 10\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "name: !!str 123\nelection-timeout: 10\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "name: '123'\nmax-txn-ops: !!int 5\nelection-timeout: 10\n"]),
    Case(args: ["--config-file", "f.yaml"], files: ["f.yaml": "max-txn-ops: \"5\"\n"]),
    Case(args: ["--cors", "http://a"]),
    Case(args: ["--cors", "*", "--election-timeout", "10"]),
    Case(args: ["--max-request-bytes=0x"]),
    Case(args: ["--snapshot-count=1e3"]),
    Case(args: ["--quota-backend-bytes=--1"]),
    Case(args: ["--listen-metrics-urls", "http://example.com:1"]),
    Case(args: ["--listen-client-urls", "http://127.0.0.1:1", "--advertise-client-urls", "http://:1"]),
    Case(args: ["--discovery-srv", "x", "--discovery", "y"]),
    Case(args: ["--listen-peer-urls", "http://[::1:2380"]),
    Case(args: ["--enable-v2", "--name", "a", "b"]),
    Case(args: ["--election-timeout", "10"], env: ["ETCD_VERSION": "true", "ETCD_V": "1"]),
    Case(args: ["--proxy", "on", "--listen-client-urls", "http://127.0.0.1:1", "--election-timeout", "10"]),
    Case(args: ["--initial-cluster-state", "existing", "--election-timeout", "10", "--logger", "zap", "--log-outputs", "stderr"]),
]

@Suite(.serialized, .enabled(if: FileManager.default.isExecutableFile(atPath: etcdPath), "needs /usr/bin/etcd 3.4.23"))
struct DifferentialTests {
    @Test(arguments: cases)
    fileprivate func sameAsEtcd(_ c: Case) throws {
        let dir = TempDir()
        for (name, text) in c.files { _ = dir.write(name, text) }
        // config files by absolute path, so that no working directory matters
        func abs(_ s: String) -> String { s.hasSuffix(".yaml") ? dir.path + "/" + s : s }
        let args = c.args.map(abs)
        let env = c.env.mapValues(abs)
        let real = try runEtcd(args, env: env, cwd: dir.path)
        let ours = runSwetcd(args, env: env)
        let r = Observed(stdout: normalise(real.stdout), stderr: normalise(real.stderr), exitCode: real.exitCode)
        let o = Observed(stdout: normalise(ours.stdout), stderr: normalise(ours.stderr), exitCode: ours.exitCode)
        #expect(!(real.stdout.isEmpty && real.stderr.isEmpty), "etcd printed nothing")
        #expect(o == r, "\(c)\n=== etcd:\n\(r)\n=== swetcd:\n\(o)")
    }
}
