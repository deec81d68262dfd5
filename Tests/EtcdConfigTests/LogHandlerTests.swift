import Foundation
import Logging
import Testing
@testable import EtcdConfig

/// Parses a capnslog line back: (date-time, level letter, package, message).
func parseCapnslog(_ line: String) -> (time: String, level: String, pkg: String, msg: String)? {
    // "2026-11-26 15:55:30.618599 I | embed: ready to serve client requests\n"
    guard line.hasSuffix("\n") else { return nil }
    let body = line.dropLast()
    let parts = body.split(separator: " ", maxSplits: 4, omittingEmptySubsequences: false)
    guard parts.count == 5, parts[3] == "|" else { return nil }
    let time = parts[0] + " " + parts[1]
    guard time.count == 26 else { return nil }
    let rest = parts[4]
    guard let colon = rest.range(of: ": ") else { return (String(time), String(parts[2]), "", String(rest)) }
    return (String(time), String(parts[2]), String(rest[..<colon.lowerBound]), String(rest[colon.upperBound...]))
}

@Suite struct LogFormatTests {
    @Test func capnslogTimestamp() {
        #expect(EtcdLogFormat.capnslogTime(fixedDate, timeZone: utc) == "2026-11-26 15:55:30.618599")
        // TZ=Asia/Kolkata: etcd printed "2026-11-26 21:30:47.428854" for 16:00:47 UTC
        #expect(EtcdLogFormat.capnslogTime(fixedDate, timeZone: TimeZone(identifier: "Asia/Kolkata")!) == "2026-11-26 21:25:30.618599")
        #expect(EtcdLogFormat.capnslogTime(Date(timeIntervalSince1970: 0), timeZone: utc) == "1970-01-01 00:00:00.000000")
        #expect(EtcdLogFormat.capnslogTime(Date(timeIntervalSince1970: 951_782_400.5), timeZone: utc) == "2000-02-29 00:00:00.500000")
    }

    @Test func zapTimestamp() {
        #expect(EtcdLogFormat.zapTime(fixedDate, timeZone: utc) == "2026-11-26T15:55:30.618Z")
        #expect(EtcdLogFormat.zapTime(fixedDate, timeZone: TimeZone(identifier: "Europe/Paris")!) == "2026-11-26T16:55:30.618+0100")
        #expect(EtcdLogFormat.zapTime(fixedDate, timeZone: TimeZone(identifier: "America/St_Johns")!) == "2026-11-26T12:25:30.618-0330")
    }

