#!/usr/bin/env bash
# A three-node RabbitMQ cluster on one machine, for trying Vestnik on a cluster without Docker
# (tests/cluster/ uses it).  Each node has its own name, AMQP port, distribution port, data and
# log directories; they share one Erlang cookie, kept in DIR (HOME=DIR for every command).
#
#   docker/local-cluster.sh start DIR [BASE_PORT]   # nodes vestnik<BASE>-1..3@localhost, AMQP BASE_PORT+1..3
#   docker/local-cluster.sh stop-node DIR N         # stop node N (its data stays)
#   docker/local-cluster.sh start-node DIR N        # start node N again: it rejoins the cluster
#   docker/local-cluster.sh urls DIR                # VESTNIK_BROKER_URL for the three nodes
#   docker/local-cluster.sh stop DIR                # stop every node and remove DIR
#
# Needs rabbitmq-server (Debian's package) and a free BASE_PORT+1..3 and BASE_PORT+10001..3
# (default BASE_PORT 5800; keep both below the ephemeral range, 32768).  Nothing of the machine's own RabbitMQ is touched.
set -euo pipefail

cmd=${1:?usage: $0 start|stop|stop-node|start-node|urls DIR [N|BASE_PORT]}
dir=${2:?the cluster directory}
export HOME="$dir"  # the shared Erlang cookie: $HOME/.erlang.cookie, for nodes and rabbitmqctl alike
NODES=(1 2 3)
# The scripts themselves, not Debian's wrappers in /usr/sbin: those switch to the rabbitmq user (and
# its HOME, hence its cookie), which could not write to DIR either.
BIN=${RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}

# Names carry the base port: two clusters on one machine (two test runs) never share a node name.
node_name() { echo "vestnik$(base_port)-$1@localhost"; }
base_port() { cat "$dir/base_port"; }

node_env() {  # N: the environment of node N
  local n=$1 base; base=$(base_port)
  echo RABBITMQ_NODENAME="$(node_name "$n")" \
    RABBITMQ_NODE_PORT=$((base + n)) \
    RABBITMQ_DIST_PORT=$((base + 10000 + n)) \
    RABBITMQ_MNESIA_BASE="$dir/node$n/mnesia" \
    RABBITMQ_LOG_BASE="$dir/node$n/log" \
    RABBITMQ_PID_FILE="$dir/node$n/pid" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    RABBITMQ_CONFIG_FILE="$dir/node$n/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
}

ctl() { "$BIN/rabbitmqctl" -q -n "$(node_name "$1")" "${@:2}"; }

start_node() {
  local n=$1
  mkdir -p "$dir/node$n/log" "$dir/node$n/mnesia"
  rm -f "$dir/node$n/pid"  # a stopped node's: `wait` below must see the new one
  # shellcheck disable=SC2046
  env $(node_env "$n") "$BIN/rabbitmq-server" -detached
  # `wait` polls for the pid file and then the application (await_startup fails at once while the
  # Erlang VM is still registering, which takes seconds on a loaded machine).
  if ! ctl "$n" wait "$dir/node$n/pid" --timeout 180 >/dev/null 2>&1; then
    echo "node $n did not start; its log:" >&2
    tail -n 40 "$dir/node$n"/log/*.log >&2 2>/dev/null || echo "(no log)" >&2
    return 1
  fi
}

case "$cmd" in
  start)
    base=${3:-5800}
    mkdir -p "$dir"
    echo "$base" >"$dir/base_port"
    if [ ! -f "$dir/.erlang.cookie" ]; then
      head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/.erlang.cookie"
      chmod 400 "$dir/.erlang.cookie"
    fi
    echo "[]." >"$dir/enabled_plugins"  # no plugins: a lean node starts faster
    echo "[]." >"$dir/advanced.config"
    for n in "${NODES[@]}"; do
      mkdir -p "$dir/node$n"
      # loopback_users = none lets guest in from 127.0.0.1 (the default already); 1 GiB disk floor off.
      printf 'listeners.tcp.default = %s\ndisk_free_limit.absolute = 50MB\n' $((base + n)) \
        >"$dir/node$n/rabbitmq.conf"
    done
    start_node 1
    for n in 2 3; do
      start_node "$n"
      ctl "$n" stop_app
      ctl "$n" join_cluster "$(node_name 1)"
      ctl "$n" start_app
    done
    ctl 1 await_online_nodes 3 --timeout 120 2>/dev/null || true
    echo "cluster up: $(ctl 1 cluster_status --formatter json | tr -d '\n' | head -c 300)"
    ;;
  stop-node)
    ctl "${3:?node number}" stop
    ;;
  start-node)
    start_node "${3:?node number}"
    ;;
  urls)
    base=$(base_port)
    echo "amqp://guest:guest@127.0.0.1:$((base + 1))/%2F;amqp://guest:guest@127.0.0.1:$((base + 2))/%2F;amqp://guest:guest@127.0.0.1:$((base + 3))/%2F"
    ;;
  stop)
    for n in "${NODES[@]}"; do ctl "$n" stop 2>/dev/null || true; done
    rm -rf "$dir"
    ;;
  *)
    echo "unknown command: $cmd" >&2
    exit 2
    ;;
esac
