#!/usr/bin/env bash
# Notification benchmark (issue 3 §5): a release `misto serve` on an empty data directory, S subscriptions over N
# entities, single-attribute writes at rising rates, notifications to a local receiver in the load generator.
#   bench/notify.sh [sqlite|postgres] [entities] [subscriptions] [rates] [seconds per rate]
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-sqlite}
n=${2:-100000}
s=${3:-10000}
rates=${4:-500,1000,2000,3000}
secs=${5:-10}
cargo build --release -q -p misto -p misto-bench
. bench/start-misto.sh
start_misto nbench
echo "backend=$backend entities=$n subscriptions=$s"
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
c0=$(cpu)
if [ -n "${PROFILE:-}" ]; then perf record -F 199 --call-graph dwarf,16384 -p "$pid" -o "$PROFILE" 2>/dev/null & perfpid=$!; fi
./target/release/misto-notify-bench --url "$url" --entities "$n" --subscriptions "$s" --rates "$rates" --seconds "$secs"
if [ -n "${PROFILE:-}" ]; then kill -INT "$perfpid"; wait "$perfpid" || true; fi
echo "misto CPU over the whole run: $(( ($(cpu) - c0) / $(getconf CLK_TCK) )) s"
grep -iE "error|panic" "$data/misto.log" | head -5 || true
