#!/usr/bin/env bash
# A multi-node Ray cluster on ONE machine, for trying axiom-ray's placement locally: a head plus
# worker "nodes" (each its own raylet with its own CPUs, logical GPUs and object store), the way a
# cloud cluster looks to the scheduler. Logical GPUs (`--num-gpus`) need no real GPU: an actor
# that asks for one lands on that node and runs on the CPU.
#
# Usage (from the repository root):
#
#   bash scripts/local_cluster.sh start [--workers N] [--gpu-workers K] [--gpus-per-worker G]
#                                       [--cpus-per-worker C] [--head-cpus H]
#                                       [--object-store-mb M] [--port P]
#                                       [--head-resources JSON] [--worker-resources JSON]
#   bash scripts/local_cluster.sh status
#   bash scripts/local_cluster.sh stop
#
# Defaults: a head with 1 CPU, 2 workers with 1 CPU each, the first of which declares 1 GPU
# (--gpu-workers defaults to 1, or 0 with --workers 0: a head alone). Extra per-node resources:
# --head-resources JSON and --worker-resources JSON (the same for every worker), Ray's
# `--resources` format, e.g. '{"axiom_cpu_node": 1}'.
# Tried by hand on a 2-core machine (a head and two workers are up in about 25 s):
#
#   bash scripts/local_cluster.sh start --workers 3 --gpu-workers 1 --gpus-per-worker 1
#   bash scripts/local_cluster.sh status          # PIDs, nodes and resources (`ray status`)
#   export RAY_ADDRESS=http://127.0.0.1:<dashboard port printed by start> RAY_AUTH_MODE=token
#   ray job submit --working-dir . -- python jobs/iterate.py --engine transformers \
#       --set generation.num_gpus=1 --set training.use_gpu=false \
#       --storage /tmp/axiom-runs/local
#   bash scripts/local_cluster.sh stop            # stops only the nodes this script started
#
# Every node of this cluster is this machine, so any local path is shared storage: the nodes
# (and so the job drivers they start) get AXIOM_SHARED_PATHS=/ (unless already set), which tells
# axiom-ray's multi-node storage check that a local --storage is fine here
# (axiom_ray/cluster_check.py).
#
# One host, several raylets, each with what a node of a real cluster has to itself: its own
# --temp-dir (the head's $STATE_DIR/ray, worker N's $STATE_DIR/ray.wN), so its own session
# directory (logs, sockets, spilled objects, and the runtime_resources where its runtime-env
# agent unpacks a job's working_dir), and its own log monitor reading its own logs; its own worker
# port range (--min/--max-worker-port), so two raylets never hand the same port to their workers.
# A session directory shared by the nodes breaks jobs: every raylet's agent unpacks a job's
# working_dir with overwrite (Ray 2.60, working_dir.py: rmtree, then unzip) into the same path,
# so when the driver's ray.init makes the workers set it up, the directory the job's driver runs
# in is deleted under it; its getcwd() then fails, and `import torch` dies in MKL's loader
# ("Intel oneMKL FATAL ERROR: Cannot load .../libtorch_cpu.so", exit 2). Workers join one at a
# time, each once the previous one has registered with the GCS.
#
# Isolation from other clusters on the same machine: every port is picked free at start, the
# nodes keep their sessions, sockets and `ray_current_cluster` file under their own --temp-dirs
# (inside the state directory), so `ray.init()` elsewhere never attaches here by accident. Each
# node runs as `ray start --block` in its own session (setsid); `stop` sends SIGTERM to those
# recorded PIDs only (ray start --block then stops its node's processes), after checking each
# PID still belongs to the process this script started, and never runs `ray stop`, which would
# kill every Ray cluster on the machine.
#
# Token auth (Ray 2.60): the head enables it when a token exists, so the script sets
# RAY_AUTH_MODE=token for every node (a worker without it cannot join) and creates a token with
# `ray get-auth-token --generate` if there is none; clients need RAY_AUTH_MODE=token too.
# Run with RAY_AUTH_MODE=disabled to start the cluster without auth.
#
# State: ${AXIOM_LOCAL_CLUSTER_DIR:-/tmp/axiom-local-cluster-$UID}/ (state.env, nodes.tsv, logs/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${AXIOM_LOCAL_CLUSTER_DIR:-/tmp/axiom-local-cluster-$(id -u)}"
STATE_FILE="$STATE_DIR/state.env"
NODES_FILE="$STATE_DIR/nodes.tsv"
# The head's Ray temp dir; worker N's is $TEMP_DIR.wN (node_temp_dir). Unix socket paths are
# limited to 107 bytes and Ray nests session and socket names under these: keep them short.
TEMP_DIR="$STATE_DIR/ray"

