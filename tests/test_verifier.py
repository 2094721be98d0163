"""The verifier on Ray: VerifyBatch's columns, directly and on a real local cluster."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from axiom_ray.config import VerifierConfig
from axiom_ray.problems import Problem, TestCase
from axiom_ray.samples import VERDICT_COLUMNS
from axiom_ray.verifier import VerifyBatch

ADD = Problem(id="add", title="add", difficulty="easy", prompt="def add(a, b):", entry_point="add",
              tests=(TestCase((1, 2), {}, 3), TestCase((2, 2), {}, 4)))
MUL = Problem(id="mul", title="mul", difficulty="easy", prompt="def mul(a, b):", entry_point="mul",
              tests=(TestCase((3, 4), {}, 12),), compare="float")
CFG = VerifierConfig(timeout=1, memory_mb=512, min_isolation="rlimits")
CODES = {
    ("add", "ok"): "def add(a, b):\n    return a + b\n",
    ("add", "half"): "def add(a, b):\n    return 3\n",
    ("mul", "ok"): "def mul(a, b):\n    return a * b * 1.0\n",
    ("mul", "loop"): "def mul(a, b):\n    while True:\n        pass\n",
}
COLUMNS = {"passed": np.bool_, "status": np.object_, "passed_tests": np.int64, "total_tests": np.int64,
           "reward": np.float64, "duration_ms": np.float64, "isolation": np.object_, "verdict_detail": np.object_}


def _batch() -> dict[str, np.ndarray]:
    keys = list(CODES)
    return {"problem_id": np.array([k[0] for k in keys] + ["nope"], dtype=object),
            "code": np.array([CODES[k] for k in keys] + ["x = 1"], dtype=object),
            "sample_id": np.array([f"s{i}" for i in range(len(keys) + 1)], dtype=object)}


def _check_columns(out: dict) -> None:
    assert set(COLUMNS) == set(VERDICT_COLUMNS)  # the sample row's verdict columns, every one
    for name, dtype in COLUMNS.items():
        assert out[name].dtype == dtype, name
    assert list(out["sample_id"]) == [f"s{i}" for i in range(5)]  # input columns are kept
    assert list(out["status"]) == ["passed", "failed", "passed", "timeout", "error"]
    assert list(out["reward"]) == [1.0, 0.5, 1.0, 0.0, 0.0]
    assert list(out["passed_tests"]) == [2, 1, 1, 0, 0] and list(out["total_tests"]) == [2, 2, 1, 1, 0]
    assert "unknown problem id" in out["verdict_detail"][4]
    assert len(set(out["isolation"])) == 1


def test_verify_batch_adds_verdict_columns_from_problem_dicts_or_objects():
    vb = VerifyBatch({"add": ADD.to_dict(), "mul": MUL}, CFG)
    _check_columns(vb(_batch()))


def test_verify_batch_with_several_judges_keeps_each_verdict_in_its_row():
    vb = VerifyBatch({"add": ADD.to_dict(), "mul": MUL}, CFG, concurrency=3)
    assert vb.concurrency == 3
    _check_columns(vb(_batch()))  # the looping candidate holds one judge; the rest keep their order


def test_several_judges_judge_at_once():
    # Each candidate sleeps 0.6 s per test case (2 cases): one judge needs >= 2.4 s for two of them.
    sleeper = "import time\ndef add(a, b):\n    time.sleep(0.6)\n    return a + b\n"
    cfg = replace(CFG, timeout=5)
    batch = {"problem_id": np.array(["add", "add"], dtype=object), "code": np.array([sleeper] * 2, dtype=object)}
    seconds = {}
    for concurrency in (1, 2):
        vb = VerifyBatch({"add": ADD}, cfg, concurrency=concurrency)
        started = time.perf_counter()
        out = vb(batch)
        seconds[concurrency] = time.perf_counter() - started
        assert list(out["status"]) == ["passed", "passed"]
    assert seconds[1] >= 2.4 and seconds[2] < 2.2, seconds


def test_bad_limits_fail_loudly():
    with pytest.raises(TypeError, match="timout"):
        VerifierConfig(timout=5)  # type: ignore[call-arg]  # a typo is an error, never ignored
    with pytest.raises(ValueError, match="verifier.memory_mb"):
        VerifyBatch({"add": ADD}, replace(CFG, memory_mb=16))


def test_verify_batch_on_ray_data(ray_cluster):
    ray = ray_cluster
    items = [{"problem_id": k[0], "code": CODES[k], "sample_id": f"s{i}"} for i, k in enumerate(CODES)]
    ds = ray.data.from_items(items + [{"problem_id": "nope", "code": "x = 1", "sample_id": "s4"}])
    ds = ds.map_batches(VerifyBatch, fn_constructor_kwargs={"problems": {"add": ADD.to_dict(), "mul": MUL.to_dict()},
                                                            "cfg": CFG},
                        batch_size=8, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1)
    rows = sorted(ds.take_all(), key=lambda r: r["sample_id"])
    assert [r["status"] for r in rows] == ["passed", "failed", "passed", "timeout", "error"]
    assert [r["reward"] for r in rows] == [1.0, 0.5, 1.0, 0.0, 0.0]

