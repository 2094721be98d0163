"""`axiom report`: report.md, report.html and plots from a synthetic run directory (no Ray)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from axiom_ray.evaluation import paired_difference, summarize
from axiom_ray.report import ReportError, bar, write_report
from axiom_ray.report.blocks import markdown_table
from axiom_ray.report.content import comparison_rows
from axiom_ray.rundir import RunDir

TRAIN = ["two_sum", "fizzbuzz", "reverse_string", "is_palindrome"]
HELD_OUT = ["add", "max_of_three", "count_vowels"]

# (passes in attempt 0, N, distinct AST hashes among the passes) per problem, per model
TRAIN_POOL = {
    0: {
        "two_sum": (8, 8, 2),
        "fizzbuzz": (3, 8, 3),
        "reverse_string": (1, 8, 1),
        "is_palindrome": (0, 8, 0),
    },
    1: {
        "two_sum": (8, 8, 1),
        "fizzbuzz": (8, 8, 2),
        "reverse_string": (5, 8, 5),
        "is_palindrome": (2, 8, 2),
    },
}
EVAL_POOL = {
    0: {"add": (2, 4, 2), "max_of_three": (0, 4, 0), "count_vowels": (1, 4, 1)},
    1: {"add": (3, 4, 1), "max_of_three": (1, 4, 1), "count_vowels": (0, 4, 0)},
}
FAIL_STATUSES = ["failed", "timeout", "error", "failed"]


def make_rows(k: int, spec: dict[str, tuple[int, int, int]], attempt: int = 0) -> list[dict]:
    rows = []
    for pid, (c, n, distinct) in spec.items():
        for i in range(n):
            ok = i < c
            rows.append(
                {
                    "run_id": "synthetic-1",
                    "iteration": k,
                    "problem_id": pid,
                    "sample_id": f"{k}-{pid}-{attempt}-{i}",
                    "prompt": "p",
                    "completion": "c",
                    "code": "pass",
                    "passed": ok,
                    "passed_tests": 6 if ok else 2,
                    "total_tests": 6,
                    "status": "passed" if ok else FAIL_STATUSES[i % 4],
                    "reward": 1.0 if ok else 1 / 3,
                    "duration_ms": 12.0,
                    "model": "tiny",
                    "adapter": None if k == 0 else f"iter_{k}/adapter",
                    "temperature": 0.7,
                    "seed": 0,
                    "num_tokens": 40,
                    "code_hash": f"{pid}-{min(i, distinct - 1)}" if ok else None,
                    "created_at": "2025-01-01T00:00:00+00:00",
                    "attempt": attempt,
                    "index": i,
                }
            )
    return rows


def write_parquet(folder: Path, rows: list[dict], name: str = "part-0.parquet") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / name)


def done(wall: float, /, **metrics) -> dict:
    return {
        "status": "done",
        "seconds": wall,
        "started_at": "t0",
        "finished_at": "t1",
        "metrics": metrics,
    }


def make_run(root: Path) -> Path:
    """Iterations 0 and 1 complete, iteration 2 cut off while sampling."""
    run = root / "run"
    write_parquet(run / "iter_0/samples", make_rows(0, TRAIN_POOL[0]))
    # is_palindrome was unsolved in attempt 0: a resample (attempt 1) solves it once
    write_parquet(
        run / "iter_0/samples",
        make_rows(0, {"is_palindrome": (1, 8, 1)}, attempt=1),
        name="part-1.parquet",
    )
    write_parquet(run / "iter_0/eval", make_rows(0, EVAL_POOL[0]))
    write_parquet(run / "iter_1/train", [r for r in make_rows(0, TRAIN_POOL[0]) if r["passed"]][:6])
    write_parquet(run / "iter_1/samples", make_rows(1, TRAIN_POOL[1]))
    write_parquet(run / "iter_1/eval", make_rows(1, EVAL_POOL[1]))
    # evaluation.greedy: one greedy answer per held-out problem, written by the same eval phase
    write_parquet(run / "iter_0/eval_greedy", make_rows(0, {"add": (1, 1, 1), "max_of_three": (0, 1, 0),
                                                            "count_vowels": (0, 1, 0)}))
    write_parquet(run / "iter_1/eval_greedy", make_rows(1, {"add": (1, 1, 1), "max_of_three": (1, 1, 1),
                                                            "count_vowels": (1, 1, 1)}))
    write_parquet(run / "iter_2/train", [r for r in make_rows(1, TRAIN_POOL[1]) if r["passed"]][:9])
    # half a phase, as a killed job leaves it: the manifest says running, so it must not count
    write_parquet(run / "iter_2/samples", make_rows(2, {"two_sum": (0, 8, 0)}))
    manifest = {
        "run_id": "synthetic-1",
        "experiment": "axiom-rl",
        "created_at": "2025-01-01T00:00:00+00:00",
        "argv": ["jobs/iterate.py", "--samples", "8", "--iterations", "2", "--seed", "0"],
        "model": "SmolLM2-135M-Instruct",
        "config": {
            "model": "default",
            "problems": "axiom-rl",
            "iterations": 2,
            "seed": 0,
            "generation": {
                "engine": "vllm",
                "samples": 8,
                "temperature": 0.7,
                "top_p": 0.95,
                "max_tokens": 384,
                "max_attempts": 2,
            },
            "evaluation": {"problems": "heldout", "samples": 4, "temperature": 0.2, "ks": [1, 2]},
            "training": {
                "lora_r": 16,
                "lora_alpha": 32,
                "epochs": 3,
                "lr": 2e-4,
                "batch_size": 1,
                "grad_accum": 8,
            },
            "data": {"max_per_problem": 10, "dedupe": True, "accumulate": False},
        },
        "problems": {"train": TRAIN, "eval": HELD_OUT},
        "iterations": {
            "0": {
                "adapter": None,
                "phases": {
                    "samples": done(
                        95.5, candidates=40, passed=13, tokens=3200, tokens_per_s=245.3
                    ),
                    "eval": done(20.0, candidates=12, passed=3, tokens=480, tokens_per_s=200.0),
                },
            },
            "1": {
                "adapter": "iter_1/adapter",
                "phases": {
                    "train": done(
                        130.0, examples=6, steps=3, final_loss=0.4321, tokens_per_second=900.0
                    ),
                    "redeploy": done(0.05, seconds=0.04),
                    "samples": done(
                        180.0, candidates=32, passed=23, tokens=2900, tokens_per_s=130.0
                    ),
                    "eval": done(25.0, candidates=12, passed=4, tokens=500, tokens_per_s=110.0),
                },
            },
            "2": {
                "adapter": "iter_2/adapter",
                "phases": {
                    "train": done(
                        140.0, examples=9, steps=4, final_loss=0.2, tokens_per_second=950.0
                    ),
                    "redeploy": done(0.04, seconds=0.03),
                    "samples": {"status": "running", "started_at": "t2"},
                },
            },
        },
    }
    phases = manifest["iterations"]["1"]["phases"]
    phases["samples"]["metrics"]["paired"] = loop_paired(run, "samples")
    phases["eval"]["metrics"]["paired"] = loop_paired(run, "eval")
    phases["eval"]["metrics"]["greedy"] = {"paired": loop_paired(run, "eval_greedy")}
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def loop_paired(run: Path, folder: str) -> dict:
    """What the loop records for model 1 (Loop.paired_stats): its paired difference against the
    base, which is also model 0, the previous one."""
    scored = [summarize(pq.read_table(run / f"iter_{k}" / folder)) for k in (0, 1)]
    d = paired_difference(scored[0], scored[1]).to_dict()
    return {"vs_base": d, "vs_previous": d}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, dict[str, str], str]:
    run = make_run(tmp_path_factory.mktemp("report"))
    paths = write_report(str(run))
    return run, paths, (run / "report.md").read_text()


def test_write_report_writes_every_file(report) -> None:
    run, paths, _ = report
    plots = {"pass_rates", "heatmap_train", "heatmap_eval", "phase_times", "tokens_per_s"}
    assert set(paths) == {"md", "html", *plots}
    assert (paths["md"], paths["html"]) == (str(run / "report.md"), str(run / "report.html"))
    for name in plots:
        assert paths[name] == str(run / "plots" / f"{name}.png")
        assert Path(paths[name]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(run.rglob(".tmp-*")), "temporary files left behind"


def test_report_shows_axiom_rl_figures(report) -> None:
    _, _, md = report
    # training pool, model 0: 12/32 first-round passes; is_palindrome solved only by the resample
    assert "| Base (Model 0) | 100% (4/4) | 37.5% (12/32) | 27 | 7 | 6 |" in md
    assert "| Model 1 | 100% (4/4) | 71.9% (23/32) | 9 | 10 | 13 |" in md
    assert "| Per-sample pass rate | 37.5% (12/32) | 71.9% (23/32) | **+34.4 pp (+92%)** |" in md
    assert "| Failed samples | 27 | 9 | **-18 (-67%)** |" in md
    assert "| Duplicates filtered | 6 | 13 | **+7 (+117%)** |" in md
    # held-out: 3/12 -> 4/12, solve rate 2/3 both times
    assert "| Solve rate | 66.7% (2/3) | 66.7% (2/3) | — |" in md
    assert "| Per-sample pass rate | 25% (3/12) | 33.3% (4/12) | **+8.3 pp (+33%)** |" in md


def test_report_per_problem_breakdown(report) -> None:
    _, _, md = report
    lines = md.splitlines()
    fizz = next(line for line in lines if line.startswith("fizzbuzz"))
    assert re.search(r"3/8 ███░░░░░ +8/8 ████████ ⬆", fizz)
    two_sum = next(line for line in lines if line.startswith("two_sum"))
    assert "⬆" not in two_sum and "⬇" not in two_sum
    vowels = next(line for line in lines if line.startswith("count_vowels"))
    assert re.search(r"1/4 ██░░░░░░ +0/4 ░░░░░░░░ ⬇", vowels)
    assert any(re.match(r"TOTAL +12/32 \(38%\) +23/32 \(72%\) \+92%", line) for line in lines)


def test_report_pass_at_k_timings_config_and_partial_iteration(report) -> None:
    _, _, md = report
    heldout = md.split("## Held-out pass@k")[1].split("## ")[0]
    assert re.search(
        r"\| Base \(Model 0\) \| 3 \| 25% \| \[\d+(\.\d)?%, \d+(\.\d)?%\] \| 44.4% \|", heldout
    )
    # iteration 2 was cut off while sampling: reported as missing, its half-written rows ignored
    assert "Iteration 2: samples: running; eval: not started" in md
    assert "| Model 2 |" not in md
    assert "| 0 |  |  | 1 min 35 s | 20.0 s | 1 min 55 s | 245.3 | 3,200 |" in md
    assert "| 2 | 2 min 20 s | 40 ms | running | not started |" in md
    assert "| 1 (`iter_1/adapter`) | 6 (6) | 1 | 3 | 0.4321 | 900 | 40 ms |" in md
    assert "Reproduce with: `python jobs/iterate.py --samples 8 --iterations 2 --seed 0`" in md
    assert "| Samples per problem (Best-of-N) | 8, max attempts 2 |" in md
    assert "![Phase wall times per iteration](plots/phase_times.png)" in md


def test_report_pairs_each_model_with_the_base_and_says_what_the_interval_shows(report) -> None:
    _, _, md = report
    paired = md.split("## Paired differences")[1].split("\n## ")[0]
    train = paired.split("### Training pool")[1].split("###")[0]
    # per problem: two_sum +0, fizzbuzz +5/8, reverse_string +4/8, is_palindrome +2/8: mean +34.4 pp
    assert re.search(r"\| Model 1 \| 37.5% -> 71.9% \| \+34.4 pp \[\+\d+\.\d, \+\d+\.\d\] \(gain, 4 problems\)", train)
    held = paired.split("### Held-out problems\n")[1].split("###")[0]
    assert "(no detectable change, 3 problems)" in held  # +1/4, +1/4, -1/4 on three problems
    greedy = paired.split("### Held-out problems, greedy")[1]
    assert "| Model 1 | 33.3% -> 100% | +66.7 pp" in greedy
    passk = md.split("## Held-out pass@k")[1].split("\n## ")[0]
    assert "greedy pass@1" in passk and re.search(r"\| Model 1 \| 3 \| 33.3% \| .* \| 100% \|", passk)


def test_report_html_is_self_contained(report) -> None:
    run, _, _ = report
    page = (run / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 5
    assert not re.search(r'(src|href)="(?!data:)', page), "external asset referenced"
    assert "<table>" in page and "<strong>+34.4 pp (+92%)</strong>" in page


def test_report_on_a_run_with_only_iteration_0_running(tmp_path) -> None:
    run = tmp_path / "fresh"
    run.mkdir()
    (run / "manifest.json").write_text(
        json.dumps(
            {
                "run_id": "r",
                "experiment": "e",
                "created_at": "now",
                "model": "m",
                "config": {"evaluation": {"problems": ""}},
                "problems": {"train": ["a"], "eval": []},
                "iterations": {
                    "0": {"adapter": None, "phases": {"samples": {"status": "running"}}}
                },
            }
        )
    )
    paths = write_report(run.as_uri())  # a pyarrow URI works like a local path
    md = (run / "report.md").read_text()
    assert "Iteration 0: samples: running" in md
    assert "evaluation is disabled" in md
    assert "No finished sample rows yet." in md
    assert "The manifest records no command line" in md
    assert set(paths) == {"md", "html", "pass_rates"}  # nothing else has data to plot
    assert paths["md"] == f"{run.as_uri()}/report.md"


def test_report_notes_a_skipped_training(tmp_path) -> None:
    run = make_run(tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["iterations"]["1"]["phases"]["train"] = done(
        0.5, examples=0, skipped="no verified samples"
    )
    (run / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(run / "iter_1/train")
    write_report(str(run))
    md = (run / "report.md").read_text()
    assert "Iterations complete: 0, 1 " in md
    assert "Iteration 1: train: skipped (no verified samples), so model 1 is model 0" in md


def test_report_on_an_empty_manifest(tmp_path) -> None:
    (tmp_path / "manifest.json").write_text("{}")
    write_report(str(tmp_path))
    assert "No iteration has started yet" in (tmp_path / "report.md").read_text()


def test_report_refuses_a_directory_without_manifest(tmp_path) -> None:
    with pytest.raises(ReportError, match="no manifest.json") as err:
        write_report(str(tmp_path))
    assert "\n" not in str(err.value)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ReportError, match="not valid JSON"):
        write_report(str(tmp_path))


def test_bar() -> None:
    assert bar(4, 8) == "████░░░░"
    assert bar(0, 8) == "░░░░░░░░"
    assert bar(1, 100) == "█░░░░░░░"  # a single pass never looks like none
    assert bar(99, 100) == "███████░"  # nor a near miss like all


# Checks, inside the page, that every <img> decoded to a non-empty bitmap, and how wide each is
# shown against its natural width; the verdict lands in the DOM that --dump-dom prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0);
  const out = document.createElement("div");
  out.id = "axiom-probe";
  const widths = imgs.map(i => `${i.getBoundingClientRect().width}/${i.naturalWidth}`).join(",");
  out.textContent = `images=${imgs.length} rendered=${ok.length} widths=${widths}`;
  document.body.appendChild(out);
});
</script>"""
# A laptop's browser window; the page's content is at most 1100 px wide.
WINDOW = "1280,900"
MIN_CSS_PX = 10  # the smallest text a person reads without zooming


