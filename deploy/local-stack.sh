#!/usr/bin/env bash
# The docker-compose topology as plain processes on loopback, for machines
# without Docker and for the integration tests:
#
#   HAProxy (TCP, PROXY v2) -> mqtt-proxy x 2 -> broker (Mosquitto, RabbitMQ, a RabbitMQ cluster of 3 or test-broker)
#                                   \-> auth-server
#
#   deploy/local-stack.sh start [--dir DIR] [--base-port N] [--broker mosquitto|rabbitmq|rabbitmq-cluster|test-broker]
#   deploy/local-stack.sh stop  [--dir DIR]
#
# Ports, from the base port N (default 25000): N load balancer, N+1/N+2 proxies,
# N+11/N+12 their admin endpoints, N+20 auth-server, N+30 broker (N+31..N+33 RabbitMQ;
# rabbitmq-cluster: nodes' MQTT on N+30, N+33, N+36, each with AMQP +1 and distribution +2,
# every proxy given all three nodes, failing over between them).
# `start` writes DIR/env (ports, pids, the demo user's password) and returns once
# everything answers; `stop` ends every process it started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command=${1:-}
shift || true
dir="$root/.local-stack"
base=25000
broker=mosquitto
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --base-port) base="$2"; shift 2 ;;
    --broker) broker="$2"; shift 2 ;;
    *) echo "local-stack: unknown argument $1" >&2; exit 2 ;;
  esac
done

stop_stack() {
  [ -f "$dir/pids" ] || return 0
  while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$dir/pids"
  for _ in $(seq 50); do
    alive=0
    while read -r pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$dir/pids"
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$dir/pids"
  [ -n "$(cat "$dir/rabbitmq-node" 2>/dev/null)" ] && "$root/deploy/rabbitmq.sh" stop "$dir/rabbitmq" >/dev/null 2>&1 || true
  rm -f "$dir/pids"
}

wait_for() {  # port name
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "local-stack: $2 did not come up on port $1; logs in $dir" >&2
  stop_stack
  exit 1
}

case "$command" in
  stop) stop_stack; exit 0 ;;
  start) ;;
  *) sed -n '2,18p' "$0"; exit 2 ;;
esac

bin="$root/build/bin"
# MQTT_PROXY_BINARY: another build of the proxy (the sanitizer run uses build-asan's).
proxy_bin=${MQTT_PROXY_BINARY:-$bin/mqtt-proxy}
for b in "$proxy_bin" "$bin/auth-server"; do [ -x "$b" ] || { echo "local-stack: build first ($b missing)" >&2; exit 1; }; done
command -v haproxy >/dev/null || { echo "local-stack: haproxy is not installed (deploy/install-deps.sh)" >&2; exit 1; }
stop_stack
rm -rf "$dir"
mkdir -p "$dir"
chmod 755 "$dir"
: >"$dir/pids"
# A later step that fails (the broker does not start, a port is taken) must
# not leave the processes already started behind.
trap 'status=$?; if [ "$status" != 0 ]; then echo "local-stack: start failed, stopping what it started" >&2; stop_stack; fi' EXIT

lb=$base proxy1=$((base + 1)) proxy2=$((base + 2)) admin1=$((base + 11)) admin2=$((base + 12))
lb_ws=$((base + 3)) proxy1_ws=$((base + 4)) proxy2_ws=$((base + 5))
auth=$((base + 20)) broker_port=$((base + 30))
demo_password=$(head -c 12 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 16)
proxy_password=$(head -c 12 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 16)

"$bin/auth-server" adduser --db "$dir/auth.db" --user demo --password "$demo_password" --group demo \
  --allow-publish "webos/demo/#" >/dev/null
"$bin/auth-server" serve --db "$dir/auth.db" --listen "127.0.0.1:$auth" >"$dir/auth-server.log" 2>&1 &
echo $! >>"$dir/pids"