    @Test func capnslogHandlerLines() throws {
        let sink = MemoryLogSink()
        let factory = makeLogHandlerFactory(config: try config([]), writers: [sink], timeZone: utc, clock: { fixedDate })
        var logger = Logger(label: "embed", factory: factory)
        #expect(logger.logLevel == .info)
        logger.info("ready to serve client requests", metadata: ["ignored": "x"])
        logger.notice("notice")
        logger.warning("w", metadata: ["pkg": "etcdserver"])
        logger.error("e")
        logger.critical("c")
        logger.debug("filtered")
        logger.logLevel = .trace
        logger.trace("t")
        #expect(sink.lines == [
            "2026-11-26 15:55:30.618599 I | embed: ready to serve client requests\n",
            "2026-11-26 15:55:30.618599 N | embed: notice\n",
            "2026-11-26 15:55:30.618599 W | etcdserver: w\n",
            "2026-11-26 15:55:30.618599 E | embed: e\n",
            "2026-11-26 15:55:30.618599 C | embed: c\n",
            "2026-11-26 15:55:30.618599 T | embed: t\n",
        ])
        let parsed = try #require(parseCapnslog(sink.lines[0]))
        #expect(parsed.time == ts && parsed.level == "I" && parsed.pkg == "embed" && parsed.msg == "ready to serve client requests")
        // a trailing newline is not doubled
        let l2 = EtcdLogFormat.capnslogLine(date: fixedDate, timeZone: utc, level: .info, package: "etcdmain", message: "etcd Version: 3.4.23\n")
        #expect(l2 == "\(ts) I | etcdmain: etcd Version: 3.4.23\n")
        // the hijacked Go log package has no package
        #expect(EtcdLogFormat.capnslogLine(date: fixedDate, timeZone: utc, level: .info, package: "", message: "x") == "\(ts) I | x\n")
    }

    @Test func capnslogLevels() throws {
        func level(_ args: [String]) throws -> Logger.Level {
            let f = makeLogHandlerFactory(config: try config(args), writers: [MemoryLogSink()])
            return f("etcdserver").logLevel
        }
        #expect(try level([]) == .info)
        #expect(try level(["--log-level", "debug"]) == .debug)
        #expect(try level(["--log-level", "warn"]) == .warning)
        #expect(try level(["--log-level", "error"]) == .error)
        #expect(try level(["--log-level", "panic"]) == .critical)
        #expect(try level(["--log-level", "fatal"]) == .critical)
        #expect(try level(["--debug"]) == .debug)
        #expect(try level(["--log-package-levels", "etcdserver=DEBUG"]) == .debug)
        #expect(try level(["--log-package-levels", "raft=DEBUG"]) == .info)
        #expect(try level(["--log-package-levels", "*=ERROR"]) == .error)
        // zap ignores --debug for its level (etcd: level from --log-level only)
        #expect(try level(["--logger", "zap", "--debug"]) == .info)
        #expect(try level(["--logger", "zap", "--log-level", "warn"]) == .warning)
    }

    @Test func capnslogDebugCaller() throws {
        let sink = MemoryLogSink()
        let c = try config(["--debug", "--log-level=debug", "--log-outputs=stderr"])
        let f = makeLogHandlerFactory(config: c, writers: [sink], timeZone: utc, clock: { fixedDate })
        let logger = Logger(label: "etcdserver", factory: f)
        logger.debug("d", file: "EtcdServer/Server.swift", line: 42)
        #expect(sink.lines == ["\(ts) [Server.swift:42] D | etcdserver: d\n"])
    }

    @Test func zapHandlerLines() throws {
        let sink = MemoryLogSink()
        let c = try config(["--logger", "zap"])
        let f = makeLogHandlerFactory(config: c, writers: [sink], timeZone: utc, clock: { fixedDate })
        var logger = Logger(label: "embed", factory: f)
        logger[metadataKey: "a-handler-field"] = "h"
        logger.info(
            "configuring peer listeners",
            metadata: .zapOrdered(["listen-peer-urls": .array(["http://127.0.0.1:23800"]), "n": .stringConvertible(5), "ok": .stringConvertible(true)]),
            file: "EtcdServer/Embed.swift", line: 117)
        logger.warning("w \"q\"\n", metadata: ["caller": "etcdmain/etcd.go:66", "error": "boom", "took": .stringConvertible(Duration.milliseconds(1500))])
        logger.critical("c", file: "/abs/path/Sources/swetcd/main.swift", line: 3)
        logger.debug("filtered")
        #expect(sink.lines == [
            #"{"level":"info","ts":"2026-11-26T15:55:30.618Z","caller":"EtcdServer/Embed.swift:117","msg":"configuring peer listeners","listen-peer-urls":["http://127.0.0.1:23800"],"n":5,"ok":true,"a-handler-field":"h"}"# + "\n",
            #"{"level":"warn","ts":"2026-11-26T15:55:30.618Z","caller":"etcdmain/etcd.go:66","msg":"w \"q\"\n","a-handler-field":"h","error":"boom","took":"1.5s"}"# + "\n",
            #"{"level":"fatal","ts":"2026-11-26T15:55:30.618Z","caller":"swetcd/main.swift:3","msg":"c","a-handler-field":"h"}"# + "\n",
        ])
        // Parse a line back with JSONSerialization and check the key order.
        let line = sink.lines[0]
        let obj = try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(obj["level"] as? String == "info")
        #expect(obj["msg"] as? String == "configuring peer listeners")
        #expect(obj["listen-peer-urls"] as? [String] == ["http://127.0.0.1:23800"])
        let keyOrder = ["\"level\"", "\"ts\"", "\"caller\"", "\"msg\""].map { line.range(of: $0)!.lowerBound }
        #expect(keyOrder == keyOrder.sorted())
    }

    @Test func zapWritesToEveryOutput() throws {
        let a = MemoryLogSink()
        let b = MemoryLogSink()
        let f = makeLogHandlerFactory(config: try config(["--logger", "zap"]), writers: [a, b], timeZone: utc, clock: { fixedDate })
        Logger(label: "x", factory: f).info("m")
        #expect(a.lines == b.lines && a.lines.count == 1)
    }

    @Test func logEntryRendersInBothFormats() {
        let e = LogEntry(.error, "etcdmain", "error verifying flags, x. See 'etcd --help'.", zap: .warn, "failed to verify flags", fields: [.error("x")], caller: "etcdmain/etcd.go:66")
        let capns = renderOutput([.log(e)], spec: LogSpec(logger: "capnslog", outputs: ["default"]), now: fixedDate, timeZone: utc)
        #expect(capns.map(\.text) == ["\(ts) E | etcdmain: error verifying flags, x. See 'etcd --help'.\n"])
        let zap = renderOutput([.log(e)], spec: LogSpec(logger: "zap", outputs: ["stdout", "/tmp/a.log"]), now: fixedDate, timeZone: utc)
        #expect(zap.map(\.target) == [.stdout, .file("/tmp/a.log")])
        #expect(zap[0].text == #"{"level":"warn","ts":"2026-11-26T15:55:30.618Z","caller":"etcdmain/etcd.go:66","msg":"failed to verify flags","error":"x"}"# + "\n")
    }

    @Test func jsonEscaping() {
        #expect(jsonQuote("a\"b\\c\n\t\r\u{01}é<>&") == #""a\"b\\c\n\t\r\u0001é<>&""#)
    }

    @Test func fileOutputsAreOpenedForAppending() throws {
        let dir = TempDir()
        let path = dir.path + "/etcd.log"
        let c = try config(["--logger", "zap", "--log-outputs", path])
        #expect(c.logSpec.targets == [.file(path)])
        let f = try makeLogHandlerFactory(config: c, timeZone: utc, clock: { fixedDate })
        Logger(label: "x", factory: f).info("to file")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.hasPrefix(#"{"level":"info","ts":"2026-11-26T15:55:30.618Z","caller":"EtcdConfigTests/LogHandlerTests.swift:"#))
        #expect(text.hasSuffix(#","msg":"to file"}"# + "\n"))
    }
}

