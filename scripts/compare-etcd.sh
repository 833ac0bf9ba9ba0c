#!/usr/bin/env bash
# Failover of a 3-member etcd on loopback with its default timeouts (heartbeat 100 ms,
# election 1000 ms), measured the way ringchat-bench measures RingChat's: one writer puts a
# key again and again (etcdctl put, each attempt limited to ETCD_ATTEMPT_MS, to all three
# endpoints), the leader is killed with SIGKILL COMPARE_KILLS times, and the time from each
# kill to the end of the first successful put that began after it is reported
# (min/median/p99/max). Each killed member is restarted on its data directory, and the next
# kill waits until all three are healthy and agree on a leader, plus COMPARE_SETTLE seconds.
# Then the same number of kills against a RingChat cluster (ringchat-bench failover), for
# the side-by-side figure. Set COMPARE_RINGCHAT=0 to skip it.
#
# The writer is a shell loop starting one etcdctl per put, so each attempt carries a process
# start (a few ms, more on a loaded machine); that adds to etcd's figure at most one
# attempt, small beside its election timeout. etcd fsyncs every write: its data directories
# are on /dev/shm when it exists, so that the disk does not show in the failover time.
# Installs etcd-server and etcd-client with apt-get when etcd or etcdctl is missing (as root).
#
# Environment (defaults in brackets): COMPARE_KILLS [5], COMPARE_SETTLE [2],
#   ETCD_BASE_PORT [23790] (clients BASE+1..3, peers BASE+11..13), ETCD_ATTEMPT_MS [200],
#   COMPARE_RINGCHAT [1], and BENCH_BASE_PORT, BENCH_LOG_LEVEL (scripts/bench-cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

kills=${COMPARE_KILLS:-5}
settle=${COMPARE_SETTLE:-2}
ebase=${ETCD_BASE_PORT:-23790}
attempt_ms=${ETCD_ATTEMPT_MS:-200}
with_ringchat=${COMPARE_RINGCHAT:-1}
export ETCDCTL_API=3

if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "etcd is missing: apt-get install etcd-server etcd-client (as root)" >&2
    exit 2
  fi
  echo "Installing etcd-server and etcd-client..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client
fi

shm=/dev/shm
[ -d "$shm" ] && [ -w "$shm" ] || shm=${TMPDIR:-/tmp}
ework=$(mktemp -d "$shm/ringchat-etcd.XXXXXX")
cluster=""
endpoints=""
for i in 1 2 3; do
  cluster+="${cluster:+,}m$i=http://127.0.0.1:$((ebase + 10 + i))"
  endpoints+="${endpoints:+,}127.0.0.1:$((ebase + i))"
done

# Starts member I in the background (in a subshell, so that its kill is not a job of ours).
start_member() {
  local i=$1
  (
    nohup etcd --name "m$i" --data-dir "$ework/m$i" \
      --listen-client-urls "http://127.0.0.1:$((ebase + i))" \
      --advertise-client-urls "http://127.0.0.1:$((ebase + i))" \
      --listen-peer-urls "http://127.0.0.1:$((ebase + 10 + i))" \
      --initial-advertise-peer-urls "http://127.0.0.1:$((ebase + 10 + i))" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --initial-cluster-token "ringchat-bench-$$" \
      >>"$ework/m$i.log" 2>&1 </dev/null &
    echo $! >"$ework/m$i.pid"
  )
}

stop_etcd() {
  touch "$ework/stop"
  local i
  for i in 1 2 3; do
    [ -e "$ework/m$i.pid" ] && kill -TERM "$(cat "$ework/m$i.pid")" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  # Keep the logs and the measurements, drop the data (it is on tmpfs).
  rm -rf "$ework"/m[123]
  echo "etcd logs and puts.log are in $ework"
}
trap stop_etcd INT TERM EXIT

