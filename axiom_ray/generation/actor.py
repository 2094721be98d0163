"""GeneratorActor: one engine replica, meant to run as a Ray actor.

A plain class: the generator pool (pool.py) wraps it with `ray.remote(GeneratorActor).options(...)`,
so this module imports neither Ray nor torch at import time. The model is resolved on the
actor's own node (the embedded default is converted there once, under a file lock).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from axiom_ray.config import GenerationConfig
from axiom_ray.generation.engines import Engine, Sampling, derive_seed, make_engine, normalize_kind
from axiom_ray.generation.extract import extract_code
from axiom_ray.generation.prompts import render_prompt
from axiom_ray.models import model_display_name, resolve_model
from axiom_ray.samples import Candidate
from axiom_ray.storage import is_uri, local_folder

log = logging.getLogger(__name__)


class GeneratorActor:
    """Hosts one engine; samples candidates for rendered prompts; hot-swaps LoRA adapters."""

    def __init__(
        self,
        model: str,
        engine: str,
        seed: int,
        cfg: GenerationConfig | None = None,
        max_lora_rank: int = 64,
    ) -> None:
        started = time.perf_counter()
        self.cfg = cfg or GenerationConfig()
        self.seed = seed
        self.model_spec = model
        self.model_name = model_display_name(model)
        self.model_path = resolve_model(model)
        self.engine_kind = normalize_kind(engine)
        self.engine: Engine = make_engine(
            self.engine_kind, self.model_path, seed=seed, cfg=self.cfg, max_lora_rank=max_lora_rank
        )
        self.start_seconds = time.perf_counter() - started
        self.tokens_generated = 0  # over the actor's life, base and adapters together
        self.candidates_generated = 0
        self.generate_seconds = 0.0  # wall time inside engine.generate
        self._adapter_dir = tempfile.mkdtemp(prefix="axiom-adapters-")
        self._fetched: str | None = None  # our local copy of a remote adapter, if any
        log.info("generator ready in %.1fs: %s", self.start_seconds, self.engine.info())

    # --- lifecycle ----------------------------------------------------------------------------

    def ready(self) -> dict[str, Any]:
        """Cheap call that returns once the engine is built: info plus start time and node."""
        return {
            **self.info(),
            "start_seconds": round(self.start_seconds, 2),
            "pid": os.getpid(),
            "hostname": os.uname().nodename,
        }

    def info(self) -> dict[str, Any]:
        return {
            **self.engine.info(),
            "model_name": self.model_name,
            "model_spec": self.model_spec,
            "config": asdict(self.cfg),
        }

    def stats(self) -> dict[str, Any]:
        """Counters for metrics: tokens and candidates so far, and generation wall time."""
        seconds = self.generate_seconds
        return {
            "tokens_generated": self.tokens_generated,
            "candidates_generated": self.candidates_generated,
            "generate_seconds": round(seconds, 3),
            "tokens_per_second": round(self.tokens_generated / seconds, 1) if seconds else 0.0,
        }

    def close(self) -> None:
        self.engine.close()
        shutil.rmtree(self._adapter_dir, ignore_errors=True)

    # --- prompts and generation ---------------------------------------------------------------

    def render_prompts(self, problems: list[dict[str, Any]]) -> list[str]:
        """Chat-template prompts for problem dicts (id, prompt, entry_point), in order."""
        return [render_prompt(self.engine.tokenizer, p) for p in problems]

    def generate(self, requests: list[dict[str, Any]], sampling: Sampling) -> list[Candidate]:
        """`sampling.n` candidates for each request ({"problem_id", "prompt", optional
        "entry_point"}), in request order.

        Each prompt's sampling seed comes from (this replica's seed, `sampling.seed`,
        problem_id), so a problem's samples do not depend on batching, and replicas with
        different seeds differ.
        """
        done = dict(self._stream(requests, sampling))
        return [c for i in range(len(requests)) for c in done.get(i, [])]

    def generate_stream(self, requests: list[dict[str, Any]], sampling: Sampling) -> Iterator[list[Candidate]]:
        """`generate`'s candidates, one request's `n` at a time as the engine finishes it (a
        Ray streaming-generator method: call it with `.options(num_returns="streaming")`), so
        they can be judged while the engine decodes the rest. Same seeds, same candidates."""
        for _, rows in self._stream(requests, sampling):
            yield rows

    def _stream(self, requests: list[dict[str, Any]], sampling: Sampling) -> Iterator[tuple[int, list[Candidate]]]:
        if not requests:
            return
        prompts = [r["prompt"] for r in requests]
        seeds = [derive_seed(self.seed, sampling.seed, str(r["problem_id"])) for r in requests]
        stream = self.engine.generate_stream(prompts, sampling, seeds=seeds)
        while True:
            started = time.perf_counter()
            try:
                i, completions = next(stream)
            except StopIteration:
                self.generate_seconds += time.perf_counter() - started
                return
            except Exception as e:
                if self.engine.is_dead(e):
                    # A dead engine never serves again: die, so Ray restarts this actor and the
                    # pipeline reloads its adapter and resubmits the batch (an exit_actor() would
                    # count as intended and not be restarted).
                    log.error("generator engine died (%s); exiting so Ray restarts this replica", e)
                    os._exit(1)
                raise
            self.generate_seconds += time.perf_counter() - started
            rows = [self._row(requests[i], index, c) for index, c in enumerate(completions)]
            self.tokens_generated += sum(r["num_tokens"] for r in rows)
            self.candidates_generated += len(rows)
            yield i, rows

    def _row(self, request: dict[str, Any], index: int, completion: Any) -> Candidate:
        code = extract_code(completion.text, request.get("entry_point"))
        return Candidate(
            problem_id=request["problem_id"],
            index=index,
            completion=completion.text,
            code=code,
            code_tokens=len(self.engine.tokenizer.encode(code, add_special_tokens=False)),
            num_tokens=completion.num_tokens,
            finish_reason=completion.finish_reason,
            model=self.model_name,
            adapter=self.engine.adapter_name,
        )

    # --- adapters and memory ------------------------------------------------------------------

    def load_adapter(self, path_or_uri: str, iteration: int) -> float:
        """Activate the adapter (local folder or storage URI) for later calls; returns seconds."""
        started = time.perf_counter()
        local = local_folder(path_or_uri, self._adapter_dir)
        self.engine.load_adapter(local, iteration)
        # Keep only the active adapter's copy: vLLM may re-read it after evicting it from cache.
        previous, self._fetched = self._fetched, (local if is_uri(path_or_uri) else None)
        if previous and previous != local:
            shutil.rmtree(previous, ignore_errors=True)
        seconds = time.perf_counter() - started
        log.info("adapter %s (%s) loaded in %.2fs", self.engine.adapter_name, path_or_uri, seconds)
        return seconds

    def use_base(self) -> None:
        self.engine.use_base()

    def sleep(self) -> None:
        self.engine.sleep()

    def wake(self) -> None:
        self.engine.wake()
