"""Benchmark LoRA SFT on Ray Train: the fixed cost of a fit and the training throughput.

    python bench/train.py --model tiny --repeat 3            # fit overhead (tiny random Llama)
    python bench/train.py --model default --rows 16 --tokens 300 --cpus-per-worker 2
    python bench/train.py --model tiny --stacks all           # every training stack, ratios to LoRA

Synthetic rows shaped like verified samples (a chat-rendered problem prompt, a fenced Python
reply), about --tokens tokens each. Starts a local Ray cluster unless RAY_ADDRESS is set. Prints
one JSON line per fit: overhead = fit_seconds - train_seconds (actors, process group, imports,
model load, checkpoints); tokens_per_second counts every non-padding token through forward and
backward.

--stacks trains the same rows once per training stack (training/stack.py) and adds, per row,
its tokens/s and peak memory (rank 0's peak RSS on CPU, peak CUDA allocation on GPU) as ratios
to single-worker LoRA measured in the same run (always run first).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from axiom_ray.config import TrainingConfig
from axiom_ray.models import resolve_model
from axiom_ray.training import train_adapter

CODE_LINES = [
    "    if not items:",
    "        return []",
    "    seen = set()",
    "    result = []",
    "    for item in items:",
    "        if item in seen:",
    "            continue",
    "        seen.add(item)",
    "        result.append(item)",
    "    total = sum(x * x for x in result if x % 2 == 0)",
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help='"default", "tiny" (random 2-layer Llama) or a folder')
    p.add_argument("--rows", type=int, default=16, help="training rows")
    p.add_argument("--tokens", type=int, default=300, help="approximate tokens per row (prompt + reply)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--grad-accum", type=int, default=8)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers")
    p.add_argument("--cpus-per-worker", type=float, default=1, help="also torch's thread count")
    p.add_argument("--repeat", type=int, default=1, help="fits on the same cluster (later ones are warm)")
    p.add_argument("--stacks", default="", help="comma-separated training stacks to compare, or 'all': "
                   + ", ".join(STACKS))
    return p.parse_args()


# name -> (TrainingConfig changes). Multi-worker stacks keep the global batch: grad_accum / workers.
STACKS = {
    "lora": {},
    "ddp2": {"num_workers": 2},
    "zero2": {"strategy": "deepspeed", "zero_stage": 2, "num_workers": 2},
    "zero3": {"strategy": "deepspeed", "zero_stage": 3, "num_workers": 2},
    "zero2-offload": {"strategy": "deepspeed", "zero_stage": 2, "offload_optimizer": True, "num_workers": 2},
    "qlora-4bit": {"quantization": "4bit"},
    "qlora-8bit": {"quantization": "8bit"},
}


def stack_config(cfg: TrainingConfig, name: str) -> TrainingConfig:
    changes = dict(STACKS[name])
    workers = changes.get("num_workers", 1)
    if workers > 1:
        changes["grad_accum"] = max(1, cfg.grad_accum // workers)
    return dataclasses.replace(cfg, **changes)


def model_folder(spec: str, scratch: Path) -> str:
    if spec != "tiny":
        return resolve_model(spec)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny_model import build_tiny_model  # the test suite's tiny model, one definition

    return build_tiny_model(scratch / "tiny")


def synthetic_rows(model: str, rows: int, tokens: int) -> list[dict]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    out = []
    for i in range(rows):
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": f"Write a Python function solve_{i}(items) that removes "
              "duplicates from a list, keeping the first occurrence, and returns the list."}],
            tokenize=False, add_generation_prompt=True)
        lines = [f"```python\ndef solve_{i}(items):"]
        budget = tokens - len(tok.encode(prompt, add_special_tokens=False))
        while len(tok.encode("\n".join(lines), add_special_tokens=False)) < budget:
            lines.append(CODE_LINES[len(lines) % len(CODE_LINES)])
        out.append({"problem_id": f"p{i}", "sample_id": f"s{i}", "prompt": prompt,
                    "completion": "\n".join([*lines, "    return result\n```"])})
    return out


def main() -> None:
    args = parse_args()
    import ray

    if not ray.is_initialized():
        import socket

        with socket.socket() as sock:  # a free port: 8265 belongs to scripts/run.sh's cluster
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        ray.init(address=os.environ.get("RAY_ADDRESS", "local"), include_dashboard=True,
                 dashboard_host="127.0.0.1", dashboard_port=port, log_to_driver=False)
    scratch = Path(tempfile.mkdtemp(prefix="axiom-bench-train-"))
    model = model_folder(args.model, scratch)
    rows = synthetic_rows(model, args.rows, args.tokens)
    (scratch / "train").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), scratch / "train" / "part-0.parquet")
    cfg = TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, grad_accum=args.grad_accum,
                         lora_r=args.lora_r, lora_alpha=2 * args.lora_r, num_workers=args.workers,
                         cpus_per_worker=args.cpus_per_worker, max_seq_len=max(1024, 2 * args.tokens))
    if args.stacks:
        compare_stacks(args, model, scratch, cfg)
        return
    for i in range(args.repeat):
        r = train_adapter(base_model=model, train_path=str(scratch / "train"),
                          adapter_dir=str(scratch / f"adapter{i}"), cfg=cfg,
                          storage_path=str(scratch), run_name=f"fit{i}", use_gpu=None)
        print(json.dumps({
            "model": args.model, "fit": i, "rows": r.examples, "tokens_per_row": r.tokens / max(1, r.examples * args.epochs),
            "steps": r.steps, "tokens": r.tokens, "train_seconds": round(r.train_seconds, 2),
            "fit_seconds": round(r.fit_seconds, 2), "overhead_seconds": round(r.overhead_seconds, 2),
            "setup_seconds": round(r.setup_seconds, 2), "report_seconds": round(r.report_seconds, 2),
            "checkpoint_seconds": round(r.checkpoint_seconds, 2),
            "tokens_per_second": round(r.tokens_per_second, 1), "final_loss": round(r.final_loss, 4),
            "gpu": r.use_gpu,
        }), flush=True)


def compare_stacks(args: argparse.Namespace, model: str, scratch: Path, cfg: TrainingConfig) -> None:
    names = list(STACKS) if args.stacks == "all" else ["lora", *[n for n in args.stacks.split(",") if n != "lora"]]
    base = None
    for name in names:
        stack_cfg = stack_config(cfg, name)
        r = train_adapter(base_model=model, train_path=str(scratch / "train"), adapter_dir=str(scratch / name),
                          cfg=stack_cfg, storage_path=str(scratch), run_name=name, use_gpu=None)
        base = base or r
        print(json.dumps({
            "stack": name, "describe": r.stack, "model": args.model, "steps": r.steps, "tokens": r.tokens,
            "tokens_per_second": round(r.tokens_per_second, 1), "peak_memory_mb": round(r.peak_memory_mb),
            "tokens_per_second_vs_lora": round(r.tokens_per_second / base.tokens_per_second, 3),
            "peak_memory_vs_lora": round(r.peak_memory_mb / base.peak_memory_mb, 3),
            "fit_seconds": round(r.fit_seconds, 1), "final_loss": round(r.final_loss, 4), "gpu": r.use_gpu,
        }), flush=True)


if __name__ == "__main__":
    main()
