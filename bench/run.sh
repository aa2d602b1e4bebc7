#!/usr/bin/env bash
# Broker benchmark: load N entities by batch upsert, then GET by id, single-attribute PATCH and a geo + q query,
# each with wrk at concurrency 50, against a release `misto serve` on loopback. Every figure is printed with its
# ratio to GET /health measured in the same run (the HTTP stack's ceiling on this machine).
#   bench/run.sh [sqlite|postgres] [N] [seconds per phase]
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-sqlite}
n=${2:-100000}
secs=${3:-15}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
cargo build --release -q -p misto -p misto-bench

. bench/start-misto.sh
start_misto bench
rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$pid/status"; }
sleep 1
idle=$(rss)
echo "backend=$backend entities=$n idle RSS ${idle} MiB"

load_out=$(./target/release/misto-bench --url "$url" --count "$n" --batch 1000 --concurrency 4)
echo "$load_out"
upsert=$(echo "$load_out" | sed -n 's/.*: \([0-9]*\) entities\/s.*/\1/p')
if [ "$backend" = postgres ]; then
  # What autovacuum does within a minute of a bulk load: planner statistics and the visibility map. Without
  # them the first plans after the load guess row counts of 1.
  psql -q -h 127.0.0.1 -U postgres -d "$db" -c "VACUUM ANALYZE"
fi
loaded=$(rss)
echo "RSS after loading ${loaded} MiB"

export BENCH_N=$n BENCH_LUA=bench/lua
phase() { # name script -> requests/s
  local out
  out=$(wrk -t2 -c50 -d"${secs}s" --latency -s "bench/lua/$2.lua" "$url" 2>&1)
  if echo "$out" | grep -q "Non-2xx"; then echo "$out" >&2; echo "phase $1 had errors" >&2; exit 1; fi
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  echo "$rps $p99"
}
read -r health health_p99 < <(phase health health)
read -r get get_p99 < <(phase get get)
read -r patch patch_p99 < <(phase patch patch)
read -r query query_p99 < <(phase query query)
after=$(rss)
ratio() { python3 -c "print(f'{$1/$health:.2f}')"; }
echo
echo "| measure ($backend, $n entities) | result | p99 | ratio to GET /health |"
echo "|---|---|---|---|"
printf "| GET /health (baseline, c=50) | %.0f req/s | %s | 1.00 |\n" "$health" "$health_p99"
printf "| batch upsert (1,000/request, 4 in flight) | %s entities/s | | |\n" "$upsert"
printf "| GET entity by id (c=50) | %.0f req/s | %s | %s |\n" "$get" "$get_p99" "$(ratio "$get")"
printf "| PATCH one attribute (c=50) | %.0f req/s | %s | %s |\n" "$patch" "$patch_p99" "$(ratio "$patch")"
printf "| type + q + near 2 km, limit 20 (c=50) | %.0f req/s | %s | %s |\n" "$query" "$query_p99" "$(ratio "$query")"
echo "| RSS idle / after loading / after the run | ${idle} / ${loaded} / ${after} MiB | | |"
