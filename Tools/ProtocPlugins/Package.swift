// swift-tools-version:6.1
// Builds the protoc plugins used by Scripts/generate-protos.sh.
// Not part of the product or of CI: CI uses the committed generated code.
import PackageDescription

let package = Package(
    name: "ProtocPlugins",
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", exact: "2.4.1"),
    ],
    targets: [
        // SwiftPM needs at least one target of this package; the products we build are
        // the dependencies' plugin executables.
        .executableTarget(name: "plugins-placeholder", path: "Placeholder"),
    ]
)
