"""The training stack a config asks for (DDP or DeepSpeed ZeRO, LoRA or QLoRA), checked before
any work, and DeepSpeed's config built from it. Pure: imports no torch, DeepSpeed or
bitsandbytes (it asks importlib whether they are installed, and which version).

config.py refuses the combinations no machine can run (quantization under DeepSpeed, CPU
offload under DDP); `check_stack` refuses what this machine cannot: a library that is not
installed, or a bitsandbytes without a backend for the device; `memory_problem` a base model
whose frozen weights alone cannot fit the memory the plan gives the train workers. All raise
ConfigError, which the CLI prints in one line with exit code 2.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Any

from axiom_ray.config import ConfigError, TrainingConfig

# bitsandbytes runs on CPU from 0.46 (its multi-backend refactor); earlier releases are CUDA-only.
BNB_MIN_CPU = (0, 46)
MAX_GRAD_NORM = 1.0  # gradient clipping, DDP and DeepSpeed alike
INSTALL_HINT = "install the train extra: bash scripts/setup.sh (or pip install -e '.[train]')"


def _version(package: str) -> tuple[int, ...] | None:
    """The installed version as a tuple of its leading numbers, None when not installed."""
    if importlib.util.find_spec(package) is None:
        return None
    try:
        text = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    parts = []
    for piece in text.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):
            break
    return tuple(parts)


def quantization_problem(quantization: str, use_gpu: bool,
                         bnb_version: tuple[int, ...] | None) -> str | None:
    """Why `quantization` cannot run here (one line naming the option), or None."""
    if quantization == "none":
        return None
    key = f"training.quantization={quantization}"
    if bnb_version is None:
        return f"{key}: bitsandbytes is not installed; {INSTALL_HINT}, or set training.quantization=none"
    if not use_gpu and bnb_version < BNB_MIN_CPU:
        have = ".".join(map(str, bnb_version))
        return (f"{key}: bitsandbytes {have} has no CPU backend (needs >= 0.46); train on a GPU "
                "(training.use_gpu=true), upgrade bitsandbytes, or set training.quantization=none")
    return None


def strategy_problem(strategy: str, ds_version: tuple[int, ...] | None) -> str | None:
    if strategy == "deepspeed" and ds_version is None:
        return (f"training.strategy=deepspeed: deepspeed is not installed; {INSTALL_HINT}, "
                "or set training.strategy=ddp")
    return None


def check_stack(cfg: TrainingConfig, use_gpu: bool) -> None:
    """Raise ConfigError (one line, naming the option and what to do) when this machine cannot
    run the training stack `cfg` asks for. Cheap: no library is imported."""
    for problem in (quantization_problem(cfg.quantization, use_gpu, _version("bitsandbytes")),
                    strategy_problem(cfg.strategy, _version("deepspeed"))):
        if problem:
            raise ConfigError(problem)


# Bytes per parameter of the frozen base as training/model.load_base loads it: float32 on CPU,
# bf16 on GPU; bitsandbytes int8, or nf4's 4 bits (its block constants and the layers it leaves
# unquantized, embeddings and head, are not counted: the estimate is a lower bound).
WEIGHT_BYTES = {"none": {False: 4.0, True: 2.0}, "8bit": {False: 1.0, True: 1.0},
                "4bit": {False: 0.5, True: 0.5}}
GIB = 1024**3


def weight_bytes_per_worker(cfg: TrainingConfig, params: int, use_gpu: bool) -> float:
    """The least memory one train worker needs for the base model's weights (ZeRO-3 shards them
    across the workers; DDP and ZeRO-2 keep a whole copy on each)."""
    total = params * WEIGHT_BYTES[cfg.quantization][use_gpu]
    sharded = cfg.strategy == "deepspeed" and cfg.zero_stage == 3
    return total / cfg.num_workers if sharded else total


def memory_problem(cfg: TrainingConfig, params: int, use_gpu: bool, *,
                   gpu_bytes: float | None = None, node_bytes: list[float] | None = None) -> str | None:
    """Why the base model cannot be trained with this plan (one line), or None.

    Only what is certain is refused: the frozen weights alone (a lower bound, no activations or
    optimizer) must fit each worker's GPU (`gpu_bytes`, one device per worker), or on CPU the
    largest node's memory and, for all workers' copies together, the cluster's (`node_bytes`:
    each node's memory Ray can schedule)."""
    per_worker = weight_bytes_per_worker(cfg, params, use_gpu)
    where = None
    if use_gpu and gpu_bytes and per_worker > gpu_bytes:
        where = f"a train worker's GPU has {gpu_bytes / GIB:.1f} GiB"
    elif not use_gpu and node_bytes:
        if per_worker > max(node_bytes):
            where = f"the largest node has {max(node_bytes) / GIB:.1f} GiB of memory for Ray"
        elif per_worker * cfg.num_workers > sum(node_bytes):
            where = (f"the {cfg.num_workers} workers' copies need {per_worker * cfg.num_workers / GIB:.1f} "
                     f"GiB, the cluster has {sum(node_bytes) / GIB:.1f} GiB of memory for Ray")
    if where is None:
        return None
    dtype = cfg.quantization if cfg.quantization != "none" else ("bf16" if use_gpu else "float32")
    return (f"training: the model's {params / 1e9:.2f}B parameters need at least {per_worker / GIB:.1f} GiB "
            f"per train worker for the frozen weights ({dtype}), but {where}; set "
            "training.quantization=4bit, or training.strategy=deepspeed with training.zero_stage=3 "
            "over more training.num_workers, or use a smaller --model")


def global_batch(cfg: TrainingConfig) -> int:
    """Examples per optimizer step across all workers."""
    return cfg.batch_size * cfg.grad_accum * cfg.num_workers


def describe(cfg: TrainingConfig) -> str:
    """One line for logs and the report: strategy, workers, quantization, global batch."""
    strategy = "DDP" if cfg.strategy == "ddp" else f"DeepSpeed ZeRO-{cfg.zero_stage}"
    if cfg.strategy == "deepspeed" and cfg.offload_optimizer:
        strategy += " (optimizer offloaded to CPU)"
    lora = "LoRA" if cfg.quantization == "none" else f"QLoRA {cfg.quantization}"
    return (f"{lora}, {strategy}, {cfg.num_workers} worker(s), global batch "
            f"{cfg.batch_size} x {cfg.grad_accum} x {cfg.num_workers} = {global_batch(cfg)}")


def deepspeed_config(cfg: TrainingConfig, *, bf16: bool) -> dict[str, Any]:
    """DeepSpeed's config for one TorchTrainer run.

    Gradient accumulation stays with the worker loop (its windows can end short at an epoch's
    end), which marks each window's last micro-batch as DeepSpeed's accumulation boundary; so
    DeepSpeed's own accumulation is 1 and it never rescales the loss. The optimizer is the
    loop's torch AdamW (the learning rate is set per step from the schedule), also when offloaded:
    DeepSpeed's CPUAdam is a compiled op this package does not build.
    """
    zero: dict[str, Any] = {"stage": cfg.zero_stage, "overlap_comm": False,
                            "contiguous_gradients": True}
    if cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    if cfg.zero_stage == 3:
        # Saving gathers the LoRA weights (training/worker.py); the frozen base stays sharded.
        zero["stage3_gather_16bit_weights_on_model_save"] = False
    return {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": MAX_GRAD_NORM,
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 1 << 30,  # the loop logs its own progress
        "wall_clock_breakdown": False,
    }
