#!/usr/bin/env bash
# The main job, end to end on this machine: installs what is missing (scripts/setup.sh), starts a
# local Ray cluster with the dashboard (unless one is already running), submits the default
# expert-iteration run as a Ray job, and prints where the report is.
#   bash scripts/run.sh [any `axiom iterate` flags, e.g. --iterations 2 --samples 4]
# Environment: AXIOM_RUN_DIR (default ./runs/axiom-rl), AXIOM_KEEP_CLUSTER=1 keeps the cluster
# this script started (for the dashboard) instead of stopping it at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PATH="$(cd .venv && pwd -P)/bin:$PATH"
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
# Ray 2.60 turns token auth on for a local cluster once a token exists: keep it on, with a token.
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
[[ "$RAY_AUTH_MODE" != token ]] || ray get-auth-token --generate >/dev/null
RUN_DIR="${AXIOM_RUN_DIR:-$PWD/runs/axiom-rl}"
PORT="${AXIOM_DASHBOARD_PORT:-8265}"
DASHBOARD="http://127.0.0.1:$PORT"

# Any HTTP answer (401 included: token auth) means a dashboard is listening.
dashboard_up() { [[ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$DASHBOARD/api/version")" != 000 ]]; }

head_pid=""
stop_cluster() {
  if [[ -n $head_pid && "${AXIOM_KEEP_CLUSTER:-0}" != 1 ]]; then
    kill -TERM "$head_pid" 2>/dev/null && wait "$head_pid" 2>/dev/null || true
    # The dashboard outlives the head process by a few seconds: a run started meanwhile would
    # take it for a live cluster and submit its job to one that is shutting down.
    for _ in $(seq 30); do dashboard_up || break; sleep 1; done
  fi
}
trap stop_cluster EXIT

if ! dashboard_up; then
  # Logical CPUs above the 2 physical cores: generators, verifiers and the trainer take turns.
  # `ray start --block` in its own session, so we stop exactly this cluster (a plain `ray stop`
  # would stop every Ray cluster on the machine).
  mkdir -p runs
  # The job agent's default port (52365) may be held by another Ray instance on this machine.
  # So may the GCS port (6379): another checkout's cluster with its own AXIOM_DASHBOARD_PORT.
  free_port() { python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  agent_port=$(free_port)
  gcs_port=$(free_port)
  setsid ray start --head --block --port="$gcs_port" --dashboard-agent-listen-port="$agent_port" --num-cpus="${AXIOM_NUM_CPUS:-4}" --object-store-memory=$((2 * 1024 ** 3)) \
    --dashboard-host=127.0.0.1 --dashboard-port="$PORT" --disable-usage-stats > runs/ray-head.log 2>&1 &
  head_pid=$!
  for _ in $(seq 120); do dashboard_up && break; sleep 1; done
  dashboard_up || { echo "[run] Ray did not start: see runs/ray-head.log"; exit 1; }
  echo "[run] started a local Ray cluster; dashboard: $DASHBOARD"
else
  echo "[run] submitting to the Ray cluster already serving $DASHBOARD (its \`python\` must have axiom-ray's"
  echo "      dependencies; set AXIOM_DASHBOARD_PORT to a free port to start a cluster of our own)"
fi
# The job's working directory is a copy of this checkout (.gitignore'd paths such as .venv and
# runs/ are not uploaded); the run directory is an absolute path so the results land here.
# A fresh head answers before its job agent is up ("No available agent"): retry the submission.
JOB="axiom-$(date +%Y%m%d-%H%M%S)"
for attempt in $(seq 30); do
  if out=$(ray job submit --address "$DASHBOARD" --submission-id "$JOB" --no-wait --working-dir . \
      -- python jobs/iterate.py --storage "$RUN_DIR" "$@" 2>&1); then break; fi
  if ! grep -q "No available agent" <<<"$out" || [[ $attempt == 30 ]]; then echo "$out" >&2; exit 1; fi
  sleep 2
done
echo "[run] submitted Ray job $JOB; following its log (the dashboard shows it too)"
ray job logs --address "$DASHBOARD" --follow "$JOB"
# The final status from the SDK (`ray job status` prints prose, not the status name, on success).
status=$(python - "$DASHBOARD" "$JOB" <<'PY'
import sys
import time

from ray.job_submission import JobStatus, JobSubmissionClient

client = JobSubmissionClient(sys.argv[1])
for _ in range(60):  # the log stream can end a moment before the status is final
    status = client.get_job_status(sys.argv[2])
    if status.is_terminal():
        break
    time.sleep(1)
print(status.value if status == JobStatus.SUCCEEDED else f"{status.value}: {client.get_job_info(sys.argv[2]).message}")
PY
)
if [[ "$status" != SUCCEEDED ]]; then
  echo "[run] job $JOB did not succeed: $status" >&2
  exit 1
fi
echo "[run] report: $RUN_DIR/report.md  (HTML: $RUN_DIR/report.html)"
