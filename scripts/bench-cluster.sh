# Sourced by scripts/bench.sh and scripts/compare-redis.sh: builds the release binaries and
# runs a 3-server RingChat cluster on loopback for benchmarks.
#
# In:  BENCH_BASE_PORT first ring port [7001] (ring ports BASE..BASE+2, client ports +100),
#      BENCH_LOG_LEVEL ringchatd log level [info].
# Out: $bin (release binaries), $work (temporary directory with logs, pid files, admin
#      sockets and start-node.sh), $servers (client addresses), $leader (its id).
# Discovery is static (--peer): this never sends multicast. cluster_stop runs on exit.

base=${BENCH_BASE_PORT:-7001}
log_level=${BENCH_LOG_LEVEL:-info}

cluster_build() {
  echo "Building ringchatd and ringchat-bench (release)..."
  cargo build --release --quiet -p ringchatd -p ringchat-bench
  bin=$PWD/target/release
}

# Starts servers 1-3 and waits until they agree on one serving leader.
cluster_start() {
  work=$(mktemp -d -t ringchat-bench.XXXXXX)
  local peers="" i
  servers=""
  for i in 0 1 2; do
    peers+=" --peer 127.0.0.1:$((base + i))"
    servers+="${servers:+,}127.0.0.1:$((base + 100 + i))"
  done
  # Starts server ID in the background, appends to its log, writes DIR/ID.pid. The failover
  # and sync runs use it as their restart and start command.
  cat >"$work/start-node.sh" <<SCRIPT
#!/usr/bin/env bash
set -euo pipefail
id=\$1
nohup "$bin/ringchatd" "\$id" --port "\$(( $base + id - 1 ))"$peers \\
  --admin-socket "$work/node\$id.sock" --log-level "$log_level" \\
  >>"$work/node\$id.log" 2>&1 </dev/null &
echo \$! >"$work/\$id.pid"
SCRIPT
  chmod +x "$work/start-node.sh"
  trap cluster_stop INT TERM EXIT
  for i in 1 2 3; do "$work/start-node.sh" "$i"; done
  if ! leader=$("$bin/ringchat-bench" leader --servers "$servers" --timeout 15); then
    echo "The servers did not agree on one leader within 15 s; server logs:" >&2
    tail -n 20 "$work"/node*.log >&2
    exit 1
  fi
  echo "Cluster up: servers 1-3 on ring ports $base-$((base + 2)), client ports $servers; server $leader leads."
  echo "Work directory: $work"
}

# SIGTERM to every server with a pid file, SIGKILL to those still there after 5 s.
cluster_stop() {
  trap - INT TERM EXIT
  echo
  echo "Stopping the cluster..."
  local pids=() f pid alive
  for f in "$work"/[0-9]*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if kill -TERM "$pid" 2>/dev/null; then pids+=("$pid"); fi
  done
  for _ in $(seq 1 50); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  echo "Logs and the start script are in $work"
  if declare -F cluster_after_stop >/dev/null; then cluster_after_stop; fi
}
