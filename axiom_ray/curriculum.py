"""Curriculum: which training problems iteration k samples, chosen from what earlier rounds showed.

Off (`data.curriculum: off`, or `auto` with a pool of at most 50 problems, e.g. axiom-rl's ten),
every iteration samples the whole training pool. On, iteration k samples at most
`data.curriculum_size` problems (S below), picked by these rules:

1. Records. A problem's record is its latest sampling: the most recent earlier iteration j < k
   whose `iter_j/samples` Parquet holds it. From it: c passes out of n first-round (attempt 0)
   samples, and whether any attempt passed. A problem no earlier iteration sampled is *untried*.
2. Classes.
   - mastered: c == n, every first-round sample passed at its last round. Skipped: the model
     has nothing left to learn there and its N copies would crowd the training set (dedupe
     keeps them anyway). With `training.from_base`, set `data.accumulate` to keep their
     solutions in later training sets.
   - learning: solved but not always (0 < c < n, or c == 0 and a resample passed). Preferred:
     these are the problems where sampling finds new solutions and training moves the model.
   - unsolved: sampled, nothing passed. untried: never sampled.
3. Frontier. Difficulties are ordered easy < medium < hard. A level is *mostly solved* once at
   least min(8, its pool size) of its problems were sampled and at least `curriculum_step_up`
   (default 70%) of those sampled were solved. The frontier is the easiest level of the pool
   that is not mostly solved (the hardest level when all are), so difficulty steps up as the
   easy problems get solved.
4. Slots. round(S * `curriculum_explore`) slots go to exploration (untried and unsolved
   problems), the other slots to learning problems; slots one side cannot fill go to the other.
5. Order. Learning: pass rate c/n closest to 1/2 first (the most mixed verdicts carry the most
   signal). Exploration: the frontier level first, then easier levels, then harder ones (which
   thus only fill what the others cannot); within a level untried before unsolved, and unsolved
   problems sampled fewer times first.
6. Iteration 0 is the same rules with no records: everything is untried and the frontier is
   easy, so it is a seeded subset of S problems, easy first, then medium, then hard.
7. When every problem is mastered, the mastered ones are sampled again (seeded subset of S), so
   the loop still has data to train on.

Ties break by a hash of (run seed, iteration, problem id): deterministic, independent of the
pool's order, different from one iteration to the next. The choice is therefore a function of
the seed and the earlier iterations' Parquet, so a resumed run picks the same problems; the loop
also records the chosen ids in the manifest (`iterations.K.curriculum`).

Pure: standard library only (pyarrow only inside `load_records`), no torch, vLLM or Ray.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from axiom_ray.evaluation import read_rows

MODES = ("auto", "on", "off")
AUTO_MIN_POOL = 50  # `auto` turns the curriculum on above this many training problems
LEVELS = ("easy", "medium", "hard")
MIN_EVIDENCE = 8  # problems of a level sampled before its solve share may step the frontier up
CLASSES = ("learning", "untried", "unsolved", "mastered")
ROW_COLUMNS = ("problem_id", "passed", "attempt")  # all a record needs from a samples Parquet


class HasDifficulty(Protocol):
    """What the selection needs of a problem (axiom_ray.problems.Problem has it)."""

    @property
    def id(self) -> str: ...

    @property
    def difficulty(self) -> str: ...


def curriculum_enabled(mode: str, pool_size: int) -> bool:
    """Whether `data.curriculum` (auto | on | off) is on for a training pool of this size."""
    if mode not in MODES:
        raise ValueError(f"data.curriculum: expected one of {', '.join(MODES)}, got {mode!r}")
    return mode == "on" or (mode == "auto" and pool_size > AUTO_MIN_POOL)


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """A problem's latest sampling (rule 1)."""

    passed: int  # first-round (attempt 0) samples that passed
    samples: int  # first-round samples
    solved: bool  # any sample of any attempt passed
    iteration: int  # the iteration that sampled it
    times: int = 1  # how many earlier iterations sampled it

    @property
    def kind(self) -> str:
        """Its class (rule 2): mastered, learning or unsolved."""
        if self.samples and self.passed == self.samples:
            return "mastered"
        return "learning" if self.solved else "unsolved"


def records_from_rows(iteration: int, rows: Iterable[Mapping[str, Any]]) -> dict[str, Record]:
    """One iteration's per-problem records from its sample rows (problem_id, passed, attempt)."""
    counts: dict[str, list[int]] = {}
    solved: set[str] = set()
    for row in rows:
        pid = str(row["problem_id"])
        ok = bool(row["passed"])
        c = counts.setdefault(pid, [0, 0])
        if not row.get("attempt"):  # None (rows without the column) counts as attempt 0
            c[0] += ok
            c[1] += 1
        if ok:
            solved.add(pid)
    return {pid: Record(c, n, pid in solved, iteration) for pid, (c, n) in counts.items()}


def merge_records(history: Sequence[tuple[int, Mapping[str, Record]]]) -> dict[str, Record]:
    """Fold per-iteration records, oldest first: the latest wins, `times` counts them all."""
    out: dict[str, Record] = {}
    for _, records in sorted(history, key=lambda item: item[0]):
        for pid, rec in records.items():
            before = out.get(pid)
            times = (before.times if before else 0) + 1
            out[pid] = Record(rec.passed, rec.samples, rec.solved, rec.iteration, times)
    return out


