"""The loop on a real local Ray cluster: phases, run directory, Parquet schema, resume, refusal.

Fast tests use a tiny random model with the transformers engine (its candidates never pass, so
training data is written by the test where a train phase is needed); the slow test runs one full
iteration on the real embedded model with vLLM.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tiny_model import tiny_assets

from axiom_ray.config import build_config
from axiom_ray.loop import run_iterations, run_single_phase
from axiom_ray.rundir import RunDir, RunDirError
from axiom_ray.samples import SAMPLE_COLUMNS, code_hash, sample_id


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_assets(tmp_path_factory.getbasetemp())


def tiny_config(model: str, storage: str, *extra: str):
    return build_config(overrides=[
        f"model={model}", f"storage={storage}", "generation.engine=transformers", "problems=two_sum,fizzbuzz",
        "generation.samples=2", "generation.max_tokens=16", "evaluation.problems=is_palindrome",
        "evaluation.samples=2", "verifier.workers=1", *extra])


def read(run_dir, rel):
    return pq.read_table(f"{run_dir}/{rel}")


def test_iteration_writes_run_directory_and_resumes(ray_cluster, tiny, tmp_path):
    storage = str(tmp_path / "run")
    cfg = tiny_config(tiny["model"], storage)
    run = run_iterations(cfg)
    m = RunDir.open(storage).manifest
    assert (m.problems("train"), m.problems("eval")) == (["two_sum", "fizzbuzz"], ["is_palindrome"])
    for k, phases in ((0, ("samples", "eval")), (1, ("train", "redeploy", "samples", "eval"))):
        for name in phases:
            assert m.iteration(k).phase(name).is_done, (k, name)
    # a random model passes nothing: training is skipped and model 1 is the base
    assert m.iteration(1).phase("train").metrics["examples"] == 0
    assert m.iteration(1).adapter is None

    samples = read(storage, "iter_0/samples")
    assert set(SAMPLE_COLUMNS) <= set(samples.column_names)
    assert samples.num_rows == 4
    rows = samples.to_pylist()
    assert {r["problem_id"] for r in rows} == {"two_sum", "fizzbuzz"}
    for r in rows:
        assert r["sample_id"] == sample_id(run.run_id, 0, r["problem_id"], "samples", 0, r["index"])
        assert r["code_hash"] == code_hash(r["code"])
        assert r["adapter"] is None and r["iteration"] == 0 and not r["passed"]
        assert r["status"] in ("failed", "error", "timeout", "memory", "rejected")
        assert r["reward"] == pytest.approx(r["passed_tests"] / r["total_tests"])
    assert read(storage, "iter_0/eval").num_rows == 2
    assert (tmp_path / "run/report.md").exists()  # the loop writes the finished run's report

    # Resume: the same command redoes nothing and duplicates nothing.
    ids_before = sorted(read(storage, "iter_1/samples").column("sample_id").to_pylist())
    run_iterations(cfg)
    again = RunDir.open(storage).manifest
    assert again.iteration(0).phase("samples").finished_at == m.iteration(0).phase("samples").finished_at
    assert sorted(read(storage, "iter_1/samples").column("sample_id").to_pylist()) == ids_before

    # Another configuration is refused, naming the key, and nothing is damaged.
    with pytest.raises(RunDirError, match="generation.samples"):
        run_iterations(tiny_config(tiny["model"], storage, "generation.samples=3"))
    assert RunDir.open(storage).config.generation.samples == 2


def _fake_verified_samples(run: RunDir, rows: int) -> None:
    """Verified model-0 samples (as if the model had solved two_sum) for the train phase."""
    code = "def two_sum(nums, target):\n    seen = {}\n    for i, x in enumerate(nums):\n" \
           "        if target - x in seen:\n            return [seen[target - x], i]\n        seen[x] = i\n"
    table = pa.Table.from_pylist([{
        "run_id": run.run_id, "iteration": 0, "problem_id": "two_sum",
        "sample_id": sample_id(run.run_id, 0, "two_sum", "samples", 0, i),
        "prompt": "<|im_start|>user\nSolve two_sum<|im_end|>\n<|im_start|>assistant\n",
        "completion": f"```python\n{code}```", "code": code + "\n" * i, "passed": True, "passed_tests": 6,
        "total_tests": 6, "status": "passed", "reward": 1.0, "duration_ms": 1.0, "model": "tiny",
        "adapter": None, "temperature": 0.7, "seed": 0, "num_tokens": 40, "code_hash": code_hash(code),
        "created_at": "2026-01-01T00:00:00+00:00", "attempt": 0, "index": i, "finish_reason": "stop",
        "isolation": "test", "verdict_detail": ""} for i in range(rows)])
    run.storage.makedirs("iter_0/samples")
    pq.write_table(table, f"{run.uri('iter_0/samples')}/part-0.parquet")
    run.mark(0, "samples", "done", seconds=0.0, metrics={})


def test_single_phases_train_then_generate_with_the_adapter(ray_cluster, tiny, tmp_path):
    storage = str(tmp_path / "run")
    # tracked: each command continues the same tracker run (tests/test_tracking.py reads them)
    cfg = tiny_config(tiny["model"], storage, "training.epochs=1", "training.grad_accum=1",
                      "tracking.backend=[mlflow,tensorboard]")
    with pytest.raises(RunDirError, match="axiom generate --iteration 0"):
        run_single_phase(cfg, "train", iteration=1)
    run = RunDir.open(storage)
    _fake_verified_samples(run, rows=3)

    run_single_phase(cfg, "train", iteration=1)
    run = RunDir.open(storage)
    assert run.adapter(1) == "iter_1/adapter"
    train = read(storage, "iter_1/train")
    assert train.num_rows == 1  # three passing samples, one AST: deduplicated
    assert (tmp_path / "run/iter_1/adapter/adapter_config.json").is_file()
    assert run.phase(1, "train").metrics["examples"] == 1

    run_single_phase(cfg, "generate", iteration=1)
    rows = read(storage, "iter_1/samples").to_pylist()
    assert len(rows) == 4 and {r["adapter"] for r in rows} == {"iter_1/adapter"}

    with pytest.raises(RunDirError, match="axiom train --iteration 2"):
        run_single_phase(cfg, "generate", iteration=2)
    _check_tracked(RunDir.open(storage))


def _check_tracked(run: RunDir) -> None:
    """The train and generate commands above, in one MLflow run and one TensorBoard folder:
    the real training job's loss per optimizer step, the adapter by its URI, the pass's figures
    and the phase times, with iteration 1 as their step."""
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    mlflow = run.manifest.tracker_run("mlflow")
    client = MlflowClient(tracking_uri=mlflow["uri"])
    tracked = client.get_run(mlflow["run_id"])
    assert len(client.search_runs([tracked.info.experiment_id])) == 1
    assert tracked.info.status == "FINISHED"

    def history(key):
        return [(m.step, m.value) for m in client.get_metric_history(mlflow["run_id"], key)]

    train, samples = run.phase(1, "train").metrics, run.phase(1, "samples").metrics
    losses = history("train/loss/iter_1")
    assert [step for step, _ in losses] == list(range(1, train["steps"] + 1))
    assert losses[-1][1] == pytest.approx(train["final_loss"])
    assert history("train/examples") == [(1, 1.0)]
    assert history("phase_seconds/train") == [(1, run.phase(1, "train").seconds)]
    assert history("samples/samples") == [(1, samples["candidates"])]
    assert history("samples/pass_rate") == [(1, samples["pass_rate"])]
    assert tracked.data.tags["adapter/iter_1"] == run.uri("iter_1/adapter")
    events = EventAccumulator(run.manifest.tracker_run("tensorboard")["logdir"])
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss/iter_1")] == [step for step, _ in losses]


def test_evaluate_any_adapter_on_any_problem_set(ray_cluster, tiny, tmp_path):
    storage = str(tmp_path / "eval")
    cfg = tiny_config(tiny["model"], storage, "evaluation.problems=two_sum,is_palindrome", "iterations=0")
    run_single_phase(cfg, "evaluate", adapter=tiny["adapter1"])
    rows = read(storage, "iter_0/eval").to_pylist()
    assert len(rows) == 4 and {r["adapter"] for r in rows} == {tiny["adapter1"]}


def _curriculum_loop(storage: str, *extra: str):
    """A Loop over a fresh or reopened run directory, with no cluster and no generators:
    choosing the training problems needs neither."""
    from axiom_ray.loop import Loop, load_problems
    from axiom_ray.placement import make_plan

    cfg = build_config(overrides=[
        f"storage={storage}", "problems=train", "evaluation.problems=heldout", "data.curriculum_size=6", *extra])
    run = RunDir.open_or_create(storage, cfg)
    return Loop(cfg=cfg, run=run, plan=make_plan(cfg, {"CPU": 4}), problems=load_problems(cfg), model_path="unused")


def _verdict_rows(run: RunDir, k: int, passes: dict[str, int], n: int = 4) -> None:
    """Sample rows of model k with `passes[pid]` of n passing (only the columns the curriculum reads)."""
    rows = [{"problem_id": pid, "passed": i < c, "attempt": 0} for pid, c in passes.items() for i in range(n)]
    run.storage.makedirs(f"iter_{k}/samples")
    pq.write_table(pa.Table.from_pylist(rows), f"{run.uri(f'iter_{k}/samples')}/part-0.parquet")
    run.mark(k, "samples", "done", seconds=0.0, metrics={})


def test_curriculum_chooses_and_records_the_training_problems(tmp_path):
    storage = str(tmp_path / "run")
    loop = _curriculum_loop(storage, "data.curriculum=on")
    pool = {p.id: p for p in loop.problems.train}
    first = [p.id for p in loop.training_problems(0)]
    assert len(first) == 6 and all(pool[pid].difficulty == "easy" for pid in first)
    assert loop.run.iteration(0).curriculum["ids"] == first
    assert RunDir.open(storage).iteration(0).curriculum["frontier"] == "easy"
    assert len(loop.problems.eval) == 28  # evaluation is never narrowed

    mastered, learning = first[:2], first[2:4]
    _verdict_rows(loop.run, 0, {**dict.fromkeys(mastered, 4), **dict.fromkeys(learning, 2),
                                **dict.fromkeys(first[4:], 0)})
    second = [p.id for p in loop.training_problems(1)]
    assert len(second) == 6 and not set(mastered) & set(second) and set(learning) <= set(second)
    # a resumed run (fresh Loop, reopened manifest) picks the same problems
    assert [p.id for p in _curriculum_loop(storage, "data.curriculum=on").training_problems(1)] == second


def test_curriculum_auto_is_off_for_a_small_pool(tmp_path):
    loop = _curriculum_loop(str(tmp_path / "run"))  # auto; `train` has 39 problems
    assert loop.training_problems(0) == loop.problems.train
    assert loop.run.iteration(0).curriculum is None


@pytest.mark.slow
def test_full_iteration_on_the_embedded_model(ray_cluster, tmp_path):
    """One real iteration: vLLM samples from SmolLM2, the sandbox verifies, Ray Train trains an
    adapter, the running generator loads it, and model 1's samples come from that adapter."""
    storage = str(tmp_path / "run")
    cfg = build_config(overrides=[
        f"storage={storage}", "problems=is_palindrome,reverse_string,fibonacci", "generation.samples=4",
        "generation.max_tokens=160", "evaluation.problems=is_palindrome", "evaluation.samples=2",
        "training.epochs=1", "training.grad_accum=4", "verifier.workers=1", "generation.kv_cache_gb=1"])
    run_iterations(cfg)
    run = RunDir.open(storage)
    base = read(storage, "iter_0/samples")
    assert base.num_rows == 12 and sum(base.column("passed").to_pylist()) > 0, "SmolLM2 solved nothing"
    assert run.adapter(1) == "iter_1/adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (tmp_path / "run/iter_1/adapter" / name).is_file()
    train = read(storage, "iter_1/train").to_pylist()
    assert train and all(r["passed"] for r in train)
    assert len({(r["problem_id"], r["code_hash"]) for r in train}) == len(train)
    model1 = read(storage, "iter_1/samples").to_pylist()
    assert len(model1) == 12 and {r["adapter"] for r in model1} == {"iter_1/adapter"}
    assert run.phase(1, "redeploy").metrics["seconds"] < 30
    from axiom_ray.report import write_report

    paths = write_report(storage)
    text = Path(paths["md"]).read_text()
    assert "Model 1" in text and "is_palindrome" in text