@Suite struct StartupLogTests {
    @Test func emitThroughCapnslog() throws {
        let c = try config(["--enable-v2"])
        let sink = MemoryLogSink()
        let f = makeLogHandlerFactory(config: c, writers: [sink], timeZone: utc, clock: { fixedDate })
        for e in c.startupLog(cpus: 2, availableCPUs: 4) + c.notHonouredLog { e.emit(logger: c.logger, factory: f) }
        #expect(sink.lines == [
            "\(ts) I | etcdmain: etcd Version: 3.4.23\n",
            "\(ts) I | etcdmain: Git SHA: Not provided\n",
            "\(ts) I | etcdmain: Swift Version: \(VersionInfo.compiledSwiftVersion)\n",
            "\(ts) I | etcdmain: OS/Arch: \(VersionInfo.currentOSArch)\n",
            "\(ts) I | etcdmain: swetcd Version: 0.1.0\n",
            "\(ts) I | etcdmain: setting maximum number of CPUs to 2, total number of available CPUs is 4\n",
            "\(ts) W | etcdmain: no data-dir provided, using default data-dir ./default.etcd\n",
            "\(ts) W | etcdmain: --enable-v2 is set but swetcd does not implement it yet; ignoring it\n",
        ])
    }

    @Test func emitThroughZap() throws {
        let c = try config(["--logger", "zap", "--name", "zz"])
        let sink = MemoryLogSink()
        let f = makeLogHandlerFactory(config: c, writers: [sink], timeZone: utc, clock: { fixedDate })
        for e in c.startupLog(cpus: 2, availableCPUs: 2) { e.emit(logger: c.logger, factory: f) }
        // etcd: {"level":"warn","ts":"2026-11-26T16:03:34.546Z","caller":"etcdmain/etcd.go:119","msg":"'data-dir' was empty; using default","data-dir":"zz.etcd"}
        #expect(sink.lines == [
            #"{"level":"warn","ts":"2026-11-26T15:55:30.618Z","caller":"etcdmain/etcd.go:119","msg":"'data-dir' was empty; using default","data-dir":"zz.etcd"}"# + "\n",
        ])
    }
}
