#!/usr/bin/env bash
# Runs the benchmarks on this machine and rewrites docs/benchmarks.md.
# Not part of tests/run.sh: figures depend on the machine, not on correctness.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# BENCH_BIN_DIR=DIR: use the binaries already built there (mqtt-proxy, auth-server, proxy_bench,
# auth_validate_bench) instead of building; BENCH_OUT=FILE: write there instead of docs/benchmarks.md;
# BENCH_AUTH=0: leave out bench/auth_benches.sh (revocation, cache, outage; about 8 minutes).
if [ -z "${BENCH_BIN_DIR:-}" ]; then
  deploy/install-deps.sh
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j"$(nproc)" >/dev/null
fi
bin=$(realpath "${BENCH_BIN_DIR:-build/bin}")
out=${BENCH_OUT:-$root/docs/benchmarks.md}

work=$(mktemp -d)
cleanup() {
  for pid in ${server:-} ${proxy:-} ${broker:-}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin"/auth-server adduser --db "$work/auth.db" --user bench --password bench --group load >/dev/null
"$bin"/auth-server serve --db "$work/auth.db" --listen "127.0.0.1:$port" --log-level warn &
server=$!
for _ in $(seq 50); do curl -s "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
session=$(curl -s -X POST "127.0.0.1:$port/v1/login" -d '{"username":"bench","password":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["session"])')
login_s=$(curl -s -o /dev/null -w '%{time_total}' -X POST "127.0.0.1:$port/v1/login" -d '{"username":"bench","password":"bench"}')

results=()
for threads in 1 4 16 32; do
  results+=("$("$bin"/auth_validate_bench 127.0.0.1 "$port" "$session" "$threads" 5 || true)")
done

# ---- mqtt-proxy: many idle authenticated connections, then relay throughput
mkdir -p "$work/mosquitto" && chmod 755 "$work" "$work/mosquitto"
echo "proxy:bench-secret" >"$work/mosquitto/passwd" && mosquitto_passwd -U "$work/mosquitto/passwd" && chmod 644 "$work/mosquitto/passwd"
broker_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
proxy_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf "listener %s 127.0.0.1\nallow_anonymous false\npassword_file %s\npersistence false\nlog_type error\n" \
  "$broker_port" "$work/mosquitto/passwd" >"$work/mosquitto/mosquitto.conf"
"$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$work/mosquitto/mosquitto.conf" &
broker=$!
# The proxy learns the broker's limits with a probe connection at start: let the broker listen first.
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$broker_port") 2>/dev/null && break; sleep 0.1; done
"$bin"/mqtt-proxy --listen "127.0.0.1:$proxy_port" --upstream "127.0.0.1:$broker_port" --upstream-username proxy \
  --upstream-password bench-secret --auth-url "http://127.0.0.1:$port" --admin 127.0.0.1:0 --log-level warn \
  --max-connections 9000 &
proxy=$!
sleep 1
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
connections=${BENCH_CONNECTIONS:-5000}
messages=${BENCH_MESSAGES:-200000}
rss_before=$(rss "$proxy")
proxy_result=$("$bin"/proxy_bench "$proxy_port" "$session" bench "$connections" "$messages" || true)
rss_after=$(rss "$proxy")
kill "$proxy" "$broker" 2>/dev/null || true
per_connection=$(( (rss_after - rss_before) * 1024 / (connections > 0 ? connections : 1) ))

{
  echo "# Benchmarks"
  echo
  echo "Written by \`bench/run.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m); figures are for this"
  echo "machine and move with it. Client and server share the cores."
  echo
  echo "## auth-server: session validations per second"
  echo
  echo "\`POST /v1/sessions/validate\` with a valid session (user with one group), each client thread on one"
  echo "keep-alive connection, 5 s per row, server with its default thread pool."
  echo
  echo "| client threads | validations/s | failed |"
  echo "|---|---|---|"
  for r in "${results[@]}"; do
    t=$(sed -E 's/.*threads=([0-9]+).*/\1/' <<<"$r"); v=$(sed -E 's/.*validations_per_second=([0-9]+).*/\1/' <<<"$r"); f=$(sed -E 's/.*failed=([0-9]+).*/\1/' <<<"$r")
    echo "| $t | $v | $f |"
  done
  echo
  echo "One login (PBKDF2-HMAC-SHA256, 600,000 iterations) took ${login_s} s end to end."
  echo
  echo "## mqtt-proxy: connections and relay throughput"
  echo
  echo "mqtt-proxy (one io_context per core) between \`bench/proxy_bench\` and Mosquitto 2.0, with auth-server."
  echo "$connections clients CONNECT, authenticate with the auth PUBLISH and stay connected (200 handshakes"
  echo "in flight at a time); then one client publishes $messages QoS 0 messages of 64 bytes to another"
  echo "through proxy and broker, while the idle connections stay open."
  echo
  echo "| measure | value |"
  echo "|---|---|"
  echo "| result line | \`$proxy_result\` |"
  echo "| proxy RSS before | ${rss_before} KiB |"
  echo "| proxy RSS with $connections authenticated connections | ${rss_after} KiB |"
  echo "| memory per connection (RSS growth / connections) | about ${per_connection} bytes |"
  echo
  /usr/bin/python3 bench/transport_bench.py "$bin"/mqtt-proxy "${BENCH_TRANSPORT_CONNECTIONS:-1000}"
  if [ "${BENCH_AUTH:-1}" != 0 ]; then
    echo
    echo "## Authorisation: revocation, validation cache, API server outage, validation on new connections"
    echo
    bench/auth_benches.sh "$bin"
  fi
} > "$out.new"
mv "$out.new" "$out"
cat "$out"
