"""LoRA SFT on Ray Train: verified samples (Parquet, DESIGN.md contract 4) -> a peft adapter.

The driver reads and tokenises the training set once (so an empty or unusable set fails before
any cluster resources are taken), puts the examples in the object store and runs a
`TorchTrainer`; every worker takes its own deterministic shard, trains a peft LoRA adapter on the
completion tokens only, reports loss and tokens/s each optimizer step and checkpoints the adapter
(plus optimizer and progress) at the end of each epoch under `storage_path/run_name/`. A killed
worker (FailureConfig) or a re-run with the same `storage_path` and `run_name` resumes from the
latest checkpoint. The final adapter is copied to `adapter_dir`, loadable by peft and by vLLM's
`LoRARequest`.

torch, transformers, peft and Ray are imported inside the functions that need them, so the pure
helpers and this module import fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from axiom_ray.config import TrainingConfig

if TYPE_CHECKING:
    import pyarrow.fs
    import torch

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label value that torch's cross-entropy skips: prompt and padding tokens
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
STATE_FILE = "train_state.json"
OPTIMIZER_FILE = "optimizer.pt"
MAX_GRAD_NORM = 1.0
CONTROLLER_POLL_S = 0.1  # Ray Train controller poll interval during fit (default 2 s)
LOG_EVERY_S = 5.0  # at most one progress line per this many seconds (plus the first and last)
# vLLM serves LoRA on the decoder's linear layers only; never target the output head or embeddings.
EXCLUDED_MODULES = frozenset({"lm_head", "embed_tokens", "embed_out", "wte", "wpe", "output"})


class EmptyTrainingSet(ValueError):
    """No usable training example: the caller keeps the previous model and skips training."""


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

    @property
    def overhead_seconds(self) -> float:
        """What fit cost beyond the optimizer steps: actors, process group, model load, saves."""
        return self.fit_seconds - self.train_seconds


# --- pure: tokenisation, batching, sharding ----------------------------------------------------


def tokenize_example(
    tokenizer: Any, prompt: str, completion: str, max_seq_len: int
) -> dict[str, list[int]] | None:
    """Token ids for one (prompt, completion) pair, with the loss on the completion only.

    The two parts are tokenised separately and concatenated: tokenising them jointly can merge
    tokens across the boundary, which would blur the mask and differ from what the model saw at
    generation time (the prompt alone, then its own tokens). The prompt is already rendered
    through the chat template, so no special tokens are added; EOS closes the completion so the
    model learns to stop. When the pair is too long, the prompt loses tokens from the left (its
    end, next to the reply, is the part that matters); when the completion alone does not leave
    room for one prompt token (or the prompt is empty), the example is dropped (None).
    """
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    completion_ids = tokenizer.encode(completion, add_special_tokens=False)
    if tokenizer.eos_token_id is not None:
        completion_ids = [*completion_ids, tokenizer.eos_token_id]
    room = max_seq_len - len(completion_ids)
    if room < 1 or not prompt_ids:
        return None
    prompt_ids = prompt_ids[-room:]
    return {
        "input_ids": prompt_ids + completion_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + completion_ids,
        "attention_mask": [1] * (len(prompt_ids) + len(completion_ids)),
    }


def tokenize_rows(
    tokenizer: Any, rows: Iterable[tuple[str, str]], max_seq_len: int
) -> tuple[list[dict[str, list[int]]], int]:
    """Tokenise (prompt, completion) rows; returns (examples, number dropped)."""
    examples, dropped = [], 0
    for prompt, completion in rows:
        ex = tokenize_example(tokenizer, prompt, completion, max_seq_len)
        if ex is None:
            dropped += 1
        else:
            examples.append(ex)
    return examples, dropped


def collate(batch: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of examples into tensors (padding: pad_id, label -100, mask 0)."""
    import torch

    width = max(len(ex["input_ids"]) for ex in batch)

    def pad(key: str, value: int) -> torch.Tensor:
        return torch.tensor([ex[key] + [value] * (width - len(ex[key])) for ex in batch])

    return {
        "input_ids": pad("input_ids", pad_id),
        "labels": pad("labels", IGNORE_INDEX),
        "attention_mask": pad("attention_mask", 0),
    }


def shard_indices(num_examples: int, *, epoch: int, seed: int, rank: int, world: int) -> list[int]:
    """This worker's example indices for one epoch: a seeded shuffle, dealt round-robin.

    Every worker gets the same count (the shortest shards wrap around to the start of the
    shuffle): `ray.train.report` is a barrier and DDP all-reduces every backward, so unequal
    step counts would hang the run.
    """
    order = list(range(num_examples))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    per_worker = math.ceil(num_examples / world)
    padded = [order[i % num_examples] for i in range(per_worker * world)]
    return padded[rank::world]


