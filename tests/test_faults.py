"""Failures inside a run, on the session's real Ray cluster: each fault is injected at a seeded
random point (logged) while the loop runs in a thread of this process.

- a verifier actor (Ray Data's VerifyStage pool) SIGKILLed mid-pass: Ray Data restarts it and
  judges its batch again; every candidate is in the Parquet output once, with its verdict;
- a generator actor SIGKILLed mid-pass: Ray restarts it, the pipeline reloads the pass's adapter
  and resubmits its prompts; the rows equal those of an undisturbed pass on the same actors;
- a Ray Train worker SIGKILLed after an epoch checkpoint: Ray Train restarts it (FailureConfig),
  training resumes from the checkpoint, and the adapter has the configured shape and loads, in
  peft and in the live generator;
- a node removed mid-pass from a simulated multi-node cluster (tests/node_failure_scenario.py,
  in a subprocess): the generator, routing and verifier actors on it come back on the other node
  and the pass finishes with every row once.

Generators are the scripted test double of tests/fault_driver.py (the tiny model; correct, slow
answers where a test needs passing or slowly judged candidates; slowed calls).
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fault_driver import slow_solutions, start_scripted_generators, write_verified_samples
from tiny_model import tiny_assets

from axiom_ray.config import build_config
from axiom_ray.generation.engines import Sampling
from axiom_ray.loop import Loop, prepare
from axiom_ray.rundir import RunDir

log = logging.getLogger(__name__)
WAIT_S = 300  # for a fault point or a phase: generous, the machine's cores are shared


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_assets(tmp_path_factory.getbasetemp())


def config(model: str, storage: Path, *extra: str) -> Any:
    return build_config(overrides=[
        f"model={model}", f"storage={storage}", "generation.engine=transformers", "generation.max_tokens=8",
        "generation.batch_size=1", "evaluation.problems=", "verifier.workers=1", *extra])


class PhaseThread(threading.Thread):
    """One loop phase in a thread, so the test thread can inject a fault meanwhile."""

    def __init__(self, loop: Loop, k: int, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.loop, self.k, self.name_, self.fn = loop, k, name, fn
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.loop.phase(self.k, self.name_, self.fn)
        except BaseException as e:  # re-raised in the test thread by finish()
            self.error = e

    def finish(self) -> dict[str, Any]:
        self.join(WAIT_S)
        assert not self.is_alive(), f"phase {self.name_} did not finish"
        if self.error is not None:
            raise self.error
        return self.loop.run.phase(self.k, self.name_)


def wait_for(what: str, predicate: Callable[[], Any], thread: threading.Thread) -> Any:
    deadline = time.monotonic() + WAIT_S
    while not (value := predicate()):
        assert thread.is_alive(), f"the phase ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def alive_actors(address: str, fragment: str) -> list[Any]:
    from ray.util.state import list_actors

    actors = list_actors(address=address, filters=[("state", "=", "ALIVE")], limit=1000,
                         raise_on_missing_output=False)
    return [a for a in actors if fragment in a.class_name]


def running_on(address: str, actor_id: str) -> list[Any]:
    """The actor's method calls the State API reports RUNNING (reports lag about a second)."""
    from ray.util.state import list_tasks

    tasks = list_tasks(address=address, filters=[("actor_id", "=", actor_id), ("state", "=", "RUNNING")],
                       limit=100, raise_on_missing_output=False)
    return [t for t in tasks if t.type == "ACTOR_TASK"]


def running_tasks(address: str, name: str) -> list[Any]:
    from ray.util.state import list_tasks

    return list_tasks(address=address, filters=[("name", "=", name), ("state", "=", "RUNNING")],
                      limit=100, raise_on_missing_output=False)


def parquet_rows(folder: Path) -> int:
    return sum(pq.read_metadata(p).num_rows for p in folder.glob("*.parquet"))


def temp_rows(run_dir: Path, k: int, kind: str) -> int:
    return sum(parquet_rows(d) for d in (run_dir / f"iter_{k}").glob(f".tmp-{kind}-*"))


def sigkill(pid: int, what: str) -> None:
    log.warning("fault: SIGKILL %s (pid %d)", what, pid)
    os.kill(pid, signal.SIGKILL)


