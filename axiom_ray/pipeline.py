"""The Ray Data flow of one sampling pass: prompts -> generators -> verifiers -> Parquet.

Generation and verification stream: each generated batch flows to the verifier pool while the
generators work on the next, and rows go to Parquet as they are judged, so nothing holds a whole
iteration in the driver. The generator actors live for the whole run (they keep the engine and
the current adapter); the Ray Data stage in front of them only routes batches to them.

Failures inside a pass lose and double nothing:
- a generator actor that dies is restarted by Ray (generation/pool.py starts them with
  `max_restarts`); `GenerateBatch` waits for it, loads the pass's adapter into the fresh engine
  (a restart re-runs `__init__`, which serves the base model) and resubmits that replica's
  prompts (`pool.generate_with_restarts`). Sampling seeds depend only on the replica, the pass
  and the problem, so the resubmitted prompts give the candidates the lost call would have given;
- a verifier (or routing) actor that dies is restarted by Ray Data and its in-flight batch is
  retried: Ray Data gives its actor pools `max_restarts=-1, max_task_retries=-1` by default (and
  deprecates setting them per call, so they are not repeated here; tests/test_faults.py checks
  the behaviour). Judging is a pure function of the rows, routing resends the same requests
  (same seeds, same candidates), and a retried write task rewrites the same file name (Ray Data
  names files by write id and task index), so no row is lost or doubled.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import ray.data
from ray.data.expressions import col

from axiom_ray.config import VerifierConfig
from axiom_ray.generation.pool import generate_with_restarts
from axiom_ray.samples import (
    Candidate,
    code_hash,
    generation_row,
    sample_id,
    sample_schema,
    select_training_rows,
)
from axiom_ray.verifier import VerifyBatch


@dataclass(frozen=True)
class PassSpec:
    """What one sampling pass is: who samples what, how, and where the rows go."""

    run_id: str
    iteration: int
    kind: str  # "samples" (training pool) or "eval" (held-out)
    attempt: int
    n: int
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    adapter: str | None  # run-relative path of the adapter serving this pass; None for the base
    adapter_uri: str | None = None  # where a restarted generator reloads that adapter from
    adapter_version: int = 0  # its LoRA int id (the iteration that trained it)


def pass_seed(spec: PassSpec) -> int:
    """The sampling seed of one pass: fixed by the run seed and the pass's identity, so every
    iteration, kind and resampling attempt draws fresh samples (generators mix in their replica
    seed and the problem id, so batching never changes a problem's samples)."""
    key = f"{spec.seed}/{spec.iteration}/{spec.kind}/{spec.attempt}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little") & 0x7FFFFFFF


class GenerateBatch:
    """Ray Data stage: sends each request to its generator replica, returns one row per candidate."""

    def __init__(self, generators: list[Any], spec: PassSpec, entry_points: dict[str, str]) -> None:
        self.generators = generators
        self.spec = spec
        self.entry_points = entry_points  # lets code extraction prefer the block defining it

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        by_replica: dict[int, list[dict[str, Any]]] = {}
        for pid, prompt, replica in zip(batch["problem_id"], batch["prompt"], batch["replica"], strict=True):
            req = {"problem_id": str(pid), "prompt": str(prompt), "entry_point": self.entry_points.get(str(pid))}
            by_replica.setdefault(int(replica) % len(self.generators), []).append(req)
        # Submit to every replica first so they work in parallel, then collect each.
        refs = {r: self._submit(r, reqs) for r, reqs in by_replica.items()}
        results = [self._collect(r, by_replica[r], ref) for r, ref in refs.items()]
        prompts = {str(p): str(q) for p, q in zip(batch["problem_id"], batch["prompt"], strict=True)}
        created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        rows = [self._row(c, prompts, created) for result in results for c in result]
        return _columns(rows)

    def _submit(self, replica: int, reqs: list[dict[str, Any]]) -> Any:
        spec = self.spec
        return self.generators[replica].generate.remote(
            reqs, n=spec.n, temperature=spec.temperature, top_p=spec.top_p,
            max_tokens=spec.max_tokens, seed=pass_seed(spec))

    def _collect(self, replica: int, reqs: list[dict[str, Any]], ref: Any) -> list[dict[str, Any]]:
        """The candidates of one replica's call, resubmitted after the generator restarts."""
        return generate_with_restarts(
            self.generators[replica], ref, lambda: self._submit(replica, reqs), self.spec.adapter_uri,
            self.spec.adapter_version, f"generator {replica} ({len(reqs)} prompts)")

    def _row(self, cand: Candidate, prompts: dict[str, str], created: str) -> dict[str, Any]:
        spec = self.spec
        pid = cand["problem_id"]
        return generation_row(
            run_id=spec.run_id,
            iteration=spec.iteration,
            problem_id=pid,
            sample_id=sample_id(spec.run_id, spec.iteration, pid, spec.kind, spec.attempt, cand["index"]),
            prompt=prompts[pid],
            completion=cand["completion"],
            code=cand["code"],
            model=cand["model"],
            adapter=spec.adapter,
            temperature=spec.temperature,
            seed=spec.seed,
            num_tokens=int(cand["num_tokens"]),
            code_tokens=int(cand.get("code_tokens", 0)),
            code_hash=code_hash(cand["code"]),
            created_at=created,
            attempt=spec.attempt,
            index=int(cand["index"]),
            finish_reason=str(cand.get("finish_reason") or ""),
        )


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    if not rows:
        return {}
    return {key: [r[key] for r in rows] for key in rows[0]}


