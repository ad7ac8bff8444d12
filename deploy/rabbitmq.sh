#!/usr/bin/env bash
# A private RabbitMQ 3.10 node, or a cluster of them, with the MQTT plugin, on
# loopback ports, with their own data directories: nothing of the system's
# RabbitMQ is used or changed.
#
#   deploy/rabbitmq.sh start DIR MQTT_PORT USER PASSWORD   (AMQP on MQTT_PORT+1, distribution on MQTT_PORT+2)
#   deploy/rabbitmq.sh start DIR MQTT_PORT USER PASSWORD --nodes N [--durable-queues classic|quorum]
#       N nodes clustered with join_cluster: node i (0..N-1) listens for MQTT on
#       MQTT_PORT+3i, AMQP on MQTT_PORT+3i+1, distribution on MQTT_PORT+3i+2, keeps
#       its data in DIR/node<i>; all share the Erlang cookie in DIR/erlang.cookie.
#       --durable-queues: the queue type the MQTT plugin declares for QoS 1
#       subscriptions of persistent sessions (mqtt.durable_queue_type; default classic).
#   deploy/rabbitmq.sh stop DIR                  every node
#   deploy/rabbitmq.sh stop-node DIR I           one node of a cluster (a node loss)
#   deploy/rabbitmq.sh kill-node DIR I           the same as a crash: SIGKILL to the node's VM
#   deploy/rabbitmq.sh start-node DIR I          that node again; it rejoins the cluster
#
# MQTT messages go through the topic exchange webos.topic: MQTT topic
# webos/android/info arrives with routing key webos.android.info, so AMQP
# consumers can bind to it, on any node of the cluster.
set -euo pipefail
command=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
shift 2
export HOME=${HOME:-/root}
# Erlang's port mapper and distribution listen on loopback only.
export ERL_EPMD_ADDRESS=127.0.0.1

# node_env DIR NAME MQTT_PORT [COOKIE]: the environment of one node's server and CLI.
node_env() {
  export RABBITMQ_NODENAME=$2
  export RABBITMQ_MNESIA_BASE=$1/mnesia
  export RABBITMQ_LOG_BASE=$1/log
  export RABBITMQ_CONFIG_FILE=$1/rabbitmq
  export RABBITMQ_ENABLED_PLUGINS_FILE=$1/enabled_plugins
  export RABBITMQ_PID_FILE=$1/rabbitmq.pid
  export RABBITMQ_NODE_PORT=$(($3 + 1))
  export RABBITMQ_DIST_PORT=$(($3 + 2))
  RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  [ -n "${4:-}" ] && RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS+=" -setcookie $4"
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS
}

# ctl NAME COOKIE ARGS...: rabbitmqctl against one node (the cookie may be empty: the default one).
ctl() {
  local name=$1 cookie=$2
  shift 2
  # stdin from /dev/null: the CLI would eat the node list the callers loop over.
  if [ -n "$cookie" ]; then rabbitmqctl --erlang-cookie "$cookie" -n "$name" "$@" </dev/null
  else rabbitmqctl -n "$name" "$@" </dev/null; fi
}

# start_node DIR NAME MQTT_PORT COOKIE DURABLE_QUEUES: writes the config, starts the server in the background.
start_node() {
  local node_dir=$1 name=$2 mqtt_port=$3 cookie=$4 durable=$5
  mkdir -p "$node_dir"
  cat >"$node_dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$((mqtt_port + 1))
mqtt.listeners.tcp.default = 127.0.0.1:$mqtt_port
mqtt.allow_anonymous = false
mqtt.vhost = /
mqtt.exchange = webos.topic
loopback_users = none
log.console = true
log.file = false
CONF
  [ -n "$durable" ] && echo "mqtt.durable_queue_type = $durable" >>"$node_dir/rabbitmq.conf"
  # A node that will join a cluster starts without the MQTT plugin, which is
  # enabled after the join, so it joins the cluster's one Raft group for MQTT
  # client ids from the start (booted with the plugin, each node first elects
  # itself leader of a group of its own, then follows node 0's after the join;
  # measured, that works too: this is the tidier start, not a fix).
  if [ "${6:-}" = later ]; then echo "[]." >"$node_dir/enabled_plugins"; else echo "[rabbitmq_mqtt]." >"$node_dir/enabled_plugins"; fi
  # Debian's rabbitmq-server, started as root, runs the node as the rabbitmq user.
  if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq:rabbitmq "$node_dir"; fi
  (
    node_env "$node_dir" "$name" "$mqtt_port" "$cookie"
    rabbitmq-server >"$node_dir/rabbitmq-server.log" 2>&1 </dev/null &
    echo $! >"$node_dir/server.pid"
  )
}

await_node() {  # NAME COOKIE NODE_DIR
  ctl "$1" "$2" wait --pid "$(cat "$3/server.pid")" --timeout 120 >/dev/null
  ctl "$1" "$2" await_startup --timeout 120 >/dev/null
}

stop_node() {  # NAME COOKIE NODE_DIR
  ctl "$1" "$2" stop >/dev/null 2>&1 || true
  [ -f "$3/rabbitmq.pid" ] && kill "$(cat "$3/rabbitmq.pid")" 2>/dev/null || true
  [ -f "$3/server.pid" ] && kill "$(cat "$3/server.pid")" 2>/dev/null || true
  rm -f "$3/rabbitmq.pid" "$3/server.pid"
}

