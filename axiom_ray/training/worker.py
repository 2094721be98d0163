"""The Ray Train worker: the loop every training worker runs, and its epoch checkpoints.

Each worker takes its own deterministic shard of the examples, trains the LoRA adapter on the
completion tokens only, reports loss and tokens/s each optimizer step and checkpoints the
adapter (plus optimizer and progress) at the end of each epoch; a restarted worker resumes from
the latest checkpoint of the same data and settings. Under training.strategy=ddp the model is
wrapped in torch DDP (more than one worker); under deepspeed in a DeepSpeed ZeRO engine
(`_DeepSpeed`), whose checkpoint every rank writes its shard of. torch and Ray Train are imported at the
top: only Ray Train's workers import this module (training/job.py imports it lazily).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from axiom_ray.config import TrainingConfig
from axiom_ray.models import resolve_model
from axiom_ray.storage import local_folder
from axiom_ray.training.data import (
    IGNORE_INDEX,
    linear_lr,
    plan_windows,
    shard_indices,
    steps_per_epoch,
)
from axiom_ray.training.model import build_model, collate
from axiom_ray.training.stack import MAX_GRAD_NORM, deepspeed_config

logger = logging.getLogger(__name__)

STATE_FILE = "train_state.json"
OPTIMIZER_FILE = "optimizer.pt"
DEEPSPEED_TAG = "deepspeed"  # the folder of DeepSpeed's engine checkpoint inside a Ray checkpoint
LOG_EVERY_S = 5.0  # at most one progress line per this many seconds (plus the first and last)


@dataclass(frozen=True)
class WorkerJob:
    """What every worker of one training run needs, handed to Ray Train as it is."""
    cfg: TrainingConfig
    base_model: str  # a model spec: each node resolves it in its own cache
    init_adapter: str | None  # continue this adapter (path or URI) instead of a fresh one
    examples: Any  # object ref of the tokenised training examples
    val_examples: Any  # object ref of the validation examples (maybe none)
    pad_id: int
    fingerprint: str  # data.fingerprint: a checkpoint of other data or settings is not resumed


@dataclass
class _Progress:
    """What a checkpoint records besides weights, so a resumed run continues the same curve."""
    fingerprint: str = ""
    epochs_done: int = 0
    steps: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)  # per epoch
    best_epoch: int = 0  # the last epoch checkpointed: the one with the lowest validation loss
    stopped: bool = False  # validation loss rose: no further epoch


def _worker_log() -> logging.Logger:
    """This module's logger in a Ray worker, at INFO unless AXIOM_LOG_LEVEL says otherwise.
    Ray Train gives the worker's root logger a handler (forwarded to the driver and the job
    log); add one only where nothing did."""
    logger.setLevel(os.environ.get("AXIOM_LOG_LEVEL", "INFO").upper())
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    return logger


def _all_reduce_sum(values: list[float], world: int) -> list[float]:
    """Sum across workers (a no-op on one worker, where there is no process group to pay)."""
    if world == 1:
        return values

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def _peak_memory_mb(device: torch.device) -> float:
    """This process's peak memory: allocated CUDA memory on GPU, resident set size on CPU (the
    Ray Train worker is a fresh process per fit, so the peak is this run's)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _progress_bar(total: int, initial: int) -> Any:
    """A tqdm bar when someone watches a terminal (a Ray worker's stderr is a file: off)."""
    return tqdm(total=total, initial=initial, desc="train", disable=not sys.stderr.isatty())


