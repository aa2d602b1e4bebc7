# Sourced by the benchmark scripts: start a release `misto serve` on a free port with an empty data directory
# (PostgreSQL: a fresh database named misto_<prefix>_<pid>) and stop it, dropping the database, on exit.
# Needs $backend; sets port, data, url, pid.
start_misto() { # prefix
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  data=$(mktemp -d)
  db_args=()
  if [ "$backend" = postgres ]; then
    db="misto_$1_$$"
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    db_args=(--database-url "postgres://postgres@127.0.0.1:5432/$db")
  fi
  MISTO_MQTT_ADDR="${MISTO_MQTT_ADDR:-off}" MISTO_LOG=warn ./target/release/misto serve --http-addr "127.0.0.1:$port" --data-dir "$data" "${db_args[@]}" > "$data/misto.log" 2>&1 &
  pid=$!
  trap stop_misto EXIT
  url="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do curl -sf "$url/ready" >/dev/null && break; sleep 0.1; done
}

stop_misto() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$data"
  if [ "$backend" = postgres ]; then psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db" || true; fi
}
