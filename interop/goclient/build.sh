#!/bin/sh
# Builds interop/.work/bin/etcd-testclient fully offline, in GOPATH mode,
# against the Go sources Debian installs under /usr/share/gocode
# (apt packages: golang-go golang-etcd-server-dev).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
work=$(cd "$here/.." && pwd)/.work
gocode=${GOCODE:-/usr/share/gocode}

if ! command -v go >/dev/null 2>&1; then
	echo "build.sh: 'go' not found; install the Debian package golang-go" >&2
	exit 1
fi
if [ ! -f "$gocode/src/go.etcd.io/etcd/etcdserver/etcdserverpb/rpc.pb.go" ]; then
	echo "build.sh: $gocode/src/go.etcd.io/etcd not found; install the Debian package golang-etcd-server-dev" >&2
	exit 1
fi

mkdir -p "$work/bin" "$work/gopath/src" "$work/gocache" "$work/tmp"

# Everything explicit: HOME may be unset, a user's go env / GOFLAGS must not
# leak in, and nothing may be downloaded.
export GO111MODULE=off
export GOPATH="$work/gopath:$gocode"
export GOCACHE="$work/gocache"
export GOTMPDIR="$work/tmp"
export GOENV=off
export GOFLAGS=
export GOPROXY=off
export GOTOOLCHAIN=local
export CGO_ENABLED=0

cd "$here"
go build -buildvcs=false -trimpath -o "$work/bin/etcd-testclient" .
echo "built $work/bin/etcd-testclient"
