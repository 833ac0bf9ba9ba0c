#!/usr/bin/env bash
# Runs the standard RingChat benchmark set against a local 3-server cluster on loopback:
#   throughput with 1 and with 10 senders, latency at 1,000 msg/s with 10 listeners,
#   failover with 5 leader kills (SIGKILL) and restarts (each kill waits until every server
#   holds the leader's history, read from the admin sockets; a restarted server counts as
#   back once it has caught up).
# Builds release binaries first, prints every report, keeps the JSON reports and the
# server logs in a temporary directory, and stops the cluster on exit (also on Ctrl+C).
#
# Discovery is static (--peer): this script never sends multicast.
#
# Environment (defaults in brackets):
#   BENCH_BASE_PORT  first ring port [7001]; ring ports BASE..BASE+2, client ports +100
#   BENCH_DURATION   seconds measured per run [10]       BENCH_WARMUP  warm-up seconds [2]
#   BENCH_SIZE       bytes of text per message [100]     BENCH_KILLS   leader kills [5]
#   BENCH_RATE       latency run's messages/s [1000]     BENCH_LISTENERS  its listeners [10]
#   BENCH_LOG_LEVEL  ringchatd log level [info]          BENCH_OUT  directory for JSON reports
# Exit status: 0 when every run passed, 1 when a run failed (see its report).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

base=${BENCH_BASE_PORT:-7001}
duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-2}
size=${BENCH_SIZE:-100}
kills=${BENCH_KILLS:-5}
rate=${BENCH_RATE:-1000}
listeners=${BENCH_LISTENERS:-10}
log_level=${BENCH_LOG_LEVEL:-info}

echo "Building ringchatd and ringchat-bench (release)..."
cargo build --release --quiet -p ringchatd -p ringchat-bench
bin=$root/target/release
work=$(mktemp -d -t ringchat-bench.XXXXXX)
out=${BENCH_OUT:-$work/results}
mkdir -p "$out"

peers=""
servers=""
for i in 0 1 2; do
  peers+=" --peer 127.0.0.1:$((base + i))"
  servers+="${servers:+,}127.0.0.1:$((base + 100 + i))"
done

# Starts server ID in the background, appends to its log, writes DIR/ID.pid. The failover
# run uses it as its restart command.
cat >"$work/start-node.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
id=\$1
nohup "$bin/ringchatd" "\$id" --port "\$(( $base + id - 1 ))"$peers \\
  --admin-socket "$work/node\$id.sock" --log-level "$log_level" \\
  >>"$work/node\$id.log" 2>&1 </dev/null &
echo \$! >"$work/\$id.pid"
EOF
chmod +x "$work/start-node.sh"

stop() {
  trap - INT TERM EXIT
  echo
  echo "Stopping the cluster..."
  local pids=()
  for f in "$work"/[0-9]*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if kill -TERM "$pid" 2>/dev/null; then pids+=("$pid"); fi
  done
  for _ in $(seq 1 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  echo "Logs and the start script are in $work; JSON reports in $out"
}
trap stop INT TERM EXIT

for id in 1 2 3; do "$work/start-node.sh" "$id"; done
if ! leader=$("$bin/ringchat-bench" leader --servers "$servers" --timeout 15); then
  echo "The servers did not agree on one leader within 15 s; server logs:" >&2
  tail -n 20 "$work"/node*.log >&2
  exit 1
fi
echo "Cluster up: servers 1-3 on ring ports $base-$((base + 2)), client ports $servers; server $leader leads."
echo "Work directory: $work"

status=0
run() {
  local name=$1
  shift
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

common=(--servers "$servers" --size "$size" --duration "$duration" --warmup "$warmup")
run throughput-1 throughput "${common[@]}" --senders 1
run throughput-10 throughput "${common[@]}" --senders 10
run latency latency "${common[@]}" --rate "$rate" --listeners "$listeners"
run failover failover --servers "$servers" --size "$size" --warmup "$warmup" \
  --kills "$kills" --pids-dir "$work" --restart-cmd "$work/start-node.sh {id}" \
  --admin-sockets "$work/node{id}.sock"

echo
if [ "$status" = 0 ]; then echo "All runs passed."; else echo "Some runs FAILED (see above)."; fi
exit "$status"
