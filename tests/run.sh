#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test. Exits non-zero on any failure.
#
#   tests/run.sh                 everything: build + ctest, sanitizer run, short fuzz run
#   MQTT_SANITIZE_RUN=0 ...      skip the ASan/UBSan builds (unit tests and the proxy binary)
#   MQTT_SANITIZE_PROXY_RUN=0    skip only the proxy integration tests against the ASan/UBSan mqtt-proxy
#   MQTT_TSAN_RUN=0 ...          skip the ThreadSanitizer build of auth-server and its HTTP tests
#   MQTT_FUZZ_SECONDS=0 ...      skip the fuzzer (default 60 s when clang is present)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

step() { printf '\n=== %s\n' "$*"; }

step "dependencies"
deploy/install-deps.sh

step "build (RelWithDebInfo, warnings as errors)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQTT_WERROR=ON >/dev/null
cmake --build build -j"$jobs"

step "ctest"
(cd build && ctest --no-tests=error --output-on-failure -j"$jobs")

if [ "${MQTT_SANITIZE_RUN:-1}" != 0 ]; then
  step "unit tests and tls_stream under AddressSanitizer + UndefinedBehaviorSanitizer"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMQTT_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$jobs" --target unit_tests tls_stream_test
  (cd build-asan && ctest --no-tests=error --output-on-failure -R '^(unit|tls_stream)$')
fi

if [ "${MQTT_TSAN_RUN:-1}" != 0 ]; then
  step "auth-server and its HTTP tests under ThreadSanitizer"
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS=-fsanitize=thread -fno-omit-frame-pointer -O1" \
    -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread >/dev/null
  cmake --build build-tsan -j"$jobs" --target auth-server auth_server_test
  tsan_logs=$(mktemp -d)
  # Every process (the test and each auth-server it starts) writes its reports to $tsan_logs/report.<pid>;
  # a race found while a server shuts down would otherwise go unseen.
  (cd build-tsan && TSAN_OPTIONS="suppressions=$root/auth/tsan.supp halt_on_error=1 log_path=$tsan_logs/report" \
    ctest --no-tests=error --output-on-failure -R '^auth_server$')
  if compgen -G "$tsan_logs/report*" >/dev/null; then cat "$tsan_logs"/report*; exit 1; fi
  rm -rf "$tsan_logs"
fi

if [ "${MQTT_SANITIZE_RUN:-1}" != 0 ] && [ "${MQTT_SANITIZE_PROXY_RUN:-1}" != 0 ]; then
  # The real binary under the sanitizers, with the tests that drive it hardest
  # (the Python and C++ tests and local-stack.sh honour MQTT_PROXY_BINARY).
  # Any report (ASan, UBSan, LeakSanitizer at exit) lands in $asan_logs and fails the run.
  step "mqtt-proxy under AddressSanitizer + UndefinedBehaviorSanitizer: proxy integration tests"
  cmake --build build-asan -j"$jobs" --target mqtt-proxy
  asan_logs=$(mktemp -d)
  (cd build && MQTT_PROXY_BINARY="$root/build-asan/bin/mqtt-proxy" MQTT_PROXY_SANITIZED=1 \
     ASAN_OPTIONS="log_path=$asan_logs/asan:detect_leaks=1" UBSAN_OPTIONS="log_path=$asan_logs/ubsan:print_stacktrace=1" \
     ctest --no-tests=error --output-on-failure \
       -R '^(proxy_mosquitto|proxy_real_clients|proxy_transports|proxy_hostile_clients|proxy_drain|proxy_revocation|stack_mosquitto|proxy_bridge|proxy_operator|proxy_failover|proxy_upstream_bind)$')
  if compgen -G "$asan_logs/*" >/dev/null; then
    cat "$asan_logs"/*
    echo "sanitizer reports from mqtt-proxy (above)" >&2
    exit 1
  fi
  rm -rf "$asan_logs"
fi

fuzz_seconds=${MQTT_FUZZ_SECONDS:-60}
if [ "$fuzz_seconds" != 0 ] && command -v clang++ >/dev/null 2>&1; then
  CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQTT_FUZZ=ON >/dev/null
  cmake --build build-fuzz -j"$jobs" --target codec_fuzz session_fuzz proxy_protocol_fuzz
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  fuzz() {  # target corpus seconds
    step "fuzzing $1 for ${3}s"
    mkdir -p "$work/$1"
    cp "$2"/* "$work/$1"/
    (cd "$work" && "$root/build-fuzz/bin/$1" -max_total_time="$3" -max_len=4096 -print_final_stats=1 "$work/$1" 2>&1 | tail -n 6)
  }
  fuzz codec_fuzz tests/fuzz/corpus "$fuzz_seconds"      # framer + decoder + encoder round trip
  fuzz session_fuzz tests/fuzz/session_corpus $(( (fuzz_seconds + 1) / 2 ))  # nothing past the auth gate or the ACL
  fuzz proxy_protocol_fuzz tests/fuzz/proxy_protocol_corpus $(( (fuzz_seconds + 5) / 6 ))  # prefix-consistent PROXY parsing
  cmake --build build-fuzz -j"$jobs" --target websocket_frames_fuzz
  fuzz websocket_frames_fuzz tests/fuzz/websocket_corpus $(( (fuzz_seconds + 5) / 6 ))  # WebSocket frames: the same however reads split them
fi

step "all tests passed"