def test_a_verifier_killed_mid_pass_loses_and_doubles_nothing(ray_cluster, tiny, tmp_path, monkeypatch):
    rng = random.Random(4101)
    jitter = rng.uniform(0.0, 5.0)
    log.warning("verifier fault: seed 4101, kill in the first verify batch running %.2fs after the "
                "verifier's first batch started", jitter)
    address = ray_cluster.get_runtime_context().gcs_address
    storage = tmp_path / "run"
    # Every candidate correct but slow to judge (~0.8 s: 8 tests x 0.1 s): 12 candidates in
    # batches of 4 keep the verifier busy ~10 s, ~3 s a batch (longer than the State API's
    # ~1 s lag in reporting a task RUNNING), so the kill lands inside a batch.
    cfg = config(tiny["model"], storage, "iterations=0", "problems=reverse_string,is_palindrome,fizzbuzz",
                 "generation.samples=4", "verifier.batch_size=4")
    monkeypatch.setattr("axiom_ray.loop.start_generators", _scripted(solutions=slow_solutions(0.1), solved=4))
    loop = prepare(cfg)
    try:
        thread = PhaseThread(loop, 0, "samples", lambda: loop.sample(0, "samples"))
        thread.start()
        [verifier] = wait_for("the verifier actor", lambda: alive_actors(address, "VerifyStage"), thread)
        wait_for("a verify batch", lambda: running_on(address, verifier.actor_id), thread)
        time.sleep(jitter)
        wait_for("a verify batch in flight", lambda: running_on(address, verifier.actor_id), thread)
        before = temp_rows(storage, 0, "samples")
        sigkill(verifier.pid, f"verifier actor {verifier.actor_id[:8]}")
        metrics = thread.finish().metrics
    finally:
        loop.close()

    rows = pq.read_table(storage / "iter_0/samples").to_pylist()
    ids = [r["sample_id"] for r in rows]
    log.warning("verifier fault: %d rows written at the kill, %d after (expected 12, %d distinct)",
                before, len(rows), len(set(ids)))
    assert before < 12, "the pass was over before the kill"
    assert len(rows) == 12 and len(set(ids)) == 12 and metrics["candidates"] == 12
    assert {(r["problem_id"], r["index"]) for r in rows} == {
        (p, i) for p in ("reverse_string", "is_palindrome", "fizzbuzz") for i in range(4)}
    assert all(r["passed"] and r["status"] == "passed" for r in rows), "a candidate lost its verdict"
    [restarted] = _actors(address, verifier.actor_id)
    assert restarted.num_restarts >= 1 and restarted.pid != verifier.pid
    # The batch it was judging was sent again (a second attempt of that Ray Data task).
    assert retried_tasks(address, verifier.actor_id), "no verifier batch was retried"


