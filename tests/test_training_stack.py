"""The training stack beyond one-worker LoRA (issue 12): DDP over several Ray Train workers,
DeepSpeed ZeRO-2/3 (CPU offload too) and QLoRA through bitsandbytes, each trained for real on a
tiny random Llama on a real local Ray cluster (gloo and bitsandbytes' CPU backend here), the
adapters checked against the one-worker LoRA curve and loaded by the generation engines; then
the refusals, before any work.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from test_training import sample_rows, write_parquet
from training_runs import (
    adapter_tensors,
    assert_same_adapter,
    assert_same_curve,
    killed_and_undisturbed,
)

from axiom_ray.config import ConfigError, TrainingConfig, build_config
from axiom_ray.training import stack, train_adapter

# Dropout off: the runs below must follow the same curve whatever the worker count or strategy.
BASE = TrainingConfig(epochs=2, batch_size=1, grad_accum=2, lr=1e-2, max_seq_len=256, seed=0,
                      lora_r=8, lora_alpha=16, lora_dropout=0.0, cpus_per_worker=1)
ROWS = 8
# The same 2 examples per optimizer step: one worker accumulating 2, or two workers with 1 each.
TWO_WORKERS = dataclasses.replace(BASE, grad_accum=1, num_workers=2)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def data(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    return write_parquet(tmp_path_factory.mktemp("data") / "train", sample_rows(tok, ROWS))


@pytest.fixture(scope="module")
def train(ray_cluster, tiny_model: str, data: str, tmp_path_factory: pytest.TempPathFactory):
    """train(name, cfg) -> TrainResult, each configuration trained once per module."""
    root = tmp_path_factory.mktemp("runs")
    done: dict[str, object] = {}

    def run(name: str, cfg: TrainingConfig, run_name: str | None = None):
        key = run_name or name
        if key not in done:
            done[key] = train_adapter(base_model=tiny_model, train_path=data, cfg=cfg,
                                      adapter_dir=str(root / name / "adapter"), storage_path=str(root),
                                      run_name=key, use_gpu=False)
        return done[key]

    run.root, run.model, run.data, run.done = root, tiny_model, data, done  # type: ignore[attr-defined]
    return run


# --- what each option reports, and the checks made before any work (pure) ------------------------


def test_stack_options_validate_and_name_the_key() -> None:
    cfg = build_config(overrides=["training.strategy=deepspeed", "training.zero_stage=3",
                                  "training.offload_optimizer=true", "training.num_workers=2"])
    assert (cfg.training.strategy, cfg.training.zero_stage, cfg.training.offload_optimizer) == ("deepspeed", 3, True)
    for bad, key in [("training.strategy=fsdp", "training.strategy"), ("training.zero_stage=1", "training.zero_stage"),
                     ("training.quantization=2bit", "training.quantization")]:
        with pytest.raises(ConfigError, match=f"^{key}: "):
            build_config(overrides=[bad])
    with pytest.raises(ConfigError, match="^training.offload_optimizer: needs training.strategy=deepspeed"):
        build_config(overrides=["training.offload_optimizer=true"])
    with pytest.raises(ConfigError, match="^training.quantization: 4bit needs training.strategy=ddp"):
        build_config(overrides=["training.quantization=4bit", "training.strategy=deepspeed"])


def test_global_batch_and_description() -> None:
    cfg = dataclasses.replace(BASE, batch_size=2, grad_accum=4, num_workers=3, quantization="4bit")
    assert stack.global_batch(cfg) == 24
    assert stack.describe(cfg) == "QLoRA 4bit, DDP, 3 worker(s), global batch 2 x 4 x 3 = 24"
    ds = dataclasses.replace(BASE, strategy="deepspeed", zero_stage=3, offload_optimizer=True)
    assert stack.describe(ds).startswith("LoRA, DeepSpeed ZeRO-3 (optimizer offloaded to CPU), 1 worker(s)")


def test_deepspeed_config_leaves_accumulation_and_the_optimizer_to_the_loop() -> None:
    ds = stack.deepspeed_config(dataclasses.replace(BASE, strategy="deepspeed", zero_stage=2,
                                                    offload_optimizer=True, batch_size=4), bf16=False)
    assert ds["gradient_accumulation_steps"] == 1 and ds["train_micro_batch_size_per_gpu"] == 4
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["gradient_clipping"] == stack.MAX_GRAD_NORM and ds["bf16"] == {"enabled": False}


def test_refusals_name_the_option_and_what_to_do() -> None:
    assert stack.quantization_problem("none", False, None) is None
    assert stack.quantization_problem("4bit", False, (0, 50, 2)) is None  # bitsandbytes' CPU backend
    assert stack.quantization_problem("4bit", True, (0, 43, 0)) is None  # CUDA-only release, on a GPU
    missing = stack.quantization_problem("4bit", False, None)
    assert missing.startswith("training.quantization=4bit: bitsandbytes is not installed;")
    old = stack.quantization_problem("8bit", False, (0, 43, 1))
    assert old.startswith("training.quantization=8bit: bitsandbytes 0.43.1 has no CPU backend")
    assert "training.use_gpu=true" in old and "\n" not in old
    assert stack.strategy_problem("deepspeed", None).startswith("training.strategy=deepspeed: deepspeed is not")
    assert stack.strategy_problem("ddp", None) is None
    # Here both libraries are installed (the train extra): nothing refused.
    stack.check_stack(dataclasses.replace(BASE, quantization="4bit"), use_gpu=False)
    stack.check_stack(dataclasses.replace(BASE, strategy="deepspeed"), use_gpu=False)


def test_the_plan_counts_every_train_worker_before_the_run() -> None:
    from axiom_ray.placement import PlanError, make_plan

    cfg = build_config(overrides=["training.num_workers=3", "training.cpus_per_worker=2",
                                  "generation.num_cpus=1"])
    plan = make_plan(cfg, {"CPU": 7.0})  # 1 generator + 3 x 2 train CPUs
    assert plan.train_workers == 3 and "3 train worker(s) x 0 GPU / 2 CPU" in plan.describe()
    with pytest.raises(PlanError, match=r"needs 7 CPU \(cluster has 6\).*training.num_workers"):
        make_plan(cfg, {"CPU": 6.0})
    gpu = build_config(overrides=["training.num_workers=4", "generation.num_gpus=0"])
    with pytest.raises(PlanError, match=r"needs 4 GPU .*cluster has 2"):
        make_plan(gpu, {"CPU": 64.0, "GPU": 2.0})


def test_a_refused_stack_stops_before_any_ray_train_work(
    ray_cluster, tiny_model: str, data: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack, "_version", lambda package: None)  # as if neither were installed
    kwargs = dict(base_model=tiny_model, train_path=data, adapter_dir=str(tmp_path / "adapter"),
                  storage_path=str(tmp_path / "store"), run_name="r", use_gpu=False)
    with pytest.raises(ConfigError, match="^training.quantization=4bit: bitsandbytes is not installed"):
        train_adapter(cfg=dataclasses.replace(BASE, quantization="4bit"), **kwargs)
    with pytest.raises(ConfigError, match="^training.strategy=deepspeed: deepspeed is not installed"):
        train_adapter(cfg=dataclasses.replace(BASE, strategy="deepspeed"), **kwargs)
    assert not (tmp_path / "store").exists() and not (tmp_path / "adapter").exists()


def test_the_parameter_count_is_read_from_the_safetensors_headers(tiny_model: str) -> None:
    from transformers import AutoModelForCausalLM

    from axiom_ray.models import parameter_count

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert parameter_count(tiny_model) == sum(p.numel() for p in model.parameters())
    assert parameter_count("HuggingFaceTB/SmolLM2-135M-Instruct") is None  # a hub id: unknown here


def test_too_large_a_model_is_refused_with_what_would_fit() -> None:
    gib = stack.GIB
    params = 8 * 10**9  # 8B: 32 GB in float32, 16 GB in bf16, 4 GB in nf4
    node = [24 * gib]
    problem = stack.memory_problem(BASE, params, False, node_bytes=node)
    assert problem.startswith("training: the model's 8.00B parameters need at least 29.8 GiB per train "
                              "worker for the frozen weights (float32), but the largest node has 24.0 GiB")
    assert "training.quantization=4bit" in problem and "\n" not in problem
    assert stack.memory_problem(dataclasses.replace(BASE, quantization="4bit"), params, False, node_bytes=node) is None
    # ZeRO-3 shards the frozen weights: two workers on two such nodes fit, ZeRO-2 copies do not
    zero3 = dataclasses.replace(BASE, strategy="deepspeed", zero_stage=3, num_workers=2)
    assert stack.memory_problem(zero3, params, False, node_bytes=node * 2) is None
    zero2 = dataclasses.replace(zero3, zero_stage=2)
    assert "largest node" in stack.memory_problem(zero2, params, False, node_bytes=node * 2)
    # DDP copies on CPU must also fit the cluster together, not only one node each
    ddp = dataclasses.replace(BASE, num_workers=3)
    assert "3 workers' copies need" in stack.memory_problem(ddp, 2 * 10**9, False, node_bytes=[10 * gib, 10 * gib])
    # on a GPU: bf16 against the device's memory
    assert stack.memory_problem(BASE, params, True, gpu_bytes=24 * gib) is None
    on_gpu = stack.memory_problem(BASE, 13 * 10**9, True, gpu_bytes=24 * gib)
    assert "(bf16), but a train worker's GPU has 24.0 GiB" in on_gpu


def sparse_model(folder: Path, template: str, shape: tuple[int, int]) -> str:
    """A model folder whose one weight has `shape`: a real safetensors file, its data a hole in a
    sparse file (nothing is read before the refusal, so nothing is allocated)."""
    import shutil
    import struct

    shutil.copytree(template, folder)
    for old in folder.glob("*.safetensors"):
        old.unlink()
    header = json.dumps({"model.embed_tokens.weight": {
        "dtype": "F32", "shape": list(shape), "data_offsets": [0, 4 * math.prod(shape)]}}).encode()
    with open(folder / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + 4 * math.prod(shape))
    return str(folder)


def test_a_model_too_large_for_the_cluster_is_refused_before_the_run_starts(
    ray_cluster, tiny_model: str, tmp_path: Path
) -> None:
    import ray

    from axiom_ray.loop import prepare

    huge = sparse_model(tmp_path / "huge", tiny_model, (1 << 17, 1 << 17))  # 17B parameters, 64 GiB
    nodes = [n["Resources"]["memory"] for n in ray.nodes() if n["Alive"]]
    assert max(nodes) < 64 * stack.GIB  # the test cluster's node cannot hold it in float32
    cfg = build_config(overrides=[f"model={huge}", f"storage={tmp_path / 'run'}", "problems=two_sum",
                                  "evaluation.problems=fizzbuzz"])
    with pytest.raises(ConfigError, match=r"^training: the model's 17.18B parameters need at least 64.0 GiB "
                                          r"per train worker .*but the largest node has"):
        prepare(cfg)
    assert not (tmp_path / "run").exists()  # refused before the run directory was opened


def test_cli_refuses_an_impossible_combination_in_one_line(capsys: pytest.CaptureFixture) -> None:
    from axiom_ray.cli import main

    code = main(["train", "--set", "training.quantization=4bit", "--set", "training.strategy=deepspeed"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("axiom train: error: training.quantization: 4bit needs training.strategy=ddp")


# --- trained for real on a local Ray cluster ------------------------------------------------------


def test_two_ddp_workers_follow_the_one_worker_curve_with_the_same_global_batch(train) -> None:
    one = train("lora1", BASE)
    two = train("ddp2", TWO_WORKERS)
    assert one.global_batch == two.global_batch == 2
    assert two.stack == "LoRA, DDP, 2 worker(s), global batch 1 x 1 x 2 = 2"
    assert one.steps == BASE.epochs * ROWS // 2
    assert_same_curve(one, two)
    assert_same_adapter(one.adapter_dir, two.adapter_dir)
    assert one.losses[-1] < one.losses[0]


# Offload and 8-bit are slow-marked to keep the suite's budget (each is one more ~20 s fit here).
@pytest.mark.parametrize("stage,offload", [(2, False), (3, False),
                                           pytest.param(2, True, marks=pytest.mark.slow)],
                         ids=["zero2", "zero3", "zero2-offload"])
def test_deepspeed_zero_on_two_workers_follows_the_lora_curve(train, stage: int, offload: bool) -> None:
    cfg = dataclasses.replace(TWO_WORKERS, strategy="deepspeed", zero_stage=stage, offload_optimizer=offload)
    r = train(f"zero{stage}{'-offload' if offload else ''}", cfg)
    assert r.stack.startswith(f"LoRA, DeepSpeed ZeRO-{stage}")
    assert_same_curve(train("lora1", BASE), r)
    # A normal peft adapter (ZeRO-3's sharded LoRA weights gathered), equal to the DDP one.
    config = json.loads((Path(r.adapter_dir) / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == BASE.lora_r
    assert_same_adapter(train("lora1", BASE).adapter_dir, r.adapter_dir)


@pytest.mark.slow
def test_a_killed_deepspeed_run_resumes_every_shard_and_ends_like_an_undisturbed_one(
    ray_cluster, tiny_model: str, tmp_path: Path
) -> None:
    """ZeRO-2 on two workers: both are SIGKILLed once epoch 1's checkpoint is registered; Ray
    Train restarts them (FailureConfig), each restores its ZeRO shard (LoRA weights, optimizer
    states) and the run ends where an undisturbed one does."""
    from transformers import AutoTokenizer

    rows = sample_rows(AutoTokenizer.from_pretrained(tiny_model), 24)  # a longer epoch 2 to kill in
    killed, clean = killed_and_undisturbed(
        ray_cluster.get_runtime_context().gcs_address, tmp_path, timeout_s=600,
        base_model=tiny_model, train_path=write_parquet(tmp_path / "train", rows),
        cfg=dataclasses.replace(TWO_WORKERS, strategy="deepspeed", zero_stage=2),
        storage_path=str(tmp_path), use_gpu=False)
    assert killed.resumed_from_epoch == 1 and clean.resumed_from_epoch == 0
    assert_same_curve(clean, killed, rtol=1e-5)
    assert_same_adapter(str(tmp_path / "clean"), str(tmp_path / "killed"), atol=1e-6)


@pytest.mark.parametrize("quantization,workers", [("4bit", 2), pytest.param("8bit", 1, marks=pytest.mark.slow)])
def test_qlora_trains_a_normal_adapter_on_a_quantized_base(train, quantization: str, workers: int) -> None:
    cfg = dataclasses.replace(BASE if workers == 1 else TWO_WORKERS, quantization=quantization)
    r = train(f"qlora-{quantization}", cfg)
    assert r.stack.startswith(f"QLoRA {quantization}, DDP, {workers} worker(s)")
    lora = train("lora1", BASE)
    assert r.steps == lora.steps and r.losses[-1] < r.losses[0]
    # The quantized base computes nearly the float base's loss (nf4 / int8 rounding only).
    assert math.isclose(r.losses[0], lora.losses[0], rel_tol=0.05)
    # The adapter is for the unquantized base: same keys and shapes as plain LoRA's, no quant state.
    a, b = adapter_tensors(r.adapter_dir), adapter_tensors(lora.adapter_dir)
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    config = json.loads((Path(r.adapter_dir) / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == train.model


# --- the adapters served by the generation engines ------------------------------------------------

ENGINE_ADAPTERS = ("ddp2", "zero3", "qlora-4bit")


def reference_greedy(model_dir: str, adapter: str, prompts: list[str], max_tokens: int) -> list[str]:
    """The adapter applied by transformers + peft on the float base, one prompt at a time."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), adapter)
    model.eval()
    out = []
    for prompt in prompts:
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            new = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)[0, ids["input_ids"].shape[1]:].tolist()
        if tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id)]
        out.append(tok.decode(new, skip_special_tokens=True))
    return out


