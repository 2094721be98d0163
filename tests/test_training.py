"""Training: the completion-only loss mask and batching (pure), then LoRA SFT on Ray Train
with a tiny random Llama (real local cluster), then a couple of steps on the real model (slow)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from training_runs import assert_same_adapter, assert_same_curve, killed_and_undisturbed

from axiom_ray.config import TrainingConfig
from axiom_ray.training import (
    IGNORE_INDEX,
    EmptyTrainingSet,
    linear_lr,
    plan_windows,
    read_training_rows,
    shard_indices,
    split_validation,
    steps_per_epoch,
    tokenize_example,
    tokenize_rows,
    train_adapter,
)
from axiom_ray.training.model import collate, lora_target_modules

# Tiny and quick: a random model memorises a handful of replies within a few epochs at this lr.
FAST = TrainingConfig(epochs=3, batch_size=1, grad_accum=2, lr=1e-2, max_seq_len=256, seed=0)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tokenizer(tiny_model: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def chat_prompt(tokenizer, text: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )


def sample_rows(tokenizer, n: int) -> list[dict]:
    """Contract-4-shaped rows (the columns training reads, plus ids)."""
    rows = []
    for i in range(n):
        prompt = chat_prompt(tokenizer, f"Write a function f{i} that returns {i}.")
        completion = f"```python\ndef f{i}():\n    return {i}\n```"
        rows.append({"problem_id": f"p{i}", "sample_id": f"s{i}", "prompt": prompt,
                     "completion": completion, "passed": True})
    return rows


def write_parquet(folder: Path, rows: list[dict], name: str = "part-0.parquet") -> str:
    folder.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("problem_id", pa.string()), ("sample_id", pa.string()),
                        ("prompt", pa.string()), ("completion", pa.string()), ("passed", pa.bool_())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / name)
    return str(folder)


# --- tokenisation and the loss mask (pure) -------------------------------------------------------


def test_loss_mask_is_exactly_the_completion_then_eos(tokenizer) -> None:
    prompt = chat_prompt(tokenizer, "Add two numbers.")
    completion = "```python\ndef add(a, b):\n    return a + b\n```"
    ex = tokenize_example(tokenizer, prompt, completion, max_seq_len=512)
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    completion_ids = tokenizer.encode(completion, add_special_tokens=False) + [tokenizer.eos_token_id]
    assert ex["input_ids"] == prompt_ids + completion_ids
    assert ex["labels"] == [IGNORE_INDEX] * len(prompt_ids) + completion_ids
    assert ex["attention_mask"] == [1] * len(ex["input_ids"])
    learned = [t for t in ex["labels"] if t != IGNORE_INDEX]
    assert tokenizer.decode(learned[:-1]) == completion
    assert learned[-1] == tokenizer.eos_token_id


def test_parts_are_tokenised_separately_so_boundary_merges_do_not_blur_the_mask(tokenizer) -> None:
    prompt = chat_prompt(tokenizer, "Anything.")  # ends with "\n"
    completion = "\n\ndef f():\n    return 1"  # "\n" + "\n\n" merge when tokenised jointly
    joint = tokenizer.encode(prompt + completion, add_special_tokens=False)
    ex = tokenize_example(tokenizer, prompt, completion, max_seq_len=512)
    assert ex["input_ids"][:-1] != joint  # the reason for tokenising apart
    n_prompt = len(tokenizer.encode(prompt, add_special_tokens=False))
    assert ex["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert IGNORE_INDEX not in ex["labels"][n_prompt:]
    assert tokenizer.decode(ex["input_ids"][n_prompt:-1]) == completion


def test_long_prompt_is_cut_from_the_left_and_the_completion_kept_whole(tokenizer) -> None:
    prompt = chat_prompt(tokenizer, "word " * 200)
    completion = "def f():\n    return 1"
    ex = tokenize_example(tokenizer, prompt, completion, max_seq_len=64)
    completion_ids = tokenizer.encode(completion, add_special_tokens=False) + [tokenizer.eos_token_id]
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    assert len(ex["input_ids"]) == 64
    assert ex["input_ids"][-len(completion_ids):] == completion_ids
    kept = 64 - len(completion_ids)
    assert ex["input_ids"][:kept] == prompt_ids[-kept:]  # the end of the prompt, next to the reply
    assert ex["labels"][:kept] == [IGNORE_INDEX] * kept


def test_completion_that_leaves_no_room_for_the_prompt_is_dropped_and_counted(tokenizer) -> None:
    prompt = chat_prompt(tokenizer, "Short.")
    long = "x = 1\n" * 100
    assert tokenize_example(tokenizer, prompt, long, max_seq_len=32) is None
    examples, dropped = tokenize_rows(tokenizer, [(prompt, long), (prompt, "pass")], max_seq_len=32)
    assert (len(examples), dropped) == (1, 1)


def test_collate_pads_on_the_right_with_masked_labels() -> None:
    a = {"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7], "attention_mask": [1, 1, 1]}
    b = {"input_ids": [8], "labels": [8], "attention_mask": [1]}
    batch = collate([a, b], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


# --- sharding, step plan, schedule (pure) --------------------------------------------------------


@pytest.mark.parametrize("n,world", [(8, 1), (8, 2), (7, 2), (5, 3), (1, 2)])
def test_every_worker_gets_an_equal_shard_covering_every_example(n: int, world: int) -> None:
    shards = [shard_indices(n, epoch=0, seed=0, rank=r, world=world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # equal step counts: report and DDP are barriers
    assert len(shards[0]) == math.ceil(n / world)
    assert set().union(*shards) == set(range(n))
    if n % world == 0:
        assert sorted(i for s in shards for i in s) == list(range(n))  # no repeats


def test_shards_are_deterministic_and_reshuffled_each_epoch() -> None:
    one = shard_indices(50, epoch=0, seed=3, rank=0, world=1)
    assert one == shard_indices(50, epoch=0, seed=3, rank=0, world=1)
    assert one != shard_indices(50, epoch=1, seed=3, rank=0, world=1)
    assert one != shard_indices(50, epoch=0, seed=4, rank=0, world=1)


def test_windows_group_micro_batches_into_optimizer_steps() -> None:
    windows = plan_windows(list(range(7)), batch_size=2, grad_accum=2)
    assert windows == [[[0, 1], [2, 3]], [[4, 5], [6]]]
    cfg = TrainingConfig(batch_size=2, grad_accum=2)
    assert steps_per_epoch(7, cfg, world=1) == 2
    assert steps_per_epoch(9, cfg, world=2) == 2  # 5 per worker -> 3 micro-batches -> 2 steps


def test_linear_schedule_decays_to_zero() -> None:
    assert linear_lr(1.0, 0, 4) == 1.0
    assert linear_lr(1.0, 2, 4) == 0.5
    assert linear_lr(1.0, 4, 4) == 0.0


def test_all_linear_targets_the_decoder_projections_only(tiny_model: str) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    names = lora_target_modules(model, "all-linear")
    assert set(names) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert lora_target_modules(model, "q_proj, v_proj") == ["q_proj", "v_proj"]
    with pytest.raises(ValueError, match="lm_head"):
        lora_target_modules(model, "q_proj,lm_head")


def test_reads_parquet_files_of_a_folder_only(tmp_path: Path, tokenizer) -> None:
    folder = Path(write_parquet(tmp_path / "train", sample_rows(tokenizer, 3)))
    write_parquet(folder, sample_rows(tokenizer, 2), name="part-1.parquet")
    (folder / "notes.json").write_text("{}")
    write_parquet(folder / "checkpoints", sample_rows(tokenizer, 5))  # below: not read
    rows = read_training_rows(str(folder))
    assert len(rows) == 5
    assert rows[0][1].startswith("```python")
    assert len(read_training_rows(str(folder / "part-1.parquet"))) == 2
    with pytest.raises(EmptyTrainingSet, match="no such file"):
        read_training_rows(str(tmp_path / "missing"))


def test_empty_or_unusable_training_set_fails_before_ray(tmp_path: Path, tiny_model: str, tokenizer) -> None:
    kwargs = dict(base_model=tiny_model, adapter_dir=str(tmp_path / "adapter"), cfg=FAST,
                  storage_path=str(tmp_path / "store"), run_name="r")
    empty = write_parquet(tmp_path / "empty", [])
    with pytest.raises(EmptyTrainingSet, match="no rows"):
        train_adapter(train_path=empty, **kwargs)
    too_long = [{**r, "completion": "x = 1\n" * 200} for r in sample_rows(tokenizer, 2)]
    with pytest.raises(EmptyTrainingSet, match="max_seq_len"):
        train_adapter(train_path=write_parquet(tmp_path / "long", too_long), **kwargs)
    assert not (tmp_path / "store").exists()


# --- LoRA SFT on Ray Train -----------------------------------------------------------------------


def completion_logprob(model_dir: str, adapter: str | None, tokenizer, rows: list[dict]) -> float:
    """Summed log-likelihood of the completions (and EOS) given their prompts."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    total = 0.0
    for row in rows:
        batch = collate([tokenize_example(tokenizer, row["prompt"], row["completion"], 512)], 0)
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"]).logits[0, :-1]
        labels = batch["labels"][0, 1:]
        logp = torch.log_softmax(logits.float(), -1)
        keep = labels != IGNORE_INDEX
        total += float(logp[keep].gather(1, labels[keep][:, None]).sum())
    return total