def load_records(sample_dirs: Sequence[tuple[int, str]]) -> dict[str, Record]:
    """Records from earlier iterations' `samples` Parquet directories, given as (iteration, uri).

    Reads only the three small columns; a missing or empty directory contributes nothing.
    """
    history = []
    for k, uri in sample_dirs:
        table = read_rows(uri, columns=ROW_COLUMNS)
        history.append((k, records_from_rows(k, table.to_pylist() if table.num_columns else [])))
    return merge_records(history)


# --- selection -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """The problems one iteration samples, and why (what the manifest and the report show)."""

    ids: tuple[str, ...]  # in the pool's order
    frontier: str
    chosen: dict[str, int]  # class -> problems chosen
    difficulty: dict[str, int]  # level -> problems chosen
    mastered_skipped: int
    pool: int
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "ids": list(self.ids),
            "frontier": self.frontier,
            "chosen": dict(self.chosen),
            "difficulty": dict(self.difficulty),
            "mastered_skipped": self.mastered_skipped,
            "pool": self.pool,
            "size": self.size,
        }

    def summary(self) -> dict[str, Any]:
        """to_dict without the ids: small enough for phase metrics and the log line."""
        out = self.to_dict()
        out.pop("ids")
        return out


def tie_break(seed: int, iteration: int, problem_id: str) -> int:
    """A seeded tie-breaker, independent of the pool's order (see the module docstring)."""
    digest = hashlib.sha256(f"{seed}/{iteration}/{problem_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def level_of(problem: HasDifficulty) -> int:
    """Index into LEVELS; an unknown tag counts as medium (the problem schema's default)."""
    return LEVELS.index(problem.difficulty) if problem.difficulty in LEVELS else 1


def frontier_level(
    pool: Sequence[HasDifficulty], records: Mapping[str, Record], step_up: float
) -> int:
    """The easiest level of the pool that is not mostly solved (rule 3)."""
    present = sorted({level_of(p) for p in pool})
    for level in present:
        members = [p for p in pool if level_of(p) == level]
        tried = [records[p.id] for p in members if p.id in records]
        enough = len(tried) >= min(MIN_EVIDENCE, len(members))
        if not (enough and sum(r.solved for r in tried) >= step_up * len(tried)):
            return level
    return present[-1] if present else 0


def classify(
    pool: Sequence[HasDifficulty], records: Mapping[str, Record]
) -> dict[str, list[HasDifficulty]]:
    """The pool by class (rule 2), each in pool order."""
    out: dict[str, list[HasDifficulty]] = {c: [] for c in CLASSES}
    for p in pool:
        rec = records.get(p.id)
        out["untried" if rec is None else rec.kind].append(p)
    return out


def select_problems(
    pool: Sequence[HasDifficulty],
    records: Mapping[str, Record],
    *,
    iteration: int,
    seed: int,
    size: int,
    explore: float,
    step_up: float,
) -> Selection:
    """The problems iteration `iteration` samples under the curriculum (module docstring)."""
    if size < 1:
        raise ValueError("curriculum size must be >= 1")
    frontier = frontier_level(pool, records, step_up)
    classes = classify(pool, records)

    def tie(p: HasDifficulty) -> int:
        return tie_break(seed, iteration, p.id)

    def closeness(p: HasDifficulty) -> tuple[float, int]:
        rec = records[p.id]
        rate = rec.passed / rec.samples if rec.samples else 0.0
        return (abs(rate - 0.5), tie(p))

    def exploration_key(p: HasDifficulty) -> tuple[int, int, int]:
        level = level_of(p)
        # frontier first (0), then easier levels nearest first, then harder levels nearest first
        distance = frontier - level if level <= frontier else len(LEVELS) + level - frontier
        times = records[p.id].times if p.id in records else 0
        return (distance, times, tie(p))

    learning = sorted(classes["learning"], key=closeness)
    exploring = sorted(classes["untried"] + classes["unsolved"], key=exploration_key)
    explore_slots = round(size * explore)
    take_learning = min(len(learning), max(size - explore_slots, size - len(exploring)))
    chosen = learning[:take_learning] + exploring[: size - take_learning]
    if not chosen:  # rule 7: everything mastered
        chosen = sorted(classes["mastered"], key=tie)[:size]
    return _selection(pool, records, chosen, frontier, len(classes["mastered"]), size)


def _selection(
    pool: Sequence[HasDifficulty],
    records: Mapping[str, Record],
    chosen: Sequence[HasDifficulty],
    frontier: int,
    mastered: int,
    size: int,
) -> Selection:
    ids = {p.id for p in chosen}
    in_order = [p for p in pool if p.id in ids]
    kinds = Counter("untried" if p.id not in records else records[p.id].kind for p in in_order)
    levels = Counter(LEVELS[level_of(p)] for p in in_order)
    mastered_chosen = kinds.get("mastered", 0)
    return Selection(
        ids=tuple(p.id for p in in_order),
        frontier=LEVELS[frontier],
        chosen={c: kinds.get(c, 0) for c in CLASSES},
        difficulty={lv: levels.get(lv, 0) for lv in LEVELS},
        mastered_skipped=mastered - mastered_chosen,
        pool=len(pool),
        size=size,
    )
