"""The report's content: the blocks (headings, paragraphs, tables) built from a RunData, in
the order the report shows them; details.py has the longer per-problem, pass@k, timing and
configuration sections."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone

from axiom_ray.evaluation import PairedDifference, PassSummary
from axiom_ray.report.blocks import Block, Heading, Image, Para, Pre, Table, fmt_pct
from axiom_ray.report.collect import POOL_TITLES, RunData, Scored, base_on, pool_summary, scored_on
from axiom_ray.report.details import (
    breakdown_blocks,
    config_blocks,
    curriculum_blocks,
    passk_blocks,
    timing_blocks,
)

POOL_WHAT = {
    "train": "model k sampling the training problems (`iter_k/samples`); iteration k+1 trains on these",
    "eval": "model k on problems never trained on (`iter_k/eval`)",
}
CURRICULUM_NOTE = (
    "With the curriculum, each iteration samples its own subset of the training pool (see "
    "Curriculum), so training-pool rows of different iterations cover different problems; "
    "the held-out problems are the same for every model."
)
# Which attempts each figure counts (evaluation.PassSummary): said once, under the results.
ATTEMPTS_NOTE = (
    "Solve rate: problems any sample of any attempt solved. Per-sample pass rate and pass@k: "
    "first-round (attempt 0) samples only, so resampling unsolved problems (`--max-attempts`) "
    "never changes them. Failed samples, unique solutions, duplicates, statuses and generated "
    "tokens: every attempt."
)


def _summary_row(label: str, s: PassSummary) -> list[str]:
    return [
        label,
        f"{fmt_pct(s.solve_rate)} ({s.solved}/{s.problems})",
        f"{fmt_pct(s.pass_rate)} ({s.first_passed}/{s.first_samples})",
        str(s.failed),
        str(s.unique_solutions),
        str(s.duplicates),
        ", ".join(f"{k} {v}" for k, v in s.status.items()) or "—",
    ]


SUMMARY_HEADER = [
    "Model",
    "Solve rate",
    "Per-sample pass rate",
    "Failed samples",
    "Unique solutions",
    "Duplicates filtered",
    "Statuses",
]

def _status_blocks(run: RunData) -> list[Block]:
    if not run.iterations:
        return [Heading(2, "Status"), Para("No iteration has started yet: nothing to report.")]
    done = [it for it in run.iterations if not it.missing]
    planned = run.config("iterations")
    lines = [
        f"- Iterations complete: {', '.join(str(it.k) for it in done) or 'none'} "
        f"(planned: 0, the base, to {planned if planned is not None else '?'})."
    ]
    lines += [
        f"- Iteration {it.k}: " + "; ".join(it.missing + it.notes)
        for it in run.iterations
        if it.missing or it.notes
    ]
    if not run.has_eval():
        lines.append("- No held-out problems in this run: evaluation is disabled.")
    return [Heading(2, "Status"), Para("\n".join(lines))]




def _rel(new: float, old: float) -> str:
    return f"{(new - old) / old * 100:+.0f}%" if old else ""


def _change_rate(new: float, old: float) -> str:
    if abs(new - old) < 1e-12:
        return "—"
    pp = f"{(new - old) * 100:+.1f} pp"
    rel = _rel(new, old)
    return f"**{pp} ({rel})**" if rel else f"**{pp}**"


def _change_count(new: int, old: int) -> str:
    if new == old:
        return "—"
    rel = _rel(new, old)
    return f"**{new - old:+d} ({rel})**" if rel else f"**{new - old:+d}**"


def comparison_rows(base: PassSummary, other: PassSummary) -> list[tuple[str, str, str, str]]:
    """(metric, base, other, change) rows of axiom-rl's "Detailed Comparison"."""
    return [
        ("Solve rate", f"{fmt_pct(base.solve_rate)} ({base.solved}/{base.problems})",
         f"{fmt_pct(other.solve_rate)} ({other.solved}/{other.problems})",
         _change_rate(other.solve_rate, base.solve_rate)),
        ("Per-sample pass rate", f"{fmt_pct(base.pass_rate)} ({base.first_passed}/{base.first_samples})",
         f"{fmt_pct(other.pass_rate)} ({other.first_passed}/{other.first_samples})",
         _change_rate(other.pass_rate, base.pass_rate)),
        ("Failed samples", str(base.failed), str(other.failed), _change_count(other.failed, base.failed)),
        ("Unique solutions", str(base.unique_solutions), str(other.unique_solutions),
         _change_count(other.unique_solutions, base.unique_solutions)),
        ("Duplicates filtered", str(base.duplicates), str(other.duplicates),
         _change_count(other.duplicates, base.duplicates)),
    ]


def _pass_rate_bars(scored: list[Scored]) -> Pre:
    """axiom-rl's PER-SAMPLE PASS RATE box, one 40-cell bar per model."""
    width = max(len(it.label) for it, _ in scored)
    lines = []
    for it, s in scored:
        filled = round(s.pass_rate * 40)
        lines.append(
            f"{it.label.ljust(width)}  {'█' * filled}{'░' * (40 - filled)}  "
            f"{fmt_pct(s.pass_rate)} ({s.first_passed}/{s.first_samples})"
        )
    return Pre("\n".join(lines))


def _results_blocks(run: RunData) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Results per iteration"), Para(ATTEMPTS_NOTE)]
    for pool in ("train", "eval"):
        scored = scored_on(run, pool)
        blocks += [Heading(3, POOL_TITLES[pool]), Para(f"Rows: {POOL_WHAT[pool]}.")]
        if pool == "train" and run.curriculum_on():
            blocks.append(Para(CURRICULUM_NOTE))
        if not scored:
            blocks.append(Para("No finished sample rows yet."))
            continue
        rows = [_summary_row(it.label, s) for it, s in scored]
        blocks += [
            Table(SUMMARY_HEADER, rows),
            Para("Per-sample pass rate (attempt 0):"),
            _pass_rate_bars(scored),
        ]
    return blocks


