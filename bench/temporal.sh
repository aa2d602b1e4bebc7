#!/usr/bin/env bash
# Temporal benchmark: one attribute of one entity grows to each of the given sizes (instances appended by
# POST /temporal/entities/{id}/attrs, 10,000 per request); at each size, 24 hourly averages over a random day are
# timed (p50/p95) against GET /health timed the same way, against a release `misto serve` on loopback.
#   bench/temporal.sh [sqlite|postgres] [sizes…]      e.g. bench/temporal.sh sqlite 100000 1000000 10000000
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-sqlite}
shift || true
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(100000 1000000)
cargo build --release -q -p misto -p misto-bench

. bench/start-misto.sh
start_misto tbench
echo "backend=$backend"
from=0
for n in "${sizes[@]}"; do
  if [ "$backend" = postgres ] && [ "$from" -gt 0 ]; then
    psql -q -h 127.0.0.1 -U postgres -d "$db" -c "VACUUM ANALYZE attr_instances"
  fi
  ./target/release/misto-bench-temporal --url "$url" --from "$from" --to "$n" --queries 200
  if [ "$backend" = postgres ]; then
    # What autovacuum does after a bulk load: statistics and the visibility map (index-only scans).
    psql -q -h 127.0.0.1 -U postgres -d "$db" -c "VACUUM ANALYZE attr_instances"
    ./target/release/misto-bench-temporal --url "$url" --from "$n" --to "$n" --queries 200 | tail -1
  fi
  from=$n
done
if [ "$backend" = sqlite ]; then du -sh "$data" | awk '{print "database size: " $1}'; fi