class VerifyStage(VerifyBatch):
    """The verifier pool's Ray Data stage: VerifyBatch on plain columns, the sample row's Arrow
    schema out (samples.sample_schema: same columns, types and order in every file). Its name
    is the actor name the dashboard and the fault tests look for."""

    def __call__(self, batch: pa.Table) -> pa.Table:  # type: ignore[override]
        out = super().__call__(batch.to_pydict())
        schema = sample_schema()
        return pa.table({f.name: pa.array(list(out[f.name]), type=f.type) for f in schema}, schema=schema)


def run_pass(
    *,
    generators: list[Any],
    prompts: dict[str, str],
    spec: PassSpec,
    verify_problems: dict[str, dict[str, Any]],
    verifier: VerifierConfig,
    verifier_workers: int,
    generate_batch_size: int,
    out_uri: str,
) -> None:
    """Stream one pass to Parquet under `out_uri` (appending: resampling attempts share it)."""
    requests = [
        {"problem_id": pid, "prompt": prompt, "replica": i // generate_batch_size}
        for i, (pid, prompt) in enumerate(prompts.items())
    ]
    blocks = max(1, -(-len(requests) // generate_batch_size))
    ds = ray.data.from_items(requests, override_num_blocks=blocks)
    ds = ds.map_batches(
        GenerateBatch,
        fn_constructor_kwargs={"generators": generators, "spec": spec,
                               "entry_points": {pid: p["entry_point"] for pid, p in verify_problems.items()}},
        batch_size=generate_batch_size,
        compute=ray.data.ActorPoolStrategy(size=len(generators)),
        num_cpus=0,  # it only routes; the generator actors hold the resources
    )
    ds = ds.map_batches(
        VerifyStage,
        fn_constructor_kwargs={"problems": verify_problems, "cfg": verifier},
        batch_size=verifier.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, verifier_workers)),
        num_cpus=1,
    )
    ds.write_parquet(out_uri)


def build_training_set(sample_uris: list[str], out_uri: str, max_per_problem: int, dedupe: bool) -> int:
    """Passed samples -> deduplicated, capped per problem -> Parquet. Returns the row count."""

    def pick(group: pa.Table) -> pa.Table:
        rows = select_training_rows(group.to_pylist(), max_per_problem, dedupe)
        return pa.Table.from_pylist(rows, schema=group.schema)

    ds = ray.data.read_parquet(sample_uris).filter(expr=col("passed"))
    if ds.count() == 0:
        return 0
    ds = ds.groupby("problem_id").map_groups(pick, batch_format="pyarrow")
    ds.write_parquet(out_uri)
    return pads.dataset(out_uri, format="parquet").count_rows()
