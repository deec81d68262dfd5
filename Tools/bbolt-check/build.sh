#!/bin/sh
# Builds bbolt-check with Debian's golang-go against Debian's golang-github-coreos-bbolt-dev
# (GOPATH mode, no module downloads). Output: <repo>/.build-gocache-bbolt/bin/bbolt-check
# (a git-ignored directory). Prints the binary's path; exits 2 when Go or bbolt is missing.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/.build-gocache-bbolt"
gocode=/usr/share/gocode
if ! command -v go >/dev/null 2>&1; then
    echo "bbolt-check: go not found (apt-get install golang-go)" >&2
    exit 2
fi
if [ ! -f "$gocode/src/go.etcd.io/bbolt/db.go" ]; then
    echo "bbolt-check: bbolt source not found (apt-get install golang-github-coreos-bbolt-dev)" >&2
    exit 2
fi
mkdir -p "$out/bin" "$out/gopath" "$out/cache"
bin="$out/bin/bbolt-check"
if [ ! -x "$bin" ] || [ "$here/main.go" -nt "$bin" ]; then
    GO111MODULE=off GOPATH="$out/gopath:$gocode" GOCACHE="$out/cache" GOFLAGS= GOPROXY=off \
        go build -o "$bin.tmp" "$here/main.go"
    mv "$bin.tmp" "$bin"
fi
echo "$bin"