@pytest.fixture(scope="module")
def trained(ray_cluster, tiny_model: str, tokenizer, tmp_path_factory: pytest.TempPathFactory):
    """One 3-epoch run on 8 rows, shared by the tests that inspect or continue it."""
    root = tmp_path_factory.mktemp("train")
    rows = sample_rows(tokenizer, 8)
    train_path = write_parquet(root / "iter_1" / "train", rows)
    kwargs = dict(base_model=tiny_model, train_path=train_path, cfg=FAST,
                  storage_path=str(root / "iter_1"), run_name="checkpoints", use_gpu=False)
    result = train_adapter(adapter_dir=str(root / "iter_1" / "adapter"), **kwargs)
    return {"root": root, "rows": rows, "result": result, "kwargs": kwargs}


def test_adapter_lands_in_adapter_dir_and_loads_with_peft_for_vllm(trained, tiny_model: str) -> None:
    result = trained["result"]
    adapter = Path(result.adapter_dir)
    assert sorted(p.name for p in adapter.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    config = json.loads((adapter / "adapter_config.json").read_text())
    # vLLM serves LoRA on the decoder projections only: an explicit list, no lm_head/embeddings.
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj",
                                             "gate_proj", "up_proj", "down_proj"}
    assert (config["r"], config["lora_alpha"]) == (FAST.lora_r, FAST.lora_alpha)
    assert not config.get("modules_to_save")
    assert config["base_model_name_or_path"] == tiny_model
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_A" in k or "lora_B" in k for k in keys)
    assert not any("lm_head" in k or "embed" in k for k in keys)


