#!/usr/bin/env bash
# Regenerates Sources/EtcdProto from Protos/ with protoc (Debian's protobuf-compiler)
# and the plugins of the mirrored swift-protobuf 1.39.0 and grpc-swift-protobuf 2.4.1,
# built as products of Tools/ProtocPlugins. CI does not run this: the output is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=Tools/ProtocPlugins
swift build --package-path "$tools" --product protoc-gen-swift
swift build --package-path "$tools" --product protoc-gen-grpc-swift-2
bin=$(swift build --package-path "$tools" --show-bin-path)  # absolute
out=Sources/EtcdProto
rm -f "$out"/*.pb.swift "$out"/*.grpc.swift
protos=$(cd Protos && find . -name '*.proto' | sed 's|^\./||' | sort)
(cd Protos && protoc -I. \
  --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
  --swift_out=Visibility=Public,FileNaming=PathToUnderscores:"$OLDPWD/$out" \
  --plugin=protoc-gen-grpc-swift="$bin/protoc-gen-grpc-swift-2" \
  --grpc-swift_out=Visibility=Public,Server=true,Client=true,FileNaming=PathToUnderscores:"$OLDPWD/$out" \
  $protos)
grep -l "This file contained no services" "$out"/*.grpc.swift | xargs -r rm -f
echo "generated $(ls "$out" | wc -l) files in $out"
