#!/usr/bin/env bash
# Runs the benchmarks on this machine and rewrites docs/benchmarks.md.
# Not part of tests/run.sh: figures depend on the machine, not on correctness.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
deploy/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

work=$(mktemp -d)
cleanup() { [ -n "${server:-}" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
build/bin/auth-server adduser --db "$work/auth.db" --user bench --password bench --group load >/dev/null
build/bin/auth-server serve --db "$work/auth.db" --listen "127.0.0.1:$port" --log-level warn &
server=$!
for _ in $(seq 50); do curl -s "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
session=$(curl -s -X POST "127.0.0.1:$port/v1/login" -d '{"username":"bench","password":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["session"])')
login_s=$(curl -s -o /dev/null -w '%{time_total}' -X POST "127.0.0.1:$port/v1/login" -d '{"username":"bench","password":"bench"}')

results=()
for threads in 1 4 16 32; do
  results+=("$(build/bin/auth_validate_bench 127.0.0.1 "$port" "$session" "$threads" 5 || true)")
done

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
} > "$root/docs/benchmarks.md.new"
mv "$root/docs/benchmarks.md.new" "$root/docs/benchmarks.md"
cat "$root/docs/benchmarks.md"