def plan_windows(indices: Sequence[int], batch_size: int, grad_accum: int) -> list[list[list[int]]]:
    """Group indices into optimizer steps: each step is up to grad_accum micro-batches."""
    batches = [list(indices[i : i + batch_size]) for i in range(0, len(indices), batch_size)]
    return [batches[i : i + grad_accum] for i in range(0, len(batches), grad_accum)]


def steps_per_epoch(num_examples: int, cfg: TrainingConfig, world: int) -> int:
    per_worker = math.ceil(num_examples / world)
    return math.ceil(math.ceil(per_worker / cfg.batch_size) / cfg.grad_accum)


def linear_lr(base_lr: float, step: int, total_steps: int) -> float:
    """Linear decay to zero over the run (the transformers Trainer default), from the step
    number alone so that a resumed run follows the same schedule without scheduler state."""
    return base_lr * max(0.0, 1.0 - step / max(1, total_steps))


# --- reading the training set and moving files -------------------------------------------------


def _fs_and_path(uri: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """A pyarrow filesystem and path for a local path or any pyarrow URI (s3://, gs://, ...)."""
    import pyarrow.fs

    if "://" in uri:
        return pyarrow.fs.FileSystem.from_uri(uri)
    return pyarrow.fs.LocalFileSystem(), os.path.abspath(uri)


def read_training_rows(train_path: str) -> list[tuple[str, str]]:
    """(prompt, completion) rows from one Parquet file or a folder of `*.parquet` (not
    recursive, so files of other phases living below it are never read)."""
    import pyarrow.fs
    import pyarrow.parquet as pq

    fs, path = _fs_and_path(train_path)
    info = fs.get_file_info(path)
    if info.type == pyarrow.fs.FileType.NotFound:
        raise EmptyTrainingSet(f"training set {train_path}: no such file or folder")
    if info.type == pyarrow.fs.FileType.Directory:
        listing = fs.get_file_info(pyarrow.fs.FileSelector(path))
        files = sorted(f.path for f in listing if f.is_file and f.base_name.endswith(".parquet"))
    else:
        files = [path]
    rows: list[tuple[str, str]] = []
    for f in files:
        table = pq.read_table(f, columns=["prompt", "completion"], filesystem=fs)
        rows.extend(zip(table["prompt"].to_pylist(), table["completion"].to_pylist(), strict=True))
    return [(p, c) for p, c in rows if p is not None and c is not None]


def copy_adapter(src: str, dest: str, src_fs: pyarrow.fs.FileSystem | None = None) -> None:
    """Copy the adapter files (not optimizer or progress state) from a folder to a path/URI."""
    import pyarrow.fs

    if src_fs is None:
        src_fs, src = _fs_and_path(src)
    dest_fs, dest_path = _fs_and_path(dest)
    dest_fs.create_dir(dest_path, recursive=True)
    for name in ADAPTER_FILES:
        pyarrow.fs.copy_files(
            f"{src}/{name}",
            f"{dest_path}/{name}",
            source_filesystem=src_fs,
            destination_filesystem=dest_fs,
        )


def _localize(uri: str, into: str) -> str:
    """A local folder holding the adapter at `uri` (downloaded when it is a remote URI)."""
    if "://" not in uri:
        return uri
    copy_adapter(uri, into)
    return into


# --- model ------------------------------------------------------------------------------------


def lora_target_modules(model: Any, spec: str) -> list[str]:
    """The module names LoRA targets, as an explicit list vLLM understands.

    "all-linear" expands to the names of the decoder's nn.Linear layers (on Llama/SmolLM2:
    q/k/v/o/gate/up/down_proj); anything else is a comma-separated list of names. The output
    head and embeddings are never targeted: vLLM cannot serve LoRA on them.
    """
    import torch

    if spec.strip() != "all-linear":
        names = [n.strip() for n in spec.split(",") if n.strip()]
        bad = EXCLUDED_MODULES.intersection(names)
        if bad:
            raise ValueError(f"training.target_modules: vLLM cannot serve LoRA on {sorted(bad)}")
    else:
        linear = (m for m in model.named_modules() if isinstance(m[1], torch.nn.Linear))
        names = sorted({name.rsplit(".", 1)[-1] for name, _ in linear})
    names = [n for n in names if n not in EXCLUDED_MODULES]
    if not names:
        raise ValueError(f"training.target_modules: {spec!r} matches no linear layer")
    return names


def build_model(
    base_model: str,
    cfg: TrainingConfig,
    *,
    adapter: str | None,
    device: torch.device,
) -> Any:
    """The base model with a trainable LoRA adapter: fresh (seeded), or loaded from `adapter`.

    float32 on CPU (exact; bf16 autocast showed no reliable gain on the 2-core dev machine),
    bf16 on GPU; peft keeps the adapter weights themselves in float32 either way.
    """
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype).to(device)
    base.config.use_cache = False  # no KV cache while training: saves memory, same loss
    if adapter:
        return PeftModel.from_pretrained(base, adapter, is_trainable=True)
    torch.manual_seed(cfg.seed)  # the LoRA A init is random: same seed, same adapter
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=lora_target_modules(base, cfg.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, lora)


