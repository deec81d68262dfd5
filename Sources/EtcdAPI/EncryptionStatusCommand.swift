import EtcdServer
import Foundation
import NIOPosix

/// `swetcd encryption status [--endpoints URL,...]`: each member's encryption state per
/// resource (EncryptionInProgress / EncryptionCompleted / DecryptionInProgress /
/// DecryptionCompleted) with counts, from its client URL (GET /swetcd/encryption/status).
public enum EncryptionStatusCommand {
    public static let usage = "usage: swetcd encryption status [--endpoints http://127.0.0.1:2379[,...]] [-w table|json]"

    /// Runs the command on `args` (after "encryption"); returns the exit code.
    public static func run(_ args: [String]) async -> Int32 {
        var endpoints = ["http://127.0.0.1:2379"]
        var format = "table"
        var rest = args
        guard rest.first == "status" else {
            FileHandle.standardError.write(Data((usage + "\n").utf8))
            return 2
        }
        rest.removeFirst()
        while !rest.isEmpty {
            let a = rest.removeFirst()
            let (name, inline) = a.contains("=") ? (String(a.split(separator: "=", maxSplits: 1)[0]), String(a.split(separator: "=", maxSplits: 1)[1])) : (a, nil)
            func value() -> String? { inline ?? (rest.isEmpty ? nil : rest.removeFirst()) }
            switch name {
            case "--endpoints":
                guard let v = value() else { FileHandle.standardError.write(Data((usage + "\n").utf8)); return 2 }
                endpoints = v.split(separator: ",").map { $0.contains("://") ? String($0) : "http://\($0)" }
            case "-w", "--write-out":
                guard let v = value(), v == "table" || v == "json" else { FileHandle.standardError.write(Data((usage + "\n").utf8)); return 2 }
                format = v
            default:
                FileHandle.standardError.write(Data("unknown flag \(a)\n\(usage)\n".utf8))
                return 2
            }
        }
        var rows: [[String]] = [["ENDPOINT", "RESOURCE", "STATE", "TARGET", "VALUES", "DONE"]]
        var statuses: [String: EncryptionStatus] = [:]
        var failed = false
        for ep in endpoints {
            guard let url = PeerURL(ep) else {
                FileHandle.standardError.write(Data("swetcd: bad endpoint \(ep)\n".utf8))
                return 2
            }
            do {
                let reply = try await PeerHTTP.request(group: MultiThreadedEventLoopGroup.singleton, target: url, method: .GET,
                                                       path: "/swetcd/encryption/status")
                guard reply.status == 200 else { throw EtcdError(.unknown, String(decoding: reply.body, as: UTF8.self)) }
                let s = try JSONDecoder().decode(EncryptionStatus.self, from: Data(reply.body))
                statuses[ep] = s
                let host = "\(url.host):\(url.port)"
                if s.resources.isEmpty { rows.append([host, "-", "NotConfigured", "-", "0", "0"]) }
                for r in s.resources { rows.append([host, r.resource, r.state, r.target, "\(r.values)", "\(r.done)"]) }
            } catch {
                FileHandle.standardError.write(Data("swetcd: \(ep): \(error)\n".utf8))
                failed = true
            }
        }
        if format == "json" {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .prettyPrinted]
            print(String(decoding: (try? enc.encode(statuses)) ?? Data(), as: UTF8.self))
        } else {
            let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max() ?? 0 }
            for r in rows {
                print(r.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")
                    .trimmingCharacters(in: .whitespaces))
            }
        }
        return failed ? 1 : 0
    }
}