case "$broker" in
  mosquitto)
    echo "proxy:$proxy_password" >"$dir/mosquitto.passwd"
    mosquitto_passwd -U "$dir/mosquitto.passwd"
    chmod 644 "$dir/mosquitto.passwd"
    printf 'listener %s 127.0.0.1\nallow_anonymous false\npassword_file %s\npersistence false\n' \
      "$broker_port" "$dir/mosquitto.passwd" >"$dir/mosquitto.conf"
    "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$dir/mosquitto.conf" >"$dir/broker.log" 2>&1 &
    echo $! >>"$dir/pids"
    ;;
  test-broker)
    "$bin/test-broker" --listen "127.0.0.1:$broker_port" --username proxy --password "$proxy_password" \
      >"$dir/broker.log" 2>&1 &
    echo $! >>"$dir/pids"
    ;;
  rabbitmq)
    "$root/deploy/rabbitmq.sh" start "$dir/rabbitmq" "$broker_port" proxy "$proxy_password" >"$dir/broker.log" 2>&1
    echo rabbit >"$dir/rabbitmq-node"
    ;;
  rabbitmq-cluster)
    echo rabbit >"$dir/rabbitmq-node"
    "$root/deploy/rabbitmq.sh" start "$dir/rabbitmq" "$broker_port" proxy "$proxy_password" --nodes 3 --durable-queues quorum \
      >"$dir/broker.log" 2>&1
    ;;
  *) echo "local-stack: --broker must be mosquitto, rabbitmq, rabbitmq-cluster or test-broker" >&2; exit 2 ;;
esac
wait_for "$auth" auth-server
wait_for "$broker_port" broker
upstream="127.0.0.1:$broker_port"
if [ "$broker" = rabbitmq-cluster ]; then
  upstream="127.0.0.1:$broker_port,127.0.0.1:$((broker_port + 3)),127.0.0.1:$((broker_port + 6))"
  wait_for "$((broker_port + 3))" "broker node 1"
  wait_for "$((broker_port + 6))" "broker node 2"
fi
# RabbitMQ maps '/' to '.' and takes '*' as a wildcard: the proxy refuses both in names.
kind=generic
case "$broker" in rabbitmq*) kind=rabbitmq ;; mosquitto) kind=mosquitto ;; esac

for i in 1 2; do
  port_var="proxy$i" admin_var="admin$i" ws_var="proxy${i}_ws"
  "$proxy_bin" --listen "127.0.0.1:${!port_var}" --ws-listen "127.0.0.1:${!ws_var}" \
    --admin "127.0.0.1:${!admin_var}" --proxy-protocol \
    --upstream "$upstream" --upstream-kind "$kind" --upstream-username proxy --upstream-password "$proxy_password" \
    --auth-url "http://127.0.0.1:$auth" --log-level info >"$dir/mqtt-proxy$i.log" 2>&1 &
  echo $! >"$dir/mqtt-proxy$i.pid"
  cat "$dir/mqtt-proxy$i.pid" >>"$dir/pids"
  wait_for "${!port_var}" "mqtt-proxy$i"
done

sed -e "s/@LB_BIND@/127.0.0.1:$lb/" -e "s/@PROXY1@/127.0.0.1:$proxy1/" -e "s/@PROXY2@/127.0.0.1:$proxy2/" \
  -e "s/@ADMIN1@/$admin1/" -e "s/@ADMIN2@/$admin2/" -e "s/@LB_WS_BIND@/127.0.0.1:$lb_ws/" \
  -e "s/@PROXY1_WS@/127.0.0.1:$proxy1_ws/" -e "s/@PROXY2_WS@/127.0.0.1:$proxy2_ws/" \
  "$root/deploy/haproxy.cfg.in" >"$dir/haproxy.cfg"
haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
echo $! >>"$dir/pids"
wait_for "$lb" haproxy

cat >"$dir/env" <<ENV
LB_PORT=$lb
LB_WS_PORT=$lb_ws
PROXY1_PORT=$proxy1
PROXY2_PORT=$proxy2
ADMIN1_PORT=$admin1
ADMIN2_PORT=$admin2
AUTH_PORT=$auth
BROKER_PORT=$broker_port
BROKER=$broker
BROKER_NODES=$upstream
RABBITMQ_DIR=$dir/rabbitmq
PROXY_PASSWORD=$proxy_password
DEMO_USER=demo
DEMO_PASSWORD=$demo_password
PROXY1_PID=$(cat "$dir/mqtt-proxy1.pid")
PROXY2_PID=$(cat "$dir/mqtt-proxy2.pid")
ENV
trap - EXIT
echo "local stack up: MQTT via HAProxy on 127.0.0.1:$lb, API on 127.0.0.1:$auth, broker $broker; details in $dir/env"
