#!/usr/bin/env bash
# Runs the same load against RingChat (3 servers on loopback, synchronous replication) and
# against Redis pub/sub (one redis-server on 127.0.0.1, no replication, no persistence) on
# this machine, with the same load generator (ringchat-bench, --redis for Redis), message
# size and client counts, and prints both reports and a side-by-side summary:
#   latency at COMPARE_RATE msg/s with COMPARE_LISTENERS listeners,
#   fan-out to COMPARE_FANOUT_LISTENERS listeners at each rate of COMPARE_FANOUT_RATES,
#   throughput with COMPARE_SENDERS closed-loop senders of 100 messages in flight each, and
#   with COMPARE_UNPIPELINED senders of one message in flight each (the issue's reference:
#   Redis PUBLISH from 50 unpipelined connections). Redis: PUBLISH with no subscriber;
#   RingChat: every sender is also a chat client that receives every broadcast.
# Installs redis-server with apt-get if it is missing (as root). Its own redis-server runs on
# a free port from REDIS_PORT [6400] up, and is stopped on exit with the cluster.
#
# Environment (defaults in brackets): COMPARE_DURATION [5], COMPARE_WARMUP [1],
#   COMPARE_SIZE [100], COMPARE_RATE [1000], COMPARE_LISTENERS [10],
#   COMPARE_FANOUT_LISTENERS [100], COMPARE_FANOUT_RATES ["1000 5000 10000"],
#   COMPARE_SENDERS [10], COMPARE_UNPIPELINED [50], and BENCH_BASE_PORT, BENCH_LOG_LEVEL (scripts/bench-cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-cluster.sh
. scripts/bench-cluster.sh

duration=${COMPARE_DURATION:-5}
warmup=${COMPARE_WARMUP:-1}
size=${COMPARE_SIZE:-100}
rate=${COMPARE_RATE:-1000}
listeners=${COMPARE_LISTENERS:-10}
fanout_listeners=${COMPARE_FANOUT_LISTENERS:-100}
fanout_rates=${COMPARE_FANOUT_RATES:-1000 5000 10000}
senders=${COMPARE_SENDERS:-10}
unpipelined=${COMPARE_UNPIPELINED:-50}

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "redis-server is missing: apt-get install redis-server (as root)" >&2
    exit 2
  fi
  echo "Installing redis-server..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
fi

cluster_build
cluster_start

port=${REDIS_PORT:-6400}
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
cluster_after_stop() {
  if [ -e "$work/redis.pid" ]; then kill -TERM "$(cat "$work/redis.pid")" 2>/dev/null || true; fi
}
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "$work/redis.pid" --logfile "$work/redis.log"
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.05
done
echo "Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') up on 127.0.0.1:$port"
out=$work/results
mkdir -p "$out"

status=0
run() {
  local name=$1
  shift
  local cmd=("$bin/ringchat-bench" "$@" --json-out "$out/$name.json")
  echo
  echo "== $name"
  echo "\$ ${cmd[*]}"
  "${cmd[@]}" || { echo "!! $name failed"; status=1; }
}

window=(--size "$size" --duration "$duration" --warmup "$warmup")
for target in ringchat redis; do
  if [ "$target" = ringchat ]; then to=(--servers "$servers"); else to=(--redis "127.0.0.1:$port"); fi
  run "$target-latency" latency "${to[@]}" "${window[@]}" --rate "$rate" --listeners "$listeners"
  for r in $fanout_rates; do
    run "$target-fanout-$r" fanout "${to[@]}" "${window[@]}" --rate "$r" --listeners "$fanout_listeners"
  done
  run "$target-throughput" throughput "${to[@]}" "${window[@]}" --senders "$senders"
  run "$target-unpipelined" throughput "${to[@]}" "${window[@]}" --senders "$unpipelined" --window 1
done

echo
echo "== summary (uptime:$(uptime | sed 's/.*load average/ load average/'))"
if command -v python3 >/dev/null 2>&1; then
  python3 - "$out" "$fanout_rates" <<'PY'
import json, os, sys
out, rates = sys.argv[1], sys.argv[2].split()
def load(name):
    try:
        with open(os.path.join(out, name + ".json")) as f:
            return json.load(f)
    except OSError:
        return None
def ms(s, k):
    return "%.3f" % (s[k] / 1000.0)
rows = [("latency", "latency")] + [("fanout-" + r, "fanout %s msg/s" % r) for r in rates] + [("throughput", "throughput"), ("unpipelined", "unpipelined")]
print("%-22s %-9s %14s %14s %9s %9s %9s %9s" % ("run", "target", "msg/s", "deliveries/s", "ack p50", "ack p99", "dlv p50", "dlv p99"))
for key, label in rows:
    for t in ("ringchat", "redis"):
        r = load("%s-%s" % (t, key))
        if r is None:
            print("%-22s %-9s %14s" % (label, t, "(no report)"))
            continue
        acked = r.get("acked_per_sec", r.get("sent_per_sec", 0.0))
        dl = r.get("deliveries_per_sec")
        d = r.get("delivery_latency")
        c = r["commit_latency"]
        print("%-22s %-9s %14.0f %14s %9s %9s %9s %9s" % (
            label, t, acked, "-" if dl is None else "%.0f" % dl,
            ms(c, "p50_us"), ms(c, "p99_us"),
            "-" if d is None else ms(d, "p50_us"), "-" if d is None else ms(d, "p99_us")))
PY
fi
echo "JSON reports in $out (latencies in ms; ack = PUBLISH reply for Redis)"
exit "$status"
