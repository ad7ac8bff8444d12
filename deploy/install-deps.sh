#!/usr/bin/env bash
# Installs the Debian 12 packages that the build and the tests need.
# Idempotent and quiet: does nothing when everything is already there.
set -euo pipefail

BUILD_PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libboost1.81-dev        # Asio (networking) and Beast (HTTP, WebSocket)
  libssl-dev              # TLS, and the auth server's KDF and CSPRNG
  libcpp-httplib-dev      # the auth server's HTTP server
  libspdlog-dev           # structured logging
  doctest-dev             # unit tests
  libsqlite3-dev          # the auth server's store
  nlohmann-json3-dev      # JSON for the auth API
  libtomlplusplus-dev     # the proxy's config file
)
TEST_PACKAGES=(
  mosquitto mosquitto-clients   # the real broker and CLI clients the tests run against
  python3-paho-mqtt             # a real client library for integration tests
  haproxy                       # the load balancer of the local stack (PROXY protocol v2)
  rabbitmq-server python3-pika  # the alternative backend (MQTT plugin) and an AMQP client to check its routing
  docker-compose                # only to validate docker-compose.yml (`docker-compose config`); Docker itself is not needed
  clang libclang-rt-14-dev      # libFuzzer for the codec fuzz target
  chromium                      # the web console's browser test (tests/browser, driven by playwright-core from npm)
  fonts-dejavu-core             # so the console's screenshots have text (chromium pulls in no font)
)

missing=()
for pkg in "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}" "$@"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

# MQTT.js, from the npm registry, is the browser-style client of the WebSocket
# tests. Machine images often carry a newer Node.js than Debian's; keep it.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts these services on install; the tests start their own on loopback ports.
  if command -v systemctl >/dev/null 2>&1; then
    for service in mosquitto haproxy rabbitmq-server; do $SUDO systemctl disable --now "$service" >/dev/null 2>&1 || true; done
  fi
fi

# npm packages, exactly as their lock files pin them (no browser download:
# playwright-core drives Debian's chromium): MQTT.js for the web console and
# the WebSocket tests, playwright-core for the browser test. Skipped when
# already installed; a failure here leaves the tests to try `npm ci` again.
root="$(cd "$(dirname "$0")/.." && pwd)"
for dir in auth/console tests/integration/mqttjs tests/browser; do
  [ -f "$root/$dir/package-lock.json" ] || continue
  [ -d "$root/$dir/node_modules" ] && continue
  echo "install-deps: npm ci in $dir"
  (cd "$root/$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
    || echo "install-deps: npm ci in $dir failed; the tests will try again" >&2
done
