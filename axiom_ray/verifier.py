"""The verifier on Ray: a thin shell around the sandbox's Judge (no Ray import at module load).

- `VerifyBatch(problems, limits)`: the callable class for Ray Data
  `map_batches(VerifyBatch, fn_constructor_kwargs=..., compute=ActorPoolStrategy(...))`. Each
  actor holds one Judge (one warm fork server); batches take columns `problem_id`, `code` and get
  the verdict columns of the sample row (samples.VERDICT_COLUMNS).

`limits` is a dict of `Limits` fields plus, optionally, `min_isolation`, `isolation` and
`allow_packages` (the Judge's own options).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from axiom_ray.problems import Problem
from axiom_ray.samples import COLUMN_TYPES, VERDICT_COLUMNS, verdict_columns
from axiom_ray.sandbox import DEFAULT_MIN_ISOLATION, Judge, Limits, Verdict

_JUDGE_OPTIONS = ("min_isolation", "isolation", "allow_packages")
# numpy dtype of each kind of column, so Ray Data's numpy batches carry the schema's types
_NUMPY_TYPES = {bool: np.bool_, int: np.int64, float: np.float64, str: np.object_}


def as_problem(p: Problem | Mapping[str, Any]) -> Problem:
    """A Problem from a Problem or its `to_dict()` form."""
    return p if isinstance(p, Problem) else Problem.from_dict(dict(p))


def make_judge(limits: Mapping[str, Any] | Limits | None = None) -> Judge:
    """A Judge from a limits dict (Limits fields + the Judge's options) or a Limits."""
    if isinstance(limits, Limits):
        return Judge(limits)
    opts = dict(limits or {})
    judge_kwargs: dict[str, Any] = {k: opts.pop(k) for k in _JUDGE_OPTIONS if k in opts}
    judge_kwargs.setdefault("min_isolation", DEFAULT_MIN_ISOLATION)
    if "allow_packages" in judge_kwargs:
        judge_kwargs["allow_packages"] = tuple(judge_kwargs["allow_packages"])
    return Judge(Limits.from_dict(opts), **judge_kwargs)


class VerifyBatch:
    """Ray Data callable class: verdict columns for a batch of (problem_id, code)."""

    def __init__(self, problems: Mapping[str, Problem | Mapping[str, Any]], limits: Mapping[str, Any] | None = None) -> None:
        self._problems = {pid: as_problem(p) for pid, p in problems.items()}
        self._judge = make_judge(limits)

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

