"""One sampling pass, streamed: prompts -> generators -> verifiers -> Parquet; and the SFT set.

`run_pass` drives the run's long-lived actors from the driver, through their own queues:
- each generator replica gets all its prompts in one streaming call
  (`GeneratorActor.generate_stream`): the engine batches them continuously and hands back each
  prompt's candidates the moment they are finished, while it decodes the rest;
- candidates go to the verifier pool (verifier.VerifyStage, started once per run with warm fork
  servers, each judging `verifier.concurrency` candidates at once) in blocks of up to
  `verifier.batch_size` as they arrive: a block is sent at once where a judge is free, and
  while generating one more waits behind a verifier's judges, so judges never wait for the end
  of generation and generation never waits for a judge. Once the last candidate is in, what is
  left goes out in smaller blocks, a share per judge (VerifierQueue), so a pass's slow last
  candidates spread over every judge;
- each verifier writes its block's rows, with their verdicts, as one Parquet file, so nothing
  holds a whole pass in one process.
The driver logs one progress line per pass every PROGRESS_LOG_S (generated, judged, passed,
tokens/s, ETA) and sets the same figures as dashboard gauges (metrics.py).

Failures inside a pass lose and double nothing:
- a generator actor that dies is restarted by Ray (generation/pool.py starts them with
  `max_restarts`); the pass waits for it, loads the pass's adapter into the fresh engine (a
  restart re-runs `__init__`, which serves the base model) and resubmits that replica's prompts,
  the same list in the same order, keeping the candidates of prompts it already had. Sampling
  seeds depend only on the replica, the pass and the problem (and the transformers engine's
  chunks on the list), so the resubmitted prompts give the candidates the lost call would have;
- a verifier that dies is restarted by Ray and its call retried (verifier.start_verifiers:
  `max_restarts=-1, max_task_retries=-1`): judging is a pure function of the rows and a block
  rewrites the same file name, so no row is lost or doubled.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import ray
import ray.data
from ray.data.expressions import col

from axiom_ray import metrics
from axiom_ray.generation.engines import Sampling
from axiom_ray.generation.pool import (
    ACTOR_ERRORS,
    GENERATOR_CALL_ATTEMPTS,
    GeneratorLost,
    restore_generator,
    serves_adapter,
)
from axiom_ray.samples import (
    Candidate,
    code_hash,
    generation_row,
    sample_id,
    select_training_rows,
)
from axiom_ray.verifier import PassProblems, VerifierPool

log = logging.getLogger(__name__)

PROGRESS_LOG_S = 15.0  # a pass's progress line in the job log, this often (and once at its end)
GAUGES_S = 2.0  # its dashboard gauges, this often


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

    def sampling(self) -> Sampling:
        """What the generators are asked for: this pass's sampling, with its own seed."""
        return Sampling(n=self.n, temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                        seed=pass_seed(self))


def pass_seed(spec: PassSpec) -> int:
    """The sampling seed of one pass: fixed by the run seed and the pass's identity, so every
    iteration, kind and resampling attempt draws fresh samples (generators mix in their replica
    seed and the problem id, so batching never changes a problem's samples)."""
    key = f"{spec.seed}/{spec.iteration}/{spec.kind}/{spec.attempt}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little") & 0x7FFFFFFF


