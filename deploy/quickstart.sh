#!/usr/bin/env bash
# The README's first command. On a fresh Debian 12 machine: installs what is
# missing, builds, creates a demo user, and starts auth-server (8080), a broker
# (1883, loopback only) and mqtt-proxy (5000; MQTT over WebSocket on 8081).
# Ctrl-C stops everything.
#
#   deploy/quickstart.sh [--broker test-broker|mosquitto|rabbitmq] [--check] [--no-build]
#     --broker   which broker to put behind the proxy (default: test-broker when
#                built, otherwise Mosquitto); with rabbitmq (3.1.1 only) 5.0 clients are bridged
#     --check    run deploy/demo-client.py against the stack, then stop (exit 0 on success)
#     --no-build skip installing and building (the binaries must exist)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

broker=""
check=0
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --broker) broker="$2"; shift 2 ;;
    --check) check=1; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "quickstart: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ "$build" = 1 ]; then
  deploy/install-deps.sh
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target mqtt-proxy auth-server $( [ -f tests/broker/CMakeLists.txt ] && echo test-broker )
fi
# The web console's one dependency, MQTT.js, pinned by auth/console/package-lock.json.
if [ ! -f auth/console/node_modules/mqtt/dist/mqtt.min.js ] && command -v npm >/dev/null 2>&1; then
  (cd auth/console && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
    echo "quickstart: npm ci in auth/console failed: the web console cannot load MQTT.js" >&2
fi
# Pages from the console's origin may call the API (CORS) and open the proxy's WebSocket.
console_origins=(http://127.0.0.1:8080 http://localhost:8080)
cors_flags=()
ws_origin_flags=()
for origin in "${console_origins[@]}"; do
  cors_flags+=(--cors-origin "$origin")
  ws_origin_flags+=(--ws-allowed-origin "$origin")
done
if [ -z "$broker" ]; then
  if [ -x build/bin/test-broker ]; then broker=test-broker; else broker=mosquitto; fi
fi
case "$broker" in
  mosquitto|test-broker|rabbitmq) ;;
  *) echo "quickstart: --broker must be test-broker, mosquitto or rabbitmq" >&2; exit 2 ;;
esac

for port in 1883 1884 1885 5000 8080 8081 9100; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "quickstart: port $port is already in use; stop what listens there (ss -ltnp 'sport = :$port')" >&2
    exit 1
  fi
done

state="$root/.quickstart"
rm -rf "$state"
mkdir -p "$state"
chmod 755 "$state"  # mosquitto started as root reads its files as its own user
pids=()
stop_all() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ "$broker" = rabbitmq ] && deploy/rabbitmq.sh stop "$state/rabbitmq" >/dev/null 2>&1
  wait 2>/dev/null || true
}
trap 'echo; echo "stopping..."; stop_all; exit 0' INT TERM
trap stop_all EXIT

wait_for() {  # port name
  for _ in $(seq 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "quickstart: $2 did not start; see $state/$2.log" >&2
  exit 1
}

random() { head -c 12 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 16; }
demo_password=$(random)
proxy_password=$(random)

# Shared secrets: the proxies' service token for the API server's event stream
# (revocations reach open connections) and the operator token of the admin port.
secret() { head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32; }
(umask 077; secret >"$state/service-token"; secret >"$state/admin-token")

# The API server and its demo user.
build/bin/auth-server adduser --db "$state/auth.db" --user demo --password "$demo_password" --group demo >/dev/null
build/bin/auth-server serve --db "$state/auth.db" --listen 127.0.0.1:8080 --service-token-file "$state/service-token" \
  --console-dir "$root/auth/console" "${cors_flags[@]}" >"$state/auth-server.log" 2>&1 &
pids+=($!)

# The broker, reachable only from this machine, and only with the proxy's account.
if [ "$broker" = mosquitto ]; then
  echo "proxy:$proxy_password" >"$state/mosquitto.passwd"
  mosquitto_passwd -U "$state/mosquitto.passwd"
  chmod 644 "$state/mosquitto.passwd"
  cat >"$state/mosquitto.conf" <<CONF
listener 1883 127.0.0.1
allow_anonymous false
password_file $state/mosquitto.passwd
persistence false
CONF
  mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  "$mosquitto_bin" -c "$state/mosquitto.conf" >"$state/broker.log" 2>&1 &
  pids+=($!)
elif [ "$broker" = rabbitmq ]; then
  deploy/rabbitmq.sh start "$state/rabbitmq" 1883 proxy "$proxy_password" >"$state/broker.log" 2>&1 </dev/null
else
  build/bin/test-broker --listen 127.0.0.1:1883 --username proxy --password "$proxy_password" >"$state/broker.log" 2>&1 &
  pids+=($!)
fi
wait_for 8080 auth-server
wait_for 1883 broker

upstream_kind=generic
case "$broker" in rabbitmq) upstream_kind=rabbitmq ;; mosquitto) upstream_kind=mosquitto ;; esac
build/bin/mqtt-proxy --listen 0.0.0.0:5000 --ws-listen 0.0.0.0:8081 --upstream 127.0.0.1:1883 --upstream-kind "$upstream_kind" --upstream-username proxy \
  --upstream-password "$proxy_password" --auth-url http://127.0.0.1:8080 --admin 127.0.0.1:9100 \
  --auth-service-token-file "$state/service-token" --admin-token-file "$state/admin-token" \
  "${ws_origin_flags[@]}" \
  >"$state/mqtt-proxy.log" 2>&1 &
