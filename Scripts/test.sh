#!/usr/bin/env bash
# The whole test suite: unit and end-to-end tests (swift test), then the interop
# scenarios, which drive stock etcdctl and the Go test client against swetcd and
# compare with outputs recorded from real etcd 3.4.23.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in etcdctl etcd go curl protoc; do
  command -v "$tool" >/dev/null || echo "warning: $tool not found; .ci/run installs what the tests need" >&2
done
swift build --product swetcd
swift build --build-tests
# The end-to-end suites drive stock etcdctl against an in-process server with etcdctl's
# timeouts: they run on their own, so CPU-bound suites (the Raft simulator) cannot starve them.
e2e="ClientServerTests"
swift test --skip-build --skip "$e2e"
swift test --skip-build --filter "$e2e"
bin="$(swift build --show-bin-path)/swetcd"
# Durability end to end: concurrent etcdctl writers, SIGKILL at 20 random moments, restart.
python3 Tests/e2e/kill9.py --server-bin "$bin" --kills 20
# The data dir format: real etcd and swetcd take turns on one data dir (db, WAL, .snap).
python3 Tests/e2e/datadir_exchange.py --server-bin "$bin"
# Clusters of 3 and 5 members: kills, pauses, a partition, a linearizability check, membership
# changes under load, the runbook's restore and defrag flows.
python3 Tests/e2e/cluster.py --server-bin "$bin"
# Encryption at rest: turned on for data written before (kill -9 mid-migration), rotation, turning off;
# no covered plaintext in any file of the data dir or a snapshot.
python3 Tests/e2e/encryption.py --server-bin "$bin"
python3 interop/run.py --selftest
python3 interop/run.py --server-bin "$bin"
# The same with every value encrypted at rest (aescbc): clients must not see a difference.
python3 interop/run.py --server-bin "$bin" --encryption aescbc
# The same scenarios against a 3-member cluster, compared with a 3-member real etcd's recordings.
python3 interop/run.py --server-bin "$bin" --cluster 3
