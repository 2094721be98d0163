"""LoRA vs QLoRA (4-bit) vs DeepSpeed ZeRO-2 on one GPU: tokens/s and peak memory, same model shape.

    python3 bench/gpu_train_stack.py                       # SmolLM2-135M's shape
    python3 bench/gpu_train_stack.py --shape 1b --steps 20 # a Llama-3.2-1B-sized random model
    python3 bench/gpu_train_stack.py --only lora,qlora     # a subset

For a GPU machine with torch, transformers and peft (plus bitsandbytes for QLoRA and deepspeed
for ZeRO-2; a variant whose library is missing prints a `skipped` line): no Ray, no internet,
no axiom_ray import. The model is random weights in the chosen shape (a hub model cannot be
downloaded there), so the figures are the cost of the shape, not of a checkpoint. Each variant
runs in its own subprocess so that peak memory is its own: the same synthetic batches
(--batch-size x --seq-len tokens, --steps optimizer steps after --warmup), LoRA r=16 on every
decoder linear layer, bf16 base, AdamW on the LoRA weights - the way training/worker.py and
training/model.py train (QLoRA: nf4, double quantization, bf16 compute, peft's k-bit
preparation with gradient checkpointing; ZeRO-2: deepspeed.initialize on a one-process NCCL
group, the loop's torch AdamW). Prints one JSON line per variant and the ratios to LoRA.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = {
    # SmolLM2-135M (the embedded default model)
    "135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                 num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True),
    # Llama-3.2-1B
    "1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
               num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=True),
    # Qwen2.5-Coder-7B-like (Llama layout)
    "7b": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False),
}
VARIANTS = ("lora", "qlora", "zero2")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="135m")
    p.add_argument("--only", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (kernels, allocator)")
    p.add_argument("--variant", help=argparse.SUPPRESS)  # the child process's one variant
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    return p.parse_args()


def save_random_model(shape: str, folder: Path) -> str:
    """Random bf16 weights in `shape`, saved once and shared by the variants."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if (folder / "config.json").is_file():
        return str(folder)
    torch.manual_seed(0)
    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=8192, rope_theta=10000.0,
                         bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    return str(folder)


def build(variant: str, model_dir: str):
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    if variant == "qlora":
        from transformers import BitsAndBytesConfig

        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, quantization_config=q,
                                                    device_map={"": 0})
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=True,
                                               gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to("cuda")
    base.config.use_cache = False
    torch.manual_seed(0)
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS,
                                            task_type="CAUSAL_LM"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    if variant != "zero2":
        return model, optimizer, None
    import deepspeed
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    dist.init_process_group("nccl", rank=0, world_size=1)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, dist_init_required=False, config={
        "train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
        "zero_optimization": {"stage": 2, "overlap_comm": False, "contiguous_gradients": True},
        "bf16": {"enabled": True}, "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False, "steps_per_print": 1 << 30})
    return engine, engine.optimizer, engine


def run_variant(args: argparse.Namespace) -> dict:
    import torch

    try:
        model, optimizer, engine = build(args.variant, args.model_dir)
    except ImportError as e:
        return {"variant": args.variant, "skipped": f"{type(e).__name__}: {e}"}
    model.train()
    vocab = SHAPES[args.shape]["vocab_size"]
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(3, vocab, (args.batch_size, args.seq_len), generator=gen).cuda()

    def step() -> float:
        out = model(input_ids=batch, labels=batch)
        if engine is not None:
            engine.backward(out.loss)
            engine.step()
        else:
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return float(out.loss)

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"variant": args.variant, "shape": args.shape, "tokens_per_s": round(args.steps * batch.numel() / seconds, 1),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3), "steps": args.steps,
            "seconds": round(seconds, 2), "final_loss": round(loss, 4), "gpu": torch.cuda.get_device_name(),
            "torch": torch.__version__}


def main() -> None:
    args = parse_args()
    if args.variant:
        print(json.dumps(run_variant(args)), flush=True)
        return
    model_dir = save_random_model(args.shape, Path(tempfile.gettempdir()) / f"axiom-random-{args.shape}")
    rows = {}
    for variant in [v.strip() for v in args.only.split(",") if v.strip()]:
        cmd = [sys.executable, __file__, "--variant", variant, "--model-dir", model_dir, "--shape", args.shape,
               "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len), "--steps", str(args.steps),
               "--warmup", str(args.warmup)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        row = json.loads(lines[-1]) if lines else {"variant": variant, "failed": proc.stderr.strip()[-800:]}
        rows[variant] = row
        print(json.dumps(row), flush=True)
    lora = rows.get("lora", {})
    if "tokens_per_s" in lora:
        ratios = {v: {"tokens_per_s": round(r["tokens_per_s"] / lora["tokens_per_s"], 3),
                      "peak_memory": round(r["peak_memory_gib"] / lora["peak_memory_gib"], 3)}
                  for v, r in rows.items() if "tokens_per_s" in r}
        print(json.dumps({"ratios_to_lora": ratios}), flush=True)


if __name__ == "__main__":
    main()