pids+=($!)
wait_for 5000 mqtt-proxy

if [ "$check" = 1 ]; then
  # MQTT 5.0 on every broker: RabbitMQ 3.10 speaks 3.1.1 only, and the proxy bridges.
  mqtt_version=5
  /usr/bin/python3 deploy/demo-client.py --user demo --password "$demo_password" --mqtt "$mqtt_version"
  /usr/bin/python3 deploy/demo-client.py --user demo --password "$demo_password" --mqtt "$mqtt_version" \
    --websocket --port 8081 --origin http://127.0.0.1:8080
  # The web console is served, with MQTT.js when npm could install it.
  /usr/bin/python3 - "$([ -f auth/console/node_modules/mqtt/dist/mqtt.min.js ] && echo vendor)" <<'PY'
import sys, urllib.request
page = urllib.request.urlopen("http://127.0.0.1:8080/console/", timeout=5).read().decode()
assert "<title>mqtt-proxy console</title>" in page, "the web console is not served"
if sys.argv[1] == "vendor":
    urllib.request.urlopen("http://127.0.0.1:8080/console/vendor/mqtt.min.js", timeout=5).read()
print("web console served at http://127.0.0.1:8080/console/")
PY
  # The operator endpoints answer with the admin token and list the stack's own check client as gone.
  curl -sf -H "Authorization: Bearer $(cat "$state/admin-token")" http://127.0.0.1:9100/v1/connections >/dev/null \
    || { echo "quickstart: the admin port's /v1/connections did not answer" >&2; exit 1; }
  # The event stream is protected and connected (revocations reach open connections).
  grep -q "auth event stream connected" "$state/mqtt-proxy.log" || { echo "quickstart: the proxy did not follow the event stream" >&2; exit 1; }
  echo "operator endpoints and event stream ok"
  exit $?
fi

cat <<TEXT

The stack is up (logs in .quickstart/):
  auth-server  http://127.0.0.1:8080      demo user: demo / $demo_password
  broker       127.0.0.1:1883 ($broker; only the proxy's account may connect)
  mqtt-proxy   0.0.0.0:5000               admin: http://127.0.0.1:9100/metrics
               ws://0.0.0.0:8081/mqtt     MQTT over WebSocket (browsers, MQTT.js)
  web console  http://127.0.0.1:8080/console/?user=demo   (log in as demo; allowed origins: ${console_origins[*]})

1. Log in and get a session:
   curl -s -X POST http://127.0.0.1:8080/v1/login -d '{"username":"demo","password":"$demo_password"}'

2. Use it with standard clients (the session as the MQTT password):
   S=\$(curl -s -X POST http://127.0.0.1:8080/v1/login -d '{"username":"demo","password":"$demo_password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["session"])')
   mosquitto_sub -h 127.0.0.1 -p 5000 -u demo -P "\$S" -t 'private/demo/#' -q 2 -v &
   mosquitto_pub -h 127.0.0.1 -p 5000 -u demo -P "\$S" -t private/demo/hello -m 'hi' -q 2
   mosquitto_sub -h 127.0.0.1 -p 5000 -u demo -P "\$S" -t '#'      # refused: outside the ACL

3. Or the way an app does it (auth PUBLISH to service/auth/<session>), with paho:
   deploy/demo-client.py --user demo --password $demo_password
   deploy/demo-client.py --user demo --password $demo_password --websocket --port 8081 --origin http://127.0.0.1:8080

4. Or in a browser: open the web console, log in as demo, watch messages arrive and publish:
   http://127.0.0.1:8080/console/?user=demo

5. Operate: who is connected, kick, explain a decision (token in .quickstart/admin-token):
   T=\$(cat .quickstart/admin-token)
   curl -s -H "Authorization: Bearer \$T" http://127.0.0.1:9100/v1/connections
   curl -s -H "Authorization: Bearer \$T" 'http://127.0.0.1:9100/v1/explain?user=demo&action=subscribe&topic=%23'

Ctrl-C stops everything.
TEXT
wait
