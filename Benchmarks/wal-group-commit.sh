#!/usr/bin/env bash
# WAL append+sync throughput at 1, 10 and 100 concurrent proposers on the real disk, with
# fdatasync calls per 1,000 appends (group commit made visible). A release build of the
# opt-in WALBenchmark test (Tests/WALTests); it is skipped in the normal test run.
set -euo pipefail
cd "$(dirname "$0")/.."
SWETCD_WAL_BENCH=1 swift test -c release --filter WALBenchmark