def test_a_generator_killed_mid_pass_is_restarted_reloaded_and_its_prompts_resubmitted(
        ray_cluster, tiny, tmp_path, monkeypatch):
    import ray

    rng = random.Random(4102)
    victim, jitter = rng.randrange(2), rng.uniform(0.0, 0.8)
    log.warning("generator fault: seed 4102, kill replica %d %.2fs into one of its generate calls",
                victim, jitter)
    address = ray_cluster.get_runtime_context().gcs_address
    problems = "problems=two_sum,fizzbuzz,reverse_string,is_palindrome"
    cfg = config(tiny["model"], tmp_path / "run", "iterations=1", problems, "generation.samples=2",
                 "generation.replicas=2")
    # No scripted answers: every row is the tiny model's own sample, with adapter 1 loaded.
    monkeypatch.setattr("axiom_ray.loop.start_generators", _scripted(solutions={}, generate_delay_s=1.0))
    loop = prepare(cfg)
    try:
        loop.run.set_adapter(1, tiny["adapter1"])
        pids = [ray.get(g.ready.remote())["pid"] for g in loop.pool.actors]
        thread = PhaseThread(loop, 1, "samples", lambda: loop.sample(1, "samples"))
        thread.start()
        wait_for(f"a generate call on replica {victim}",
                 lambda: any(t.worker_pid == pids[victim] for t in running_tasks(address, "ScriptedGenerator.generate_stream")),
                 thread)
        time.sleep(jitter)
        before = temp_rows(tmp_path / "run", 1, "samples")
        sigkill(pids[victim], f"generator replica {victim}")
        thread.finish()
        after = ray.get(loop.pool.actors[victim].ready.remote())
        # An undisturbed pass of the same model on the same (now restored) actors, elsewhere.
        clean = replace(loop, run=RunDir.open_or_create(str(tmp_path / "clean"), cfg),
                        pool=replace(loop.pool, adapter=None))
        clean.run.set_adapter(1, tiny["adapter1"])
        clean.phase(1, "samples", lambda: clean.sample(1, "samples"))
    finally:
        loop.close()

    rows = pq.read_table(tmp_path / "run/iter_1/samples").to_pylist()
    ids = [r["sample_id"] for r in rows]
    log.warning("generator fault: %d rows written at the kill, %d after (expected 8, %d distinct)",
                before, len(rows), len(set(ids)))
    assert after["pid"] != pids[victim] and after["adapter"] is not None, "not restarted with the adapter"
    assert len(rows) == 8 and len(set(ids)) == 8
    assert {r["adapter"] for r in rows} == {tiny["adapter1"]}
    reference = pq.read_table(tmp_path / "clean/iter_1/samples").to_pylist()
    assert {(r["problem_id"], r["index"]): r["completion"] for r in rows} == {
        (r["problem_id"], r["index"]): r["completion"] for r in reference}


def test_a_train_worker_killed_resumes_from_its_checkpoint(ray_cluster, tiny, tmp_path, monkeypatch):
    import ray

    rng = random.Random(4103)
    jitter = rng.uniform(0.0, 0.4)
    log.warning("train fault: seed 4103, kill the worker %.2fs after the first epoch checkpoint", jitter)
    address = ray_cluster.get_runtime_context().gcs_address
    storage = tmp_path / "run"
    cfg = config(tiny["model"], storage, "iterations=1", "problems=two_sum", "generation.samples=1",
                 "data.dedupe=false", "training.epochs=3", "training.grad_accum=1", "training.lora_r=4",
                 "training.lora_alpha=8")
    monkeypatch.setattr("axiom_ray.loop.start_generators", _scripted())
    loop = prepare(cfg)
    try:
        write_verified_samples(loop.run, "two_sum", rows=3)
        thread = PhaseThread(loop, 1, "train", lambda: loop.train(1))
        thread.start()
        snapshot = storage / "iter_1/checkpoints/checkpoint_manager_snapshot.json"
        wait_for("the first epoch checkpoint", snapshot.is_file, thread)
        time.sleep(jitter)
        [worker] = wait_for("the train worker", lambda: alive_actors(address, "RayTrainWorker"), thread)
        sigkill(worker.pid, "Ray Train worker")
        metrics = thread.finish().metrics
        loop.phase(1, "redeploy", lambda: loop.redeploy(1))
        served = ray.get(loop.pool.actors[0].generate.remote(
            [{"problem_id": "two_sum", "prompt": "def two_sum", "entry_point": "two_sum"}],
            Sampling(n=1, temperature=0.7, top_p=0.95, max_tokens=4, seed=0)))
    finally:
        loop.close()

    log.warning("train fault: %s", {k: metrics[k] for k in ("examples", "steps", "resumed_from_epoch")})
    assert metrics["examples"] == 3 and metrics["steps"] == 3 * 3
    assert metrics["resumed_from_epoch"] >= 1, "training restarted from scratch"
    adapter = storage / "iter_1/adapter"
    assert_adapter_shape(adapter, tiny["model"], r=4, alpha=8)
    assert served[0]["adapter"] is not None  # the live generator serves it


