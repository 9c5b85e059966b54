#!/usr/bin/env bash
# A two-node Ray cluster on this machine (one head, one worker node, 1 CPU each), for trying
# `ray.address` and STRICT_SPREAD placement without real nodes.
#   cluster/local_cluster.sh start   # prints the dashboard address for cluster/submit.sh, and ray.address
#   cluster/local_cluster.sh stop
set -euo pipefail
PORT="${RAY_PORT:-6390}"
# Every process of one cluster must agree on auth; a private test cluster needs none.
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}" RAY_USAGE_STATS_ENABLED=0
case "${1:-start}" in
  start)
    ray start --head --port="$PORT" --num-cpus=1 --object-store-memory=200000000 \
      --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="${RAY_DASHBOARD_PORT:-8265}" --disable-usage-stats
    ray start --address="127.0.0.1:$PORT" --num-cpus=1 --object-store-memory=200000000 --disable-usage-stats
    echo "cluster up: submit jobs with RAY_ADDRESS=http://127.0.0.1:${RAY_DASHBOARD_PORT:-8265} cluster/submit.sh -S ...,"
    echo "or run stages against it with ray.address: 127.0.0.1:$PORT (ray.placement_strategy: STRICT_SPREAD: one worker per node)"
    ;;
  stop)
    ray stop --force
    ;;
  *)
    echo "usage: $0 start|stop" >&2; exit 2
    ;;
esac
