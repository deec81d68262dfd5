#!/bin/sh
# Re-records interop recordings from real etcd 3.4.23 (Debian's etcd-server / etcd-client).
#
#   interop/record.sh [ARGS]              expected/*.out (one member), and the raw outputs
#                                         used by `run.py --selftest`
#   interop/record.sh --cluster 3 [ARGS]  expected-cluster3/*.out (three members; -j is refused)
#   interop/record.sh --all [ARGS]        both sets, one after the other (ARGS go to both,
#                                         so no -j); exits non-zero if either failed
#
# Extra arguments go to run.py (e.g. --only 300_ -v).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin="${ETCD_BIN:-/usr/bin/etcd}"
if [ "${1:-}" = "--all" ]; then
    shift
    rc=0
    python3 "$here/run.py" --server-bin "$bin" --record "$@" || rc=1
    python3 "$here/run.py" --server-bin "$bin" --record --cluster 3 "$@" || rc=1
    exit $rc
fi
exec python3 "$here/run.py" --server-bin "$bin" --record "$@"
