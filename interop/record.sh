#!/bin/sh
# Re-records every interop/expected/*.out from real etcd 3.4.23 (Debian's
# etcd-server / etcd-client), and the raw outputs used by `run.py --selftest`.
# Extra arguments go to run.py (e.g. --only 300_ -v).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/run.py" --server-bin "${ETCD_BIN:-/usr/bin/etcd}" --record "$@"
