"""The driver side of training: one `train_adapter` call runs a Ray Train job and returns the
adapter.

The driver reads and tokenises the training set once (so an empty or unusable set fails before
any cluster resources are taken), puts the examples in the object store and runs a
`TorchTrainer` over training/worker.py's loop, with checkpoints under `storage_path/run_name/`.
A killed worker (FailureConfig) or a re-run with the same `storage_path` and `run_name` resumes
from the latest checkpoint. The final adapter is copied to `adapter_dir`, loadable by peft and
by vLLM's `LoRARequest`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs
import ray
import ray.train

from axiom_ray.cluster_check import alive_node_cpus, alive_node_resources
from axiom_ray.config import ConfigError, TrainingConfig
from axiom_ray.models import parameter_count, resolve_model
from axiom_ray.storage import filesystem
from axiom_ray.training.data import fingerprint, load_examples, split_validation
from axiom_ray.training.stack import check_stack, describe, global_batch, memory_problem

logger = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
CONTROLLER_POLL_S = 0.1  # Ray Train controller poll interval during fit (default 2 s)


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: str
    examples: int  # examples trained on (after drops)
    dropped: int  # rows whose completion did not fit max_seq_len
    # steps, tokens, train_seconds and losses cover the whole run, resumed attempts included
    steps: int  # optimizer steps
    tokens: int  # non-padding tokens through forward+backward, all workers
    train_seconds: float  # optimizer steps only, inside the loop (rank 0)
    fit_seconds: float  # wall time of TorchTrainer.fit
    final_loss: float
    losses: list[float] = field(default_factory=list)  # per optimizer step, mean per token
    tokens_per_second: float = 0.0
    # the last attempt's fixed costs inside the loop (rank 0)
    setup_seconds: float = 0.0  # imports, model load, peft, restoring a checkpoint
    report_seconds: float = 0.0  # waiting in the per-step ray.train.report calls
    checkpoint_seconds: float = 0.0  # saving and reporting the epoch checkpoints
    resumed_from_epoch: int = 0  # epochs already done by an earlier attempt (0: fresh start)
    use_gpu: bool = False
    val_examples: int = 0  # held out of the round's own data to choose the epoch (0: none)
    val_losses: list[float] = field(default_factory=list)  # per epoch, mean per completion token
    best_epoch: int = 0  # the epoch whose adapter was kept (early stopping)
    # the training stack (training/stack.py): what ran, and the examples per optimizer step
    stack: str = ""  # e.g. "QLoRA 4bit, DDP, 2 worker(s), global batch 1 x 2 x 2 = 4"
    global_batch: int = 0  # batch_size x grad_accum x num_workers
    peak_memory_mb: float = 0.0  # rank 0: peak RSS on CPU, peak allocated CUDA memory on GPU

    @property
    def overhead_seconds(self) -> float:
        """What fit cost beyond the optimizer steps: actors, process group, model load, saves."""
        return self.fit_seconds - self.train_seconds


def copy_adapter(src: str, dest: str, src_fs: pyarrow.fs.FileSystem | None = None) -> None:
    """Copy the adapter files (not optimizer or progress state) from a folder to a path/URI."""
    if src_fs is None:
        src_fs, src = filesystem(src)
    dest_fs, dest_path = filesystem(dest)
    dest_fs.create_dir(dest_path, recursive=True)
    for name in ADAPTER_FILES:
        pyarrow.fs.copy_files(
            f"{src}/{name}",
            f"{dest_path}/{name}",
            source_filesystem=src_fs,
            destination_filesystem=dest_fs,
        )


def resolve_use_gpu(cfg: TrainingConfig, override: bool | None = None) -> bool:
    """`override`, else the config's true/false, else (auto) whether the cluster has GPUs."""
    if override is not None:
        return override
    if cfg.use_gpu != "auto":
        return cfg.use_gpu == "true"
    return ray.cluster_resources().get("GPU", 0) > 0


@contextlib.contextmanager
def _fast_controller_polling() -> Iterator[None]:
    """Poll the Ray Train workers every 0.1 s instead of every 2 s while `fit` runs.

    A worker's result queue holds one report, so each `ray.train.report` waits for the
    controller's next poll: at the default 2 s, a report per step held a tiny run's 12 steps
    for 21 s (and each checkpoint for 2 s, and the end of the run for up to 2 s). Ray Train
    passes this variable from the driver's environment to its controller when it is set here;
    a value the user set wins.
    """
    key = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
    if key in os.environ:
        yield
        return
    os.environ[key] = str(CONTROLLER_POLL_S)
    try:
        yield
    finally:
        os.environ.pop(key, None)


GPU_PROBE_TIMEOUT_S = 120.0


@ray.remote(num_cpus=0)
def _gpu_memory_bytes() -> float:
    """Total memory of the GPU Ray gave this task (scheduled with a train worker's GPU share)."""
    import torch

    return float(torch.cuda.get_device_properties(0).total_memory)


