"""The expert-iteration driver: named, timed phases over a resumable run directory.

Model 0 is the base model; model k >= 1 is the base plus adapter k, trained on the verified
samples of model k-1 (or of every earlier model with data.accumulate). Per model k:

    train (k >= 1) -> redeploy (k >= 1) -> samples (generate + verify + write, streamed) -> eval

`samples` is model k on the training problems (the data for adapter k+1 and axiom-rl's
"Model N+1" figures; with `data.curriculum` on, a subset of that pool chosen from the earlier
iterations' samples, see curriculum.py); `eval` is model k on the whole held-out set. A phase
marked done in the manifest is never redone; one that was cut off is redone from its start into
a fresh temporary directory and published by a rename, so no half phase is ever read. Training
resumes from its last Ray Train checkpoint (kept in the run directory), so a cut-off train
phase loses at most one epoch.

The generator actors belong to one GeneratorPool (generation/pool.py): Ray restarts one that
dies (`max_restarts`), and the pool's functions reload the current adapter into it and resubmit
its prompts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
import ray.data

from axiom_ray import metrics
from axiom_ray.cluster_check import alive_node_count, alive_node_cpus, check_storage_for_cluster
from axiom_ray.config import RunConfig
from axiom_ray.curriculum import curriculum_enabled, load_records, select_problems
from axiom_ray.evaluation import (
    SUMMARY_COLUMNS,
    PassSummary,
    paired_difference,
    read_rows,
    summarize,
)
from axiom_ray.generation.pool import GeneratorPool, start_generators
from axiom_ray.models import resolve_model
from axiom_ray.pipeline import PassSpec, build_training_set, run_pass
from axiom_ray.placement import Plan, make_plan
from axiom_ray.problems import Problem, resolve_problems
from axiom_ray.rundir import DONE, FAILED, RUNNING, RunDir, RunDirError, iter_dir, now, phases_of
from axiom_ray.sandbox import LEVELS, SandboxUnavailable, detect_isolation
from axiom_ray.storage import is_local, normalize_uri
from axiom_ray.tracking import RunTracker, check_backends, open_tracking
from axiom_ray.training import EmptyTrainingSet, check_training_memory, train_adapter
from axiom_ray.training.stack import check_stack
from axiom_ray.verifier import VerifierPool, start_verifiers

log = logging.getLogger(__name__)

# The folder (and sample-id kind) of the greedy answers an `eval` phase adds to a sampled
# evaluation (evaluation.greedy).
GREEDY_KIND = "eval_greedy"


@dataclass
class Problems:
    train: list[Problem]
    eval: list[Problem]


def load_problems(cfg: RunConfig) -> Problems:
    """Resolve both pools up front so a bad id fails before any cluster resource is taken."""
    train = resolve_problems(cfg.problems)
    held_out = resolve_problems(cfg.evaluation.problems) if cfg.evaluation.problems.strip() else []
    return Problems(train=train, eval=held_out)


def default_storage(cfg: RunConfig) -> str:
    return cfg.storage or f"runs/{cfg.experiment}"


@dataclass
class Loop:
    cfg: RunConfig
    run: RunDir
    plan: Plan
    problems: Problems
    model_path: str  # the resolved base model (the embedded default's cache folder, or as given)
    pool: GeneratorPool = field(default_factory=GeneratorPool)  # empty until generators start
    tracker: RunTracker = field(default_factory=RunTracker)  # experiment trackers (none by default)
    verifiers: VerifierPool = field(default_factory=VerifierPool)  # started with the generators

    # --- phases --------------------------------------------------------------------------
    def run_all(self) -> None:
        for k in range(self.cfg.iterations + 1):
            if all(self.run.is_done(k, name) for name in self.phase_names(k)):
                # Finished before a resume: not even redeploy (its adapter is only needed by
                # phases that are done; the next iteration trains from the manifest's paths).
                log.info("[iter %d] already done, skipped", k)
                continue
            metrics.gauge("iteration", k, run=self.run.run_id)
            if k > 0:
                self.phase(k, "train", lambda k=k: self.train(k))
                self.phase(k, "redeploy", lambda k=k: self.redeploy(k), always=True)
            self.phase(k, "samples", lambda k=k: self.sample(k, "samples"))
            if self.problems.eval:
                self.phase(k, "eval", lambda k=k: self.sample(k, "eval"))

    def phase_names(self, k: int) -> tuple[str, ...]:
        return phases_of(k, with_eval=bool(self.problems.eval))

    def phase(self, k: int, name: str, fn: Callable[[], dict[str, Any]], always: bool = False) -> None:
        """Run one named phase unless the manifest says it is done; time it and log one line.
        `always` phases (redeploy) act on live actors, so they run again after a resume."""
        if self.run.is_done(k, name) and not always:
            log.info("[iter %d] %-8s already done, skipped", k, name)
            return
        metrics.gauge("iteration", k, run=self.run.run_id)
        self.run.mark(k, name, RUNNING, started_at=now())
        log.info("[iter %d] %-8s started", k, name)
        t0 = time.perf_counter()
        try:
            result = fn()
        except BaseException:
            self.run.mark(k, name, FAILED, finished_at=now(), seconds=round(time.perf_counter() - t0, 2))
            raise
        seconds = round(time.perf_counter() - t0, 2)
        self.run.mark(k, name, DONE, finished_at=now(), seconds=seconds, metrics=result)
        metrics.gauge("phase_seconds", seconds, run=self.run.run_id, phase=name)
        self.tracker.log_phase(k, name, seconds)
        log.info("[iter %d] %-8s done in %.1fs: %s", k, name, seconds, _summary(result))

    def sample(self, k: int, kind: str) -> dict[str, Any]:
        """Model k on the training pool (`samples`) or the held-out set (`eval`; with
        evaluation.greedy and a sampled evaluation, also one greedy answer per problem into
        `iter_k/eval_greedy`, the same phase)."""
        self.ensure_adapter(k)
        cfg = self.cfg
        if kind == "samples":
            # The curriculum narrows the training pool only; evaluation always scores the whole
            # held-out set, so every model is compared on the same problems.
            gen = cfg.generation
            return self.run_kind(k, kind, self.training_problems(k), gen.samples, gen.temperature, gen.max_attempts)
        ev = cfg.evaluation
        stats = self.run_kind(k, kind, self.problems.eval, ev.samples, ev.temperature, 1)
        if ev.greedy and ev.temperature > 0:
            stats["greedy"] = self.run_kind(k, GREEDY_KIND, self.problems.eval, 1, 0.0, 1)
        return stats

    def run_kind(self, k: int, kind: str, problems: list[Problem], n: int, temperature: float,
                 attempts: int) -> dict[str, Any]:
        """One pass (and its resampling attempts) into `iter_k/<kind>`, published whole; its
        figures (evaluation.PassSummary) as the phase's manifest metrics."""
        cfg, run, pool = self.cfg, self.run, self.pool
        prompts = pool.prompts_for(kind, problems)
        final = f"{iter_dir(k)}/{kind}"
        run.storage.clean_temps(iter_dir(k))
        tmp = run.storage.temp_name(final)
        verify_problems = {p.id: p.to_dict() for p in problems}
        todo = dict(prompts)
        t0 = time.perf_counter()
        for attempt in range(attempts):
            spec = PassSpec(
                run_id=run.run_id, iteration=k, kind=kind, attempt=attempt, n=n, temperature=temperature,
                top_p=cfg.generation.top_p, max_tokens=cfg.generation.max_tokens, seed=cfg.seed,
                adapter=pool.adapter, adapter_version=pool.version, adapter_uri=pool.adapter_uri)
            run_pass(generators=pool.actors, verifiers=self.verifiers, prompts=todo, spec=spec,
                     verify_problems=verify_problems, generate_batch_size=cfg.generation.batch_size,
                     verifier_batch_size=cfg.verifier.batch_size, out_uri=run.uri(tmp))
            summary = summarize(read_rows(run.uri(tmp), SUMMARY_COLUMNS)).timed(time.perf_counter() - t0)
            todo = {pid: p for pid, p in todo.items() if pid not in summary.solved_ids}
            if not todo:
                break
        run.storage.publish(tmp, final)
        stats = summary.phase_metrics(len(problems))
        stats["paired"] = self.paired_stats(k, kind, summary)
        curriculum = run.iteration(k).curriculum
        if kind == "samples" and curriculum is not None:
            stats["curriculum"] = {key: v for key, v in curriculum.items() if key != "ids"}
        metrics.record_pass(summary, run=run.run_id, kind=kind)
        self.tracker.log_pass(k, kind, summary, stats)
        return stats

    def paired_stats(self, k: int, kind: str, current: PassSummary) -> dict[str, Any]:
        """Model k against the base and against model k-1 on this pass's problems: the paired
        bootstrap difference of pass@1 (evaluation.PairedDifference), for the manifest."""
        if k == 0:
            return {}
        out = {}
        for label, j in (("vs_base", 0), ("vs_previous", k - 1)):
            if self.run.is_done(j, "eval" if kind == GREEDY_KIND else kind):
                earlier = summarize(read_rows(self.run.uri(iter_dir(j), kind), SUMMARY_COLUMNS))
                diff = paired_difference(earlier, current)
                log.info("[iter %d] %s pass@1 %s: %s", k, kind, label, diff.describe())
                out[label] = diff.to_dict()
        return out

    def training_problems(self, k: int) -> list[Problem]:
        """The problems model k samples: the whole pool, or the curriculum's choice from the
        earlier iterations' samples, recorded in the manifest (`iterations.K.curriculum`)."""
        data, pool = self.cfg.data, self.problems.train
        if not curriculum_enabled(data.curriculum, len(pool)):
            return pool
        done = [(j, self.run.uri(iter_dir(j), "samples")) for j in range(k) if self.run.is_done(j, "samples")]
        if len(done) < k:  # e.g. `axiom generate --iteration K` on a run without model K-1's samples
            log.warning("[iter %d] curriculum: samples of iterations %s missing; choosing from the rest", k,
                        sorted(set(range(k)) - {j for j, _ in done}))
        selection = select_problems(
            pool, load_records(done), iteration=k, seed=self.cfg.seed, size=data.curriculum_size,
            explore=data.curriculum_explore, step_up=data.curriculum_step_up).to_dict()
        recorded = self.run.iteration(k).curriculum
        if recorded and recorded.get("ids") != selection["ids"]:
            # Same seed and Parquet give the same choice; a difference means the rules changed
            # since (another version of this code): keep the recorded one, the manifest's word.
            log.warning("[iter %d] curriculum: recomputed choice differs from the manifest's; using the "
                        "manifest's", k)
            selection = recorded
        self.run.iteration(k).curriculum = selection
        self.run.save()
        by_id = {p.id: p for p in pool}
        log.info("[iter %d] curriculum: %d of %d problems, frontier %s, %s", k, len(selection["ids"]), len(pool),
                 selection["frontier"], selection["chosen"])
        return [by_id[pid] for pid in selection["ids"] if pid in by_id]

    def train(self, k: int) -> dict[str, Any]:
        cfg, run = self.cfg, self.run
        sources = range(k) if cfg.data.accumulate else [k - 1]
        sample_uris = [run.uri(iter_dir(j), "samples") for j in sources]
        run.storage.clean_temps(iter_dir(k))
        train_rel = f"{iter_dir(k)}/train"
        tmp = run.storage.temp_name(train_rel)
        rows = build_training_set(sample_uris, run.uri(tmp), cfg.data.max_per_problem, cfg.data.dedupe)
        if rows == 0:
            return self.skip_training(k, "no verified samples")
        run.storage.publish(tmp, train_rel)
        init = None if cfg.training.from_base or k == 1 else run.adapter(k - 1)
        adapter_rel = f"{iter_dir(k)}/adapter"
        adapter_tmp = run.storage.temp_name(adapter_rel)
        self.pool.sleep()
        released = self.release_verifiers()
        try:
            result = train_adapter(
                base_model=self.model_path, train_path=run.uri(train_rel), adapter_dir=run.uri(adapter_tmp),
                cfg=cfg.training, storage_path=run.uri(iter_dir(k)), run_name="checkpoints",
                init_adapter=run.resolve(init) if init else None, use_gpu=self.plan.train_use_gpu)
        except EmptyTrainingSet as e:  # e.g. every verified example longer than max_seq_len
            return self.skip_training(k, str(e))
        finally:
            self.pool.wake()
            if released:
                self.start_verifiers()
        run.storage.publish(adapter_tmp, adapter_rel)
        run.set_adapter(k, adapter_rel)
        out = {key: getattr(result, key) for key in (
            "examples", "dropped", "steps", "tokens", "train_seconds", "fit_seconds", "final_loss",
            "tokens_per_second", "resumed_from_epoch", "val_examples", "val_losses", "best_epoch",
            "stack", "global_batch", "peak_memory_mb")}
        metrics.gauge("train_loss", result.final_loss, run=run.run_id)
        metrics.gauge("train_tokens_per_second", result.tokens_per_second, run=run.run_id)
        self.tracker.log_training(k, result)
        self.tracker.log_adapter(k, run.uri(adapter_rel))
        return out

    def skip_training(self, k: int, why: str) -> dict[str, Any]:
        """Nothing to learn from: model k is model k-1, and the next round samples it again."""
        self.run.set_adapter(k, self.run.adapter(k - 1))
        log.warning("[iter %d] no training (%s); model %d = model %d", k, why, k, k - 1)
        return {"examples": 0, "skipped": why}

    def redeploy(self, k: int) -> dict[str, Any]:
        seconds = self.ensure_adapter(k)
        return {"adapter": self.pool.adapter, "seconds": round(seconds, 3)}

    def start_pool(self) -> None:
        """Start the generator actors (through the module's `start_generators`, which the
        fault and resume tests replace by scripted generators) and the verifier actors, which
        start their fork servers meanwhile; both serve every pass of the run."""
        t0 = time.perf_counter()
        self.verifiers = self.new_verifiers()
        self.pool = start_generators(self.cfg, self.plan, self.run.run_id)
        self.verifiers.wait_ready()
        log.info("generators and %d verifier(s) ready in %.1fs", len(self.verifiers.actors),
                 time.perf_counter() - t0)

    def new_verifiers(self) -> VerifierPool:
        return start_verifiers(self.cfg.verifier, self.plan, self.run.run_id, start=self.verifiers.starts)

    def release_verifiers(self) -> bool:
        """Stop the verifiers for training where the plan has no room for them beside the
        trainer (placement.Plan.release_verifiers_to_train); whether it did."""
        if not (self.plan.release_verifiers_to_train and self.verifiers.actors):
            return False
        self.verifiers.close()
        return True

    def start_verifiers(self) -> None:
        t0 = time.perf_counter()
        self.verifiers = self.new_verifiers()
        self.verifiers.wait_ready()
        log.info("%d verifier(s) back after training in %.1fs", len(self.verifiers.actors), time.perf_counter() - t0)

    def close(self, finished: bool = False) -> None:
        """Release the generators (and their accelerator memory) and the verifiers at the end of
        a command, and end the tracker runs (`finished`: the command completed, else they are
        marked failed)."""
        self.pool.close()
        self.verifiers.close()
        self.tracker.close(finished)

    def write_report(self) -> dict[str, str]:
        """The run's report (report.md, report.html, plots/) in the run directory, local or URI,
        and, with a tracker, as its artifacts (trackers take local files)."""
        from axiom_ray.report import write_report  # lazy: matplotlib

        paths = write_report(self.run.storage.root)
        if self.tracker.enabled and is_local(self.run.storage.root):
            self.tracker.log_report(paths)
        return paths

    def ensure_adapter(self, k: int) -> float:
        """Make the live generators serve model k (no restart): load its adapter if needed.
        (A generator restarted since is caught by the pass, which reloads it.)"""
        want = self.run.adapter(k)
        if self.pool.serves(want):
            return 0.0
        seconds = self.pool.load(want, self.run.resolve(want) if want else None, k)
        metrics.gauge("adapter_swap_seconds", seconds, run=self.run.run_id)
        return seconds


