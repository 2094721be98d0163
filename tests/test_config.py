import pytest

from axiom_ray.config import ConfigError, RunConfig, build_config, config_from_dict, diff_identity


def test_defaults_match_axiom_rl():
    cfg = RunConfig()
    assert (cfg.generation.samples, cfg.generation.temperature) == (8, 0.7)
    t = cfg.training
    assert (t.lora_r, t.lora_alpha, t.epochs, t.batch_size, t.grad_accum, t.lr) == (16, 32, 3, 1, 8, 2e-4)
    assert cfg.problems == "axiom-rl" and cfg.iterations == 1


def test_precedence_yaml_then_flags_then_set(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("seed: 5\ngeneration:\n  samples: 3\n  top_p: 0.8\n")
    cfg = build_config(y, {"generation.samples": 4, "seed": None}, ["generation.top_p=0.9"])
    assert cfg.seed == 5 and cfg.generation.samples == 4 and cfg.generation.top_p == 0.9


@pytest.mark.parametrize("override, key", [
    ("generation.samples=0", "generation.samples"),
    ("generation.nope=1", "generation.nope"),
    ("training.lr=abc", "training.lr"),
    ("generation.engine=tgi", "generation.engine"),
    ("evaluation.ks=[1,9]", "evaluation.ks"),
    ("generation=3", "generation"),
    ("noequals", "noequals"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_config(overrides=[override])


def test_bad_yaml_names_the_file(tmp_path):
    y = tmp_path / "bad.yaml"
    y.write_text("generation: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        build_config(y)
    with pytest.raises(ConfigError, match="no such file"):
        build_config(tmp_path / "missing.yaml")


def test_round_trip_and_identity_diff():
    cfg = build_config(overrides=["generation.samples=2", "evaluation.ks=[1,2]", "evaluation.samples=2"])
    assert config_from_dict(cfg.to_dict()) == cfg
    diffs = diff_identity(cfg, RunConfig())
    assert any(d.startswith("generation.samples") for d in diffs)
    assert diff_identity(cfg, cfg) == []
    # knobs that do not change what a run contains are not identity
    assert diff_identity(build_config(overrides=["verifier.workers=3"]), RunConfig()) == []


def test_config_imports_without_heavy_modules():
    import subprocess
    import sys

    code = "import sys, axiom_ray.config, axiom_ray.samples, axiom_ray.placement, axiom_ray.problems; " \
           "print(sorted(m for m in ('torch', 'vllm', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