def drawn_figures(run: Path) -> dict:
    """The report's plots as the Figures make_plots saves, drawn (text and legends placed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from axiom_ray.report.collect import open_run, read_run
    from axiom_ray.report.plots import make_figures

    figures = make_figures(read_run(open_run(str(run))))
    for fig in figures.values():
        FigureCanvasAgg(fig).draw()
    return figures


def smallest_font_pt(fig) -> float:
    from matplotlib.text import Text

    return min(t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip())


def test_every_plot_keeps_its_legend_off_the_data_and_labels_its_axes(report) -> None:
    """As a person sees them: each legend's box (display coordinates) overlaps no axes, hence no
    line, marker, error bar or bar, nor a tick or axis label; every axis has a label, and every
    value axis a unit in parentheses."""
    run, _, _ = report
    figures = drawn_figures(run)
    assert set(figures) == {"pass_rates", "heatmap_train", "heatmap_eval", "phase_times", "tokens_per_s"}
    for name, fig in figures.items():
        renderer = fig.canvas.get_renderer()
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
        assert legends or name.startswith("heatmap"), f"{name}: no legend"
        for legend in legends:
            box = legend.get_window_extent(renderer)
            for ax in fig.axes:
                assert not box.overlaps(ax.get_window_extent(renderer)), f"{name}: legend over an axes"
                data = [*ax.lines, *ax.patches, *ax.collections, *ax.images, *ax.texts]
                labels = [ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels(), *ax.get_yticklabels()]
                for artist in data + [t for t in labels if t.get_text()]:
                    extent = artist.get_window_extent(renderer)
                    if np.isfinite(extent.bounds).all():  # an empty collection has no extent
                        assert not box.overlaps(extent), f"{name}: legend over {artist}"
        for ax in fig.axes:
            if hasattr(ax, "_colorbar"):  # a colour scale: its one label carries the unit
                assert re.search(r"\(.+\)", ax.get_ylabel()), f"{name}: colour bar without a unit"
                continue
            assert ax.get_xlabel().strip(), f"{name}: x axis without a label"
            assert re.search(r"\S.*\(.+\)", ax.get_ylabel()), f"{name}: y axis {ax.get_ylabel()!r} without a unit"


def test_report_html_renders_in_headless_chromium(report, tmp_path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not on PATH (Debian: apt-get install -y chromium)")
    run, _, _ = report
    page = tmp_path / "probe.html"
    page.write_text((run / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            f"--window-size={WINDOW}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r'id="axiom-probe">images=(\d+) rendered=(\d+) widths=([\d.,/]+)<', proc.stdout)
    assert match, f"probe missing from the DOM (rc={proc.returncode}): {proc.stderr[-2000:]}"
    assert match.groups()[:2] == ("5", "5")
    # Readable as shown: the smallest text of any plot, at the smallest scale the page shows a
    # plot at (shown / natural width), is at least MIN_CSS_PX.
    from axiom_ray.report.plots import DPI

    scales = [float(shown) / float(natural) for shown, natural in
              (pair.split("/") for pair in match.group(3).split(","))]
    smallest_pt = min(smallest_font_pt(fig) for fig in drawn_figures(run).values())
    assert smallest_pt * DPI / 72 * min(scales) >= MIN_CSS_PX, (smallest_pt, scales)


def test_report_on_a_curriculum_run(tmp_path) -> None:
    """Each iteration sampled its own subset of the pool: absent problems show "—", arrows
    compare with the problem's first model, totals and the base comparison do not mix sets."""
    run = make_run(tmp_path)
    shutil.rmtree(run / "iter_0/samples")
    shutil.rmtree(run / "iter_1/samples")
    write_parquet(
        run / "iter_0/samples", make_rows(0, {"two_sum": (8, 8, 1), "fizzbuzz": (2, 8, 2)})
    )
    write_parquet(
        run / "iter_1/samples",
        make_rows(1, {"fizzbuzz": (6, 8, 3), "reverse_string": (1, 8, 1)}),
    )
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"]["data"] |= {
        "curriculum": "auto",
        "curriculum_size": 2,
        "curriculum_explore": 0.25,
        "curriculum_step_up": 0.7,
    }
    picks = {
        "0": (["two_sum", "fizzbuzz"], {"learning": 0, "untried": 2, "unsolved": 0}, 0),
        "1": (["fizzbuzz", "reverse_string"], {"learning": 1, "untried": 1, "unsolved": 0}, 1),
    }
    for k, (ids, chosen, skipped) in picks.items():
        manifest["iterations"][k]["curriculum"] = {
            "ids": ids,
            "frontier": "easy",
            "chosen": {**chosen, "mastered": 0},
            "difficulty": {"easy": 2, "medium": 0, "hard": 0},
            "mastered_skipped": skipped,
            "pool": 4,
            "size": 2,
        }
    (run / "manifest.json").write_text(json.dumps(manifest))
    write_report(str(run))
    md = (run / "report.md").read_text()
    assert "## Curriculum" in md
    assert "| 1 | 2 of 4 | easy | 1 | 1 | 0 | 1 | 2 / 0 / 0 |" in md
    assert "| Curriculum | auto (on for this run): at most 2 problems per iteration," in md
    assert "training-pool rows of different iterations cover different problems" in md
    assert "on the 1 both sampled, the per-sample pass rate went from 25% (2/8) to 75% (6/8)" in md
    lines = md.splitlines()
    two_sum = next(line for line in lines if line.startswith("two_sum"))
    assert re.search(r"8/8 ████████ +—", two_sum)
    fizz = next(line for line in lines if line.startswith("fizzbuzz"))
    assert re.search(r"2/8 ██░░░░░░ +6/8 ██████░░ ⬆", fizz)
    reverse = next(line for line in lines if line.startswith("reverse_string"))
    assert re.search(r"— +1/8 █░░░░░░░$", reverse)  # first sampled by model 1: no arrow
    total = next(line for line in lines if line.startswith("TOTAL") and "10/16" in line)
    assert re.search(
        r"TOTAL +10/16 \(62%\) +7/16 \(44%\)$", total
    )  # no relative change across sets