def check_isolation(cfg: RunConfig) -> None:
    """Fail before any actor starts when this machine cannot sandbox at the configured level
    (each verifier checks again on its own node)."""
    report = detect_isolation()
    if LEVELS.index(report.level) < LEVELS.index(cfg.verifier.min_isolation):
        raise SandboxUnavailable(
            f"the sandbox reaches isolation level {report.level!r} here, below verifier.min_isolation="
            f"{cfg.verifier.min_isolation!r}: {report.describe()}")
    log.info("sandbox isolation: %s", report.level)


def prepare(cfg: RunConfig, fork: bool = False, with_generators: bool = True) -> Loop:
    """Check every input before taking cluster resources, open the run, plan, start generators."""
    problems = load_problems(cfg)
    check_backends(cfg.tracking)
    check_isolation(cfg)
    model_path = resolve_model(cfg.model)  # a missing folder fails here, before any cluster work
    if not ray.is_initialized():
        ray.init(log_to_driver=True)
    # Passes log their own one-line progress (pipeline.PassProgress); Ray Data's status blocks
    # (the training set's build) stay in the dashboard, out of the job log.
    ray.data.DataContext.get_current().enable_progress_bars = False
    # Refuse a node-local run directory on a multi-node cluster and a plan the cluster cannot
    # fit before anything is written.
    uri = normalize_uri(default_storage(cfg))
    nodes = ray.nodes()
    check_storage_for_cluster(uri, alive_node_count(nodes), shared=cfg.shared_storage)
    plan = make_plan(cfg, ray.cluster_resources(), node_cpus=alive_node_cpus(nodes))
    check_stack(cfg.training, plan.train_use_gpu)  # e.g. 4bit without bitsandbytes: refuse now
    check_training_memory(cfg.training, model_path, nodes, use_gpu=plan.train_use_gpu,
                          gpus_per_worker=plan.train_gpus_per_worker)
    log.info("plan: %s", plan.describe())
    run = RunDir.open_or_create(uri, cfg, fork=fork)
    run.manifest.set_problems([p.id for p in problems.train], [p.id for p in problems.eval])
    run.save()
    log.info("run %s in %s", run.run_id, run.storage.root)
    loop = Loop(cfg=cfg, run=run, plan=plan, problems=problems, model_path=model_path)
    if with_generators:
        loop.start_pool()
    return loop


