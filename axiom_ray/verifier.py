"""The verifier on Ray: a thin shell around the sandbox's Judge (no Ray import at module load).

- `VerifyBatch(problems, cfg)`: the callable class for Ray Data
  `map_batches(VerifyBatch, fn_constructor_kwargs=..., compute=ActorPoolStrategy(...))`. Each
  actor holds one Judge (one warm fork server); batches take columns `problem_id`, `code` and get
  the verdict columns of the sample row (samples.VERDICT_COLUMNS).

`cfg` is the run's `VerifierConfig`, passed to the actors as it is: its timeout and memory
become the sandbox `Limits`, its `min_isolation` the Judge's floor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from axiom_ray.config import VerifierConfig
from axiom_ray.problems import Problem
from axiom_ray.samples import COLUMN_TYPES, VERDICT_COLUMNS, verdict_columns
from axiom_ray.sandbox import Judge, Limits, Verdict

# numpy dtype of each kind of column, so Ray Data's numpy batches carry the schema's types
_NUMPY_TYPES = {bool: np.bool_, int: np.int64, float: np.float64, str: np.object_}


def as_problem(p: Problem | Mapping[str, Any]) -> Problem:
    """A Problem from a Problem or its `to_dict()` form."""
    return p if isinstance(p, Problem) else Problem.from_dict(dict(p))


def make_judge(cfg: VerifierConfig) -> Judge:
    """The Judge a verifier config describes (the sandbox's other limits keep their defaults)."""
    return Judge(Limits(timeout_s=cfg.timeout, memory_mb=cfg.memory_mb), min_isolation=cfg.min_isolation)


class VerifyBatch:
    """Ray Data callable class: verdict columns for a batch of (problem_id, code)."""

    def __init__(self, problems: Mapping[str, Problem | Mapping[str, Any]], cfg: VerifierConfig) -> None:
        self._problems = {pid: as_problem(p) for pid, p in problems.items()}
        self._judge = make_judge(cfg)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows = [self._one(str(pid), code) for pid, code in zip(batch["problem_id"], batch["code"], strict=True)]
        out = dict(batch)
        for name in VERDICT_COLUMNS:
            out[name] = np.array([r[name] for r in rows], dtype=_NUMPY_TYPES[COLUMN_TYPES[name]])
        return out

    def _one(self, problem_id: str, code: Any) -> dict[str, Any]:
        problem = self._problems.get(problem_id)
        if problem is None:
            return verdict_columns(Verdict(False, "error", 0, 0, 0.0, self._judge.level,
                                       f"unknown problem id {problem_id!r}"))
        return verdict_columns(self._judge.judge(problem, str(code) if isinstance(code, str) else code))

    def __del__(self) -> None:
        judge = getattr(self, "_judge", None)
        if judge is not None:
            judge.close()