# --- the per-worker training loop --------------------------------------------------------------


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
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def _progress_bar(total: int, initial: int) -> Any:
    """A tqdm bar when someone watches a terminal (a Ray worker's stderr is a file: off)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", disable=not sys.stderr.isatty())


class _Worker:
    """One Ray Train worker's state: its rank, the model, optimizer and progress."""

    def __init__(self, config: dict[str, Any]) -> None:
        import ray
        import ray.train
        import ray.train.torch
        import torch

        start = time.perf_counter()
        self.log = _worker_log()
        self.cfg = cfg = TrainingConfig(**config["cfg"])
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        # Ray sizes OMP_NUM_THREADS from the worker's logical CPUs, which can exceed the cores.
        torch.set_num_threads(max(1, min(int(cfg.cpus_per_worker), os.cpu_count() or 1)))
        self.device = ray.train.torch.get_device()
        self.pad_id = config["pad_id"]
        self.examples = ray.get(config["examples"])
        self.val_examples = ray.get(config["val_examples"])
        self.tmp = tempfile.mkdtemp(prefix="axiom-train-")
        adapter, self.progress, opt_state = self._restore(config["fingerprint"])
        self.resumed_from = self.progress.epochs_done
        if adapter is None and config["init_adapter"]:
            adapter = _localize(config["init_adapter"], os.path.join(self.tmp, "init"))
        from axiom_ray.models import resolve_model

        # Resolved here too: on a multi-node cluster each node has its own model cache.
        base = resolve_model(config["base_model"])
        model = build_model(base, cfg, adapter=adapter, device=self.device)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr)
        if opt_state is not None:
            self.optimizer.load_state_dict(opt_state)
        model.train()
        self.peft_model = model
        self.model = ray.train.torch.prepare_model(model, move_to_device=False)  # DDP if world > 1
        self.total_steps = steps_per_epoch(len(self.examples), cfg, self.world) * cfg.epochs
        self.setup_seconds = time.perf_counter() - start
        self.report_seconds = 0.0
        self.checkpoint_seconds = 0.0
        self._last_log = 0.0

    def _restore(self, fingerprint: str) -> tuple[str | None, _Progress, Any]:
        """(adapter folder, progress, optimizer state) from the latest Ray Train checkpoint of
        this same run; nothing when there is none or it was trained on other data/settings."""
        import ray.train
        import torch

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
        opt_state = torch.load(os.path.join(local, OPTIMIZER_FILE), weights_only=True)
        return local, progress, opt_state

    def run(self) -> dict[str, Any] | None:
        """All remaining epochs; the progress summary on rank 0."""
        import torch

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
        import ray.train

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
        import torch

        batches = [collate([self.examples[i] for i in b], self.pad_id) for b in window]
        # Token-weighted loss across the window and all workers: every completion token counts
        # the same whatever micro-batch or worker it landed on.
        local = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches)
        label_tokens = _all_reduce_sum([float(local)], self.world)[0]
        loss_sum, tokens = 0.0, 0
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            # DDP all-reduces gradients on each backward; only the window's last one needs it.
            no_sync = self.world > 1 and not last
            with self.model.no_sync() if no_sync else contextlib.nullcontext():
                loss = self._loss(batch)
                # DDP averages over workers; this scale makes the result the global token mean.
                (loss * self.world / max(label_tokens, 1.0)).backward()
            loss_sum += float(loss.detach())
            tokens += int(batch["attention_mask"].sum())
        torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, tokens_all = _all_reduce_sum([loss_sum, float(tokens)], self.world)
        return loss_sum, label_tokens, tokens_all

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy summed over the completion tokens of one micro-batch."""
        import torch.nn.functional as F

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
        import ray.train

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
        import torch

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
        """End-of-epoch checkpoint: rank 0 saves (the adapter is the same on every rank) and
        every rank reports (report is a barrier)."""
        import ray.train
        import torch

        start = time.perf_counter()
        p = self.progress
        metrics = {"epoch": p.epochs_done, "step": p.steps, "loss": p.losses[-1] if p.losses else 0.0}
        checkpoint = None
        if self.rank == 0:
            folder = tempfile.mkdtemp(prefix="ckpt-", dir=self.tmp)
            self.peft_model.save_pretrained(folder)
            torch.save(self.optimizer.state_dict(), os.path.join(folder, OPTIMIZER_FILE))
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
        }


def _train_loop(config: dict[str, Any]) -> dict[str, Any] | None:
    """The function every Ray Train worker runs."""
    return _Worker(config).run()


# --- the driver side --------------------------------------------------------------------------


def resolve_use_gpu(cfg: TrainingConfig, override: bool | None = None) -> bool:
    """`override`, else the config's true/false, else (auto) whether the cluster has GPUs."""
    if override is not None:
        return override
    if cfg.use_gpu != "auto":
        return cfg.use_gpu == "true"
    import ray

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