def test_training_lowers_the_loss_and_raises_the_completions_likelihood(
    trained, tiny_model: str, tokenizer
) -> None:
    r = trained["result"]
    per_epoch = steps_per_epoch(8, FAST, world=1)
    assert (r.examples, r.dropped, r.steps) == (8, 0, per_epoch * FAST.epochs)
    assert len(r.losses) == r.steps and r.final_loss == r.losses[-1]
    first, last = r.losses[:per_epoch], r.losses[-per_epoch:]
    # The tiny model's frozen random head caps how low the loss can go: a clear drop suffices.
    assert sum(last) / len(last) < sum(first) / len(first) - 0.2
    assert r.tokens > 0 and r.tokens_per_second > 0 and 0 < r.train_seconds < r.fit_seconds
    rows = trained["rows"]
    before = completion_logprob(tiny_model, None, tokenizer, rows)
    after = completion_logprob(tiny_model, r.adapter_dir, tokenizer, rows)
    assert after > before + 10  # nats over the 8 completions


def test_checkpoints_live_in_the_run_directory(trained) -> None:
    run = trained["root"] / "iter_1" / "checkpoints"
    checkpoints = [p for p in run.iterdir() if p.is_dir() and p.name.startswith("checkpoint_")]
    assert len(checkpoints) == 1  # each epoch's checkpoint supersedes the previous one
    names = {p.name for p in checkpoints[0].iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "optimizer.pt", "train_state.json"} <= names
    state = json.loads((checkpoints[0] / "train_state.json").read_text())
    assert state["epochs_done"] == FAST.epochs


def test_rerunning_a_finished_run_resumes_it_instead_of_training_again(trained, tmp_path: Path) -> None:
    again = train_adapter(adapter_dir=str(tmp_path / "adapter"), **trained["kwargs"])
    first = trained["result"]
    assert again.resumed_from_epoch == FAST.epochs
    assert again.losses == first.losses and again.steps == first.steps
    a = (Path(first.adapter_dir) / "adapter_model.safetensors").read_bytes()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").read_bytes() == a


def test_more_epochs_continue_from_the_last_checkpoint(trained, tokenizer, tmp_path: Path) -> None:
    kwargs = {**trained["kwargs"], "storage_path": str(tmp_path), "run_name": "grow"}
    one = train_adapter(adapter_dir=str(tmp_path / "a1"), **{**kwargs, "cfg": _with(FAST, epochs=1)})
    two = train_adapter(adapter_dir=str(tmp_path / "a2"), **{**kwargs, "cfg": _with(FAST, epochs=2)})
    assert one.resumed_from_epoch == 0 and two.resumed_from_epoch == 1
    assert two.steps == 2 * one.steps
    assert two.losses[: one.steps] == one.losses


def test_validation_split_is_seeded_and_skipped_for_small_sets() -> None:
    rows = list(range(20))
    train, val = split_validation(rows, 0.15, seed=0)
    assert len(val) == 3 and sorted(train + val) == rows and (train, val) == split_validation(rows, 0.15, 0)
    assert split_validation(rows, 0.15, seed=1) != (train, val)
    assert split_validation(rows[:7], 0.4, seed=0) == (rows[:7], [])  # too few rows to spare any
    assert split_validation(rows, 0.0, seed=0) == (rows, [])


