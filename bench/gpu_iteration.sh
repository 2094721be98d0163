#!/usr/bin/env bash
# One full expert iteration (base round + iteration 1) on the single-GPU device machine with the
# transformers engine, and its figures: generated tokens/s, train tokens/s, each phase's wall time
# (from the run's manifest.json) and peak GPU memory (nvidia-smi polled into a file: memory
# allocated inside the Ray actors is invisible to the driver's torch.cuda).
#
# Here, once (git-ignored folders, carried by the device tool):
#   bash ../shared/device/make_bundle.sh         # Ray 2.60 wheels -> .whl (about 49 MiB)
#   .venv/bin/python bench/gpu_helper.py prepare  # the default model's config + tokenizer -> .gpu (3.5 MiB)
# Then on the device (one call, about 5 minutes of its 10):
#   run(command="bash bench/gpu_iteration.sh", carry=[".whl", ".gpu"], timeout_s=600)
#
# The model is a random one in SmolLM2-135M-Instruct's exact shape and tokenizer (its weights
# cannot travel with the bundle: see bench/gpu_helper.py), or AXIOM_GPU_MODEL=/a/hf/folder on that
# machine. A random model passes no candidate, so the iteration's train phase has nothing to learn
# from; training throughput then comes from bench/train.py (Ray Train LoRA SFT, same model, GPU).
# Knobs: SAMPLES (16), MAX_TOKENS (256), GEN_BATCH (64 prompts per generate call: GPU generate is
# launch-bound, so batch wide), ITER_TIMEOUT_S (330), TRAIN_TIMEOUT_S (150).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export OUT="${OUT:-/tmp/gpu_iteration_out}"
SITE="${SITE:-/tmp/site}"
PY="${PY:-python3}"
RUN_DIR="/tmp/axiom-gpu-run-$$"
MODEL_DIR="/tmp/axiom-gpu-model"
mkdir -p "$OUT" "$SITE"
T0=$(date +%s)
stamp() { echo "[gpu_iteration +$(( $(date +%s) - T0 ))s] $*"; }

[ -d .whl ] || { echo "no .whl: run bash ../shared/device/make_bundle.sh here and carry .whl" >&2; exit 2; }

# 1. Ray from the bundle: unzip every wheel into $SITE (no pip, no network), keeping exec bits
#    (gcs_server and raylet are executables inside the ray wheel).
for whl in .whl/*.whl; do
  "$PY" - "$whl" "$SITE" <<'EOF'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for info in z.infolist():
        path = z.extract(info, sys.argv[2])
        mode = (info.external_attr >> 16) & 0o777
        if mode and not info.is_dir():
            os.chmod(path, mode)
EOF
done
# pydantic 2.14 and ray[default] need newer typing_extensions / aiohttp than some images hold:
# take the copies Ray vendors for its runtime-env agent (what ../shared/device/probe_gpu.sh does).
VENDORED="$SITE/ray/_private/runtime_env/agent/thirdparty_files"
OLD=$("$PY" - <<'EOF'
from importlib.metadata import version
try:
    from packaging.version import Version
except ImportError:  # cannot compare: keep the machine's own copies
    Version = None
def old(name, floor):
    try:
        have = version(name)
    except Exception:
        return True
    return Version is not None and Version(have) < Version(floor)
print(" ".join(n for n, f in (("typing_extensions", "4.16.0"), ("aiohttp", "3.14.4")) if old(n, f)))
EOF
)
for name in $OLD; do
  case "$name" in
    typing_extensions) pkgs="typing_extensions.py typing_extensions-*.dist-info" ;;
    aiohttp) pkgs="aiohttp aiohttp-*.dist-info yarl yarl-*.dist-info multidict multidict-*.dist-info propcache propcache-*.dist-info frozenlist frozenlist-*.dist-info aiosignal aiosignal-*.dist-info aiohappyeyeballs aiohappyeyeballs-*.dist-info" ;;
  esac
  # shellcheck disable=SC2086  # $pkgs is a list of globs
  (cd "$VENDORED" && cp -r $pkgs "$SITE"/) && stamp "using Ray's vendored $name"
done
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
export RAY_USAGE_STATS_ENABLED=0 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::FutureWarning,ignore::DeprecationWarning}"
stamp "Ray installed into $SITE"
nvidia-smi -L || true
"$PY" -c "import torch, transformers, peft, ray; assert torch.cuda.is_available(), 'no CUDA'; print('torch', torch.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__, '| ray', ray.__version__, '|', torch.cuda.get_device_name(0))"

# 2. The model.
if [ -n "${AXIOM_GPU_MODEL:-}" ]; then
  MODEL="$AXIOM_GPU_MODEL"
else
  [ -f .gpu/smollm2/config.json ] || { echo "no .gpu/smollm2: run bench/gpu_helper.py prepare here and carry .gpu" >&2; exit 2; }
  "$PY" bench/gpu_helper.py model "$MODEL_DIR"
  MODEL="$MODEL_DIR"
fi
stamp "model: $MODEL"

# 3. GPU memory, polled every 0.5 s for the rest of the script (all processes on the GPU).
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$OUT/gpu_mem.csv" &
POLL=$!
trap 'kill "$POLL" 2>/dev/null || true' EXIT

# 4. One iteration: base samples + eval, then train, redeploy, samples + eval of model 1.
#    verifier.min_isolation=rlimits: a benchmark must not stop on a kernel whose sandbox level
#    is unknown here; the level reached is recorded in every row anyway.
set +e
timeout -k 10 "${ITER_TIMEOUT_S:-330}" "$PY" -m axiom_ray iterate --model "$MODEL" --engine transformers \
  --iterations 1 --storage "$RUN_DIR" --samples "${SAMPLES:-16}" --max-tokens "${MAX_TOKENS:-256}" \
  --set generation.batch_size="${GEN_BATCH:-64}" --set verifier.min_isolation=rlimits \
  > "$OUT/iterate.log" 2>&1
RC=$?
set -e
tail -n 25 "$OUT/iterate.log"
stamp "iterate exit code $RC"
[ -f "$RUN_DIR/manifest.json" ] && cp "$RUN_DIR/manifest.json" "$OUT/manifest.json"

# 5. Train throughput when the iteration trained nothing (a random model passes no candidate).
TRAINED=$("$PY" -c "import json,sys; m=json.load(open(sys.argv[1])); print(int(bool((m['iterations'].get('1',{}).get('phases',{}).get('train',{}).get('metrics') or {}).get('tokens'))))" "$RUN_DIR/manifest.json" 2>/dev/null || echo 0)
if [ "$TRAINED" = 0 ]; then
  set +e
  timeout -k 10 "${TRAIN_TIMEOUT_S:-150}" "$PY" bench/train.py --model "$MODEL" --rows 128 --tokens 512 \
    --batch-size 8 --grad-accum 1 > "$OUT/train.jsonl" 2> "$OUT/train.log"
  stamp "bench/train.py exit code $?"
  set -e
  cat "$OUT/train.jsonl" || true
fi

# 6. The figures.
kill "$POLL" 2>/dev/null || true
if [ -f "$RUN_DIR/manifest.json" ]; then
  "$PY" bench/gpu_helper.py report "$RUN_DIR" "$OUT/gpu_mem.csv" "$OUT/train.jsonl" | tee "$OUT/summary.txt" \
    || stamp "report failed"
fi
stamp "done; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$RC"
