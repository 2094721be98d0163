"""The SFT set: verified sample rows -> tokenised (prompt, completion) examples, with the loss on
the completion only; how they are dealt to workers and grouped into optimizer steps; the
validation split. Pure (pyarrow; the tokenizer is loaded by `load_examples` on the driver).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

import pyarrow.fs
import pyarrow.parquet as pq

from axiom_ray.config import TrainingConfig
from axiom_ray.storage import filesystem

IGNORE_INDEX = -100  # label value that torch's cross-entropy skips: prompt and padding tokens
MIN_VALIDATION_EXAMPLES = 8  # below this many rows, every one is trained on and no epoch is chosen


class EmptyTrainingSet(ValueError):
    """No usable training example: the caller keeps the previous model and skips training."""


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


def read_training_rows(train_path: str) -> list[tuple[str, str]]:
    """(prompt, completion) rows from one Parquet file or a folder of `*.parquet` (not
    recursive, so files of other phases living below it are never read)."""
    fs, path = filesystem(train_path)
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


def split_validation(examples: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(train, validation): a seeded `fraction` of the rows (at least one) held out to choose
    the epoch; none when the fraction is 0 or the set is smaller than MIN_VALIDATION_EXAMPLES."""
    count = int(round(len(examples) * fraction))
    if fraction <= 0 or len(examples) < MIN_VALIDATION_EXAMPLES:
        return examples, []
    held = set(random.Random(seed).sample(range(len(examples)), max(1, count)))
    return ([e for i, e in enumerate(examples) if i not in held],
            [e for i, e in enumerate(examples) if i in held])


def fingerprint(examples: list[dict[str, list[int]]], base_model: str, init_adapter: str | None,
                 cfg: TrainingConfig) -> str:
    """Identifies what a checkpoint was trained on; `epochs` is left out so that a run with more
    epochs continues from a shorter one."""
    h = hashlib.sha256()
    settings = {k: v for k, v in asdict(cfg).items() if k != "epochs"}
    h.update(json.dumps([base_model, init_adapter, settings], sort_keys=True).encode())
    for ex in examples:
        h.update(json.dumps([ex["input_ids"], ex["labels"]]).encode())
    return h.hexdigest()[:16]


def load_examples(
    base_model: str, train_path: str, max_seq_len: int
) -> tuple[list[dict[str, list[int]]], int, int]:
    """(examples, dropped, pad id), or EmptyTrainingSet when nothing can be trained on."""
    from transformers import AutoTokenizer  # slow to import: only a driver that trains needs it

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
