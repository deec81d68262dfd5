print("build protoc-gen-swift and protoc-gen-grpc-swift-2 with: swift build --product <name>")
