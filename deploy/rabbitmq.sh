#!/usr/bin/env bash
# A private RabbitMQ 3.10 node with the MQTT plugin, on loopback ports, with
# its own data directory: nothing of the system's RabbitMQ is used or changed.
#
#   deploy/rabbitmq.sh start DIR MQTT_PORT USER PASSWORD   (AMQP on MQTT_PORT+1, distribution on MQTT_PORT+2)
#   deploy/rabbitmq.sh stop DIR
#
# MQTT messages go through the topic exchange webos.topic: MQTT topic
# webos/android/info arrives with routing key webos.android.info, so AMQP
# consumers can bind to it.
set -euo pipefail
command=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
node="mqtt-proxy-test-$(basename "$dir" | tr -c 'A-Za-z0-9\n' '-')@localhost"

export RABBITMQ_NODENAME=$node
export RABBITMQ_MNESIA_BASE=$dir/mnesia
export RABBITMQ_LOG_BASE=$dir/log
export RABBITMQ_CONFIG_FILE=$dir/rabbitmq
export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
export RABBITMQ_PID_FILE=$dir/rabbitmq.pid
export HOME=${HOME:-/root}
# Erlang's port mapper and distribution listen on loopback only.
export ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"

if [ "$command" = stop ]; then
  rabbitmqctl -n "$node" stop >/dev/null 2>&1 || true
  [ -f "$dir/rabbitmq.pid" ] && kill "$(cat "$dir/rabbitmq.pid")" 2>/dev/null || true
  # The Erlang port mapper outlives the node; end it when no node is left.
  if command -v epmd >/dev/null && ! epmd -names 2>/dev/null | grep -q "^name "; then epmd -kill >/dev/null 2>&1 || true; fi
  exit 0
fi

mqtt_port=$3 user=$4 password=$5
export RABBITMQ_NODE_PORT=$((mqtt_port + 1))
export RABBITMQ_DIST_PORT=$((mqtt_port + 2))
cat >"$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$((mqtt_port + 1))
mqtt.listeners.tcp.default = 127.0.0.1:$mqtt_port
mqtt.allow_anonymous = false
mqtt.vhost = /
mqtt.exchange = webos.topic
loopback_users = none
log.console = true
log.file = false
CONF
echo "[rabbitmq_mqtt]." >"$dir/enabled_plugins"
# Debian's rabbitmq-server, started as root, runs the node as the rabbitmq user.
if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq:rabbitmq "$dir"; fi
rabbitmq-server >"$dir/rabbitmq-server.log" 2>&1 &
rabbitmqctl -n "$node" wait --pid $! --timeout 120 >/dev/null
rabbitmqctl -n "$node" await_startup --timeout 120 >/dev/null
rabbitmqctl -n "$node" add_user "$user" "$password" >/dev/null
rabbitmqctl -n "$node" set_permissions -p / "$user" ".*" ".*" ".*" >/dev/null
# The MQTT plugin publishes to this exchange but does not declare it.
/usr/bin/python3 - "$((mqtt_port + 1))" "$user" "$password" <<'PY'
import sys, pika
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, "/", pika.PlainCredentials(user, password)))
connection.channel().exchange_declare("webos.topic", exchange_type="topic", durable=True)
connection.close()
PY
echo "rabbitmq node $node: MQTT 127.0.0.1:$mqtt_port, AMQP 127.0.0.1:$((mqtt_port + 1))"
