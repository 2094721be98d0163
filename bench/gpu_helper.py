"""Helpers of bench/gpu_iteration.sh (one iteration on the GPU machine); not run on their own.

    python3 bench/gpu_helper.py prepare              # here: the default model's shape and tokenizer -> .gpu/smollm2
    python3 bench/gpu_helper.py model OUT            # there: random weights in that shape -> OUT (a HF folder)
    python3 bench/gpu_helper.py report RUN MEM.csv [TRAIN.jsonl]   # there: the figures of the run

The embedded model's weights cannot travel: its GGUF (94 MiB) plus the Ray bundle (49 MiB) exceed
what one device call carries (64 MiB), and the machine has no hub. What does travel is the
model's config.json, tokenizer and chat template (3.5 MiB), so the iteration runs a random model
of SmolLM2-135M's exact shape: generation and training cost what the real model's would, but no
candidate passes, so the iteration's train phase has no data and the script times training with
bench/train.py on the same model instead.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHAPE_DIR = REPO / ".gpu" / "smollm2"
SHAPE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "chat_template.jinja")


def prepare() -> None:
    """Copy the embedded model's small files into .gpu/smollm2 (git-ignored, carried by run)."""
    sys.path.insert(0, str(REPO))
    from axiom_ray.models import resolve_model

    source = Path(resolve_model("default"))
    SHAPE_DIR.mkdir(parents=True, exist_ok=True)
    for name in SHAPE_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, SHAPE_DIR / name)
    exclude = Path(subprocess.check_output(["git", "rev-parse", "--git-path", "info/exclude"],
                                           cwd=REPO, text=True).strip())
    if not exclude.is_absolute():
        exclude = REPO / exclude
    lines = exclude.read_text().splitlines() if exclude.is_file() else []
    if "/.gpu/" not in lines:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with exclude.open("a") as f:
            f.write("/.gpu/\n")
    size = sum(f.stat().st_size for f in SHAPE_DIR.iterdir()) / (1 << 20)
    print(f"{SHAPE_DIR}: {size:.1f} MiB (carry .gpu and .whl)")


def build_model(out: str) -> None:
    """Random bf16 weights in the shape of .gpu/smollm2/config.json, plus its tokenizer files
    (copied, not re-saved: transformers 5 would rewrite the tokenizer class)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    config = AutoConfig.from_pretrained(SHAPE_DIR)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    for name in SHAPE_FILES[1:]:
        if (SHAPE_DIR / name).is_file():
            shutil.copy(SHAPE_DIR / name, folder / name)
    params = sum(p.numel() for p in model.parameters())
    print(f"random {config.model_type} with {params / 1e6:.0f}M parameters in {folder}")


def peak_gpu_mib(mem_csv: str) -> tuple[float, float]:
    """(peak, first sample) of the nvidia-smi memory.used poll, in MiB."""
    values = []
    with open(mem_csv) as f:
        for row in csv.reader(f):
            try:
                values.append(float(row[0]))
            except (IndexError, ValueError):
                continue
    return (max(values), values[0]) if values else (float("nan"), float("nan"))


def phase_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for k, it in sorted(manifest.get("iterations", {}).items(), key=lambda kv: int(kv[0])):
        for name, ph in it.get("phases", {}).items():
            m = ph.get("metrics") or {}
            rows.append({"iteration": int(k), "phase": name, "status": ph.get("status"),
                         "seconds": ph.get("seconds"), "tokens": m.get("tokens"),
                         "tokens_per_s": m.get("tokens_per_s"), "train_tokens_per_s": m.get("tokens_per_second"),
                         "examples": m.get("examples"), "skipped": m.get("skipped")})
    return rows


def last_json(path: str | None) -> dict[str, Any] | None:
    """The last JSON line of bench/train.py's output, if it ran."""
    if not path or not Path(path).is_file():
        return None
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def report(run_dir: str, mem_csv: str, train_out: str | None) -> None:
    manifest = json.loads((Path(run_dir) / "manifest.json").read_text())
    rows = phase_rows(manifest)
    for r in rows:
        print(json.dumps({"gpu_iteration": "phase", **r}))
    gen = [r for r in rows if r["phase"] in ("samples", "eval") and r["tokens"]]
    gen_tokens = sum(r["tokens"] for r in gen)
    gen_seconds = sum(r["seconds"] for r in gen)
    trained = [r for r in rows if r["phase"] == "train" and r["train_tokens_per_s"]]
    bench_train = last_json(train_out)
    peak, idle = peak_gpu_mib(mem_csv)
    summary = {
        "gpu_iteration": "summary",
        "generated_tokens_per_s": round(gen_tokens / gen_seconds, 1) if gen_seconds else None,
        "train_tokens_per_s": round(trained[-1]["train_tokens_per_s"], 1) if trained else None,
        "bench_train": bench_train,
        "peak_gpu_mib": peak, "gpu_mib_at_start": idle,
        "phase_seconds": {f"iter{r['iteration']}.{r['phase']}": r["seconds"] for r in rows},
    }
    print(json.dumps(summary))
    train_tps = summary["train_tokens_per_s"] or (bench_train or {}).get("tokens_per_second")
    source = "the iteration" if trained else "bench/train.py (the iteration trained nothing)"
    print(f"SUMMARY gpu_iteration: generated {summary['generated_tokens_per_s']} tok/s over the samples and "
          f"eval phases; train {train_tps} tok/s ({source}); peak GPU memory {peak:.0f} MiB "
          f"(nvidia-smi, all processes; {idle:.0f} at start)")
    print("phases: " + ", ".join(f"{k} {v}s" for k, v in summary["phase_seconds"].items()))


def main() -> None:
    cmd, *rest = sys.argv[1:] or ["--help"]
    if cmd == "prepare":
        prepare()
    elif cmd == "model" and len(rest) == 1:
        build_model(rest[0])
    elif cmd == "report" and len(rest) in (2, 3):
        report(rest[0], rest[1], rest[2] if len(rest) == 3 else None)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
