#!/usr/bin/env bash
# The long chaos run: the scenarios of tests/tests/chaos.rs with their full counts
# (20 leader kills, 5 partition heals, 20 follower flaps, 60 s of a lossy link, 5 restarts
# during a full sync of 20 000 messages), one after the other, then a summary table.
# Needs root (network namespaces) and iproute2 + nftables; without them the scenarios
# print SKIP. RC_CHAOS_STRICT=1 also fails on the known bugs the table counts.
# Extra arguments go to the test binary (e.g. a scenario name to run just that one).
set -euo pipefail
cd "$(dirname "$0")/.."

summary=$(mktemp)
log=$(mktemp)
trap 'rm -f "$summary" "$log"' EXIT

start=$(date +%s)
set +e
RC_CHAOS=long RC_CHAOS_SUMMARY="$summary" \
  cargo test -p ringchat-cluster-tests --test chaos -- --test-threads=1 "$@" 2>&1 |
  tee "$log" | grep -E '^(chaos |SKIP|test |test result)'
status=${PIPESTATUS[0]}
set -e
elapsed=$(( $(date +%s) - start ))

echo
echo "Chaos summary (long run, ${elapsed} s; known bugs: see tests/src/invariants.rs)"
{
  printf 'scenario\tfaults\tsent\tacked\tlost\tduplicated\torder violations\t2 leaders/epoch\tknown bugs\trenumbered by merge\tmax failover\n'
  cat "$summary"
} | if command -v column >/dev/null 2>&1; then column -t -s $'\t'; else cat; fi
if [ "$status" -ne 0 ]; then
  echo
  echo "FAILED (exit $status); the failing scenarios' output:"
  grep -E 'panicked|invariants broken|^chaos .*:   ' "$log" || true
fi
exit "$status"
