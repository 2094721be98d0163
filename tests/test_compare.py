"""`axiom compare`: runs side by side, on run directories written as the loop writes them (the
synthetic run of test_report.py and variants of it), through the real command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_report import HELD_OUT, make_rows, make_run, write_parquet

from axiom_ray.cli import main

REPO = Path(__file__).resolve().parent.parent


def variant(run: Path, dest: Path, eval_pool_1: dict | None = None, **config: object) -> Path:
    """A copy of `run` with other model-1 held-out rows and/or other config values (dotted keys)."""
    shutil.copytree(run, dest)
    if eval_pool_1 is not None:
        shutil.rmtree(dest / "iter_1/eval")
        write_parquet(dest / "iter_1/eval", make_rows(1, eval_pool_1))
    manifest = json.loads((dest / "manifest.json").read_text())
    for dotted, value in config.items():
        node = manifest
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compare")
    base = make_run(root)
    better = {"add": (4, 4, 1), "max_of_three": (2, 4, 1), "count_vowels": (1, 4, 1)}
    return {
        "base": base,
        "better": variant(base, root / "better", better, config__generation__samples=16),
        "other_heldout": variant(base, root / "other", problems__eval=[*HELD_OUT[:2], "fizz_other"]),
    }


def test_compare_shows_rates_paired_differences_and_config(runs, tmp_path, capsys) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", str(runs["base"]), str(runs["better"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    md = (out / "compare.md").read_text()
    assert md in printed  # the Markdown is what it prints
    assert "| Model | run | better |" in md
    # held-out pass@1 of model 1, by hand: base (3/4 + 1/4 + 0/4) / 3 = 33.3%, better (4/4 + 2/4 + 1/4) / 3 = 58.3%
    m1 = [line for line in md.splitlines() if line.startswith("| M1 |") and "(3)" in line]
    assert m1 and "33.3%" in m1[0] and "58.3%" in m1[0]
    # the paired difference on the 3 shared problems: +25.0 pp; model 0 is the same in both runs
    assert any(line.startswith("| M1 | +25.0 pp [") and "3 problems" in line for line in md.splitlines())
    assert any(line.startswith("| M0 | +0.0 pp [+0.0, +0.0]") for line in md.splitlines())
    # training pool, model 0 by hand: (8/8 + 3/8 + 1/8 + 0/8) / 4 = 37.5% over 4 problems
    assert "37.5%" in md and "(4)" in md
    # the one config key that differs, with both values
    assert "| `generation.samples` | 8 | 16 |" in md
    html = (out / "compare.html").read_text()
    assert '<img alt="pass@1 per model' in html and "data:image/png;base64," in html
    assert (out / "plots/compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_refuses_different_heldout_sets_in_one_line(runs, tmp_path) -> None:
    r = subprocess.run([sys.executable, "-m", "axiom_ray", "compare", str(runs["base"]), str(runs["other_heldout"]),
                        "--out", str(tmp_path / "cmp")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "Traceback" not in r.stderr
    assert "different held-out problems (run: 3, other: 3; 2 shared)" in r.stderr and "--intersection" in r.stderr
    assert not (tmp_path / "cmp").exists()


def test_compare_intersection_uses_only_the_shared_heldout_problems(runs, tmp_path, capsys) -> None:
    # one run given as a file:// URI: runs may live on any storage.py filesystem
    assert main(["compare", str(runs["base"]), f"file://{runs['other_heldout']}", "--intersection",
                 "--out", str(tmp_path / "cmp")]) == 0
    md = capsys.readouterr().out
    assert "only the 2 they all share" in md
    # model 1 on add and max_of_three only: (3/4 + 1/4) / 2 = 50%, in both columns
    m1 = next(line for line in md.splitlines() if line.startswith("| M1 |") and "(2)" in line)
    assert m1.count("50% [") == 2
    heldout_rows = [line for line in md.split("## Held-out")[1].splitlines() if line.startswith("| M0 |")]
    assert all("(3)" not in line and "3 problems" not in line for line in heldout_rows)


def test_compare_needs_two_runs_and_run_directories(runs, tmp_path) -> None:
    assert main(["compare", str(runs["base"])]) == 2
    assert main(["compare", str(runs["base"]), str(tmp_path)]) == 2  # no manifest.json there


def test_compare_intervals_are_the_run_reports(runs) -> None:
    """Unrestricted, a run's interval in the comparison is the one its own report shows."""
    from axiom_ray.report.collect import open_run, read_run
    from axiom_ray.report.compare import rate
    from axiom_ray.report.details import BOOT_SEED

    run = read_run(open_run(str(runs["base"])))
    for it in run.iterations:
        if it.heldout is not None:
            r = rate(it.heldout)
            assert (r.lo, r.hi) == it.heldout.pass_at_k_ci(1, seed=BOOT_SEED)
            assert r.value == it.heldout.pass_at_k[1]