def test_validation_loss_chooses_the_epoch_and_stops_when_it_rises(trained, tokenizer, tmp_path: Path) -> None:
    # 10 rows: 8 train, 2 held out. A high learning rate overfits the 8 quickly, so the held-out
    # loss rises within a few epochs; the adapter kept is the best epoch's.
    rows = sample_rows(tokenizer, 10)
    kwargs = {**trained["kwargs"], "train_path": write_parquet(tmp_path / "train", rows),
              "storage_path": str(tmp_path), "run_name": "val"}
    cfg = _with(FAST, epochs=6, val_fraction=0.2, lr=0.05)
    r = train_adapter(adapter_dir=str(tmp_path / "adapter"), **{**kwargs, "cfg": cfg})
    assert r.val_examples == 2 and r.examples == 8
    assert 1 <= len(r.val_losses) <= cfg.epochs and r.val_losses[r.best_epoch - 1] == min(r.val_losses)
    if len(r.val_losses) < cfg.epochs:  # stopped early: the last epoch run was worse than the best
        assert r.val_losses[-1] > min(r.val_losses) and r.best_epoch < len(r.val_losses)
    state = json.loads(next((tmp_path / "val").glob("checkpoint_*/train_state.json")).read_text())
    assert state["epochs_done"] == r.best_epoch  # the checkpoint kept is the best epoch's


def test_init_adapter_continues_training_an_existing_adapter(trained, tmp_path: Path) -> None:
    first = trained["result"]
    cfg = _with(FAST, epochs=1, from_base=False)
    kwargs = {**trained["kwargs"], "cfg": cfg, "storage_path": str(tmp_path), "run_name": "next"}
    cont = train_adapter(adapter_dir=str(tmp_path / "adapter"), init_adapter=first.adapter_dir, **kwargs)
    # It starts near where the first adapter ended, well below a fresh adapter's first loss.
    drop = first.losses[0] - first.final_loss
    assert cont.losses[0] < first.losses[0] - 0.5 * drop


def test_two_workers_each_train_on_their_own_shard(trained, tmp_path: Path, tokenizer) -> None:
    cfg = _with(FAST, epochs=1, num_workers=2)
    kwargs = {**trained["kwargs"], "cfg": cfg, "storage_path": str(tmp_path), "run_name": "ddp"}
    r = train_adapter(adapter_dir=str(tmp_path / "adapter"), **kwargs)
    examples, _ = tokenize_rows(tokenizer, [(x["prompt"], x["completion"]) for x in trained["rows"]],
                                FAST.max_seq_len)
    # 8 rows over 2 workers: 4 each, 2 steps of 2 micro-batches; together every row once.
    assert r.steps == 2
    assert r.tokens == sum(len(ex["input_ids"]) for ex in examples)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_a_killed_worker_resumes_from_the_last_checkpoint_exactly(
    ray_cluster, tiny_model: str, tokenizer, tmp_path: Path
) -> None:
    """SIGKILL the worker once epoch 1's checkpoint is registered: Ray Train restarts it
    (FailureConfig), it resumes after epoch 1 and ends where an uninterrupted run does, within
    float tolerance (the restarted process's first kernels may sum in another order: once in a
    few runs the resumed epoch's first loss differed in the 7th digit)."""
    train_path = write_parquet(tmp_path / "train", sample_rows(tokenizer, 32))  # a longer run
    killed, clean = killed_and_undisturbed(
        ray_cluster.get_runtime_context().gcs_address, tmp_path, timeout_s=300,
        base_model=tiny_model, train_path=train_path, cfg=FAST, storage_path=str(tmp_path), use_gpu=False)
    assert killed.resumed_from_epoch >= 1 and clean.resumed_from_epoch == 0
    assert_same_curve(clean, killed, rtol=1e-5)
    assert_same_adapter(str(tmp_path / "clean"), str(tmp_path / "killed"), atol=1e-6)


def _with(cfg: TrainingConfig, **changes) -> TrainingConfig:
    from dataclasses import replace

    return replace(cfg, **changes)


# --- the real embedded model (slow) --------------------------------------------------------------


@pytest.mark.slow
def test_a_few_steps_on_the_embedded_default_model(ray_cluster, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from axiom_ray.models import resolve_model

    model = resolve_model("default")
    tok = AutoTokenizer.from_pretrained(model)
    train_path = write_parquet(tmp_path / "train", sample_rows(tok, 4))
    cfg = TrainingConfig(epochs=1, grad_accum=2, cpus_per_worker=min(2, os.cpu_count() or 1))
    r = train_adapter(base_model=model, train_path=train_path, adapter_dir=str(tmp_path / "adapter"),
                      cfg=cfg, storage_path=str(tmp_path), run_name="checkpoints", use_gpu=False)
    assert r.steps == 2 and math.isfinite(r.final_loss)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model), r.adapter_dir)
