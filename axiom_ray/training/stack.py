"""The training stack a config asks for (DDP or DeepSpeed ZeRO, LoRA or QLoRA), checked before
any work, and DeepSpeed's config built from it. Pure: imports no torch, DeepSpeed or
bitsandbytes (it asks importlib whether they are installed, and which version).

config.py refuses the combinations no machine can run (quantization under DeepSpeed, CPU
offload under DDP); `check_stack` refuses what this machine cannot: a library that is not
installed, or a bitsandbytes without a backend for the device. Both raise ConfigError, which
the CLI prints in one line with exit code 2.
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