def engine_greedy(kind: str, train, names: tuple[str, ...], prompts: list[str], max_tokens: int) -> dict:
    from axiom_ray.config import GenerationConfig
    from axiom_ray.generation.engines import Sampling, make_engine

    cfg = GenerationConfig(max_model_len=1024, kv_cache_gb=1, batch_size=1, stop_at_code_end=False)
    engine = make_engine(kind, train.model, seed=0, cfg=cfg, max_lora_rank=BASE.lora_r)
    try:
        out = {}
        for k, name in enumerate(names, start=1):
            engine.load_adapter(train(name, None).adapter_dir, k)
            rows = engine.generate(prompts, Sampling(n=1, temperature=0.0, top_p=1.0, max_tokens=max_tokens, seed=0))
            out[name] = [row[0].text for row in rows]
        return out
    finally:
        engine.close()


@pytest.fixture(scope="module")
def engine_prompts(data: str) -> list[str]:
    from axiom_ray.training.data import read_training_rows

    return [prompt for prompt, _ in read_training_rows(data)[:3]]


@pytest.mark.parametrize("kind", ["transformers", pytest.param("vllm", marks=pytest.mark.slow)])
def test_engines_serve_each_stacks_adapter_as_transformers_and_peft_apply_it(
    train, kind: str, engine_prompts: list[str]
) -> None:
    for name in ENGINE_ADAPTERS:  # trained by the tests above when run alone
        if name not in train.done:
            cfg = {"ddp2": TWO_WORKERS,
                   "zero3": dataclasses.replace(TWO_WORKERS, strategy="deepspeed", zero_stage=3),
                   "qlora-4bit": dataclasses.replace(TWO_WORKERS, quantization="4bit")}[name]
            train(name, cfg)
    served = engine_greedy(kind, train, ENGINE_ADAPTERS, engine_prompts, max_tokens=12)
    for name in ENGINE_ADAPTERS:
        assert served[name] == reference_greedy(train.model, train(name, None).adapter_dir, engine_prompts, 12), name


