#!/usr/bin/env bash
# The production build of mqtt-proxy, the one docs/benchmarks.md measures
# against HAProxy: link-time optimisation and profile-guided optimisation.
#   1. an instrumented mqtt-proxy is built in build-pgo/ (-DMQTT_PGO=generate);
#   2. bench/pgo_train.py runs it in front of Mosquitto and the auth-server
#      (new sessions, idle clients, QoS 0/1 relay, paced latency: ~20 s);
#   3. build-release/ is built with that profile (-DMQTT_PGO=use).
# Leaves build-release/bin/{mqtt-proxy,auth-server,test-broker}. The profile
# belongs to the sources it was made from: run the script again after a change.
#
#   deploy/build-release.sh [--no-deps]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
[ "${1:-}" = "--no-deps" ] || deploy/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
profile="$root/build-release/pgo-profile"
rm -rf "$profile"
mkdir -p "$profile"

cmake -S . -B build-pgo -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQTT_PGO=generate \
  "-DMQTT_PGO_DIR=$profile" >/dev/null
cmake --build build-pgo -j"$jobs" --target mqtt-proxy auth-server mqtt_load
/usr/bin/python3 bench/pgo_train.py --proxy build-pgo/bin/mqtt-proxy --bin build-pgo/bin
if ! find "$profile" -name '*.gcda' | grep -q .; then
  echo "build-release: the training run wrote no profile into $profile" >&2
  exit 1
fi

cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQTT_PGO=use \
  "-DMQTT_PGO_DIR=$profile" >/dev/null
cmake --build build-release -j"$jobs" --target mqtt-proxy auth-server test-broker
echo "build-release: build-release/bin/mqtt-proxy (LTO, PGO from $(find "$profile" -name '*.gcda' | wc -l) profile files)"