def run_iterations(cfg: RunConfig, fork: bool = False) -> RunDir:
    """The whole loop."""
    loop = prepare(cfg, fork=fork)
    loop.tracker = open_tracking(cfg, loop.run)
    finished = False
    try:
        loop.run_all()
        loop.write_report()
        finished = True
    finally:
        loop.close(finished)
    return loop.run


PHASE_OF_COMMAND = {"generate": "samples", "train": "train", "evaluate": "eval"}


def run_single_phase(cfg: RunConfig, command: str, iteration: int | None = None,
                     adapter: str | None = None, force: bool = False) -> RunDir:
    """`axiom generate|train|evaluate`: one phase of model K on a run directory. `adapter`
    makes model K the base plus that adapter (to score any adapter on any problem set)."""
    name = PHASE_OF_COMMAND[command]
    k = iteration if iteration is not None else (1 if name == "train" else 0)
    loop = prepare(cfg, with_generators=False)
    run = loop.run
    if adapter:
        run.set_adapter(k, normalize_uri(adapter))
    _check_prerequisites(run, k, name)
    if name == "eval" and not loop.problems.eval:
        raise RunDirError("no evaluation problems: pass --eval-problems")
    if force:
        run.mark(k, name, "forced")
    loop.tracker = open_tracking(cfg, run)  # after the checks: a refused command is no tracker run
    fns = {"samples": lambda: loop.sample(k, "samples"), "train": lambda: loop.train(k),
           "eval": lambda: loop.sample(k, "eval")}
    finished = False
    try:
        if name != "train":
            loop.start_pool()
        loop.phase(k, name, fns[name])
        finished = True
    finally:
        loop.close(finished)
    return run


def _check_prerequisites(run: RunDir, k: int, name: str) -> None:
    if name == "train":
        if k < 1:
            raise RunDirError("train: --iteration must be >= 1 (adapter K learns from model K-1's samples)")
        if not run.is_done(k - 1, "samples"):
            raise RunDirError(f"adapter {k} trains on the samples of model {k - 1}, which are not there "
                              f"yet: run `axiom generate --iteration {k - 1}` first")
    elif k > 0 and run.adapter(k) is None:
        raise RunDirError(f"model {k} has no adapter yet: run `axiom train --iteration {k}` first "
                          "(or pass --adapter)")


def _summary(result: dict[str, Any]) -> str:
    keys = ("candidates", "passed", "pass_rate", "solved", "problems", "tokens_per_s", "examples",
            "final_loss", "tokens_per_second", "seconds", "adapter")
    return ", ".join(f"{k}={result[k]}" for k in keys if k in result)