# --- the real embedded model (slow) --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("changes", [{"quantization": "4bit"}, {"num_workers": 2, "grad_accum": 1}],
                         ids=["qlora-4bit", "ddp-2-workers"])
def test_the_embedded_model_trains_with_qlora_and_with_two_ddp_workers(
    ray_cluster, tmp_path: Path, changes: dict
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from axiom_ray.models import resolve_model

    model = resolve_model("default")
    train_path = write_parquet(tmp_path / "train", sample_rows(AutoTokenizer.from_pretrained(model), 4))
    cfg = dataclasses.replace(TrainingConfig(epochs=1, grad_accum=2, cpus_per_worker=1), **changes)
    r = train_adapter(base_model=model, train_path=train_path, adapter_dir=str(tmp_path / "adapter"),
                      cfg=cfg, storage_path=str(tmp_path), run_name="checkpoints", use_gpu=False)
    assert r.steps == 2 and r.global_batch == 2 and all(math.isfinite(x) for x in r.losses)
    assert r.peak_memory_mb > 0
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model), r.adapter_dir)


def test_the_report_names_the_stack_and_the_global_batch() -> None:
    from axiom_ray.report.details import _training_stack

    cfg = build_config(overrides=["training.strategy=deepspeed", "training.zero_stage=3", "training.num_workers=4",
                                  "training.grad_accum=2", "training.offload_optimizer=true"]).to_dict()["training"]
    assert _training_stack(lambda key: cfg.get(key.split(".", 1)[1], "—")) == (
        "LoRA, DeepSpeed ZeRO-3, optimizer offloaded to CPU, 4 worker(s); global batch 1 x 2 x 4 = 8")
    old = {"num_workers": 1, "batch_size": 1, "grad_accum": 1}  # a manifest from before the stack keys
    assert _training_stack(lambda key: old.get(key.split(".", 1)[1], "—")) == (
        "LoRA, DDP, 1 worker(s); global batch 1 x 1 x 1 = 1")
