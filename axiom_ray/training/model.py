"""The model a worker trains: the base model with a LoRA adapter (peft), and batches as tensors.

torch, transformers and peft are imported at the top: only the Ray Train workers (and tests)
import this module; the driver never loads torch (training/job.py imports the worker lazily).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from axiom_ray.config import TrainingConfig
from axiom_ray.training.data import IGNORE_INDEX

# vLLM serves LoRA on the decoder's linear layers only; never target the output head or embeddings.
EXCLUDED_MODULES = frozenset({"lm_head", "embed_tokens", "embed_out", "wte", "wpe", "output"})


def collate(batch: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of examples into tensors (padding: pad_id, label -100, mask 0)."""
    width = max(len(ex["input_ids"]) for ex in batch)

    def pad(key: str, value: int) -> torch.Tensor:
        return torch.tensor([ex[key] + [value] * (width - len(ex[key])) for ex in batch])

    return {
        "input_ids": pad("input_ids", pad_id),
        "labels": pad("labels", IGNORE_INDEX),
        "attention_mask": pad("attention_mask", 0),
    }


def lora_target_modules(model: Any, spec: str) -> list[str]:
    """The module names LoRA targets, as an explicit list vLLM understands.

    "all-linear" expands to the names of the decoder's nn.Linear layers (on Llama/SmolLM2:
    q/k/v/o/gate/up/down_proj); anything else is a comma-separated list of names. The output
    head and embeddings are never targeted: vLLM cannot serve LoRA on them.
    """
    if spec.strip() != "all-linear":
        names = [n.strip() for n in spec.split(",") if n.strip()]
        bad = EXCLUDED_MODULES.intersection(names)
        if bad:
            raise ValueError(f"training.target_modules: vLLM cannot serve LoRA on {sorted(bad)}")
    else:
        linear = (m for m in model.named_modules() if isinstance(m[1], torch.nn.Linear))
        names = sorted({name.rsplit(".", 1)[-1] for name, _ in linear})
    names = [n for n in names if n not in EXCLUDED_MODULES]
    if not names:
        raise ValueError(f"training.target_modules: {spec!r} matches no linear layer")
    return names


def quantization_config(quantization: str, device: torch.device) -> Any:
    """bitsandbytes' settings for `quantization` (4bit: QLoRA's nf4 with double quantization,
    bf16 compute on GPU, float32 on CPU where bitsandbytes' CPU kernels compute; 8bit: LLM.int8)."""
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if device.type == "cuda" else torch.float32,
    )


def load_base(base_model: str, quantization: str, device: torch.device) -> Any:
    """The frozen base model on `device`: full precision, or quantized and prepared for k-bit
    training (norms in float32, input gradients on, gradient checkpointing on) as QLoRA does."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if quantization == "none":
        return AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype).to(device)
    from peft import prepare_model_for_kbit_training

    base = AutoModelForCausalLM.from_pretrained(
        base_model, dtype=dtype, quantization_config=quantization_config(quantization, device),
        device_map={"": device})
    # Non-reentrant checkpointing: the reentrant kind breaks DDP's one-reduction-per-parameter.
    return prepare_model_for_kbit_training(
        base, use_gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False})


def build_model(
    base_model: str,
    cfg: TrainingConfig,
    *,
    adapter: str | None,
    device: torch.device,
) -> Any:
    """The base model with a trainable LoRA adapter: fresh (seeded), or loaded from `adapter`.

    float32 on CPU (exact; bf16 autocast showed no reliable gain on the 2-core dev machine),
    bf16 on GPU; peft keeps the adapter weights themselves in float32 either way. With
    cfg.quantization the frozen base is loaded through bitsandbytes (QLoRA, `load_base`).
    """
    base = load_base(base_model, cfg.quantization, device)
    base.config.use_cache = False  # no KV cache while training: saves memory, same loss
    if adapter:
        return PeftModel.from_pretrained(base, adapter, is_trainable=True)
    torch.manual_seed(cfg.seed)  # the LoRA A init is random: same seed, same adapter
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=lora_target_modules(base, cfg.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, lora)
