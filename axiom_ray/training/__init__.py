"""LoRA SFT on Ray Train: verified sample rows (Parquet; docs/design.md, "Sample row") -> a peft adapter.

- data.py: the SFT set: reading the rows, tokenising with the loss on the completion only,
  sharding across workers, optimizer steps, the learning-rate schedule, the validation split.
- job.py: the driver side, `train_adapter`: one Ray Train job, its result (`TrainResult`).
- worker.py: the loop every Ray Train worker runs, its epoch checkpoints and resume.
- model.py: the base model with a LoRA adapter, and batches as tensors.

This package imports without torch: model.py and worker.py (torch, peft, transformers) are
loaded by the Ray Train workers, and by the driver only once it trains.
"""

from axiom_ray.training.data import (
    IGNORE_INDEX,
    EmptyTrainingSet,
    linear_lr,
    plan_windows,
    read_training_rows,
    shard_indices,
    split_validation,
    steps_per_epoch,
    tokenize_example,
    tokenize_rows,
)
from axiom_ray.training.job import (
    TrainResult,
    check_training_memory,
    copy_adapter,
    resolve_use_gpu,
    train_adapter,
)

__all__ = [
    "IGNORE_INDEX",
    "EmptyTrainingSet",
    "TrainResult",
    "check_training_memory",
    "copy_adapter",
    "linear_lr",
    "plan_windows",
    "read_training_rows",
    "resolve_use_gpu",
    "shard_indices",
    "split_validation",
    "steps_per_epoch",
    "tokenize_example",
    "tokenize_rows",
    "train_adapter",
]
