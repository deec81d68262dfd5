import Foundation
import Testing
@testable import EtcdConfig

/// 2026-11-26 15:55:30.618599 UTC
let fixedDate = Date(timeIntervalSince1970: 1_795_708_530.618599)
let utc = TimeZone(identifier: "UTC")!

struct UnexpectedOutcome: Error, CustomStringConvertible {
    let description: String
}

/// Parses and expects `.run`.
func config(_ args: [String], env: [String: String] = [:], defaultHost: String? = nil) throws -> EtcdConfig {
    let outcome: ParseOutcome
    do {
        outcome = try EtcdConfig.parse(arguments: args, environment: env, defaultHost: defaultHost)
    } catch {
        throw UnexpectedOutcome(description: "parse failed: \(error.message)\n\(error.stderrText(now: fixedDate, timeZone: utc))")
    }
    guard case .run(let c) = outcome else { throw UnexpectedOutcome(description: "not .run: \(outcome)") }
    return c
}

/// Parses and expects a ConfigError.
func failure(_ args: [String], env: [String: String] = [:]) throws -> ConfigError {
    do {
        let outcome = try EtcdConfig.parse(arguments: args, environment: env)
        throw UnexpectedOutcome(description: "expected an error, got \(outcome)")
    } catch let e as ConfigError {
        return e
    }
}

/// The stderr text of an error at `fixedDate` in UTC.
func stderrText(_ e: ConfigError) -> String {
    e.stderrText(now: fixedDate, timeZone: utc)
}

/// "2026-11-26 15:55:30.618599" — the capnslog timestamp of `fixedDate` in UTC.
let ts = "2026-11-26 15:55:30.618599"
/// zap's timestamp of `fixedDate` in UTC.
let zts = "2026-11-26T15:55:30.618Z"

/// etcd's usage text (stderr part of --help; also after every flag syntax error).
let usage = """
Usage:

  etcd [flags]
    Start an etcd server.

  etcd --version
    Show the version of etcd.

  etcd -h | --help
    Show the help information about etcd.

  etcd --config-file
    Path to the server configuration file. Note that if a configuration file is provided, other command line flags and environment variables will be ignored.

  etcd gateway
    Run the stateless pass-through etcd TCP connection forwarding proxy.

  etcd grpc-proxy
    Run the stateless etcd v3 gRPC L7 reverse proxy.


"""

/// A temporary directory removed at deinit.
final class TempDir {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "etcdconfig-tests-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    func write(_ name: String, _ text: String) -> String {
        let p = path + "/" + name
        _ = FileManager.default.createFile(atPath: p, contents: Data(text.utf8))
        return p
    }
}

func url(_ s: String) -> EtcdURL {
    try! EtcdURL.goParse(s)
}