if [[ -x "$ROOT/.venv/bin/ray" ]]; then
  RAY="$ROOT/.venv/bin/ray"
  PY="$ROOT/.venv/bin/python"
else
  RAY="$(command -v ray || true)"
  PY="$(command -v python3 || true)"
fi

die() { echo "local_cluster: $*" >&2; exit 2; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit "${1:-0}"
}

free_port() {
  # Bound then released: a tiny race with other programs, acceptable for a dev cluster.
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Worker port ranges: WORKER_PORTS_PER_NODE ports per node from a block below Linux's ephemeral
# range (32768+, where free_port's picks and outgoing connections live). The block is chosen at
# random among those whose first port is free, so two clusters of this script rarely share one.
WORKER_PORTS_PER_NODE=200
pick_worker_port_base() {  # pick_worker_port_base NODES
  "$PY" - "$1" "$WORKER_PORTS_PER_NODE" <<'PYEOF'
import random, socket, sys
nodes, per_node = int(sys.argv[1]), int(sys.argv[2])
span = nodes * per_node
starts = list(range(20000, 32768 - span, span))
random.shuffle(starts)
for start in starts:
    try:
        for node in range(nodes):
            with socket.socket() as s:
                s.bind(("127.0.0.1", start + node * per_node))
    except OSError:
        continue
    print(start)
    break
else:
    sys.exit("no free block of worker ports below 32768")
PYEOF
}

# Process start time (clock ticks since boot, field 22 of /proc/PID/stat): with the PID it
# identifies a process for good, so a PID reused after a reboot or crash is never signalled.
start_time() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  # The command name (field 2) may hold spaces: cut after its closing parenthesis.
  stat="${stat##*) }"
  echo "$stat" | awk '{print $20}'
}

ours_alive() {  # ours_alive PID START_TIME
  local now
  now="$(start_time "$1")" || return 1
  [[ "$now" == "$2" ]]
}

node_temp_dir() {  # node_temp_dir INDEX: 0 is the head
  if (( $1 == 0 )); then echo "$TEMP_DIR"; else echo "$TEMP_DIR.w$1"; fi
}

start_node() {  # start_node NAME CPUS GPUS INDEX [ray start args...]
  local name="$1" cpus="$2" gpus="$3" index="$4"
  shift 4
  local log="$STATE_DIR/logs/$name.log"
  local min_port=$(( WORKER_PORT_BASE + index * WORKER_PORTS_PER_NODE ))
  # setsid: the node is its own session and process group, so a Ctrl-C in this shell does not
  # reach it and `stop` can fall back to killing exactly that group.
  setsid "$RAY" start --block --node-ip-address 127.0.0.1 --temp-dir "$(node_temp_dir "$index")" \
    --num-cpus "$cpus" --num-gpus "$gpus" --object-store-memory "$OBJECT_STORE_BYTES" \
    --min-worker-port "$min_port" --max-worker-port $(( min_port + WORKER_PORTS_PER_NODE - 1 )) \
    --dashboard-agent-listen-port "$(free_port)" --metrics-export-port "$(free_port)" \
    --disable-usage-stats "$@" >"$log" 2>&1 </dev/null &
  local pid=$!
  local st
  for _ in 1 2 3 4 5 6 7 8 9 10; do st="$(start_time "$pid")" && break; sleep 0.1; done
  [[ -n "${st:-}" ]] || die "node $name exited at once; see $log"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$pid" "$st" "$cpus" "$gpus" >>"$NODES_FILE"
  echo "started $name (pid $pid): $cpus CPU, $gpus GPU; log $log"
}

alive_nodes() {  # number of alive nodes the GCS knows
  "$RAY" status --address "$HEAD_ADDRESS" 2>/dev/null |
    awk '/^Active:/{a=1; next} /^(Idle|Pending|Recent failures):/{a=0} a && /node_/{n++} END{print n+0}'
}

