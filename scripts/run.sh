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
export PATH="$PWD/.venv/bin:$PATH"
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
RUN_DIR="${AXIOM_RUN_DIR:-$PWD/runs/axiom-rl}"

DASHBOARD="http://127.0.0.1:${AXIOM_DASHBOARD_PORT:-8265}"

started=0
if ! curl -sf -m 3 "$DASHBOARD/api/version" >/dev/null; then
  # Logical CPUs above the 2 physical cores: generators, verifiers and the trainer take turns.
  ray start --head --num-cpus="${AXIOM_NUM_CPUS:-4}" --object-store-memory=$((2 * 1024 ** 3)) \
    --dashboard-host=127.0.0.1 --dashboard-port="${AXIOM_DASHBOARD_PORT:-8265}" --disable-usage-stats >/dev/null
  started=1
  echo "[run] started a local Ray cluster; dashboard: $DASHBOARD"
fi
stop_cluster() { if [[ $started == 1 && "${AXIOM_KEEP_CLUSTER:-0}" != 1 ]]; then ray stop >/dev/null 2>&1 || true; fi; }
trap stop_cluster EXIT

# The job's working directory is a copy of this checkout (.gitignore'd paths such as .venv and
# runs/ are not uploaded); the run directory is an absolute path so the results land here.
ray job submit --address "$DASHBOARD" --working-dir . -- python jobs/iterate.py --storage "$RUN_DIR" "$@"
echo "[run] report: $RUN_DIR/report.md  (HTML: $RUN_DIR/report.html)"
