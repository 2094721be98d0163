"""The generator fleet: one `GeneratorPool` owns the generator actors for a whole run.

The pool starts one `GeneratorActor` per engine replica, knows which adapter they serve (and
loads a new one into all of them without a restart), puts them to sleep while a colocated
trainer needs the accelerator, and renders prompts (a generator has the tokenizer and chat
template).

Failures: Ray restarts a dead generator (`max_restarts`), but a restart re-runs `__init__`,
which serves the base model. So Ray never retries a generator's calls by itself
(`max_task_retries=0`); whoever called it waits for it to be back (`wait_ready`), brings it
back to the engine state it should have (`restore_generator`) and resubmits the call
(`generate_with_restarts`, used by the Ray Data flow in pipeline.py). Rows tell a restart
apart (`serves_adapter`): a restarted engine answers with `adapter` None. A generator that
stays dead raises `GeneratorLost`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import ActorDiedError, GetTimeoutError, RayActorError

from axiom_ray.config import RunConfig
from axiom_ray.generation.actor import GeneratorActor
from axiom_ray.placement import Plan
from axiom_ray.problems import Problem

log = logging.getLogger(__name__)

# Environment for the actors: no hub is reachable, and tokenizers' threads fight the engines.
ACTOR_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
# Restarts Ray grants a dead generator (OOM, node loss) before the run fails. Bounded: an engine
# that dies on every start must stop the run, not loop for ever.
GENERATOR_MAX_RESTARTS = 4
GENERATOR_CALL_ATTEMPTS = 4  # one call plus up to three resubmissions after a generator restart
RESTART_WAIT_S = 600.0  # how long to wait for a restarted generator (vLLM loads in ~20 s on CPU)
DIED_LIMIT = 3  # ActorDiedError answers to ready() before a generator counts as gone for good
# What a call to a dead or restarting actor raises (ActorDiedError and ActorUnavailableError
# are both RayActorErrors).
ACTOR_ERRORS: tuple[type[BaseException], ...] = (RayActorError,)


class GeneratorLost(RuntimeError):
    """A generator actor stayed dead (its restarts are spent) or kept failing the same call."""


# --- starting -------------------------------------------------------------------------------


def generator_options(plan: Plan, run_id: str, i: int) -> dict[str, Any]:
    """Ray options of generator replica i, named so the dashboard shows which is which. Ray
    restarts a dead one; its calls are not retried by Ray (see the module doc)."""
    return {"name": f"axiom-generator-{run_id}-{i}", "num_gpus": plan.gen_num_gpus,
            "num_cpus": plan.gen_num_cpus, "runtime_env": {"env_vars": ACTOR_ENV},
            "max_restarts": GENERATOR_MAX_RESTARTS, "max_task_retries": 0}


def generator_args(cfg: RunConfig, i: int) -> dict[str, Any]:
    """Constructor arguments of replica i: its own seed (identical seeds would give identical
    samples; a restart gets the same one back) and the generation config as it is."""
    return {"model": cfg.model, "engine": cfg.generation.engine, "seed": cfg.seed + 1000 * i,
            "cfg": cfg.generation}


def start_generators(cfg: RunConfig, plan: Plan, run_id: str, actor_class: type = GeneratorActor,
                     **actor_kwargs: Any) -> GeneratorPool:
    """One actor per engine replica, all ready; the pool that owns them. `actor_class` and
    `actor_kwargs` let a test start a subclass (tests/fault_driver.py)."""
    remote = ray.remote(actor_class)
    actors = [remote.options(**generator_options(plan, run_id, i)).remote(**generator_args(cfg, i), **actor_kwargs)
              for i in range(plan.replicas)]
    ray.get([a.ready.remote() for a in actors])
    return GeneratorPool(actors=actors, colocated=plan.colocated)


# --- one generator through a restart --------------------------------------------------------


def serves_adapter(candidates: list[dict[str, Any]], adapter_uri: str | None) -> bool:
    """Whether a generator's candidates come from the engine state the pass asked for: a
    restarted actor has lost its adapter, and its rows say so (`adapter` None)."""
    want_adapter = adapter_uri is not None
    return all((c.get("adapter") is not None) == want_adapter for c in candidates)


def wait_ready(actor: Any, wait_s: float = RESTART_WAIT_S) -> dict[str, Any]:
    """Block until the actor answers (Ray queues calls while it restarts); its ready() info."""
    deadline, died = time.monotonic() + wait_s, 0
    while True:
        try:
            return ray.get(actor.ready.remote(), timeout=max(1.0, deadline - time.monotonic()))
        except (*ACTOR_ERRORS, GetTimeoutError) as e:
            # A call sent before Ray noticed the death fails at once: ask again until it is back.
            # ActorDiedError is final once its restarts are spent: give up after a few of those.
            died += isinstance(e, ActorDiedError)
            if time.monotonic() >= deadline or died >= DIED_LIMIT:
                raise GeneratorLost(f"generator not back (after {died} deaths): {e}") from e
            time.sleep(0.5)


def restore_generator(actor: Any, adapter_uri: str | None, adapter_version: int) -> None:
    """Bring a (possibly restarted) generator back to the given engine state."""
    wait_ready(actor)
    if adapter_uri is None:
        ray.get(actor.use_base.remote())
    else:
        ray.get(actor.load_adapter.remote(adapter_uri, adapter_version))


def generate_with_restarts(actor: Any, ref: Any, resubmit: Callable[[], Any], adapter_uri: str | None,
                           adapter_version: int, what: str) -> list[dict[str, Any]]:
    """The candidates of the generate call `ref` on `actor`: when the actor dies (or answers from
    a fresh engine), wait for its restart, restore the adapter and `resubmit()` the call."""
    why = ""
    for attempt in range(GENERATOR_CALL_ATTEMPTS):
        try:
            if ref is None:
                restore_generator(actor, adapter_uri, adapter_version)
                ref = resubmit()
            out = ray.get(ref)
        except ACTOR_ERRORS as e:
            why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        else:
            if serves_adapter(out, adapter_uri):
                return out
            # Restarted between two calls: the fresh engine serves the base model.
            why = "answered from the base model instead of the adapter (it was restarted)"
        log.warning("%s, attempt %d: %s; resubmitting once it is back", what, attempt + 1, why)
        ref = None
    raise GeneratorLost(f"{what} failed {GENERATOR_CALL_ATTEMPTS} times: {why}")


# --- the fleet ------------------------------------------------------------------------------


@dataclass
class GeneratorPool:
    """The generator actors of a run and the engine state they share."""

    actors: list[Any] = field(default_factory=list)
    colocated: bool = False  # they share the accelerator with the trainer: sleep while it trains
    adapter: str | None = None  # the adapter served, as the manifest names it; None: the base model
    adapter_uri: str | None = None  # where it is read from (and reloaded after a restart)
    version: int = 0  # its LoRA int id (the iteration that trained it)
    prompts: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> problem id -> prompt

    def serves(self, adapter: str | None) -> bool:
        return adapter == self.adapter

    def load(self, adapter: str | None, adapter_uri: str | None, version: int) -> float:
        """Make every generator serve `adapter` (None: the base) in parallel, without a
        restart; a generator that dies meanwhile is waited for and loaded again once
        restarted. Returns the seconds it took."""
        t0 = time.perf_counter()
        refs = [g.use_base.remote() if adapter_uri is None else g.load_adapter.remote(adapter_uri, version)
                for g in self.actors]
        for actor, ref in zip(self.actors, refs, strict=True):
            for attempt in range(GENERATOR_CALL_ATTEMPTS):
                try:
                    if ref is None:
                        restore_generator(actor, adapter_uri, version)
                    else:
                        ray.get(ref)
                    break
                except ACTOR_ERRORS as e:
                    if attempt == GENERATOR_CALL_ATTEMPTS - 1:
                        raise GeneratorLost(f"could not load {adapter_uri or 'the base model'}: {e}") from e
                    log.warning("generator died while loading %s; retrying once it is back",
                                adapter_uri or "the base")
                    ref = None
        self.adapter, self.adapter_uri, self.version = adapter, adapter_uri, version
        return time.perf_counter() - t0

    def sleep(self) -> None:
        """Free the accelerator for a colocated trainer (nothing to do otherwise)."""
        if self.colocated:
            ray.get([g.sleep.remote() for g in self.actors])

    def wake(self) -> None:
        if self.colocated:
            ray.get([g.wake.remote() for g in self.actors])

    def prompts_for(self, kind: str, problems: list[Problem]) -> dict[str, str]:
        """Prompts rendered once per problem by a generator (it has the tokenizer and chat
        template); with the curriculum each iteration asks for another subset of the pool."""
        cache = self.prompts.setdefault(kind, {})
        missing = [p for p in problems if p.id not in cache]
        if missing:
            dicts = [p.to_dict() for p in missing]
            first = self.actors[0]
            try:
                rendered = ray.get(first.render_prompts.remote(dicts))
            except ACTOR_ERRORS:
                wait_ready(first)  # restarted: the tokenizer does not depend on state
                rendered = ray.get(first.render_prompts.remote(dicts))
            cache.update(zip([p.id for p in missing], rendered, strict=True))
        return {p.id: cache[p.id] for p in problems}

    def close(self) -> None:
        """Release the generators (and their accelerator memory) at the end of a command."""
        for g in self.actors:
            ray.kill(g)
        self.actors = []