def check_training_memory(cfg: TrainingConfig, model_path: str, nodes: list[dict[str, Any]], *,
                          use_gpu: bool, gpus_per_worker: float) -> None:
    """Raise ConfigError when the base model's frozen weights alone cannot fit the memory the
    train workers get (training/stack.memory_problem): on GPU the device's memory, asked of a
    GPU with the train worker's share; on CPU the memory Ray schedules on each node of `nodes`
    (`ray.nodes()`) that has CPUs for a worker. A hub id, whose size is unknown until it is
    downloaded, is not checked."""
    params = parameter_count(model_path)
    if params is None:
        return
    if use_gpu:
        probe = _gpu_memory_bytes.options(num_gpus=gpus_per_worker).remote()
        try:
            problem = memory_problem(cfg, params, True, gpu_bytes=ray.get(probe, timeout=GPU_PROBE_TIMEOUT_S))
        except ray.exceptions.GetTimeoutError:
            ray.cancel(probe, force=True)
            logger.warning("no GPU answered within %.0f s: the model's size was not checked against it",
                           GPU_PROBE_TIMEOUT_S)
            return
    else:
        memory = zip(alive_node_resources(nodes, "memory"), alive_node_cpus(nodes), strict=True)
        problem = memory_problem(cfg, params, False, node_bytes=[m for m, cpus in memory if cpus > 0])
    if problem:
        raise ConfigError(problem)


def train_adapter(
    *,
    base_model: str,
    train_path: str,
    adapter_dir: str,
    cfg: TrainingConfig,
    storage_path: str,
    run_name: str,
    init_adapter: str | None = None,
    use_gpu: bool | None = None,
    max_failures: int = 2,
) -> TrainResult:
    """Train a LoRA adapter on `train_path` with Ray Train and copy it to `adapter_dir`.

    `base_model` is a model spec for `models.resolve_model` ("default", a folder, a hub id);
    `train_path` a Parquet file or folder of sample rows, `adapter_dir` and `storage_path` local
    paths or pyarrow URIs. Ray Train keeps its checkpoints in `storage_path/run_name/`; a worker
    that dies is restarted up to `max_failures` times from the last epoch checkpoint, and calling
    again with the same `storage_path` and `run_name` resumes (a finished run returns at once).
    `init_adapter` continues training an existing adapter (cfg.from_base=False).
    Raises EmptyTrainingSet when no row is usable, and ConfigError when this machine cannot run
    the training stack cfg asks for (training/stack.py), both before any cluster resource is taken.
    """
    # Both import torch: the driver loads them only when it trains.
    from ray.train.torch import TorchTrainer

    from axiom_ray.training.worker import WorkerJob, train_loop

    examples, dropped, pad_id = load_examples(resolve_model(base_model), train_path, cfg.max_seq_len)
    examples, val_examples = split_validation(examples, cfg.val_fraction, cfg.seed)
    gpu = resolve_use_gpu(cfg, use_gpu)
    check_stack(cfg, gpu)
    job = WorkerJob(cfg=cfg, base_model=base_model, init_adapter=init_adapter, examples=ray.put(examples),
                    val_examples=ray.put(val_examples), pad_id=pad_id,
                    fingerprint=fingerprint(examples, base_model, init_adapter, cfg))
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"job": job},
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.num_workers,
            use_gpu=gpu,
            resources_per_worker={"CPU": cfg.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=storage_path,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            # Each epoch's checkpoint supersedes the last: keep one (adapter + optimizer).
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        ),
    )
    logger.info("training on %d examples (%d held out for validation, %d dropped), %s, %s, "
                "%d epoch(s)", len(examples), len(val_examples), dropped, describe(cfg),
                "GPU" if gpu else "CPU", cfg.epochs)
    start = time.perf_counter()
    with _fast_controller_polling():
        result = trainer.fit()
    fit_seconds = time.perf_counter() - start
    if result.checkpoint is None:
        raise RuntimeError(f"training run {run_name} finished without a checkpoint")
    copy_adapter(result.checkpoint.path, adapter_dir, src_fs=result.checkpoint.filesystem)
    out = dataclasses.replace(_summarise(result.return_value, adapter_dir, examples, dropped, fit_seconds, gpu),
                              val_examples=len(val_examples), stack=describe(cfg), global_batch=global_batch(cfg))
    logger.info(
        "trained %d steps, %d tokens in %.1fs (%.0f tokens/s), fit %.1fs (setup %.1fs, "
        "checkpoints %.1fs), final loss %.4f -> %s",
        out.steps, out.tokens, out.train_seconds, out.tokens_per_second, out.fit_seconds,
        out.setup_seconds, out.checkpoint_seconds, out.final_loss, adapter_dir,
    )
    return out


def _summarise(ret: dict[str, Any], adapter_dir: str, examples: list[Any], dropped: int,
               fit_seconds: float, gpu: bool) -> TrainResult:
    losses = list(ret["losses"])
    return TrainResult(
        adapter_dir=adapter_dir,
        examples=len(examples),
        dropped=dropped,
        steps=ret["steps"],
        tokens=ret["tokens"],
        train_seconds=ret["train_seconds"],
        fit_seconds=fit_seconds,
        final_loss=losses[-1] if losses else float("nan"),
        losses=losses,
        tokens_per_second=ret["tokens"] / ret["train_seconds"] if ret["train_seconds"] else 0.0,
        setup_seconds=ret["setup_seconds"],
        report_seconds=ret["report_seconds"],
        checkpoint_seconds=ret["checkpoint_seconds"],
        resumed_from_epoch=ret["resumed_from_epoch"],
        use_gpu=gpu,
        val_losses=list(ret.get("val_losses", [])),
        best_epoch=ret.get("best_epoch", 0),
        peak_memory_mb=ret.get("peak_memory_mb", 0.0),
    )