class TrainWorker:
    """One Ray Train worker's state: its rank, the model, optimizer and progress."""

    def __init__(self, job: WorkerJob) -> None:
        start = time.perf_counter()
        self.log = _worker_log()
        self.cfg = cfg = job.cfg
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        # Ray sizes OMP_NUM_THREADS from the worker's logical CPUs, which can exceed the cores.
        torch.set_num_threads(max(1, min(int(cfg.cpus_per_worker), os.cpu_count() or 1)))
        self.device = ray.train.torch.get_device()
        self.pad_id = job.pad_id
        self.examples = ray.get(job.examples)
        self.val_examples = ray.get(job.val_examples)
        self.tmp = tempfile.mkdtemp(prefix="axiom-train-")
        adapter, self.progress, opt_state = self._restore(job.fingerprint)
        self.resumed_from = self.progress.epochs_done
        if adapter is None and job.init_adapter:
            adapter = local_folder(job.init_adapter, self.tmp)

        # Resolved here too: on a multi-node cluster each node has its own model cache.
        base = resolve_model(job.base_model)
        model = build_model(base, cfg, adapter=adapter, device=self.device)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr)
        model.train()
        self.peft_model = model
        self.deepspeed: _DeepSpeed | None = None
        if cfg.strategy == "deepspeed":
            self.deepspeed = _DeepSpeed(model, self.optimizer, cfg, self.device)
            self.model = self.deepspeed.engine
            self.optimizer = self.deepspeed.engine.optimizer  # the learning rate is set on its groups
            if adapter is not None and self.progress.epochs_done:
                self.deepspeed.load(adapter)
        else:
            if opt_state is not None:
                self.optimizer.load_state_dict(opt_state)
            self.model = ray.train.torch.prepare_model(model, move_to_device=False)  # DDP if world > 1
        self.total_steps = steps_per_epoch(len(self.examples), cfg, self.world) * cfg.epochs
        self.setup_seconds = time.perf_counter() - start
        self.report_seconds = 0.0
        self.checkpoint_seconds = 0.0
        self._last_log = 0.0

    def _restore(self, fingerprint: str) -> tuple[str | None, _Progress, Any]:
        """(adapter folder, progress, optimizer state) from the latest Ray Train checkpoint of
        this same run; nothing when there is none or it was trained on other data/settings."""
        ckpt = ray.train.get_checkpoint()
        fresh = None, _Progress(fingerprint=fingerprint), None
        if ckpt is None:
            return fresh
        local = ckpt.to_directory(os.path.join(self.tmp, "resume"))
        with open(os.path.join(local, STATE_FILE)) as f:
            progress = _Progress(**json.load(f))
        if progress.fingerprint != fingerprint:
            self.log.warning("checkpoint %s is from other data or settings: starting fresh", ckpt.path)
            return fresh
        if progress.epochs_done:
            self.log.info("resuming after epoch %d (step %d)", progress.epochs_done, progress.steps)
        optimizer_file = os.path.join(local, OPTIMIZER_FILE)  # DeepSpeed keeps its own: none here
        opt_state = torch.load(optimizer_file, weights_only=True) if os.path.exists(optimizer_file) else None
        return local, progress, opt_state

    def run(self) -> dict[str, Any] | None:
        """All remaining epochs; the progress summary on rank 0."""
        bar = _progress_bar(self.total_steps, self.progress.steps) if self.rank == 0 else None
        for epoch in range(self.progress.epochs_done, self.cfg.epochs):
            if self.progress.stopped:
                break
            # Seeded per epoch and rank: dropout masks repeat exactly when an epoch is re-run.
            torch.manual_seed(self.cfg.seed * 1_000_003 + epoch * self.world + self.rank)
            indices = shard_indices(
                len(self.examples), epoch=epoch, seed=self.cfg.seed, rank=self.rank, world=self.world
            )
            for window in plan_windows(indices, self.cfg.batch_size, self.cfg.grad_accum):
                loss = self.step(window, epoch)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}")
            self.progress.epochs_done = epoch + 1
            self.end_epoch()
        if bar is not None:
            bar.close()
        return self.summary() if self.rank == 0 else None

    def step(self, window: list[list[int]], epoch: int) -> float:
        """One optimizer step, reported to Ray Train and logged; returns its loss."""
        lr = linear_lr(self.cfg.lr, self.progress.steps, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        start = time.perf_counter()
        loss_sum, label_tokens, tokens = self._forward_backward(window)
        seconds = time.perf_counter() - start
        p = self.progress
        p.steps += 1
        p.tokens += int(tokens)
        p.train_seconds += seconds
        loss = loss_sum / max(label_tokens, 1.0)
        p.losses.append(loss)
        start = time.perf_counter()
        ray.train.report({"epoch": epoch + 1, "step": p.steps, "loss": loss,
                          "tokens_per_s": tokens / seconds, "lr": lr})
        self.report_seconds += time.perf_counter() - start
        now = time.perf_counter()
        if self.rank == 0 and (now - self._last_log >= LOG_EVERY_S or p.steps == self.total_steps):
            self._last_log = now
            self.log.info("step %d/%d epoch %d loss %.4f %.0f tokens/s",
                          p.steps, self.total_steps, epoch + 1, loss, tokens / seconds)
        return loss

    def _forward_backward(self, window: list[list[int]]) -> tuple[float, float, float]:
        """Gradients over a window of micro-batches, then the optimizer update. Returns
        (loss summed over completion tokens, completion tokens, tokens), all workers summed."""
        batches = [collate([self.examples[i] for i in b], self.pad_id) for b in window]
        # Token-weighted loss across the window and all workers: every completion token counts
        # the same whatever micro-batch or worker it landed on.
        local = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches)
        label_tokens = _all_reduce_sum([float(local)], self.world)[0]
        loss_sum, tokens = 0.0, 0
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            # DDP and DeepSpeed average over workers; this scale makes the result the global
            # token mean.
            scale = self.world / max(label_tokens, 1.0)
            if self.deepspeed is not None:
                loss = self.deepspeed.backward(batch, self._loss, scale, boundary=last)
            else:
                # DDP all-reduces gradients on each backward; only the window's last one needs it.
                no_sync = self.world > 1 and not last
                with self.model.no_sync() if no_sync else contextlib.nullcontext():
                    loss = self._loss(batch)
                    (loss * scale).backward()
            loss_sum += float(loss.detach())
            tokens += int(batch["attention_mask"].sum())
        if self.deepspeed is not None:
            self.deepspeed.engine.step()  # clips (gradient_clipping), steps, zeroes the gradients
        else:
            torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        loss_sum, tokens_all = _all_reduce_sum([loss_sum, float(tokens)], self.world)
        return loss_sum, label_tokens, tokens_all

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy summed over the completion tokens of one micro-batch."""
        batch = {k: v.to(self.device) for k, v in batch.items()}
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(),
            batch["labels"][:, 1:].flatten(),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )

    def end_epoch(self) -> None:
        """Checkpoint the epoch unless its validation loss is worse than the best so far: then
        stop, and the last checkpoint (the best epoch's adapter) is the result. Every rank
        computes the same all-reduced loss, so all take the same branch."""
        p = self.progress
        if not self.val_examples:
            p.best_epoch = p.epochs_done
            self.checkpoint()
            return
        val = self.validation_loss()
        p.val_losses.append(val)
        if self.rank == 0:
            self.log.info("epoch %d validation loss %.4f (best so far %.4f)", p.epochs_done, val,
                          min(p.val_losses))
        if val <= min(p.val_losses):
            p.best_epoch = p.epochs_done
            self.checkpoint()
            return
        p.stopped = True
        if self.rank == 0:
            self.log.info("validation loss rose: stopping, keeping epoch %d", p.best_epoch)
        ray.train.report({"epoch": p.epochs_done, "step": p.steps, "val_loss": val})  # a barrier

    def validation_loss(self) -> float:
        """Mean cross-entropy per completion token over the validation examples (all on every
        rank: a handful of rows)."""
        self.model.eval()
        loss_sum = tokens = 0.0
        with torch.no_grad():
            for ex in self.val_examples:
                batch = collate([ex], self.pad_id)
                loss_sum += float(self._loss(batch))
                tokens += int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        self.model.train()
        return loss_sum / max(tokens, 1.0)

    def checkpoint(self) -> None:
        """End-of-epoch checkpoint: rank 0 saves the adapter (the same on every rank) and the
        progress; under DDP also the optimizer, and only rank 0 reports a folder. Under DeepSpeed
        every rank writes its shard of the engine's checkpoint and reports its folder (Ray Train
        merges them into one). Every rank reports: report is a barrier."""
        start = time.perf_counter()
        p = self.progress
        metrics = {"epoch": p.epochs_done, "step": p.steps, "loss": p.losses[-1] if p.losses else 0.0}
        checkpoint = None
        folder = tempfile.mkdtemp(prefix="ckpt-", dir=self.tmp)
        if self.deepspeed is not None:
            self.deepspeed.save(folder, self.peft_model, self.rank)
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        elif self.rank == 0:
            self.peft_model.save_pretrained(folder)
            torch.save(self.optimizer.state_dict(), os.path.join(folder, OPTIMIZER_FILE))
        if self.rank == 0:
            with open(os.path.join(folder, STATE_FILE), "w") as f:
                json.dump(asdict(p), f)
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=checkpoint)
        self.checkpoint_seconds += time.perf_counter() - start

    def summary(self) -> dict[str, Any]:
        return {
            **asdict(self.progress),
            "setup_seconds": self.setup_seconds,
            "report_seconds": self.report_seconds,
            "checkpoint_seconds": self.checkpoint_seconds,
            "resumed_from_epoch": self.resumed_from,
            "peak_memory_mb": _peak_memory_mb(self.device),
        }


class _DeepSpeed:
    """The model inside a DeepSpeed ZeRO engine (training.strategy=deepspeed), as Ray Train
    documents it: deepspeed.initialize inside the TorchTrainer worker, on the process group Ray
    Train already set up (gloo on CPU, where DeepSpeed's CPU accelerator uses it when oneCCL is
    absent; NCCL on GPU)."""

    def __init__(self, model: Any, optimizer: Any, cfg: TrainingConfig, device: torch.device) -> None:
        # DeepSpeed picks its accelerator at import: CPU workers on a GPU node must say so.
        os.environ.setdefault("DS_ACCELERATOR", "cuda" if device.type == "cuda" else "cpu")
        import deepspeed

        self.deepspeed = deepspeed
        self.stage = cfg.zero_stage
        self.engine, *_ = deepspeed.initialize(
            model=model, optimizer=optimizer, config=deepspeed_config(cfg, bf16=device.type == "cuda"),
            dist_init_required=False)

    def backward(self, batch: dict[str, torch.Tensor], loss_fn: Any, scale: float, *,
                 boundary: bool) -> torch.Tensor:
        """One micro-batch's forward and backward; `boundary` marks the window's last, after
        which engine.step() updates (the loop's windows can end short, so the loop says)."""
        self.engine.set_gradient_accumulation_boundary(boundary)
        loss = loss_fn(batch)
        self.engine.backward(loss * scale)
        return loss

    def lora_params(self, model: Any) -> list[torch.nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def save(self, folder: str, model: Any, rank: int) -> None:
        """Every rank writes its shard of the engine checkpoint (trainable weights and optimizer
        states only); rank 0 also a normal peft adapter. Under ZeRO-3 the LoRA weights are
        sharded: gathered on every rank (a collective) while rank 0 saves them."""
        self.engine.save_checkpoint(folder, tag=DEEPSPEED_TAG, exclude_frozen_parameters=True)
        gathered = (self.deepspeed.zero.GatheredParameters(self.lora_params(model), modifier_rank=None)
                    if self.stage == 3 else contextlib.nullcontext())
        with gathered:
            if rank == 0:
                model.save_pretrained(folder)

    def load(self, folder: str) -> None:
        """Restore the engine (LoRA weights, optimizer states) from a checkpoint `save` wrote."""
        path, _ = self.engine.load_checkpoint(folder, tag=DEEPSPEED_TAG, load_module_strict=False,
                                              load_optimizer_states=True, load_lr_scheduler_states=False)
        if path is None:
            raise RuntimeError(f"no DeepSpeed checkpoint under {folder}/{DEEPSPEED_TAG}")


def train_loop(config: dict[str, WorkerJob]) -> dict[str, Any] | None:
    """The function every Ray Train worker runs (`train_loop_config={"job": WorkerJob}`); the
    progress summary on rank 0."""
    return TrainWorker(config["job"]).run()