def test_report_reads_the_paired_differences_the_loop_recorded(tmp_path) -> None:
    """The report shows the manifest's figures; it does not recompute them from the rows."""
    run = make_run(tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    recorded = manifest["iterations"]["1"]["phases"]["samples"]["metrics"]["paired"]["vs_base"]
    recorded |= {"diff": 0.5, "ci": [0.25, 0.75], "a": 0.1, "b": 0.6}
    (run / "manifest.json").write_text(json.dumps(manifest))
    write_report(str(run))
    train = (run / "report.md").read_text().split("## Paired differences")[1].split("### Held-out")[0]
    assert "| Model 1 | 10% -> 60% | +50.0 pp [+25.0, +75.0] (gain, 4 problems) |" in train


def test_report_says_which_attempts_each_figure_counts(report) -> None:
    _, _, md = report
    assert "Per-sample pass rate and pass@k: first-round (attempt 0) samples only" in md
    assert "Solve rate: problems any sample of any attempt solved" in md


def test_report_opens_runs_through_the_run_directory(report) -> None:
    run, _, md = report
    manifest = RunDir.open(str(run)).manifest
    assert f"run `{manifest.run_id}`" in md and manifest.iteration(1).phase("train").is_done


def test_comparison_rows_read_like_axiom_rl() -> None:
    def row(pid: str, passed: bool, code_hash: str | None = None) -> dict:
        return {"problem_id": pid, "passed": passed, "attempt": 0, "code_hash": code_hash}

    base = summarize([row("a", i < 5, f"h{i}") for i in range(8)] + [row("b", False)] * 8)
    tuned = summarize([row("a", True, "same")] * 8 + [row("b", i < 6, f"g{i}") for i in range(8)])
    lines = markdown_table(["Metric", "Baseline", "Fine-tuned", "Change"], comparison_rows(base, tuned)).splitlines()
    assert lines[0] == "| Metric | Baseline | Fine-tuned | Change |"
    assert "| Solve rate | 50% (1/2) | 100% (2/2) | **+50.0 pp (+100%)** |" in lines
    # 31.25% and 56.25 pp round half to even
    assert "| Per-sample pass rate | 31.2% (5/16) | 87.5% (14/16) | **+56.2 pp (+180%)** |" in lines
    assert "| Failed samples | 11 | 2 | **-9 (-82%)** |" in lines
    assert "| Unique solutions | 5 | 7 | **+2 (+40%)** |" in lines
    assert "| Duplicates filtered | 0 | 7 | **+7** |" in lines
    assert ("Solve rate", "100% (2/2)", "100% (2/2)", "—") in comparison_rows(tuned, tuned)

