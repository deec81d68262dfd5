// swift-tools-version:6.1
import PackageDescription

import class Foundation.ProcessInfo

let package = Package(
    name: "swetcd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "swetcd", targets: ["swetcd"]),
        .executable(name: "swetcd-benchmark", targets: ["swetcd-benchmark"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", exact: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", exact: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", exact: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio.git", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", exact: "1.46.0"),
        .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams.git", exact: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", exact: "4.5.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", exact: "2.4.1"),
    ],
    targets: [
        // Swift generated from Protos/ by Scripts/generate-protos.sh (committed).
        .target(
            name: "EtcdProto",
            dependencies: [
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            ]
        ),
        // Raft as a pure state machine: no I/O, no clocks, no threads (raftpb messages).
        .target(name: "Raft", dependencies: ["EtcdProto"]),
        // The one small file-I/O interface of WAL and Backend, with the real (POSIX)
        // implementation and a faulty one for crash tests (loses unsynced writes, tears pages).
        .target(name: "FileIO"),
        // The write-ahead log in etcd's format: segments, framing, CRC32-C, group commit.
        .target(
            name: "WAL",
            dependencies: ["EtcdProto", "FileIO", .product(name: "CoreMetrics", package: "swift-metrics")]),
        // The bbolt-format copy-on-write B+tree file: buckets, txns, cursors, freelist, defrag.
        .target(name: "Backend", dependencies: ["FileIO", .product(name: "CoreMetrics", package: "swift-metrics")]),
        // Revisions, key index, range/put/delete/txn, compaction.
        .target(name: "MVCC", dependencies: [
            "EtcdProto", "Backend", "FileIO", "Encryption",
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),
        // etcd's lessor: leases, their keys and expiry, persisted in the lease bucket.
        .target(name: "Lease", dependencies: ["EtcdProto", "Backend"]),
        // Encryption at rest: Kubernetes' EncryptionConfiguration, its providers and value format.
        .target(
            name: "Encryption",
            dependencies: [
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ]),
        // The member: submit/apply boundary, apply loop, IDs, cluster metadata.
        .target(
            name: "EtcdServer",
            dependencies: [
                "EtcdProto", "MVCC", "Raft", "WAL", "FileIO", "Backend", "Lease", "Encryption",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // gRPC's wire format (message frames, protobuf in ByteBuffers, grpc-message encoding),
        // shared by the server (EtcdAPI) and the load generator's client.
        .target(
            name: "GRPCWire",
            dependencies: [
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]),
        // gRPC services on swift-nio-http2 and the client listener; etcd error mapping.
        .target(
            name: "EtcdAPI",
            dependencies: [
                "EtcdProto", "EtcdServer", "GRPCWire",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // etcd's flags, ETCD_* variables and YAML config file, parsed into one value;
        // etcd's two log formats (capnslog text, zap JSON) as swift-log handlers.
        .target(
            name: "EtcdConfig",
            dependencies: [
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The executable: wires config, logging, signals, server and listeners.
        .executableTarget(
            name: "swetcd",
            dependencies: [
                "EtcdConfig", "EtcdServer", "EtcdAPI", "Encryption",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // The load generator of Benchmarks/: etcd's `benchmark` tool's commands and flags.
        .executableTarget(
            name: "swetcd-benchmark",
            dependencies: [
                "EtcdProto", "FileIO", "GRPCWire",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ],
            path: "Benchmarks/LoadGenerator"
        ),

        .testTarget(name: "MVCCTests", dependencies: ["MVCC", "EtcdProto", "Backend", "FileIO"]),
        .testTarget(name: "BackendTests", dependencies: ["Backend", "FileIO"]),
        .testTarget(name: "RaftTests", dependencies: ["Raft", "EtcdProto"]),
        .testTarget(name: "WALTests", dependencies: ["WAL", "FileIO", "EtcdProto"]),
        .testTarget(
            name: "EtcdServerTests",
            dependencies: ["EtcdServer", "EtcdProto", "FileIO", "Backend", "Encryption", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(
            name: "EtcdAPITests",
            dependencies: [
                "EtcdAPI", "EtcdServer", "EtcdProto", "FileIO", "GRPCWire",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ]),
        .testTarget(name: "EtcdConfigTests", dependencies: ["EtcdConfig"]),
        .testTarget(name: "EncryptionTests", dependencies: ["Encryption"], exclude: ["Fixtures"]),
    ]
)

// Release builds of swetcd's own modules skip the runtime exclusivity checks (a check per
// access to a class's stored property, the generated protobuf messages' included); debug
// builds, which the tests use, keep them.
for target in package.targets where target.type != .test {
    target.swiftSettings = (target.swiftSettings ?? []) + [
        .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
    ]
}

// The micro-benchmarks (package-benchmark) join the package only when asked for, so the
// test build and CI never resolve or build them:
//     SWETCD_BENCHMARKS=1 swift package --disable-sandbox benchmark --target HotPaths
if ProcessInfo.processInfo.environment["SWETCD_BENCHMARKS"] != nil {
    package.dependencies.append(
        .package(url: "https://github.com/ordo-one/benchmark.git", exact: "1.38.1", traits: ["MallocInterposer"]))
    package.targets.append(
        .executableTarget(
            name: "HotPaths",
            dependencies: [
                "Backend", "EtcdAPI", "EtcdProto", "EtcdServer", "FileIO", "MVCC", "WAL",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
            ],
            path: "Benchmarks/HotPaths",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ))
}
