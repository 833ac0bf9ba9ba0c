#!/usr/bin/env bash
# Starts a 3-server RingChat cluster on loopback and tells you how to chat with it.
# Ctrl+C stops the servers. Ports: ring 5001-5003, clients 5101-5103 (RINGCHAT_DEMO_PORT
# moves the first ring port). Discovery is static (--peer): the demo never sends multicast.
set -euo pipefail
cd "$(dirname "$0")/.."

base=${RINGCHAT_DEMO_PORT:-5001}
echo "Building ringchatd, ringchat-client and ringchatctl (release)..."
cargo build --release --quiet -p ringchatd -p ringchat-client -p ringchatctl
bin=target/release
work=$(mktemp -d -t ringchat-demo.XXXXXX)
pids=()

stop() {
  trap - INT TERM EXIT
  echo
  echo "Stopping the servers..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "Logs were in $work"
}
trap stop INT TERM EXIT

peers=()
for i in 0 1 2; do peers+=(--peer "127.0.0.1:$((base + i))"); done
for i in 0 1 2; do
  id=$((i + 1))
  port=$((base + i))
  "$bin/ringchatd" "$id" --port "$port" "${peers[@]}" \
    --admin-socket "$work/node$id.sock" 2>"$work/node$id.log" &
  pids+=($!)
done

# Wait (at most 10 s) until one server says it serves clients as leader.
for _ in $(seq 1 100); do
  if grep -l "Serving clients as leader" "$work"/node*.log >/dev/null 2>&1; then break; fi
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "A server exited; see $work:"; tail -n 5 "$work"/node*.log; exit 1; }
  done
  sleep 0.1
done
leader=$(grep -l "Serving clients as leader" "$work"/node*.log | head -n1 | sed 's/.*node\([0-9]*\)\.log/\1/')

servers="-s 127.0.0.1:$((base + 100)) -s 127.0.0.1:$((base + 101)) -s 127.0.0.1:$((base + 102))"
cat <<MSG

RingChat demo cluster is up: servers 1, 2, 3 on 127.0.0.1 (ring ports $base-$((base + 2)),
client ports $((base + 100))-$((base + 102))). Server $leader leads.
Logs: $work/node{1,2,3}.log

Start clients in other terminals:
  $bin/ringchat-client -u Alice $servers
  $bin/ringchat-client -u Bob   $servers

Inspect and steer a server:
  $bin/ringchatctl --socket $work/node$leader.sock status
  $bin/ringchatctl --socket $work/node$leader.sock ring
  $bin/ringchatctl --socket $work/node$leader.sock drain     # hand leadership away

Try a failover: kill -9 the leader (pid ${pids[$((leader - 1))]}) and keep chatting.
Press Ctrl+C here to stop the cluster.
MSG
wait
