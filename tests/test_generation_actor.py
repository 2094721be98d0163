"""GeneratorActor on the session's real local Ray cluster, with the tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tiny_model import tiny_assets

from axiom_ray.config import GenerationConfig
from axiom_ray.generation.actor import GeneratorActor
from axiom_ray.generation.engines import Sampling

CFG = GenerationConfig(max_model_len=1024, kv_cache_gb=1, batch_size=4)
PROBLEMS = [
    {"id": "add", "prompt": "Return the sum of a and b.", "entry_point": "add"},
    {"id": "rev", "prompt": "Reverse the string s.", "entry_point": "reverse_string"},
]
KEYS = {
    "problem_id",
    "index",
    "completion",
    "code",
    "code_tokens",
    "num_tokens",
    "finish_reason",
    "model",
    "adapter",
}


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return tiny_assets(tmp_path_factory.getbasetemp())


def start(ray: Any, assets: dict[str, str], engine: str, seed: int = 0) -> Any:
    remote = ray.remote(num_cpus=1, num_gpus=0)(GeneratorActor)
    return remote.remote(assets["model"], engine, seed, CFG, max_lora_rank=8)


@pytest.fixture(scope="module")
def actor(ray_cluster: Any, assets: dict[str, str]) -> Iterator[Any]:
    handle = start(ray_cluster, assets, "transformers")
    ray_cluster.get(handle.ready.remote(), timeout=300)
    yield handle
    ray_cluster.kill(handle)


def requests_for(ray: Any, actor: Any) -> list[dict[str, Any]]:
    prompts = ray.get(actor.render_prompts.remote(PROBLEMS))
    return [
        {"problem_id": p["id"], "prompt": text, "entry_point": p["entry_point"]}
        for p, text in zip(PROBLEMS, prompts, strict=True)
    ]


def greedy(ray: Any, actor: Any, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return ray.get(actor.generate.remote(requests, Sampling(1, 0.0, 1.0, 10, 0)))


def test_ready_reports_the_engine(ray_cluster: Any, actor: Any, assets: dict[str, str]) -> None:
    info = ray_cluster.get(actor.ready.remote())
    assert info["engine"] == "transformers" and info["model"] == assets["model"]
    assert info["model_name"] == "model" and info["adapter"] is None
    assert info["start_seconds"] > 0 and info["config"]["max_model_len"] == 1024


def test_render_prompts_uses_the_chat_template(ray_cluster: Any, actor: Any) -> None:
    prompts = ray_cluster.get(actor.render_prompts.remote(PROBLEMS))
    assert len(prompts) == 2
    assert prompts[0].endswith("<|im_start|>assistant\n") and PROBLEMS[0]["prompt"] in prompts[0]


def test_generate_returns_candidate_rows(ray_cluster: Any, actor: Any) -> None:
    requests = requests_for(ray_cluster, actor)
    before = ray_cluster.get(actor.stats.remote())
    rows = ray_cluster.get(actor.generate.remote(requests, Sampling(3, 1.0, 0.95, 8, 123)))
    assert len(rows) == 6
    assert [(r["problem_id"], r["index"]) for r in rows] == [
        ("add", 0),
        ("add", 1),
        ("add", 2),
        ("rev", 0),
        ("rev", 1),
        ("rev", 2),
    ]
    for row in rows:
        assert set(row) == KEYS
        assert row["model"] == "model" and row["adapter"] is None
        assert 1 <= row["num_tokens"] <= 8 and isinstance(row["code"], str)
    after = ray_cluster.get(actor.stats.remote())
    assert after["tokens_generated"] - before["tokens_generated"] == sum(
        r["num_tokens"] for r in rows
    )
    assert after["candidates_generated"] - before["candidates_generated"] == 6
    # The same call seed reproduces; a problem's samples do not depend on its batch.
    again = ray_cluster.get(actor.generate.remote(requests, Sampling(3, 1.0, 0.95, 8, 123)))
    assert [r["completion"] for r in again] == [r["completion"] for r in rows]
    assert ray_cluster.get(actor.generate.remote([], Sampling(3, 1.0, 0.95, 8, 123))) == []


def test_adapter_loads_live_without_restart(
    ray_cluster: Any, actor: Any, assets: dict[str, str]
) -> None:
    requests = requests_for(ray_cluster, actor)
    pid = ray_cluster.get(actor.ready.remote())["pid"]
    base = greedy(ray_cluster, actor, requests)
    seconds = ray_cluster.get(actor.load_adapter.remote(assets["adapter1"], 1))
    assert 0 < seconds < 60
    tuned = greedy(ray_cluster, actor, requests)
    assert {r["adapter"] for r in tuned} == {"iter1"}
    assert [r["completion"] for r in tuned] != [r["completion"] for r in base]
    # A storage URI is copied to the actor's node first.
    uri = Path(assets["adapter2"]).as_uri()
    ray_cluster.get(actor.load_adapter.remote(uri, 2))
    info = ray_cluster.get(actor.info.remote())
    assert info["adapter"] == "iter2" and info["adapter_path"] != assets["adapter2"]
    assert [r["completion"] for r in greedy(ray_cluster, actor, requests)] != [
        r["completion"] for r in tuned
    ]
    ray_cluster.get(actor.use_base.remote())
    assert greedy(ray_cluster, actor, requests) == base
    assert ray_cluster.get(actor.ready.remote())["pid"] == pid  # same process throughout


def test_missing_adapter_fails_clearly(ray_cluster: Any, actor: Any, tmp_path: Path) -> None:
    from ray.exceptions import RayTaskError

    with pytest.raises(RayTaskError, match="no such folder"):
        ray_cluster.get(actor.load_adapter.remote(str(tmp_path / "nope"), 9))


def test_sleep_and_wake_on_cpu(ray_cluster: Any, actor: Any) -> None:
    ray_cluster.get(actor.sleep.remote())
    assert ray_cluster.get(actor.info.remote())["asleep"]
    ray_cluster.get(actor.wake.remote())
    assert greedy(ray_cluster, actor, requests_for(ray_cluster, actor))


def test_replicas_with_different_seeds_differ(
    ray_cluster: Any, actor: Any, assets: dict[str, str]
) -> None:
    other = start(ray_cluster, assets, "transformers", seed=1)
    try:
        requests = requests_for(ray_cluster, actor)
        mine = ray_cluster.get(actor.generate.remote(requests, Sampling(2, 1.0, 1.0, 6, 5)))
        theirs = ray_cluster.get(other.generate.remote(requests, Sampling(2, 1.0, 1.0, 6, 5)))
        assert [r["completion"] for r in mine] != [r["completion"] for r in theirs]
    finally:
        ray_cluster.kill(other)


def test_missing_model_fails_at_start(ray_cluster: Any, assets: dict[str, str]) -> None:
    from ray.exceptions import RayActorError

    remote = ray_cluster.remote(num_cpus=1)(GeneratorActor)
    handle = remote.remote("/no/such/model", "transformers", 0, CFG)
    with pytest.raises(RayActorError, match="no such folder"):
        ray_cluster.get(handle.ready.remote(), timeout=120)


@pytest.mark.slow
def test_vllm_engine_runs_inside_a_ray_actor(ray_cluster: Any, assets: dict[str, str]) -> None:
    """vLLM's EngineCore (and worker) processes start from an actor, and adapters swap live."""
    handle = start(ray_cluster, assets, "vllm")
    try:
        info = ray_cluster.get(handle.ready.remote(), timeout=600)
        assert info["engine"] == "vllm" and info["device"] == "cpu"
        requests = requests_for(ray_cluster, handle)
        base = greedy(ray_cluster, handle, requests)
        rows = ray_cluster.get(handle.generate.remote(requests, Sampling(4, 1.0, 0.95, 8, 1)))
        assert len(rows) == 8 and all(set(r) == KEYS for r in rows)
        ray_cluster.get(handle.load_adapter.remote(assets["adapter1"], 1))
        tuned = greedy(ray_cluster, handle, requests)
        assert {r["adapter"] for r in tuned} == {"iter1"}
        assert [r["completion"] for r in tuned] != [r["completion"] for r in base]
    finally:
        ray_cluster.get(handle.close.remote())
        ray_cluster.kill(handle)
