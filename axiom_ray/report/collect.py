"""Reading a run directory into RunData: the manifest (through rundir.RunDir) and, for every
phase the manifest marks done, its sample rows summarised (evaluation.PassSummary).

Only done phases are read (a phase that is running or failed may have left partial files); what
is missing is noted, so a partial run reports too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from axiom_ray.evaluation import SUMMARY_COLUMNS, PassSummary, read_rows, summarize
from axiom_ray.rundir import (
    IterationRecord,
    Manifest,
    PhaseRecord,
    RunDir,
    RunDirError,
    iter_dir,
    phases_of,
)


class ReportError(RuntimeError):
    """A run directory the report cannot be written for; the message is one line."""


@dataclass
class IterationData:
    """What the run directory holds for model k."""

    record: IterationRecord
    train_pool: PassSummary | None = None  # model k on the training problems (iter_k/samples)
    heldout: PassSummary | None = None  # model k on the held-out problems (iter_k/eval)
    heldout_greedy: PassSummary | None = None  # its greedy answers there, with evaluation.greedy
    train_set: PassSummary | None = None  # the SFT set that trained adapter k (iter_k/train)
    missing: list[str] = field(default_factory=list)  # phases not done
    notes: list[str] = field(default_factory=list)  # done phases worth a remark

    @property
    def k(self) -> int:
        return self.record.k

    @property
    def adapter(self) -> str | None:
        return self.record.adapter

    @property
    def curriculum(self) -> dict[str, Any] | None:
        """The problems the curriculum chose for iter_k/samples (None: the whole pool)."""
        return self.record.curriculum

    @property
    def label(self) -> str:
        return "Base (Model 0)" if self.k == 0 else f"Model {self.k}"

    @property
    def short(self) -> str:
        return "M0 (base)" if self.k == 0 else f"M{self.k}"

    def phase(self, name: str) -> PhaseRecord:
        return self.record.phase(name)

    def metric(self, phase: str, key: str) -> Any:
        return self.phase(phase).metrics.get(key)


@dataclass
class RunData:
    run_dir: str
    manifest: Manifest
    iterations: list[IterationData]

    def config(self, dotted: str) -> Any:
        """A config value from the manifest, None when absent (older or partial manifests)."""
        return self.manifest.setting(dotted)

    def problem_ids(self, split: str) -> list[str]:
        return self.manifest.problems(split)

    def has_eval(self) -> bool:
        """Whether this run evaluates on held-out problems at all (an empty set disables it)."""
        if self.problem_ids("eval"):
            return True
        configured = self.config("evaluation.problems")
        return bool(configured.strip()) if isinstance(configured, str) else True

    def ks(self) -> list[int]:
        return sorted({1, *(int(k) for k in self.config("evaluation.ks") or [])})

    def curriculum_on(self) -> bool:
        """Whether some iteration sampled a curriculum's subset of the training pool."""
        return any(it.curriculum for it in self.iterations)


# --- the models scored on one pool ("train", "eval" or "eval_greedy") --------------------------

POOL_TITLES = {"train": "Training pool", "eval": "Held-out problems",
               "eval_greedy": "Held-out problems, greedy"}
Scored = tuple[IterationData, PassSummary]  # a model and its figures on one pool


def pool_summary(it: IterationData, pool: str) -> PassSummary | None:
    return {"train": it.train_pool, "eval": it.heldout, "eval_greedy": it.heldout_greedy}[pool]


def scored_on(run: RunData, pool: str) -> list[Scored]:
    """The models with finished rows on `pool`, in iteration order."""
    return [(it, s) for it in run.iterations if (s := pool_summary(it, pool)) is not None and s.samples]


def base_on(run: RunData, pool: str) -> PassSummary | None:
    s = pool_summary(run.iterations[0], pool) if run.iterations else None
    return s if s is not None and s.samples else None


def problem_order(run: RunData, pool: str, scored: list[Scored]) -> list[str]:
    """The manifest's order, then any problem only the rows know (e.g. an older pool)."""
    known = {p for _, s in scored for p in s.per_problem}
    order = [p for p in run.problem_ids(pool) if p in known]
    return order + sorted(known - set(order))


# --- reading ---------------------------------------------------------------------------------


def open_run(run_dir: str) -> RunDir:
    """The run directory, or ReportError (one line) when it has no readable manifest."""
    try:
        return RunDir.open(run_dir)
    except RunDirError as e:
        raise ReportError(str(e)) from None


def _read_phase(
    run: RunDir, it: IterationData, phase: str, ks: Sequence[int], folder_name: str = ""
) -> PassSummary | None:
    """The phase's rows (its folder, or `folder_name` that it also writes), summarised, when the
    manifest marks it done (else maybe half written)."""
    if not it.phase(phase).is_done:
        return None
    folder = f"{iter_dir(it.k)}/{folder_name or phase}"
    rows = read_rows(run.uri(folder), columns=SUMMARY_COLUMNS)
    if folder_name and rows.num_rows == 0:
        return None  # an optional extra of the phase, not written by this run
    if rows.num_rows == 0 and phase != "train":
        it.notes.append(f"{phase}: done but {folder}/ holds no rows")
    return summarize(rows, ks=ks)


def _note_missing(it: IterationData, with_eval: bool) -> None:
    for phase in phases_of(it.k, with_eval):
        status = it.phase(phase).status
        if status != "done":
            it.missing.append(f"{phase}: {status or 'not started'}")
    skipped = it.metric("train", "skipped")
    if skipped:  # the loop reuses model k-1 when there was nothing verified to train on
        it.notes.append(f"train: skipped ({skipped}), so model {it.k} is model {it.k - 1}")


def read_run(run: RunDir) -> RunData:
    """Everything the report shows, read from the run directory."""
    data = RunData(run.storage.root, run.manifest, [])
    for record in run.manifest.iterations():
        it = IterationData(record)
        _note_missing(it, data.has_eval())
        it.train_pool = _read_phase(run, it, "samples", ks=[1])
        it.heldout = _read_phase(run, it, "eval", ks=data.ks())
        it.heldout_greedy = _read_phase(run, it, "eval", ks=[1], folder_name="eval_greedy")
        if it.k > 0:
            it.train_set = _read_phase(run, it, "train", ks=[1])
        data.iterations.append(it)
    return data
