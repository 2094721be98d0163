"""The Ray Data flow of one sampling pass: prompts -> generators -> verifiers -> Parquet.

Generation and verification stream: each generated batch flows to the verifier pool while the
generators work on the next, and rows go to Parquet as they are judged, so nothing holds a whole
iteration in the driver. The generator actors live for the whole run (they keep the engine and
the current adapter); the Ray Data stage in front of them only routes batches to them.

Failures inside a pass lose and double nothing:
- a generator actor that dies is restarted by Ray (the loop starts them with `max_restarts`);
  `GenerateBatch` waits for it, loads the pass's adapter into the fresh engine (a restart re-runs
  `__init__`, which serves the base model) and resubmits that replica's prompts. Sampling seeds
  depend only on the replica, the pass and the problem, so the resubmitted prompts give the
  candidates the lost call would have given;
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
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from axiom_ray.samples import (
    Candidate,
    code_hash,
    generation_row,
    sample_id,
    sample_schema,
    select_training_rows,
)
from axiom_ray.verifier import VerifyBatch

log = logging.getLogger(__name__)

GENERATOR_CALL_ATTEMPTS = 4  # one call plus up to three resubmissions after a generator restart
RESTART_WAIT_S = 600.0  # how long to wait for a restarted generator (vLLM loads in ~20 s on CPU)
DIED_LIMIT = 3  # ActorDiedError answers to ready() before a generator counts as gone for good


class GeneratorLost(RuntimeError):
    """A generator actor stayed dead (its restarts are spent) or kept failing the same call."""


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
        import ray

        actor, why = self.generators[replica], ""
        for attempt in range(GENERATOR_CALL_ATTEMPTS):
            try:
                if ref is None:
                    restore_generator(actor, self.spec.adapter_uri, self.spec.adapter_version)
                    ref = self._submit(replica, reqs)
                out = ray.get(ref)
            except actor_errors() as e:
                why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            else:
                if serves_adapter(out, self.spec.adapter_uri):
                    return out
                # Restarted between two calls: the fresh engine serves the base model.
                why = "answered from the base model instead of the adapter (it was restarted)"
            log.warning("generator %d (%d prompts, attempt %d): %s; resubmitting once it is back",
                        replica, len(reqs), attempt + 1, why)
            ref = None
        raise GeneratorLost(f"generator {replica} failed {GENERATOR_CALL_ATTEMPTS} times: {why}")

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


def actor_errors() -> tuple[type[BaseException], ...]:
    """What a call to a dead or restarting actor raises (ActorDiedError and
    ActorUnavailableError are both RayActorErrors)."""
    from ray.exceptions import RayActorError

    return (RayActorError,)


def serves_adapter(candidates: list[dict[str, Any]], adapter_uri: str | None) -> bool:
    """Whether a generator's candidates come from the engine state the pass asked for: a
    restarted actor has lost its adapter, and its rows say so (`adapter` None)."""
    want_adapter = adapter_uri is not None
    return all((c.get("adapter") is not None) == want_adapter for c in candidates)


def wait_ready(actor: Any, wait_s: float = RESTART_WAIT_S) -> dict[str, Any]:
    """Block until the actor answers (Ray queues calls while it restarts); its ready() info."""
    import ray
    from ray.exceptions import ActorDiedError, GetTimeoutError

    deadline, died = time.monotonic() + wait_s, 0
    while True:
        try:
            return ray.get(actor.ready.remote(), timeout=max(1.0, deadline - time.monotonic()))
        except (*actor_errors(), GetTimeoutError) as e:
            # A call sent before Ray noticed the death fails at once: ask again until it is back.
            # ActorDiedError is final once its restarts are spent: give up after a few of those.
            died += isinstance(e, ActorDiedError)
            if time.monotonic() >= deadline or died >= DIED_LIMIT:
                raise GeneratorLost(f"generator not back (after {died} deaths): {e}") from e
            time.sleep(0.5)


def restore_generator(actor: Any, adapter_uri: str | None, adapter_version: int) -> None:
    """Bring a (possibly restarted) generator back to the pass's engine state."""
    import ray

    wait_ready(actor)
    if adapter_uri is None:
        ray.get(actor.use_base.remote())
    else:
        ray.get(actor.load_adapter.remote(adapter_uri, adapter_version))


def load_on_all(generators: list[Any], adapter_uri: str | None, adapter_version: int) -> None:
    """Make every generator serve `adapter_uri` (None: the base), in parallel; a generator that
    dies meanwhile is waited for and loaded again once restarted."""
    import ray

    refs = [g.use_base.remote() if adapter_uri is None else g.load_adapter.remote(adapter_uri, adapter_version)
            for g in generators]
    for actor, ref in zip(generators, refs, strict=True):
        for attempt in range(GENERATOR_CALL_ATTEMPTS):
            try:
                if ref is None:
                    restore_generator(actor, adapter_uri, adapter_version)
                else:
                    ray.get(ref)
                break
            except actor_errors() as e:
                if attempt == GENERATOR_CALL_ATTEMPTS - 1:
                    raise GeneratorLost(f"could not load {adapter_uri or 'the base model'}: {e}") from e
                log.warning("generator died while loading %s; retrying once it is back", adapter_uri or "the base")
                ref = None


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
    verifier_limits: dict[str, Any],
    verifier_workers: int,
    verifier_batch_size: int,
    generate_batch_size: int,
    out_uri: str,
) -> None:
    """Stream one pass to Parquet under `out_uri` (appending: resampling attempts share it)."""
    import ray.data

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
        fn_constructor_kwargs={"problems": verify_problems, "limits": verifier_limits},
        batch_size=verifier_batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, verifier_workers)),
        num_cpus=1,
    )
    ds.write_parquet(out_uri)


def build_training_set(sample_uris: list[str], out_uri: str, max_per_problem: int, dedupe: bool) -> int:
    """Passed samples -> deduplicated, capped per problem -> Parquet. Returns the row count."""
    import pyarrow as pa
    import ray.data

    def pick(group: pa.Table) -> pa.Table:
        rows = select_training_rows(group.to_pylist(), max_per_problem, dedupe)
        return pa.Table.from_pylist(rows, schema=group.schema)

    from ray.data.expressions import col

    ds = ray.data.read_parquet(sample_uris).filter(expr=col("passed"))
    if ds.count() == 0:
        return 0
    ds = ds.groupby("problem_id").map_groups(pick, batch_format="pyarrow")
    ds.write_parquet(out_uri)
    import pyarrow.dataset as pads

    return pads.dataset(out_uri, format="parquet").count_rows()