MIN_VALIDATION_EXAMPLES = 8  # below this many rows, every one is trained on and no epoch is chosen


def split_validation(examples: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(train, validation): a seeded `fraction` of the rows (at least one) held out to choose
    the epoch; none when the fraction is 0 or the set is smaller than MIN_VALIDATION_EXAMPLES."""
    count = int(round(len(examples) * fraction))
    if fraction <= 0 or len(examples) < MIN_VALIDATION_EXAMPLES:
        return examples, []
    held = set(random.Random(seed).sample(range(len(examples)), max(1, count)))
    return ([e for i, e in enumerate(examples) if i not in held],
            [e for i, e in enumerate(examples) if i in held])


def _fingerprint(examples: list[dict[str, list[int]]], base_model: str, init_adapter: str | None,
                 cfg: TrainingConfig) -> str:
    """Identifies what a checkpoint was trained on; `epochs` is left out so that a run with more
    epochs continues from a shorter one."""
    h = hashlib.sha256()
    settings = {k: v for k, v in asdict(cfg).items() if k != "epochs"}
    h.update(json.dumps([base_model, init_adapter, settings], sort_keys=True).encode())
    for ex in examples:
        h.update(json.dumps([ex["input_ids"], ex["labels"]]).encode())
    return h.hexdigest()[:16]


def _load_examples(
    base_model: str, train_path: str, max_seq_len: int
) -> tuple[list[dict[str, list[int]]], int, int]:
    """(examples, dropped, pad id), or EmptyTrainingSet when nothing can be trained on."""
    from transformers import AutoTokenizer

    rows = read_training_rows(train_path)
    if not rows:
        raise EmptyTrainingSet(f"training set {train_path}: no rows")
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    examples, dropped = tokenize_rows(tokenizer, rows, max_seq_len)
    if not examples:
        raise EmptyTrainingSet(
            f"training set {train_path}: all {dropped} rows longer than training.max_seq_len={max_seq_len}"
        )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return examples, dropped, pad_id if pad_id is not None else 0


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
    `train_path` a Parquet file or folder (contract 4), `adapter_dir` and `storage_path` local
    paths or pyarrow URIs. Ray Train keeps its checkpoints in `storage_path/run_name/`; a worker
    that dies is restarted up to `max_failures` times from the last epoch checkpoint, and calling
    again with the same `storage_path` and `run_name` resumes (a finished run returns at once).
    `init_adapter` continues training an existing adapter (cfg.from_base=False).
    Raises EmptyTrainingSet when no row is usable, before any cluster resource is taken.
    """
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from axiom_ray.models import resolve_model

    examples, dropped, pad_id = _load_examples(resolve_model(base_model), train_path, cfg.max_seq_len)
    examples, val_examples = split_validation(examples, cfg.val_fraction, cfg.seed)
    gpu = resolve_use_gpu(cfg, use_gpu)
    config = {
        "cfg": asdict(cfg),
        "base_model": base_model,
        "init_adapter": init_adapter,
        "examples": ray.put(examples),
        "val_examples": ray.put(val_examples),
        "pad_id": pad_id,
        "fingerprint": _fingerprint(examples, base_model, init_adapter, cfg),
    }
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config=config,
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
    logger.info("training on %d examples (%d held out for validation, %d dropped), %d worker(s), %s, "
                "%d epoch(s)", len(examples), len(val_examples), dropped, cfg.num_workers,
                "GPU" if gpu else "CPU", cfg.epochs)
    start = time.perf_counter()
    with _fast_controller_polling():
        result = trainer.fit()
    fit_seconds = time.perf_counter() - start
    if result.checkpoint is None:
        raise RuntimeError(f"training run {run_name} finished without a checkpoint")
    copy_adapter(result.checkpoint.path, adapter_dir, src_fs=result.checkpoint.filesystem)
    out = dataclasses.replace(_summarise(result.return_value, adapter_dir, examples, dropped, fit_seconds, gpu),
                              val_examples=len(val_examples))
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
    )
