#!/usr/bin/env bash
# The authorisation benchmarks of issues 11 and 13 (revocation latency, validation cache, API server
# outage, validation on new connections). Not part of tests/run.sh. Prints Markdown sections to stdout;
# docs/benchmarks.md holds the figures of the last run with the command and date.
#   bench/auth_benches.sh [BIN_DIR]   (default build/bin; needs mqtt-proxy and auth-server there)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/bin}
py=/usr/bin/python3
echo "Run on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -m); binaries from $bin."
echo
timeout 600 $py bench/revocation_bench.py "$bin/mqtt-proxy" "$bin/auth-server" "${BENCH_REVOCATION_CONNECTIONS:-1000}" 200
echo
timeout 600 $py bench/cache_bench.py "$bin/mqtt-proxy" "$bin/auth-server" "${BENCH_TOKENS:-1000}" 5 100
echo
timeout 600 $py bench/outage_bench.py "$bin/mqtt-proxy" "$bin/auth-server" kill 100 30 200
echo
timeout 600 $py bench/outage_bench.py "$bin/mqtt-proxy" "$bin/auth-server" stop 100 30 200
echo
timeout 600 $py bench/validate_newconn_bench.py "$bin/auth-server" "${BENCH_TOKENS:-1000}" 200 20
