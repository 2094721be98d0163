"""Scoring sample rows: the summary of a pass (PassSummary), pass@k, bootstrap intervals and
paired differences between models.

PassSummary is the one summary of a pass: the loop's resampling and log line, the manifest's
phase metrics, the dashboard's metrics and the report all read their figures from it. Rows are
sample rows (samples.SampleRow); `attempt` is 0 for the first Best-of-N round, >0 for
`--max-attempts` resamples of unsolved problems.

What each figure counts, chosen to match axiom-rl's published table:
- a problem is *solved* when any sample of any attempt passed;
- the *pass rate* (per-sample) and pass@k use attempt-0 samples only, so resampling unsolved
  problems never changes them (axiom-rl's 50/80 is 10 problems x 8 first-round samples);
- samples (the manifest's `candidates`), passed, failed, statuses, tokens, unique solutions and
  duplicates count every attempt.

numpy and pyarrow are imported at the top: no torch, vLLM or Ray here, so reports and tests
import this in well under a second.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from axiom_ray.storage import filesystem

# The columns summarize() reads; read_rows() can load just these to skip the prompt and reply.
SUMMARY_COLUMNS = ("problem_id", "passed", "status", "attempt", "code_hash", "code", "sample_id", "num_tokens",
                   "code_tokens")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: n samples, c of them correct (Chen et al. 2021).

    1 - C(n-c, k) / C(n, k), computed as a running product so large n never overflows.
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0  # every k-subset holds at least one correct sample
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def bootstrap_ci(
    per_problem_values: Sequence[float],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling problems with replacement.

    Problems are the unit because samples of one problem are correlated; returns (nan, nan)
    when there are no problems.
    """
    values = np.asarray(per_problem_values, dtype=float)
    if values.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    means = values[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


@dataclass(frozen=True)
class PassSummary:
    """The figures of one model on one problem set (a pass and its resampling attempts); see the
    module docstring for which attempts each counts."""

    problems: int = 0
    solved: int = 0  # any attempt
    samples: int = 0  # every attempt (the manifest's `candidates`)
    passed: int = 0  # every attempt
    failed: int = 0
    first_samples: int = 0  # attempt 0 only: the pass rate's denominator
    first_passed: int = 0
    unique_solutions: int = 0  # distinct (problem, code_hash) among passed samples
    duplicates: int = 0  # passed - unique_solutions: what dedupe filters out
    tokens: int = 0  # generated tokens, every attempt
    tokens_kept: int = 0  # tokens of the extracted code the verifier ran; the rest was prose
    seconds: float = 0.0  # wall time of the pass, when it was timed
    status: dict[str, int] = field(default_factory=dict)
    pass_at_k: dict[int, float] = field(default_factory=dict)
    per_problem: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (passed, n), attempt 0
    solved_ids: frozenset[str] = frozenset()

    @property
    def solve_rate(self) -> float:
        return self.solved / self.problems if self.problems else 0.0

    @property
    def pass_rate(self) -> float:
        """Per-sample pass rate of the first-round (attempt-0) samples."""
        return self.first_passed / self.first_samples if self.first_samples else 0.0

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per second of the pass (0 when it was not timed)."""
        return round(self.tokens / self.seconds, 1) if self.seconds > 0 else 0.0

    def per_problem_pass_at(self, k: int) -> list[float]:
        """pass@k of each problem with at least k attempt-0 samples (the CI's input)."""
        return [pass_at_k(n, c, k) for c, n in self.per_problem.values() if n >= k]

    def pass_at_k_ci(
        self, k: int = 1, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
    ) -> tuple[float, float]:
        return bootstrap_ci(self.per_problem_pass_at(k), n_boot=n_boot, seed=seed, alpha=alpha)

    def timed(self, seconds: float) -> PassSummary:
        return dataclasses.replace(self, seconds=seconds)

    def phase_metrics(self, problems: int) -> dict[str, Any]:
        """The pass's figures as the manifest's phase metrics (keys of existing runs; the loop
        adds `paired`, and `curriculum` or `greedy`). `problems`: how many were asked."""
        return {"candidates": self.samples, "passed": self.passed, "solved": self.solved,
                "tokens": self.tokens, "tokens_kept": self.tokens_kept, "seconds": round(self.seconds, 2),
                "tokens_per_s": self.tokens_per_s, "problems": problems, "pass_rate": round(self.pass_rate, 4)}


@dataclass(frozen=True)
class PairedDifference:
    """Model B minus model A on the problems both were scored on: the mean of the per-problem
    differences of pass@k (attempt-0 samples, unbiased estimator; with one greedy sample, whether
    it passed) and its paired percentile-bootstrap interval, resampling problems."""

    problems: int
    a: float
    b: float
    diff: float
    lo: float
    hi: float
    alpha: float = 0.05

    @property
    def verdict(self) -> str:
        """What the interval says: a gain, a loss, or no detectable change (it covers zero)."""
        if self.problems == 0 or math.isnan(self.lo):
            return "not measured"
        if self.lo > 0:
            return "gain"
        if self.hi < 0:
            return "loss"
        return "no detectable change"

    def describe(self) -> str:
        """"+12.5 pp [+5.0, +20.0] (gain, 40 problems)" with 95% for the default alpha."""
        if self.problems == 0:
            return "n/a (no shared problems)"
        return (f"{self.diff * 100:+.1f} pp [{self.lo * 100:+.1f}, {self.hi * 100:+.1f}] "
                f"({self.verdict}, {self.problems} problems)")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PairedDifference:
        """Back from to_dict(), e.g. a phase's `paired` entries in the manifest."""
        if not d.get("problems"):
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan)
        lo, hi = d["ci"]
        return cls(d["problems"], d["a"], d["b"], d["diff"], lo, hi, round(1 - d["confidence"], 6))

    def to_dict(self) -> dict[str, Any]:
        if self.problems == 0:  # no NaN in the manifest: JSON has none
            return {"problems": 0, "verdict": self.verdict}
        return {"problems": self.problems, "a": round(self.a, 4), "b": round(self.b, 4),
                "diff": round(self.diff, 4), "ci": [round(self.lo, 4), round(self.hi, 4)],
                "confidence": 1 - self.alpha, "verdict": self.verdict}


def paired_difference(a: PassSummary, b: PassSummary, k: int = 1, n_boot: int = 2000, seed: int = 0,
                      alpha: float = 0.05) -> PairedDifference:
    """`b` - `a`, paired by problem (see PairedDifference); problems with fewer than k samples
    in either model are left out."""
    shared = sorted(pid for pid in set(a.per_problem) & set(b.per_problem)
                    if a.per_problem[pid][1] >= k and b.per_problem[pid][1] >= k)
    if not shared:
        return PairedDifference(0, math.nan, math.nan, math.nan, math.nan, math.nan, alpha)
    pa_ = np.array([pass_at_k(a.per_problem[p][1], a.per_problem[p][0], k) for p in shared])
    pb_ = np.array([pass_at_k(b.per_problem[p][1], b.per_problem[p][0], k) for p in shared])
    diffs = pb_ - pa_
    lo, hi = bootstrap_ci(diffs, n_boot=n_boot, seed=seed, alpha=alpha)
    return PairedDifference(len(shared), float(pa_.mean()), float(pb_.mean()), float(diffs.mean()), lo, hi,
                            alpha)


def _columns(rows: pa.Table | Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The SUMMARY_COLUMNS of a table or list of dicts, as Python lists (absent -> Nones)."""
    if hasattr(rows, "column_names"):
        n = rows.num_rows
        return {
            c: rows.column(c).to_pylist() if c in rows.column_names else [None] * n
            for c in SUMMARY_COLUMNS
        }
    dicts = list(rows)
    return {c: [d.get(c) for d in dicts] for c in SUMMARY_COLUMNS}


def _solution_key(problem_id: str, code_hash: Any, code: Any, sample_id: Any, i: int) -> tuple:
    """What makes two passing samples the same solution: the AST hash, else the code text."""
    if code_hash:
        return (problem_id, "hash", code_hash)
    if code is not None:
        return (problem_id, "code", code)
    return (problem_id, "row", sample_id if sample_id is not None else i)


def summarize(rows: pa.Table | Iterable[Mapping[str, Any]], ks: Sequence[int] = (1,)) -> PassSummary:
    """axiom-rl's figures plus pass@k for a table of sample rows (one model, one problem set).

    pass@k for a k is left out when some problem has fewer than k attempt-0 samples: the
    unbiased estimator is undefined there and padding it would overstate the model.
    """
    cols = _columns(rows)
    per_problem: dict[str, list[int]] = {}
    solved: set[str] = set()
    status: Counter[str] = Counter()
    unique: set[tuple] = set()
    passed = 0
    for i, pid in enumerate(cols["problem_id"]):
        pid = str(pid)
        ok = bool(cols["passed"][i])
        counts = per_problem.setdefault(pid, [0, 0])
        status[cols["status"][i] or ("passed" if ok else "failed")] += 1
        if not cols["attempt"][i]:  # None (older rows without the column) counts as attempt 0
            counts[0] += ok
            counts[1] += 1
        if ok:
            passed += 1
            solved.add(pid)
            unique.add(
                _solution_key(pid, cols["code_hash"][i], cols["code"][i], cols["sample_id"][i], i)
            )
    samples = len(cols["problem_id"])
    pp = {pid: (c, n) for pid, (c, n) in per_problem.items()}
    return PassSummary(
        problems=len(pp),
        solved=len(solved),
        samples=samples,
        passed=passed,
        failed=samples - passed,
        first_samples=sum(n for _, n in pp.values()),
        first_passed=sum(c for c, _ in pp.values()),
        unique_solutions=len(unique),
        duplicates=passed - len(unique),
        tokens=sum(v or 0 for v in cols["num_tokens"]),
        tokens_kept=sum(v or 0 for v in cols["code_tokens"]),
        status=dict(sorted(status.items())),
        pass_at_k=_mean_pass_at_k(pp, ks),
        per_problem=pp,
        solved_ids=frozenset(solved),
    )


def _mean_pass_at_k(
    per_problem: Mapping[str, tuple[int, int]], ks: Sequence[int]
) -> dict[int, float]:
    scored = [(c, n) for c, n in per_problem.values() if n > 0]
    if not scored:
        return {}
    return {
        k: sum(pass_at_k(n, c, k) for c, n in scored) / len(scored)
        for k in sorted(set(ks))
        if k >= 1 and all(n >= k for _, n in scored)
    }


# --- reading a Parquet directory -------------------------------------------------------------


def read_rows(path_or_uri: str, columns: Sequence[str] | None = None) -> pa.Table:
    """All `*.parquet` files of a directory as one table; missing or empty -> empty table.

    Hidden and underscore-prefixed files are skipped (temporary writes). With `columns`, only
    those present in each file are read, so large text columns stay on disk.
    """
    fs, base = filesystem(path_or_uri)
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        return pa.table({})
    files = sorted(
        f.path
        for f in fs.get_file_info(pafs.FileSelector(base, recursive=False))
        if f.type == pafs.FileType.File
        and f.base_name.endswith(".parquet")
        and not f.base_name.startswith((".", "_"))
    )
    tables = [_read_one(fs, f, columns) for f in files]
    tables = [t for t in tables if t.num_columns]
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")


def _read_one(fs: pafs.FileSystem, path: str, columns: Sequence[str] | None) -> pa.Table:
    if columns is None:
        return pq.read_table(path, filesystem=fs)
    with fs.open_input_file(path) as f:
        names = set(pq.ParquetFile(f).schema_arrow.names)
    return pq.read_table(path, filesystem=fs, columns=[c for c in columns if c in names])
