#!/usr/bin/env bash
# Runs the Raft simulator (Tests/RaftTests/Simulator.swift) over many more seeds than
# the test suite does. Each seed picks its own mode (3 nodes, 5 nodes, or 5 nodes with
# membership changes) and fault mix; a failing seed prints its reproduction command.
#
# usage: Scripts/raft-sim.sh [COUNT] [FROM] [JOBS]
#   COUNT  seeds to run (default 20000)       FROM  first seed (default 1000000)
#   JOBS   parallel test processes (default 1; the machine may have few cores)
# env:     RAFT_SIM_STEPS  chaotic events per seed (default 1500)
#          RAFT_SIM_MODE   force a mode: 0 three nodes, 1 five nodes, 2 membership
#
# Replay one seed with its trace:
#   RAFT_SIM_SEED=<seed> RAFT_SIM_MODE=<mode> swift test --filter RaftSimulatorTests/replay
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-20000}
FROM=${2:-1000000}
JOBS=${3:-1}
export RAFT_SIM_STEPS=${RAFT_SIM_STEPS:-1500}

swift build --build-tests >/dev/null
per=$(( (COUNT + JOBS - 1) / JOBS ))
pids=()
logs=()
for (( j = 0; j < JOBS; j++ )); do
  from=$(( FROM + j * per ))
  left=$(( COUNT - j * per ))
  n=$(( per < left ? per : left ))
  (( n > 0 )) || break
  log=$(mktemp "${TMPDIR:-/tmp}/raft-sim.XXXXXX")
  logs+=("$log")
  RAFT_SIM_FROM=$from RAFT_SIM_COUNT=$n swift test --skip-build --filter 'RaftSimulatorTests/sweep' >"$log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || status=1
  grep -E '^FAIL seed|reproduce:|raft-sim: seeds|crashed while running|Precondition failed|Fatal error' "${logs[$i]}" || true
  rm -f "${logs[$i]}"
done
if (( status == 0 )); then echo "raft-sim: all $COUNT seeds passed"; else echo "raft-sim: FAILURES (see above)"; fi
exit $status