def _comparison_blocks(run: RunData) -> list[Block]:
    blocks: list[Block] = []
    for it in run.iterations[1:]:
        parts: list[Block] = []
        for pool in ("train", "eval"):
            base, other = base_on(run, pool), pool_summary(it, pool)
            if base is not None and other is not None and other.samples:
                header = ["Metric", run.iterations[0].label, it.label, "Change"]
                parts += [
                    Heading(3, POOL_TITLES[pool]),
                    Table(header, comparison_rows(base, other)),
                ]
                note = _common_problems_note(base, other, it.label)
                if note:
                    parts.append(note)
        if parts:
            blocks += [Heading(2, f"Base vs Model {it.k}"), *parts]
    return blocks


PAIRED_NOTE = (
    "Model B minus model A, paired by problem: the mean per-problem difference in pass@1 "
    "(first-round samples; with one greedy sample per problem, whether it passed), on the problems "
    "both models were scored on, with a 95% percentile-bootstrap interval from 2000 resamples of "
    "those problems. 'gain' / 'loss': the interval excludes zero; otherwise no detectable change."
)


# Where the loop records each pool's paired differences: (phase, nested pass) in the manifest.
PAIRED_SOURCE = {"train": ("samples", None), "eval": ("eval", None), "eval_greedy": ("eval", "greedy")}


def paired_rows(run: RunData, pool: str) -> list[list[str]]:
    """One row per model k >= 1: the paired differences the loop recorded in the manifest when
    it scored model k, against the base and against model k-1."""
    phase, part = PAIRED_SOURCE[pool]
    rows = []
    for it in run.iterations[1:]:
        recorded = it.phase(phase).paired(part) if it.phase(phase).is_done else {}
        if not recorded:
            continue
        vs_base = PairedDifference.from_dict(recorded["vs_base"]) if "vs_base" in recorded else None
        vs_prev = PairedDifference.from_dict(recorded["vs_previous"]) if "vs_previous" in recorded else None
        previous = "(same as vs base)" if it.k == 1 else (
            f"vs Model {it.k - 1}: {vs_prev.describe()}" if vs_prev else "not recorded")
        rows.append([it.label,
                     f"{fmt_pct(vs_base.a)} -> {fmt_pct(vs_base.b)}" if vs_base and vs_base.problems else "—",
                     vs_base.describe() if vs_base else "not recorded", previous])
    return rows


def _paired_blocks(run: RunData) -> list[Block]:
    blocks: list[Block] = []
    for pool in ("train", "eval", "eval_greedy"):
        rows = paired_rows(run, pool)
        if rows:
            blocks += [Heading(3, POOL_TITLES[pool]),
                       Table(["Model", "pass@1 (base -> model)", "vs base", "vs previous"], rows)]
    return [Heading(2, "Paired differences"), Para(PAIRED_NOTE), *blocks] if blocks else []


def _common_problems_note(base: PassSummary, other: PassSummary, label: str) -> Para | None:
    """When two models sampled different problems (the curriculum), their figures above cover
    different sets: compare the per-sample pass rate on the problems both sampled."""
    if set(base.per_problem) == set(other.per_problem):
        return None
    common = sorted(set(base.per_problem) & set(other.per_problem))
    if not common:
        return Para(
            f"The base and {label} sampled no problem in common (curriculum): compare them on "
            "the held-out problems."
        )

    def rate(s: PassSummary) -> str:
        c = sum(s.per_problem[p][0] for p in common)
        n = sum(s.per_problem[p][1] for p in common)
        return f"{fmt_pct(c / n if n else math.nan)} ({c}/{n})"

    return Para(
        f"The two models sampled different problems (curriculum); on the {len(common)} both "
        f"sampled, the per-sample pass rate went from {rate(base)} to {rate(other)}."
    )


def _plot_blocks(plots: Mapping[str, bytes]) -> list[Block]:
    captions = {
        "pass_rates": "Per-sample pass rate and solve rate per iteration (held-out: pass@k with 95% CI)",
        "heatmap_train": "Per-problem passes/N across models: training pool",
        "heatmap_eval": "Per-problem passes/N across models: held-out problems",
        "phase_times": "Phase wall times per iteration",
        "tokens_per_s": "Generated tokens per second per iteration",
    }
    blocks: list[Block] = [Heading(2, "Plots")]
    if not plots:
        return [*blocks, Para("Nothing to plot yet.")]
    return blocks + [Image(name, captions.get(name, name)) for name in plots]


def build_blocks(run: RunData, plots: Mapping[str, bytes]) -> list[Block]:
    m = run.manifest
    title = f"axiom-ray report: {m.experiment or m.run_id or 'run'}"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    intro = (
        f"Model `{m.model or run.config('model') or '?'}`, run `{m.run_id or '?'}` "
        f"in `{run.run_dir}`. Model 0 is the base model; model k is the base plus adapter k, "
        f"trained on verified samples of earlier iterations. Generated {generated}."
    )
    return [
        Heading(1, title),
        Para(intro),
        *_status_blocks(run),
        *_results_blocks(run),
        *_comparison_blocks(run),
        *_paired_blocks(run),
        *curriculum_blocks(run),
        *breakdown_blocks(run),
        *passk_blocks(run),
        *timing_blocks(run),
        *_plot_blocks(plots),
        *config_blocks(run),
    ]