cmd_start() {
  local workers=2 gpu_workers="" gpus_per_worker=1 cpus_per_worker=1 head_cpus=1 store_mb=200 port=""
  local head_resources="" worker_resources=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --head-resources) head_resources="$2"; shift 2 ;;
      --worker-resources) worker_resources="$2"; shift 2 ;;
      --workers) workers="$2"; shift 2 ;;
      --gpu-workers) gpu_workers="$2"; shift 2 ;;
      --gpus-per-worker) gpus_per_worker="$2"; shift 2 ;;
      --cpus-per-worker) cpus_per_worker="$2"; shift 2 ;;
      --head-cpus) head_cpus="$2"; shift 2 ;;
      --object-store-mb) store_mb="$2"; shift 2 ;;
      --port) port="$2"; shift 2 ;;
      -h|--help) usage 0 ;;
      *) die "start: unknown option $1 (see --help)" ;;
    esac
  done
  for v in "$workers" "${gpu_workers:-0}" "$gpus_per_worker" "$cpus_per_worker" "$head_cpus" "$store_mb"; do
    [[ "$v" =~ ^[0-9]+$ ]] || die "start: expected a whole number, got '$v'"
  done
  if [[ -z "$gpu_workers" ]]; then
    gpu_workers=1
    (( workers > 0 )) || gpu_workers=0  # --workers 0: a head alone, no GPU worker
  fi
  (( gpu_workers <= workers )) || die "start: --gpu-workers $gpu_workers > --workers $workers"
  [[ -x "$RAY" && -n "$PY" ]] || die "no ray executable: run scripts/setup.sh (or activate a venv with ray)"
  if [[ -f "$STATE_FILE" ]]; then
    # shellcheck disable=SC1090
    source "$STATE_FILE"
    if any_alive; then
      die "a cluster from this script is already running ($HEAD_ADDRESS); run 'stop' first"
    fi
    rm -rf "$STATE_DIR"
  fi
  mkdir -p "$STATE_DIR/logs"
  : >"$NODES_FILE"

  # The nodes run job entrypoints (`python jobs/iterate.py`) through a shell: put the Python
  # that has Ray first on their PATH, else a bare `python` may be one without Ray.
  PATH="$(dirname "$RAY"):$PATH"
  export PATH
  export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
  # Several nodes on one host is this script's purpose: a RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
  # inherited from a single-node setup (scripts/test.sh sets it) would make every worker refuse
  # to join ("Multi-node Ray clusters are not supported").
  export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1
  export AXIOM_SHARED_PATHS="${AXIOM_SHARED_PATHS:-/}"
  # On SIGTERM a node first drains for up to 30 s (for Ray Serve traffic); a dev cluster has
  # none, so `stop` tears nodes down at once.
  export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="${RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S:-0}"
  if [[ "$RAY_AUTH_MODE" == "token" && -z "${RAY_AUTH_TOKEN:-}" && -z "${RAY_AUTH_TOKEN_PATH:-}" \
        && ! -s "$HOME/.ray/auth_token" ]]; then
    "$RAY" get-auth-token --generate >/dev/null
  fi
  # Each node gets 200 MB of object store by default: Ray's default (30% of RAM per node)
  # times several nodes would overcommit /dev/shm on one machine.
  OBJECT_STORE_BYTES=$(( store_mb * 1024 * 1024 ))
  port="${port:-$(free_port)}"
  local dashboard_port
  dashboard_port="$(free_port)"
  HEAD_ADDRESS="127.0.0.1:$port"
  cat >"$STATE_FILE" <<EOF
HEAD_ADDRESS=$HEAD_ADDRESS
DASHBOARD_URL=http://127.0.0.1:$dashboard_port
RAY_AUTH_MODE=$RAY_AUTH_MODE
TEMP_DIR=$TEMP_DIR
EOF

  WORKER_PORT_BASE="$(pick_worker_port_base $(( workers + 1 )))" || die "start: no free worker ports"
  local extra=()
  [[ -n "$head_resources" ]] && extra=(--resources "$head_resources")
  start_node head "$head_cpus" 0 0 --head --port "$port" --dashboard-host 127.0.0.1 \
    --dashboard-port "$dashboard_port" --ray-client-server-port "$(free_port)" "${extra[@]}"
  # Workers can only join once the GCS answers.
  wait_for_nodes 1 180 || { cmd_stop; die "the head did not come up; see $STATE_DIR/logs/head.log"; }
  extra=()
  [[ -n "$worker_resources" ]] && extra+=(--resources "$worker_resources")
  local i gpus
  for (( i = 1; i <= workers; i++ )); do
    gpus=0
    (( i <= gpu_workers )) && gpus="$gpus_per_worker"
    start_node "worker$i" "$cpus_per_worker" "$gpus" "$i" --address "$HEAD_ADDRESS" "${extra[@]}"
    # One at a time: the next raylet starts once this one has registered.
    wait_for_nodes $(( i + 1 )) 180 || {
      cmd_stop; die "worker$i did not join; see $STATE_DIR/logs/worker$i.log"; }
  done
  echo
  echo "cluster up: $(( workers + 1 )) nodes, GCS $HEAD_ADDRESS, dashboard http://127.0.0.1:$dashboard_port"
  echo "  export RAY_ADDRESS=http://127.0.0.1:$dashboard_port RAY_AUTH_MODE=$RAY_AUTH_MODE"
  echo "  ray job submit --working-dir . -- python jobs/iterate.py ..."
  echo "  (a driver in Python: ray.init(address=\"$HEAD_ADDRESS\"))"
}

