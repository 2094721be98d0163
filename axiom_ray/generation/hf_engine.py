"""The transformers engine: the reference implementation and the fallback where vLLM cannot run.

Batched `generate` with left padding; adapters through peft (one active at a time, each iteration
under a fresh name). float32 on CPU (bf16 matmuls are slower there), bf16 on GPU for "auto".
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from axiom_ray.config import GenerationConfig
from axiom_ray.generation.engines import (
    CODE_END,
    Completion,
    Engine,
    Sampling,
    cut_at_code_end,
    prompt_seeds,
)

log = logging.getLogger(__name__)

# Sequences per forward pass on CPU: past ~16 rows, batched decoding on a few cores gets slower
# per token (measured on 2 cores: 16 rows ~57 tok/s, 80 rows far below). On GPU, generate is
# launch-bound, so the whole cfg.batch_size goes in one call.
CPU_MAX_ROWS = 16

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _pick_dtype(name: str, device: str) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return _DTYPES[name]


def _use_all_allowed_cores() -> None:
    """Ray sets OMP_NUM_THREADS to the actor's num_cpus (often 1); generation wants every core
    the process may run on (phases take turns). AXIOM_TORCH_THREADS overrides."""
    wanted = os.environ.get("AXIOM_TORCH_THREADS") or len(os.sched_getaffinity(0))
    torch.set_num_threads(int(wanted))


class HFEngine(Engine):
    kind = "transformers"

    def __init__(self, model_path: str, *, seed: int, cfg: GenerationConfig) -> None:
        super().__init__(model_path, seed)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype = _pick_dtype(cfg.dtype, self.device)
        self.batch_size = cfg.batch_size  # prompts per model.generate call (GPU)
        self.stop_at_code_end = cfg.stop_at_code_end
        if self.device == "cpu":
            _use_all_allowed_cores()
        self._tokenizer = AutoTokenizer.from_pretrained(model_path)
        self._tokenizer.padding_side = "left"  # decoder-only: new tokens follow the prompt
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        self.model: Any = AutoModelForCausalLM.from_pretrained(model_path, dtype=self.dtype)
        self.model.to(self.device).eval()
        self._peft_loaded = False  # self.model is a PeftModel once an adapter was loaded
        self._eos_ids = self._stop_ids()
        torch.manual_seed(seed)

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def _stop_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = ids if isinstance(ids, list) else [ids]
        ids = [i for i in ids if i is not None] or [self._tokenizer.eos_token_id]
        return set(ids)

    # --- generation -------------------------------------------------------------------------

    def generate_stream(
        self, prompts: list[str], sampling: Sampling, seeds: list[int] | None = None
    ) -> Iterator[tuple[int, list[Completion]]]:
        """Chunked batches (the same chunks `generate` decodes), each chunk's prompts yielded as
        soon as it is decoded."""
        self._check_awake()
        per_prompt = prompt_seeds(sampling.seed, len(prompts), seeds)
        step = self._prompts_per_call(sampling.decodes)
        for start in range(0, len(prompts), step):
            chunk = prompts[start : start + step]
            # One generator per batch: transformers samples a batch from one stream, so the
            # first prompt's seed decides the batch (results depend on batch composition).
            torch.manual_seed(per_prompt[start])
            rows = self._generate_batch(chunk, sampling)
            yield from enumerate(rows, start)

    def _prompts_per_call(self, copies: int) -> int:
        if self.device == "cuda":
            return self.batch_size
        return max(1, min(self.batch_size, CPU_MAX_ROWS // copies))

    def _generate_batch(self, prompts: list[str], sampling: Sampling) -> list[list[Completion]]:
        inputs = self._tokenizer(
            prompts, return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        # Greedy gives n identical copies: decode once, repeat (transformers refuses
        # num_return_sequences > 1 without sampling or beams).
        copies = sampling.decodes
        kwargs: dict[str, Any] = {"do_sample": not sampling.greedy, "num_return_sequences": copies}
        if not sampling.greedy:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)  # top_k=0: as vLLM
        if self.stop_at_code_end:  # saves the decoding; the text is cut in _completion
            kwargs.update(stop_strings=[CODE_END], tokenizer=self._tokenizer)
        with torch.inference_mode(), self._adapter_context():
            ids = self.model.generate(
                **inputs,
                max_new_tokens=sampling.max_tokens,
                pad_token_id=self._tokenizer.pad_token_id,
                **kwargs,
            )
        new = ids[:, inputs["input_ids"].shape[1] :].tolist()
        completions = [self._completion(tokens, sampling.max_tokens) for tokens in new]
        rows = [completions[i * copies : (i + 1) * copies] for i in range(len(prompts))]
        return [row * sampling.n for row in rows] if sampling.greedy else rows

    def _completion(self, tokens: list[int], max_tokens: int) -> Completion:
        stop = next((i for i, t in enumerate(tokens) if t in self._eos_ids), None)
        if stop is not None:
            tokens, reason, count = tokens[:stop], "stop", stop + 1  # the stop token was generated
        else:
            reason, count = "length", min(len(tokens), max_tokens)
        text = self._tokenizer.decode(tokens, skip_special_tokens=True)
        cut = cut_at_code_end(text) if self.stop_at_code_end else None
        if cut is not None:  # a finished row is padded after its stop string: count what was kept
            text, reason = cut, "stop"
            count = min(count, len(self._tokenizer.encode(cut, add_special_tokens=False)))
        return Completion(text=text, num_tokens=count, finish_reason=reason)

    def _adapter_context(self) -> Any:
        if self._peft_loaded and self.adapter_name is None:
            return self.model.disable_adapter()
        return nullcontext()

    # --- adapters -----------------------------------------------------------------------------

    def load_adapter(self, path: str, iteration: int) -> None:
        self._check_awake()
        name = f"iter{iteration}"
        if self._peft_loaded and name in self.model.peft_config:
            name = f"{name}-{len(self.model.peft_config)}"  # a reload: never reuse a name
        if not self._peft_loaded:
            self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
            self.model.to(self.device).eval()
            self._peft_loaded = True
        else:
            self.model.load_adapter(path, adapter_name=name)
            self.model.to(self.device)
            self.model.set_adapter(name)
            self._drop_other_adapters(keep=name)
        self.adapter_name, self.adapter_path = name, path

    def _drop_other_adapters(self, keep: str) -> None:
        for old in [a for a in self.model.peft_config if a != keep]:
            self.model.delete_adapter(old)

    def use_base(self) -> None:
        # The adapter stays loaded; generate runs inside disable_adapter() until the next load.
        self.adapter_name, self.adapter_path = None, None

    # --- memory -------------------------------------------------------------------------------

    def sleep(self) -> None:
        """On GPU: weights to host memory, cache emptied. On CPU: a no-op (nothing to free)."""
        if self.device == "cuda" and not self.asleep:
            self.model.to("cpu")
            torch.cuda.empty_cache()
        self.asleep = True

    def wake(self) -> None:
        if self.device == "cuda" and self.asleep:
            self.model.to(self.device)
        self.asleep = False

    def _check_awake(self) -> None:
        if self.asleep:
            raise RuntimeError("the engine is asleep: call wake() before generating")

    def close(self) -> None:
        self.model = None
        gc.collect()
        if self.device == "cuda":
            torch.cuda.empty_cache()

    def info(self) -> dict[str, Any]:
        return {
            **self._base_info(),
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "threads": torch.get_num_threads(),
        }
