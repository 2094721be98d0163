"""The verifier on Ray: a thin shell around the sandbox's Judge (no Ray import at module load).

- `VerifyBatch(problems, cfg)`: the callable class for Ray Data
  `map_batches(VerifyBatch, fn_constructor_kwargs=..., compute=ActorPoolStrategy(...))`. Each
  actor holds one Judge (one warm fork server); batches take columns `problem_id`, `code` and get
  the verdict columns of the sample row (samples.VERDICT_COLUMNS).
- `VerifyStage`: the run's verifier actor (a VerifyBatch that also writes its verdicts to
  Parquet); `VerifierPool` / `start_verifiers`: the run's fleet of them, started once with the
  generators and kept for the whole run, so each pass finds its judges and their fork servers
  warm (pipeline.run_pass streams the candidates to them).

`cfg` is the run's `VerifierConfig`, passed to the actors as it is: its timeout and memory
become the sandbox `Limits`, its `min_isolation` the Judge's floor.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from axiom_ray.config import VerifierConfig
from axiom_ray.placement import Plan
from axiom_ray.problems import Problem
from axiom_ray.samples import COLUMN_TYPES, VERDICT_COLUMNS, sample_schema, verdict_columns
from axiom_ray.sandbox import Judge, Limits, Verdict
from axiom_ray.storage import filesystem

log = logging.getLogger(__name__)

# numpy dtype of each kind of column, so Ray Data's numpy batches carry the schema's types
_NUMPY_TYPES = {bool: np.bool_, int: np.int64, float: np.float64, str: np.object_}


def as_problem(p: Problem | Mapping[str, Any]) -> Problem:
    """A Problem from a Problem or its `to_dict()` form."""
    return p if isinstance(p, Problem) else Problem.from_dict(dict(p))


def make_judge(cfg: VerifierConfig) -> Judge:
    """The Judge a verifier config describes (the sandbox's other limits keep their defaults)."""
    return Judge(Limits(timeout_s=cfg.timeout, memory_mb=cfg.memory_mb), min_isolation=cfg.min_isolation,
                 idle_priority=cfg.idle_priority)


class VerifyBatch:
    """Ray Data callable class: verdict columns for a batch of (problem_id, code).

    `concurrency` Judges (each its own fork server, so candidates never share a process) judge
    up to that many candidates at once, also across calls made from several threads (a threaded
    actor): a candidate takes whichever Judge is free."""

    def __init__(self, problems: Mapping[str, Problem | Mapping[str, Any]], cfg: VerifierConfig,
                 concurrency: int = 1) -> None:
        self._problems = {pid: as_problem(p) for pid, p in problems.items()}
        self._judges = [make_judge(cfg) for _ in range(max(1, concurrency))]
        self._free: queue.SimpleQueue[Judge] = queue.SimpleQueue()
        for judge in self._judges:
            self._free.put(judge)
        self._threads = ThreadPoolExecutor(len(self._judges), thread_name_prefix="judge")

    @property
    def concurrency(self) -> int:
        return len(self._judges)

    @property
    def level(self) -> str:
        """The isolation level its candidates run at (every Judge's: same config, same host)."""
        return self._judges[0].level

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        pairs = list(zip(batch["problem_id"], batch["code"], strict=True))
        rows = list(self._threads.map(lambda pair: self._one(str(pair[0]), pair[1]), pairs))
        out = dict(batch)
        for name in VERDICT_COLUMNS:
            out[name] = np.array([r[name] for r in rows], dtype=_NUMPY_TYPES[COLUMN_TYPES[name]])
        return out

    def _one(self, problem_id: str, code: Any) -> dict[str, Any]:
        problem = self._problems.get(problem_id)
        if problem is None:
            return verdict_columns(Verdict(False, "error", 0, 0, 0.0, self.level,
                                       f"unknown problem id {problem_id!r}"))
        judge = self._free.get()
        try:
            return verdict_columns(judge.judge(problem, str(code) if isinstance(code, str) else code))
        finally:
            self._free.put(judge)

    def __del__(self) -> None:
        for judge in getattr(self, "_judges", []):
            judge.close()
        threads = getattr(self, "_threads", None)
        if threads is not None:
            threads.shutdown(wait=False)



# --- the run's verifier actors ------------------------------------------------------------------


@dataclass(frozen=True)
class PassProblems:
    """The problems a pass is judged on, sent to the verifiers once per problem set: `ref` is
    an ObjectRef of {problem id: Problem.to_dict()} (inside this object, so Ray passes the
    reference and an actor fetches it only when `key`, a digest of the ids, is new to it)."""

    key: str
    ref: Any

    @staticmethod
    def key_of(problems: Mapping[str, Any]) -> str:
        return hashlib.sha256("\n".join(sorted(problems)).encode()).hexdigest()[:16]


class VerifyStage(VerifyBatch):
    """The run's verifier actor: one warm Judge for the whole run; judges one block of sample
    rows per call and writes it as one Parquet file (samples.sample_schema). Its class name is
    what the dashboard and the fault tests look for.

    A call is a pure function of its arguments and rewrites the same file, so Ray may retry it
    after a restart (the pool starts these actors with max_task_retries=-1): no row is lost or
    doubled."""

    def __init__(self, cfg: VerifierConfig, concurrency: int = 1) -> None:
        # At most one candidate per core of this node: more would only share the cores.
        super().__init__({}, cfg, min(concurrency, len(os.sched_getaffinity(0))))
        self._problems_key = ""
        self._problems_lock = threading.Lock()

    def ready(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "isolation": self.level, "concurrency": self.concurrency}

    def judge_block(self, rows: dict[str, list[Any]], problems: PassProblems, uri: str) -> dict[str, Any]:
        """Judge the generation rows (columns of the sample row without the verdict), write them
        with their verdicts to `uri`; their counts (rows, passed, tokens, by status)."""
        self._use(problems)
        out = self(rows)
        schema = sample_schema()
        table = pa.table({f.name: pa.array(list(out[f.name]), type=f.type) for f in schema}, schema=schema)
        write_parquet(table, uri)
        return {"rows": table.num_rows, "passed": int(sum(out["passed"])),
                "tokens": int(sum(rows["num_tokens"])), "status": dict(Counter(str(x) for x in out["status"]))}

    def _use(self, problems: PassProblems) -> None:
        with self._problems_lock:  # blocks of one pass may arrive together (a threaded actor)
            if problems.key != self._problems_key:
                import ray  # lazy: this module imports without Ray (see the module doc)

                self._problems = {pid: as_problem(p) for pid, p in ray.get(problems.ref).items()}
                self._problems_key = problems.key


def write_parquet(table: pa.Table, uri: str) -> None:
    """One Parquet file at `uri`, written under a hidden name and renamed (readers skip
    hidden files), so a verifier killed mid-write leaves no truncated file behind."""
    fs, path = filesystem(uri)
    folder, name = path.rsplit("/", 1)
    fs.create_dir(folder, recursive=True)
    tmp = f"{folder}/.{name}.part"
    with fs.open_output_stream(tmp) as f:
        pq.write_table(table, f)
    fs.move(tmp, path)


@dataclass
class VerifierPool:
    """The verifier actors of a run (started with the generators, closed at the end)."""

    actors: list[Any] = field(default_factory=list)
    starts: int = 0  # how many times the run started its verifiers (1 unless released to train)
    concurrency: list[int] = field(default_factory=list)  # candidates each judges at once (wait_ready)

    def wait_ready(self) -> list[dict[str, Any]]:
        import ray

        ready = ray.get([a.ready.remote() for a in self.actors])
        self.concurrency = [r["concurrency"] for r in ready]
        return ready

    def close(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []


def verifier_options(num_cpus: float, run_id: str, i: int, start: int = 0, concurrency: int = 1) -> dict[str, Any]:
    """Ray options of verifier i: named for the dashboard (`start` > 0: the pool's start after a
    release, under a fresh name, as a killed actor's name is freed asynchronously); restarted and
    its call retried by Ray when it dies (a call is a pure function of its rows, see VerifyStage);
    `concurrency` calls at a time (its Judges are shared by them)."""
    name = f"axiom-verifier-{run_id}-{i}" + (f"-s{start}" if start else "")
    return {"name": name, "num_cpus": num_cpus, "max_restarts": -1,
            "max_task_retries": -1, "max_concurrency": max(1, concurrency)}


def start_verifiers(cfg: VerifierConfig, plan: Plan, run_id: str, start: int = 0) -> VerifierPool:
    """The plan's verifier actors (placement.Plan sizes them so that they fit beside the
    generators and the trainer), not waited for: their fork servers start while the generators
    load (VerifierPool.wait_ready)."""
    import ray

    remote = ray.remote(VerifyStage)
    concurrency = plan.verifier_concurrency
    options = [verifier_options(plan.verifier_cpus, run_id, i, start, concurrency)
               for i in range(max(1, plan.verifier_workers))]
    return VerifierPool([remote.options(**o).remote(cfg, concurrency) for o in options], starts=start + 1)