def candidate_row(spec: PassSpec, cand: Candidate, prompt: str, created: str) -> dict[str, Any]:
    """The sample row of one candidate, without its verdict (the verifier adds it)."""
    pid = cand["problem_id"]
    return generation_row(
        run_id=spec.run_id,
        iteration=spec.iteration,
        problem_id=pid,
        sample_id=sample_id(spec.run_id, spec.iteration, pid, spec.kind, spec.attempt, cand["index"]),
        prompt=prompt,
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
    return {key: [r[key] for r in rows] for key in rows[0]}


def replica_requests(prompts: dict[str, str], entry_points: dict[str, str], replicas: int,
                     batch_size: int) -> dict[int, list[dict[str, Any]]]:
    """Each replica's requests, in prompt order: consecutive runs of `batch_size` prompts go to
    the replicas in turn (so a problem's replica, and with it its samples, depend only on its
    position in the pass)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for i, (pid, prompt) in enumerate(prompts.items()):
        req = {"problem_id": pid, "prompt": prompt, "entry_point": entry_points.get(pid)}
        out.setdefault((i // batch_size) % replicas, []).append(req)
    return out


class ReplicaStream:
    """One replica's streaming generate call for a pass, through restarts: candidates of each
    prompt once, whatever the actor went through."""

    def __init__(self, replica: int, actor: Any, requests: list[dict[str, Any]], spec: PassSpec) -> None:
        self.replica, self.actor, self.requests, self.spec = replica, actor, requests, spec
        self.received: set[str] = set()  # problem ids whose candidates arrived
        self.failures = 0
        self.stream = self._submit()

    def _submit(self) -> Any:
        return self.actor.generate_stream.options(num_returns="streaming").remote(self.requests, self.spec.sampling())

    def take(self) -> list[Candidate] | None:
        """The candidates its stream holds next (call when ray.wait says it is ready): new
        ones, [] after a restart or a repeat, None once every prompt's candidates are in."""
        try:
            cands = ray.get(next(self.stream))
        except StopIteration:
            missing = len(self.requests) - len(self.received)
            if missing:
                self._resubmit(f"its stream ended without {missing} prompt(s)")
                return []
            return None
        except ACTOR_ERRORS as e:
            self._resubmit(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            return []
        if not serves_adapter(cands, self.spec.adapter_uri):
            self._resubmit("answered from the base model instead of the adapter (it was restarted)")
            return []
        new = [c for c in cands if c["problem_id"] not in self.received]
        self.received.update(c["problem_id"] for c in new)
        return new

    def _resubmit(self, why: str) -> None:
        self.failures += 1
        what = f"generator {self.replica} ({len(self.requests)} prompts)"
        if self.failures >= GENERATOR_CALL_ATTEMPTS:
            raise GeneratorLost(f"{what} failed {self.failures} times: {why}")
        log.warning("%s, attempt %d: %s; resubmitting once it is back", what, self.failures, why)
        restore_generator(self.actor, self.spec.adapter_uri, self.spec.adapter_version)
        self.stream = self._submit()


@dataclass
class PassProgress:
    """A pass's running figures: what the progress line and the gauges show."""

    expected: int  # candidates the pass will have
    started: float = field(default_factory=time.perf_counter)
    generated: int = 0
    judged: int = 0
    passed: int = 0
    tokens: int = 0
    blocks: int = 0  # verifier blocks sent
    first_verdict_s: float | None = None  # seconds into the pass when the first block was judged
    generation_end_s: float | None = None  # ... when the last candidate arrived

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def tokens_per_s(self) -> float:
        return self.tokens / max(self.elapsed(), 1e-9)

    def eta_s(self) -> float | None:
        """Seconds left at the pass's pace so far (None before the first verdict)."""
        if not self.judged:
            return None
        return self.elapsed() * (self.expected - self.judged) / self.judged

    def line(self, spec: PassSpec) -> str:
        eta = self.eta_s()
        return (f"[iter {spec.iteration}] {spec.kind} attempt {spec.attempt}: {self.generated}/{self.expected} "
                f"generated, {self.judged} judged, {self.passed} passed, {self.tokens_per_s():.0f} tok/s, "
                f"{self.elapsed():.0f}s, ETA {'?' if eta is None else f'{eta:.0f}s'}")

    def to_gauges(self, spec: PassSpec) -> None:
        tags = {"run": spec.run_id, "kind": spec.kind}
        metrics.gauge("pass_samples_generated", self.generated, **tags)
        metrics.gauge("pass_samples_judged", self.judged, **tags)
        metrics.gauge("pass_samples_passed", self.passed, **tags)
        metrics.gauge("pass_tokens_per_second", self.tokens_per_s(), **tags)
        metrics.gauge("pass_eta_seconds", self.eta_s() or 0.0, **tags)


class VerifierQueue:
    """Blocks of rows to the verifier actors, each block one Parquet file under `out_uri`.

    A verifier with `judges` Judges (verifier.concurrency; its calls share them) gets a block
    whenever a Judge is free; while the generators still produce, also one block queued behind
    its Judges (so none idles while the driver routes the next), and partial blocks only where a
    Judge would otherwise idle. After the last candidate is in, blocks go only to free Judges and
    shrink to a share of what is left per Judge (guided scheduling), so slow candidates at the
    end of a pass do not queue behind each other while another Judge has nothing to do."""

    def __init__(self, verifiers: VerifierPool, problems: PassProblems, batch_size: int, out_uri: str,
                 prefix: str) -> None:
        self.verifiers, self.problems, self.batch_size = verifiers.actors, problems, batch_size
        self.judges = verifiers.concurrency or [1] * len(self.verifiers)
        self.out_uri, self.prefix = out_uri.rstrip("/"), prefix
        self.pending: list[dict[str, Any]] = []
        self.load = [0] * len(self.verifiers)
        self.inflight: dict[Any, int] = {}  # ref -> verifier index
        self.sent = 0

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.pending.extend(rows)

    def dispatch(self, generating: bool) -> None:
        """Send what can go now (see the class doc)."""
        while self.pending:
            i = min(range(len(self.verifiers)), key=lambda j: self.load[j] / self.judges[j])
            judge_free = self.load[i] < self.judges[i]
            if generating:
                full = len(self.pending) >= self.batch_size
                if self.load[i] > self.judges[i] or not (full or judge_free):
                    return
                size = self.batch_size
            else:
                if not judge_free:
                    return
                size = min(self.batch_size, math.ceil(len(self.pending) / sum(self.judges)))
            block, self.pending = self.pending[:size], self.pending[size:]
            uri = f"{self.out_uri}/{self.prefix}-{self.sent:05d}.parquet"
            ref = self.verifiers[i].judge_block.remote(_columns(block), self.problems, uri)
            self.inflight[ref] = i
            self.load[i] += 1
            self.sent += 1

    def done(self, ref: Any) -> dict[str, Any]:
        self.load[self.inflight.pop(ref)] -= 1
        return ray.get(ref)


def run_pass(
    *,
    generators: list[Any],
    verifiers: VerifierPool,
    prompts: dict[str, str],
    spec: PassSpec,
    verify_problems: dict[str, dict[str, Any]],
    generate_batch_size: int,
    verifier_batch_size: int,
    out_uri: str,
) -> PassProgress:
    """Stream one pass to Parquet under `out_uri` (appending: resampling attempts share it, each
    attempt's files named apart); its final figures."""
    entry_points = {pid: p["entry_point"] for pid, p in verify_problems.items()}
    streams = [ReplicaStream(r, generators[r], reqs, spec)
               for r, reqs in replica_requests(prompts, entry_points, len(generators), generate_batch_size).items()]
    problems = PassProblems(PassProblems.key_of(verify_problems), ray.put(verify_problems))
    queue = VerifierQueue(verifiers, problems, verifier_batch_size, out_uri, f"{spec.kind}-a{spec.attempt}")
    progress = PassProgress(expected=len(prompts) * spec.n)
    next_log, next_gauges = PROGRESS_LOG_S, 0.0
    while streams or queue.pending or queue.inflight:
        waitables = [s.stream for s in streams] + list(queue.inflight)
        timeout = max(0.05, min(next_log, next_gauges + GAUGES_S) - progress.elapsed())
        ready, _ = ray.wait(waitables, num_returns=1, timeout=timeout) if waitables else ([], [])
        for item in ready:
            stream = next((s for s in streams if s.stream is item), None)
            if stream is None:
                counts = queue.done(item)
                if progress.first_verdict_s is None:
                    progress.first_verdict_s = progress.elapsed()
                progress.judged += counts["rows"]
                progress.passed += counts["passed"]
                continue
            cands = stream.take()
            if cands is None:
                streams.remove(stream)
                if not streams:
                    progress.generation_end_s = progress.elapsed()
            elif cands:
                created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
                queue.add([candidate_row(spec, c, prompts[c["problem_id"]], created) for c in cands])
                progress.generated += len(cands)
                progress.tokens += sum(int(c["num_tokens"]) for c in cands)
        queue.dispatch(generating=bool(streams))
        progress.blocks = queue.sent
        if progress.elapsed() >= next_gauges:
            progress.to_gauges(spec)
            next_gauges = progress.elapsed() + GAUGES_S
        if progress.elapsed() >= next_log:
            log.info("%s", progress.line(spec))
            next_log = progress.elapsed() + PROGRESS_LOG_S
    progress.to_gauges(spec)
    log.info("%s (done, %d verifier blocks)", progress.line(spec), queue.sent)
    return progress


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