# The proxy's account and the exchange: once, for the whole cluster.
provision() {  # NAME COOKIE AMQP_PORT USER PASSWORD
  ctl "$1" "$2" add_user "$4" "$5" >/dev/null
  ctl "$1" "$2" set_permissions -p / "$4" ".*" ".*" ".*" >/dev/null
  # The MQTT plugin publishes to this exchange but does not declare it.
  /usr/bin/python3 - "$3" "$4" "$5" <<'PY'
import sys, pika
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, "/", pika.PlainCredentials(user, password)))
connection.channel().exchange_declare("webos.topic", exchange_type="topic", durable=True)
connection.close()
PY
}

# Node names are host-wide (epmd): the directory's name and a checksum of its
# path, so two stacks started at once from directories of the same name
# (.../rabbitmq) never share, or talk to, each other's nodes.
prefix="mqtt-proxy-test-$(basename "$dir" | tr -c 'A-Za-z0-9\n' '-')$(printf %s "$dir" | cksum | cut -d' ' -f1)"

# The cluster's nodes, one line each: index name mqtt_port dir.
nodes_file=$dir/cluster-nodes
cookie_of() { cat "$dir/erlang.cookie" 2>/dev/null || true; }

case "$command" in
  stop)
    if [ -f "$nodes_file" ]; then
      cookie=$(cookie_of)
      while read -r _ name _ node_dir; do stop_node "$name" "$cookie" "$node_dir"; done <"$nodes_file"
    else
      stop_node "$prefix@localhost" "" "$dir"
    fi
    # The Erlang port mapper outlives the nodes; end it when no node is left.
    if command -v epmd >/dev/null && ! epmd -names 2>/dev/null | grep -q "^name "; then epmd -kill >/dev/null 2>&1 || true; fi
    exit 0
    ;;
  stop-node | kill-node | start-node)
    index=$1
    read -r _ name mqtt_port node_dir < <(awk -v i="$index" '$1 == i' "$nodes_file")
    [ -n "${name:-}" ] || { echo "rabbitmq.sh: no node $index in $dir" >&2; exit 2; }
    cookie=$(cookie_of)
    if [ "$command" = kill-node ]; then
      kill -9 "$(cat "$node_dir/rabbitmq.pid")"
      for _ in $(seq 100); do ctl "$name" "$cookie" ping >/dev/null 2>&1 || break; sleep 0.1; done
      rm -f "$node_dir/rabbitmq.pid" "$node_dir/server.pid"
      echo "rabbitmq node $name killed"
    elif [ "$command" = stop-node ]; then
      stop_node "$name" "$cookie" "$node_dir"
      echo "rabbitmq node $name stopped"
    else
      # The node's data says it is a cluster member: it rejoins on boot.
      (node_env "$node_dir" "$name" "$mqtt_port" "$cookie"; rabbitmq-server >>"$node_dir/rabbitmq-server.log" 2>&1 </dev/null & echo $! >"$node_dir/server.pid")
      await_node "$name" "$cookie" "$node_dir"
      echo "rabbitmq node $name: MQTT 127.0.0.1:$mqtt_port (rejoined)"
    fi
    exit 0
    ;;
  start) ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac

mqtt_port=$1 user=$2 password=$3
shift 3
count=1 durable=""
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) count=$2; shift 2 ;;
    --durable-queues) durable=$2; shift 2 ;;
    *) echo "rabbitmq.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$durable" in "" | classic | quorum) ;; *) echo "rabbitmq.sh: --durable-queues classic|quorum" >&2; exit 2 ;; esac

if [ "$count" = 1 ]; then
  # One node, as it always was: its data directly in DIR, the default cookie.
  name="$prefix@localhost"
  start_node "$dir" "$name" "$mqtt_port" "" "$durable"
  await_node "$name" "" "$dir"
  provision "$name" "" "$((mqtt_port + 1))" "$user" "$password"
  echo "rabbitmq node $name: MQTT 127.0.0.1:$mqtt_port, AMQP 127.0.0.1:$((mqtt_port + 1))"
  exit 0
fi

# A cluster: every node boots at once (the slow part), then nodes 1..N-1
# join node 0 one after the other.
chmod 755 "$dir"  # the nodes run as the rabbitmq user: they must reach their own directories
od -An -N16 -tx1 /dev/urandom | tr -dc '0-9a-f' | tr 'a-f' 'A-F' >"$dir/erlang.cookie"
cookie=$(cookie_of)
chmod 600 "$dir/erlang.cookie"
: >"$nodes_file"
for ((i = 0; i < count; i++)); do
  echo "$i $prefix-n$i@localhost $((mqtt_port + 3 * i)) $dir/node$i" >>"$nodes_file"
done
while read -r i name port node_dir; do
  start_node "$node_dir" "$name" "$port" "$cookie" "$durable" "$([ "$i" = 0 ] || echo later)"
done <"$nodes_file"
while read -r i name port node_dir; do await_node "$name" "$cookie" "$node_dir"; done <"$nodes_file"
first=$(awk '$1 == 0 {print $2}' "$nodes_file")
while read -r i name port node_dir; do
  [ "$i" = 0 ] && continue
  ctl "$name" "$cookie" stop_app >/dev/null
  ctl "$name" "$cookie" join_cluster "$first" >/dev/null
  ctl "$name" "$cookie" start_app >/dev/null
  (node_env "$node_dir" "$name" "$port" "$cookie"
   rabbitmq-plugins --erlang-cookie "$cookie" -n "$name" enable rabbitmq_mqtt >/dev/null </dev/null)
done <"$nodes_file"
ctl "$first" "$cookie" await_online_nodes "$count" --timeout 120 >/dev/null
provision "$first" "$cookie" "$((mqtt_port + 1))" "$user" "$password"
while read -r i name port node_dir; do
  echo "rabbitmq node $name: MQTT 127.0.0.1:$port, AMQP 127.0.0.1:$((port + 1))"
done <"$nodes_file"
