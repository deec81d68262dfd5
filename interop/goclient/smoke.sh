#!/bin/sh
# Runs examples.jsonl (or the file given as $1) through etcd-testclient against
# a throw-away real etcd (/usr/bin/etcd, Debian package etcd-server).
# Builds the client first if needed. Stops etcd by PID on exit.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(cd "$here/.." && pwd)/.work
bin="$work/bin/etcd-testclient"
input=${1:-$here/examples.jsonl}
etcd=${ETCD:-/usr/bin/etcd}

[ -x "$bin" ] || "$here/build.sh" >&2

freeport() {
	python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}
cport=$(freeport)
pport=$(freeport)
mkdir -p "$work/tmp"
data=$(mktemp -d "$work/tmp/etcd-data.XXXXXX")
log="$data.log"

"$etcd" --data-dir "$data" \
	--listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
	--listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
	--initial-cluster "default=http://127.0.0.1:$pport" >"$log" 2>&1 &
pid=$!
cleanup() {
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	rm -rf "$data" "$log"
}
trap cleanup EXIT INT TERM

# Wait (at most ~10 s) until the member serves requests.
i=0
until echo '{"method":"Maintenance.Status"}' | "$bin" --endpoint "127.0.0.1:$cport" --timeout 1s 2>/dev/null | grep -q '"response"'; do
	i=$((i + 1))
	if [ "$i" -ge 20 ]; then
		echo "smoke.sh: etcd did not come up; log:" >&2
		cat "$log" >&2
		exit 1
	fi
	sleep 0.5
done

"$bin" --endpoint "127.0.0.1:$cport" <"$input"