def test_a_node_removed_mid_pass_the_pass_finishes_on_the_rest(tiny, tmp_path):
    seed = 4104
    storage = tmp_path / "run"
    script = Path(__file__).with_name("node_failure_scenario.py")
    # Every simulated node is this machine: the local run directory is shared by all of them.
    env = {**os.environ, "AXIOM_SHARED_PATHS": str(tmp_path), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)  # its own cluster, never the session's
    proc = subprocess.Popen(
        [sys.executable, str(script), "--model", tiny["model"], "--storage", str(storage), "--seed", str(seed)],
        cwd=script.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the scenario's raylets and workers with it
        out, _ = proc.communicate()
        pytest.fail(f"node failure scenario timed out:\n{out[-6000:]}")
    lines = [line for line in out.splitlines() if line.startswith("NODE_FAILURE_RESULT ")]
    assert lines, f"no result (exit {proc.returncode}):\n{out[-6000:]}"
    r = json.loads(lines[-1].split(" ", 1)[1])
    assert r["ok"], f"{r.get('error')}\n{r.get('traceback')}\n{out[-6000:]}"

    removed = r["removed"]
    log.warning("node fault: seed %d, node %s removed %.2fs into a generate call with %s on it; "
                "%d rows written before, %d after (expected 8); %.0fs", seed, removed["node_id"][:8],
                removed["delay_s"], removed["actors"], r["rows_before"], len(r["rows"]), r["seconds"])
    assert "ScriptedGenerator" in removed["actors"]
    assert removed["node_id"] not in r["alive_nodes"] and len(r["alive_nodes"]) == 2
    assert r["generator_node_after"] and removed["node_id"] not in r["generator_node_after"]
    ids = [row["sample_id"] for row in r["rows"]]
    assert len(ids) == 8 and len(set(ids)) == 8
    assert {(row["problem_id"], row["index"]) for row in r["rows"]} == {
        (p, i) for p in ("two_sum", "fizzbuzz", "reverse_string", "is_palindrome") for i in range(2)}


def test_restarts_are_told_by_the_rows_and_a_generator_dead_for_good_fails_fast(ray_cluster):
    import ray

    from axiom_ray.generation.pool import GeneratorLost, serves_adapter, wait_ready

    # A restarted engine serves the base model, and its rows say so.
    assert serves_adapter([{"adapter": "iter1"}], "/run/iter_1/adapter")
    assert not serves_adapter([{"adapter": None}], "/run/iter_1/adapter")
    assert serves_adapter([{"adapter": None}], None)

    @ray.remote(num_cpus=0, max_restarts=0)
    class Gone:
        def ready(self) -> dict[str, Any]:
            return {"pid": os.getpid()}

    actor = Gone.remote()
    ray.get(actor.ready.remote())
    ray.kill(actor)
    # ray.kill is asynchronous: wait until a call fails, else one can slip in before the kill.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray.get(actor.ready.remote(), timeout=5)
        except ray.exceptions.RayActorError:
            break
        time.sleep(0.2)
    t0 = time.monotonic()
    with pytest.raises(GeneratorLost):
        wait_ready(actor, wait_s=120)
    assert time.monotonic() - t0 < 30


def assert_adapter_shape(adapter: Path, model: str, r: int, alpha: int) -> None:
    """LoRA A is r x in, B is out x r for every targeted layer of the base; peft loads it."""
    import torch
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    config = json.loads((adapter / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (r, alpha)
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    layers = dict(base.named_modules())
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    assert shapes
    for key, shape in shapes.items():
        layer = layers[key.removeprefix("base_model.model.").rsplit(".lora_", 1)[0]]
        want = (r, layer.in_features) if ".lora_A." in key else (layer.out_features, r)
        assert shape == want, (key, shape, want)
    PeftModel.from_pretrained(base, str(adapter))


def _actors(address: str, actor_id: str) -> list[Any]:
    from ray.util.state import list_actors

    return list_actors(address=address, filters=[("actor_id", "=", actor_id)], detail=True,
                       raise_on_missing_output=False)


def retried_tasks(address: str, actor_id: str) -> list[Any]:
    from ray.util.state import list_tasks

    tasks = list_tasks(address=address, filters=[("actor_id", "=", actor_id)], limit=1000,
                       raise_on_missing_output=False)
    return [t for t in tasks if t.attempt_number > 0]


def _scripted(**script: Any) -> Callable[..., list[Any]]:
    def start(cfg: Any, plan: Any, run_id: str) -> list[Any]:
        return start_scripted_generators(cfg, plan, run_id, **script)

    return start
