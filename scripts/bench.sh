#!/usr/bin/env bash
# Runs the standard RingChat benchmark set against a local 3-server cluster on loopback:
#   sync (a new server catches up on a history of BENCH_SYNC_MESSAGES messages; run first,
#   so the history holds exactly that many), throughput with 1 and with 10 senders, latency
#   at 1,000 msg/s with 10 listeners, fan-out to 100 listeners, failover with 5 leader kills
#   (SIGKILL) and restarts (each kill waits until every server holds the leader's history,
#   read from the admin sockets; a restarted server counts as back once it has caught up).
# Builds release binaries first, prints every report, keeps the JSON reports and the
# server logs in a temporary directory, and stops the cluster on exit (also on Ctrl+C).
# docs/PERFORMANCE.md explains each run and what it measured on the project's machine.
#
# Discovery is static (--peer): this script never sends multicast.
#
# Environment (defaults in brackets):
#   BENCH_BASE_PORT  first ring port [7001]; ring ports BASE..BASE+2, client ports +100
#   BENCH_DURATION   seconds measured per run [10]       BENCH_WARMUP  warm-up seconds [2]
#   BENCH_SIZE       bytes of text per message [100]     BENCH_KILLS   leader kills [5]
#   BENCH_RATE       latency run's messages/s [1000]     BENCH_LISTENERS  its listeners [10]
#   BENCH_FANOUT_RATE  fan-out run's messages/s [1000]   BENCH_FANOUT_LISTENERS  [100]
#   BENCH_SYNC_MESSAGES  history the new server catches up on [100000]; the issue's target
#                    is 1000000 (about 0.55 GB of RAM per server)
#   BENCH_ONLY       space-separated run names to do, e.g. "sync" [all]
#   BENCH_LOG_LEVEL  ringchatd log level [info]          BENCH_OUT  directory for JSON reports
# Exit status: 0 when every run passed, 1 when a run failed (see its report).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-cluster.sh
. scripts/bench-cluster.sh

duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-2}
size=${BENCH_SIZE:-100}
kills=${BENCH_KILLS:-5}
rate=${BENCH_RATE:-1000}
listeners=${BENCH_LISTENERS:-10}
fanout_rate=${BENCH_FANOUT_RATE:-1000}
fanout_listeners=${BENCH_FANOUT_LISTENERS:-100}
sync_messages=${BENCH_SYNC_MESSAGES:-100000}
only=${BENCH_ONLY:-}

cluster_build
cluster_start
out=${BENCH_OUT:-$work/results}
mkdir -p "$out"

status=0
run() {
  local name=$1
  shift
  if [ -n "$only" ] && [[ " $only " != *" $name "* ]]; then return; fi
  local cmd=("$bin/ringchat-bench" "$@" --json-out "$out/$name.json")
  echo
  echo "== $name"
  echo "\$ ${cmd[*]}"
  local rc=0
  "${cmd[@]}" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "!! $name failed (exit $rc)"
    status=1
  fi
}

common=(--servers "$servers" --size "$size")
window=(--duration "$duration" --warmup "$warmup")
run sync sync "${common[@]}" --history "$sync_messages" --senders 10 \
  --pids-dir "$work" --start-cmd "$work/start-node.sh {id}" --admin-sockets "$work/node{id}.sock"
run throughput-1 throughput "${common[@]}" "${window[@]}" --senders 1
run throughput-10 throughput "${common[@]}" "${window[@]}" --senders 10
run latency latency "${common[@]}" "${window[@]}" --rate "$rate" --listeners "$listeners"
run fanout fanout "${common[@]}" "${window[@]}" --rate "$fanout_rate" --listeners "$fanout_listeners"
run failover failover "${common[@]}" --warmup "$warmup" \
  --kills "$kills" --pids-dir "$work" --restart-cmd "$work/start-node.sh {id}" \
  --admin-sockets "$work/node{id}.sock"

echo
if [ "$status" = 0 ]; then echo "All runs passed."; else echo "Some runs FAILED (see above)."; fi
echo "JSON reports in $out"
exit "$status"