wait_for_nodes() {  # wait_for_nodes COUNT TIMEOUT_S: until the GCS knows COUNT alive nodes
  local want="$1" deadline=$(( SECONDS + $2 )) n=0 name pid st _c _g
  while (( SECONDS < deadline )); do
    n="$(alive_nodes)"
    (( n >= want )) && return 0
    # A node that exited (a bad flag, a socket path too long) never joins: say so at once.
    IFS=$'\t' read -r name pid st _c _g < <(tail -n 1 "$NODES_FILE")
    if ! ours_alive "$pid" "$st"; then
      echo "local_cluster: $name exited: $(tail -n 1 "$STATE_DIR/logs/$name.log")" >&2
      return 1
    fi
    sleep 2
  done
  echo "local_cluster: $n of $want nodes alive after $2 s" >&2
  return 1
}

any_alive() {
  [[ -f "$NODES_FILE" ]] || return 1
  local name pid st _c _g
  while IFS=$'\t' read -r name pid st _c _g; do
    ours_alive "$pid" "$st" && return 0
  done <"$NODES_FILE"
  return 1
}

cmd_stop() {
  if [[ ! -f "$NODES_FILE" ]]; then
    echo "no cluster started by this script (no $NODES_FILE)"
    return 0
  fi
  local name pid st _c _g
  # Workers first (they are listed after the head), so none reports a lost head on the way out.
  local lines
  mapfile -t lines < <(tac "$NODES_FILE")
  for line in "${lines[@]}"; do
    IFS=$'\t' read -r name pid st _c _g <<<"$line"
    if ours_alive "$pid" "$st"; then
      kill -TERM "$pid" 2>/dev/null || true
      echo "stopping $name (pid $pid)"
    fi
  done
  # `ray start --block` drains its node on SIGTERM (a few seconds); then force what is left of
  # each node's own process group, which holds only that node's processes.
  local deadline=$(( SECONDS + 45 ))
  while (( SECONDS < deadline )) && any_alive; do sleep 1; done
  for line in "${lines[@]}"; do
    IFS=$'\t' read -r name pid st _c _g <<<"$line"
    if ours_alive "$pid" "$st"; then
      echo "force-stopping $name (process group $pid)"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  done
  rm -f "$NODES_FILE" "$STATE_FILE"
  echo "stopped (logs kept in $STATE_DIR/logs)"
}

cmd_status() {
  if [[ ! -f "$STATE_FILE" ]]; then
    echo "no cluster started by this script (no $STATE_FILE)"
    return 1
  fi
  # shellcheck disable=SC1090
  source "$STATE_FILE"
  export RAY_AUTH_MODE
  echo "GCS $HEAD_ADDRESS, dashboard $DASHBOARD_URL, auth $RAY_AUTH_MODE, state $STATE_DIR"
  local name pid st cpus gpus up=0
  while IFS=$'\t' read -r name pid st cpus gpus; do
    if ours_alive "$pid" "$st"; then
      echo "  $name pid $pid: running ($cpus CPU, $gpus GPU)"
      up=$(( up + 1 ))
    else
      echo "  $name pid $pid: not running"
    fi
  done <"$NODES_FILE"
  (( up > 0 )) || return 1
  "$RAY" status --address "$HEAD_ADDRESS" || true
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop ;;
  status) shift; cmd_status ;;
  -h|--help|help) usage 0 ;;
  *) usage 2 ;;
esac
