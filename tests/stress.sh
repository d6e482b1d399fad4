#!/usr/bin/env bash
# The whole test suite N times on a busy machine: one CPU-bound process per core, started here
# (in this session, as a CI job, a script or a notebook server starts its processes), running
# for as long as the suite does. Prints each run's result line, its failures and its time.
#
#   tests/stress.sh [N]          N runs under load (default 3)
#   LOAD=0 tests/stress.sh 1     the same without load: the quiet time to compare with
#
# Exit status: 0 when every run passed. Uses .venv (run `make test` once first) or $PYTHON.
set -u
cd "$(dirname "$0")/.."
runs=${1:-3}
load=${LOAD:-$(nproc)}
py=${PYTHON:-.venv/bin/python}
logs=$(mktemp -d)
pids=()
stop_load() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; pids=(); }
trap 'stop_load; rm -rf "$logs"' EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 "$load"); do
  "$py" -c "while True: pass" &
  pids+=($!)
done
echo "stress: $runs run(s) of the suite with $load CPU-bound process(es) of this session"
failed=0
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  "$py" -m pytest -q -p no:cacheprovider >"$logs/run$i.log" 2>&1
  rc=$?
  seconds=$(( $(date +%s) - start ))
  result=$(grep -E "(passed|failed|error)" "$logs/run$i.log" | tail -n 1)
  echo "run $i: exit $rc in ${seconds} s: $result"
  grep -E "^(FAILED|ERROR) " "$logs/run$i.log" | sed 's/^/  /'
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
done
echo "stress: $failed of $runs run(s) failed"
[ "$failed" -eq 0 ]
