#!/usr/bin/env bash
# Device ingestion benchmark (issue 4 §7): a release `misto serve` on an empty data directory with its MQTT endpoint,
# ChirpStack uplinks published by network-server connections (QoS 1; PUBACK = stored).
#   bench/uplink.sh [sqlite|postgres] [decoded|codec] [devices] [seconds] [fixed rate] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-sqlite}
mode=${2:-decoded}
devices=${3:-1000}
secs=${4:-10}
rate=${5:-5000}
conns=${6:-4}
cargo build --release -q -p misto -p misto-bench
mqtt_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export MISTO_MQTT_ADDR="127.0.0.1:$mqtt_port" MISTO_INTEGRATION_TOKEN=bench-token
. bench/start-misto.sh
start_misto ubench
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
c0=$(cpu)
if [ -n "${PROFILE:-}" ]; then perf record -F 99 --call-graph dwarf,16384 -p "$pid" -o "$PROFILE" 2>/dev/null & perfpid=$!; fi
./target/release/misto-uplink-bench --url "$url" --mqtt "127.0.0.1:$mqtt_port" --token bench-token \
  --mode "$mode" --devices "$devices" --seconds "$secs" --rate "$rate" --connections "$conns"
if [ -n "${PROFILE:-}" ]; then kill -INT "$perfpid"; wait "$perfpid" || true; fi
echo "misto CPU over the whole run: $(( ($(cpu) - c0) / $(getconf CLK_TCK) )) s"
grep -iE "error|panic" "$data/misto.log" | head -5 || true
