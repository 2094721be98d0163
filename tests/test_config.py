from pathlib import Path

import pytest

from axiom_ray.config import ConfigError, RunConfig, build_config, config_from_dict, diff_identity


def test_defaults_are_the_measured_recipe():
    cfg = RunConfig()
    assert (cfg.generation.samples, cfg.generation.temperature) == (4, 0.7)
    assert cfg.generation.stop_at_code_end
    t = cfg.training
    assert (t.lora_r, t.lora_alpha, t.epochs, t.batch_size, t.grad_accum, t.lr) == (16, 32, 3, 1, 1, 1e-3)
    assert cfg.problems == "axiom-rl,basics-sample" and cfg.iterations == 1


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

    code = "import sys, axiom_ray.config, axiom_ray.samples, axiom_ray.placement, axiom_ray.problems, " \
           "axiom_ray.curriculum; " \
           "print(sorted(m for m in ('torch', 'vllm', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_configs_folder_has_the_experiments():
    names = {p.name for p in CONFIGS}
    assert {"experiment-smollm2-cpu.yaml", "experiment-qwen-coder-1.5b-gpu.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_file_loads(path):
    from axiom_ray.problems import SETS

    cfg = build_config(path)
    assert config_from_dict(cfg.to_dict()) == cfg
    # problem sets are named, not listed: each name must be a known set (resolving them would
    # load CodeI/O and HumanEval, too slow for this file's tests)
    for spec in (cfg.problems, cfg.evaluation.problems):
        assert all(name.strip() in SETS for name in spec.split(",")), spec
    assert cfg.storage == "", "a config names no run directory: --storage does (see its header)"
    assert "ray job submit --working-dir . -- python jobs/iterate.py" in path.read_text()
    assert "scripts/run.sh --config" in path.read_text()


def test_the_cpu_experiment_is_axiom_rls():
    cfg = build_config(CONFIG_DIR / "experiment-smollm2-cpu.yaml")
    assert (cfg.model, cfg.problems, cfg.iterations, cfg.generation.samples) == ("default", "axiom-rl", 3, 8)
    assert cfg.evaluation.problems == "heldout" and cfg.data.curriculum == "off"


def test_the_gpu_experiment():
    cfg = build_config(CONFIG_DIR / "experiment-qwen-coder-1.5b-gpu.yaml")
    assert cfg.model == "Qwen/Qwen2.5-Coder-1.5B-Instruct" and cfg.generation.dtype == "bfloat16"
    assert cfg.data.curriculum == "on" and cfg.problems == "train-large"
    assert cfg.evaluation.ks == (1, 5) and cfg.evaluation.samples >= 5


@pytest.mark.parametrize("value, mode", [("on", "on"), ("off", "off"), ("auto", "auto")])
def test_curriculum_mode_from_yaml_and_flags(tmp_path, value, mode):
    y = tmp_path / "c.yaml"
    y.write_text(f"data:\n  curriculum: {value}\n")  # bare on/off: YAML 1.1 booleans
    assert build_config(y).data.curriculum == mode
    assert build_config(flags={"data.curriculum": value}).data.curriculum == mode


@pytest.mark.parametrize("override", [
    "data.curriculum=sometimes", "data.curriculum_size=0", "data.curriculum_explore=1.5",
    "data.curriculum_step_up=0",
])
def test_bad_curriculum_values_name_the_key(override):
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        build_config(overrides=[override])


def test_curriculum_is_part_of_a_runs_identity():
    assert diff_identity(build_config(overrides=["data.curriculum=on"]), RunConfig())


def test_curriculum_flag_on_iterate(capsys):
    from axiom_ray.cli import build_parser, config_from_args

    args = build_parser().parse_args(["iterate", "--curriculum", "on", "--curriculum-size", "32"])
    cfg = config_from_args(args)
    assert (cfg.data.curriculum, cfg.data.curriculum_size) == ("on", 32)
    assert config_from_args(build_parser().parse_args(["iterate"])).data.curriculum == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["iterate", "--curriculum", "maybe"])
    assert "expected one of auto, on, off" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["iterate", "--help"])
    help_text = capsys.readouterr().out
    assert "--curriculum" in help_text and "sometimes-solved" in help_text


def test_evaluate_scores_the_problems_named_by_problems_unless_eval_problems_says_otherwise():
    from axiom_ray.cli import build_parser, problems_as_eval

    args = build_parser().parse_args(["evaluate", "--adapter", "docs/x/adapter", "--problems", "mine.jsonl"])
    problems_as_eval(args)
    assert getattr(args, "evaluation.problems") == "mine.jsonl"
    args = build_parser().parse_args(["evaluate", "--problems", "a.jsonl", "--eval-problems", "b.jsonl"])
    problems_as_eval(args)
    assert getattr(args, "evaluation.problems") == "b.jsonl"
