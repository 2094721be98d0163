"""`--help` that helps: each command shows only the run flags that act on it, grouped, with the
defaults RunConfig itself has; `axiom config show` prints the resolved config tree."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from axiom_ray.cli import RUN_FLAGS, build_parser, main
from axiom_ray.config import RunConfig, build_config

REPO = Path(__file__).resolve().parent.parent


def help_of(command: str, raw: bool = False) -> str:
    """`axiom COMMAND --help` as printed (in-process: argparse prints it and exits 0)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    out = buf.getvalue()
    return out if raw else " ".join(out.split())  # argparse wraps lines; compare the words


def subparser(command: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def test_evaluate_help_lists_no_training_or_curriculum_flags() -> None:
    text = help_of("evaluate")
    for flag in ("--lora-r", "--lora-alpha", "--epochs", "--grad-accum", "--lr", "--curriculum",
                 "--curriculum-size", "--samples ", "--iterations"):
        assert flag not in text, flag
    for flag in ("--eval-problems", "--eval-samples", "--adapter", "--timeout", "--engine", "--set"):
        assert flag in text, flag


def test_train_help_lists_no_sampling_flags() -> None:
    text = help_of("train")
    assert "--lora-r" in text and "--epochs" in text
    for flag in ("--temperature", "--eval-problems", "--curriculum", "--timeout"):
        assert flag not in text, flag


def test_iterate_help_groups_the_flags() -> None:
    raw = help_of("iterate", raw=True)
    headings = [line.split(" ")[0].rstrip(":") for line in raw.splitlines() if line and not line[0].isspace()
                and line.endswith(":")]
    assert headings == ["options", "run", "generation", "verification", "training", "evaluation"]
    text = " ".join(raw.split())
    # each flag sits under its group's heading: --lora-r after "training", before "evaluation"
    body = text[text.index("options:"):]  # past the usage line
    assert body.index("training (LoRA") < body.index("--lora-r LORA_R") < body.index("evaluation (held-out")


def test_help_defaults_are_the_dataclass_defaults() -> None:
    defaults = RunConfig()
    for command in ("iterate", "generate", "train", "evaluate"):
        actions = {a.dest: a for a in subparser(command)._actions}
        for flag in RUN_FLAGS:
            if command not in flag.commands:
                assert flag.key not in actions, (command, flag.flag)
                continue
            shown = re.search(r"\(default: ([^)]*)\)$", actions[flag.key].help).group(1)
            value = defaults
            for part in flag.key.split("."):
                value = getattr(value, part)
            if flag.default is not None:  # a default that needs words: it starts with the value or names it
                assert shown == flag.default and (shown.startswith(str(value)) or not value), flag.flag
            elif isinstance(value, float):
                assert float(shown) == value, flag.flag
            else:
                assert shown == str(value), flag.flag


def test_flags_still_set_their_keys() -> None:
    args = build_parser().parse_args(["train", "--lora-r", "8", "--epochs", "2", "--storage", "x"])
    from axiom_ray.cli import config_from_args

    cfg = config_from_args(args)
    assert (cfg.training.lora_r, cfg.training.epochs, cfg.storage) == (8, 2, "x")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--lora-r", "8"])  # not a flag of evaluate: refused


def test_config_show_prints_the_resolved_tree(tmp_path, capsys) -> None:
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("generation:\n  samples: 6\ntraining:\n  lr: 0.0005\n")
    assert main(["config", "show", "--config", str(yaml_file), "--set", "generation.top_p=0.8",
                 "--set", "evaluation.ks=[1]"]) == 0
    tree = yaml.safe_load(capsys.readouterr().out)
    assert tree["generation"]["samples"] == 6 and tree["training"]["lr"] == 0.0005
    assert tree["generation"]["top_p"] == 0.8
    assert tree["verifier"]["timeout"] == RunConfig().verifier.timeout  # untouched keys: the defaults
    # the output is a valid --config file that gives the same config back
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(tree))
    assert build_config(again) == build_config(yaml_file, None, ["generation.top_p=0.8"])


def test_config_show_bad_key_is_one_line_exit_2() -> None:
    r = subprocess.run([sys.executable, "-m", "axiom_ray", "config", "show", "--set", "generation.sample=8"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "generation.sample: unknown key" in r.stderr and "Traceback" not in r.stderr


def test_phase_command_on_a_run_keeps_the_runs_config(tmp_path) -> None:
    """`axiom train` has no --samples or --eval-problems: on a run made with other values, the
    run's recorded ones are used (so its identity matches), and flags and --set still apply."""
    from axiom_ray.cli import phase_config
    from axiom_ray.rundir import RunDir

    storage = str(tmp_path / "run")
    made = build_config(overrides=["generation.samples=3", "evaluation.problems=add", f"storage={storage}"])
    RunDir.open_or_create(storage, made)
    cfg = phase_config(build_parser().parse_args(["train", "--storage", storage, "--epochs", "2"]))
    assert (cfg.generation.samples, cfg.evaluation.problems, cfg.training.epochs) == (3, "add", 2)
    cfg = phase_config(build_parser().parse_args(["evaluate", "--storage", storage, "--set", "generation.samples=5"]))
    assert cfg.generation.samples == 5
    fresh = phase_config(build_parser().parse_args(["train", "--storage", str(tmp_path / "new")]))
    assert fresh.generation.samples == RunConfig().generation.samples  # no run there: the defaults