# The id of the member that leads, by asking each endpoint whether it is the leader.
etcd_leader() {
  local i
  for i in 1 2 3; do
    if etcdctl --endpoints "127.0.0.1:$((ebase + i))" --command-timeout=500ms \
      endpoint status 2>/dev/null | awk -F', ' '$5 == "true" { f = 1 } END { exit !f }'; then
      echo "$i"
      return 0
    fi
  done
  return 1
}

# Waits (at most 30 s) until every member is healthy and one of them leads.
etcd_wait_healthy() {
  local deadline=$((SECONDS + 30))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if etcdctl --endpoints "$endpoints" --command-timeout=1s endpoint health >/dev/null 2>&1 &&
      etcd_leader >/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "etcd did not become healthy within 30 s; logs in $ework" >&2
  return 1
}

etcd --version | sed -n 1p
for i in 1 2 3; do start_member "$i"; done
etcd_wait_healthy
echo "etcd up: clients $endpoints, default timeouts; member $(etcd_leader) leads. Work directory: $ework"

# The writer: one put at a time; a line per attempt: start, end, ok|fail (EPOCHREALTIME).
(
  n=0
  while [ ! -e "$ework/stop" ]; do
    n=$((n + 1))
    t0=$EPOCHREALTIME
    if etcdctl --endpoints "$endpoints" --dial-timeout="${attempt_ms}ms" \
      --command-timeout="${attempt_ms}ms" put ringchat-bench "$n" >/dev/null 2>&1; then
      r=ok
    else
      r=fail
    fi
    echo "$t0 $EPOCHREALTIME $r"
  done
) >"$ework/puts.log" &

sleep "$settle"
: >"$ework/kills.log"
for k in $(seq 1 "$kills"); do
  etcd_wait_healthy
  sleep "$settle"
  l=$(etcd_leader)
  kt=$EPOCHREALTIME
  kill -KILL "$(cat "$ework/m$l.pid")"
  echo "$kt $l" >>"$ework/kills.log"
  deadline=$((SECONDS + 30))
  until awk -v k="$kt" '$1 > k && $3 == "ok" { found = 1 } END { exit !found }' "$ework/puts.log"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "no successful put within 30 s of kill $k" >&2
      break
    fi
    sleep 0.05
  done
  start_member "$l"
done
etcd_wait_healthy || true
touch "$ework/stop"
sleep 0.5

echo
echo "== etcd failover: $kills leader kill(s), kill -> end of the first successful put begun after it"
while read -r kt l; do
  awk -v k="$kt" -v l="$l" '$1 > k && $3 == "ok" { printf "%.1f %s\n", ($2 - k) * 1000, l; exit }' "$ework/puts.log"
done <"$ework/kills.log" >"$ework/failover_ms"
n=0
while read -r f l; do
  n=$((n + 1))
  echo "  kill $n: member $l, failover $f ms"
done <"$ework/failover_ms"
sort -n "$ework/failover_ms" | awk '{ v[NR] = $1 } END {
  if (NR == 0) { print "  no failover measured"; exit 1 }
  p99 = int(NR * 0.99 + 0.999999); if (p99 < 1) p99 = 1; if (p99 > NR) p99 = NR
  printf "  kill -> next put (ms)   min %.1f  median %.1f  p99 %.1f  max %.1f  (n=%d)\n",
    v[1], (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[p99], v[NR], NR }'
echo "  puts: $(grep -c ' ok$' "$ework/puts.log") ok, $(grep -c ' fail$' "$ework/puts.log") failed attempts"

if [ "$with_ringchat" = 1 ]; then
  stop_etcd
  trap - INT TERM EXIT
  # shellcheck source=scripts/bench-cluster.sh
  . scripts/bench-cluster.sh
  cluster_build
  cluster_start
  echo
  echo "== RingChat failover, $kills leader kill(s)"
  "$bin/ringchat-bench" failover --servers "$servers" --kills "$kills" --settle "$settle" \
    --pids-dir "$work" --restart-cmd "$work/start-node.sh {id}" --admin-sockets "$work/node{id}.sock"
fi
