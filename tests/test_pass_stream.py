"""A sampling pass streamed through the run's long-lived actors, on the session's real Ray
cluster: the scripted generator of tests/fault_driver.py (the tiny model, real engine, one
prompt per transformers chunk, some answers replaced by correct ones) and real verifiers.

- verdicts arrive while the generator is still decoding (the first block is judged before the
  last candidate is generated), in many blocks, one Parquet file each;
- the verifier actors (and their fork servers) are the same across passes: a held-out pass after
  the training pass starts no verifier;
- every candidate is judged once, the progress figures equal the Parquet rows, and the job log
  has one concise progress line per pass.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow.parquet as pq
import pytest
from fault_driver import SOLUTIONS, start_scripted_generators
from tiny_model import tiny_assets

import axiom_ray.loop
from axiom_ray.config import build_config
from axiom_ray.loop import prepare

PROBLEMS = ("two_sum", "fizzbuzz", "reverse_string", "is_palindrome")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_assets(tmp_path_factory.getbasetemp())


def test_a_pass_streams_to_the_run_long_verifiers(ray_cluster, tiny, tmp_path, monkeypatch, caplog):
    import ray

    cfg = build_config(overrides=[
        f"model={tiny['model']}", f"storage={tmp_path / 'run'}", "iterations=0", "generation.engine=transformers",
        f"problems={','.join(PROBLEMS)}", "generation.samples=2", "generation.max_tokens=24",
        "generation.batch_size=1", "evaluation.problems=two_sum,fizzbuzz", "evaluation.samples=1",
        "verifier.batch_size=2"])
    monkeypatch.setattr(axiom_ray.loop, "start_generators",
                        lambda c, plan, run_id: start_scripted_generators(c, plan, run_id, solved=1))
    passes: list[Any] = []
    real_run_pass = axiom_ray.loop.run_pass

    def recording_run_pass(**kwargs: Any) -> Any:
        passes.append(real_run_pass(**kwargs))
        return passes[-1]

    monkeypatch.setattr(axiom_ray.loop, "run_pass", recording_run_pass)
    caplog.set_level(logging.INFO, logger="axiom_ray.pipeline")
    loop = prepare(cfg)
    try:
        before = [info["pid"] for info in loop.verifiers.wait_ready()]
        assert len(before) == loop.plan.verifier_workers >= 1 and not loop.plan.release_verifiers_to_train
        loop.phase(0, "samples", lambda: loop.sample(0, "samples"))
        loop.phase(0, "eval", lambda: loop.sample(0, "eval"))
        after = [info["pid"] for info in ray.get([a.ready.remote() for a in loop.verifiers.actors])]
    finally:
        loop.close()

    assert after == before, "a pass started verifiers of its own"
    samples, held_out = passes
    # Streaming: the first block was judged while the generator was still decoding later prompts.
    assert samples.first_verdict_s is not None and samples.generation_end_s is not None
    assert samples.first_verdict_s < samples.generation_end_s, (samples.first_verdict_s, samples.generation_end_s)
    folder = tmp_path / "run/iter_0/samples"
    files = sorted(folder.glob("*.parquet"))
    rows = pq.read_table(folder).to_pylist()
    assert samples.blocks == len(files) >= 4  # 8 candidates in blocks of at most 2
    assert len(rows) == len({r["sample_id"] for r in rows}) == samples.judged == samples.generated == 8
    assert samples.tokens == sum(r["num_tokens"] for r in rows)
    # Index 0 of each problem is the scripted correct answer, judged for real.
    assert {r["problem_id"] for r in rows if r["passed"]} == set(PROBLEMS) & set(SOLUTIONS)
    assert samples.passed == sum(r["passed"] for r in rows) == 4
    assert held_out.judged == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "axiom_ray.pipeline"]
    done = [line for line in lines if "(done," in line]
    assert len(done) == 2 and "8/8 generated, 8 judged, 4 passed" in done[0] and "tok/s" in done[0]
