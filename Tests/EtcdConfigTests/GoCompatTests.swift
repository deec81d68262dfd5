import Foundation
import Testing
@testable import EtcdConfig

@Suite struct GoCompatTests {
    @Test func parseUint() throws {
        #expect(try GoStrconv.parseUint("0") == 0)
        #expect(try GoStrconv.parseUint("0x1F") == 31)
        #expect(try GoStrconv.parseUint("0o17") == 15)
        #expect(try GoStrconv.parseUint("017") == 15)
        #expect(try GoStrconv.parseUint("0b101") == 5)
        #expect(try GoStrconv.parseUint("1_000") == 1000)
        #expect(try GoStrconv.parseUint("18446744073709551615") == UInt64.max)
        #expect(throws: GoNumError.range) { try GoStrconv.parseUint("18446744073709551616") }
        #expect(throws: GoNumError.range) { try GoStrconv.parseUint("4294967296", bitSize: 32) }
        for bad in ["", "-1", "+1", "0x", "1__0", "_1", "1_", "08", "abc", " 1"] {
            #expect(throws: GoNumError.syntax, "\(bad)") { try GoStrconv.parseUint(bad) }
        }
    }

    @Test func parseInt() throws {
        #expect(try GoStrconv.parseInt("-9223372036854775808") == Int64.min)
        #expect(try GoStrconv.parseInt("+5") == 5)
        #expect(try GoStrconv.parseInt("-0x10") == -16)
        #expect(throws: GoNumError.range) { try GoStrconv.parseInt("9223372036854775808") }
        #expect(throws: GoNumError.syntax) { try GoStrconv.parseInt("--1") }
    }

    @Test func parseDuration() {
        #expect(GoDuration.parse("0") == 0)
        #expect(GoDuration.parse("5s") == 5_000_000_000)
        #expect(GoDuration.parse("2h") == 7_200_000_000_000)
        #expect(GoDuration.parse("1h30m") == 5_400_000_000_000)
        #expect(GoDuration.parse("1.5s") == 1_500_000_000)
        #expect(GoDuration.parse(".5ms") == 500_000)
        #expect(GoDuration.parse("100us") == 100_000)
        #expect(GoDuration.parse("100µs") == 100_000)
        #expect(GoDuration.parse("-3ns") == -3)
        for bad in ["", "5", "s", "1x", "1.s.", "+", "."] {
            #expect(GoDuration.parse(bad) == nil, "\(bad)")
        }
    }

    @Test func formatDuration() {
        #expect(GoDuration.format(0) == "0s")
        #expect(GoDuration.format(100_000_000) == "100ms")
        #expect(GoDuration.format(1_000_000_000) == "1s")
        #expect(GoDuration.format(1_500_000_000) == "1.5s")
        #expect(GoDuration.format(7_200_000_000_000) == "2h0m0s")
        #expect(GoDuration.format(90_000_000_000) == "1m30s")
        #expect(GoDuration.format(1_130_193) == "1.130193ms")
        #expect(GoDuration.format(1500) == "1.5µs")
        #expect(GoDuration.format(-5) == "-5ns")
    }

    @Test func quote() {
        #expect(goQuote("abc") == "\"abc\"")
        #expect(goQuote("a\"b\\") == "\"a\\\"b\\\\\"")
        #expect(goQuote("\n\u{01}é") == "\"\\n\\x01é\"")
        #expect(goQuoteList(["a", "b"]) == "[\"a\" \"b\"]")
    }

    @Test func urls() throws {
        #expect(url("http://127.0.0.1:2379").description == "http://127.0.0.1:2379")
        #expect(url("HTTP://Example.com:1").description == "http://Example.com:1")
        #expect(url("https://user:pw@h:1?x=y#f").description == "https://user:pw@h:1?x=y#f")
        #expect(url("http://[::1]:2379").hostname == "::1")
        #expect(throws: URLParseError(message: "parse \"http://[::1:2379\": missing ']' in host")) { try EtcdURL.goParse("http://[::1:2379") }
        #expect(throws: URLParseError(message: "parse \"a\\nb\": net/url: invalid control character in URL")) { try EtcdURL.goParse("a\nb") }
        #expect(throws: URLParseError(message: "parse \"1http://x\": first path segment in URL cannot contain colon")) { try EtcdURL.goParse("1http://x") }
        #expect(try EtcdURLs.parseCommaList("http://b:1, http://a:1").map(\.description) == ["http://a:1", "http://b:1"])
        #expect(throws: URLParseError(message: "URL scheme must be http, https, unix, or unixs: ")) { try EtcdURLs.parseCommaList("http://a:1,") }
        #expect(throws: URLParseError(message: "URL scheme must be http, https, unix, or unixs: ftp://a:1")) { try EtcdURLs.parseCommaList("ftp://a:1") }
        #expect(throws: URLParseError(message: "URL address does not have the form \"host:port\": http:foo")) { try EtcdURLs.parseCommaList("http:foo") }
        #expect(try EtcdURLs.parseCommaList("http://:1").map(\.host) == [":1"])
    }

    @Test func ipLiterals() {
        for ok in ["127.0.0.1", "0.0.0.0", "::", "::1", "fe80::1", "2001:db8::8a2e:370:7334", "::ffff:1.2.3.4", "1:2:3:4:5:6:7:8"] {
            #expect(isIPLiteral(ok), "\(ok)")
        }
        for bad in ["localhost", "1.2.3", "256.1.1.1", "01.2.3.4", "1:2:3:4:5:6:7:8:9", ":::", "1::2::3", ""] {
            #expect(!isIPLiteral(bad), "\(bad)")
        }
    }

    @Test func initialClusterMap() throws {
        let m = try InitialClusterMap.parse("b=http://127.0.0.1:2,a=http://127.0.0.1:1,a=http://127.0.0.1:0,")
        #expect(m.members["a"]?.map(\.description) == ["http://127.0.0.1:0", "http://127.0.0.1:1"])
        #expect(m.description == "a=http://127.0.0.1:0,a=http://127.0.0.1:1,b=http://127.0.0.1:2")
    }

    @Test func yamlScalars() {
        #expect(ConfigFileReader.resolvePlain("yes") == .bool(true))
        #expect(ConfigFileReader.resolvePlain("Off") == .bool(false))
        #expect(ConfigFileReader.resolvePlain("~") == .null)
        #expect(ConfigFileReader.resolvePlain("0x10") == .number("16"))
        #expect(ConfigFileReader.resolvePlain("1_000") == .number("1000"))
        #expect(ConfigFileReader.resolvePlain("1e3") == .number("1000"))
        #expect(ConfigFileReader.resolvePlain("1.5") == .number("1.5"))
        #expect(ConfigFileReader.resolvePlain("-1") == .number("-1"))
        #expect(ConfigFileReader.resolvePlain("5s") == .string("5s"))
        #expect(ConfigFileReader.resolvePlain("abc") == .string("abc"))
        #expect(ConfigFileReader.resolvePlain("http://a:1") == .string("http://a:1"))
    }
}
