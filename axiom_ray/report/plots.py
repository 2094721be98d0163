"""The report's plots, as PNG bytes: pass rates, per-problem heatmaps, phase times and
generation throughput.

matplotlib is imported lazily, inside the functions that draw: it is an optional, slow import
that only `axiom report` needs. Its object API is used (Figure, no pyplot), so no global backend
or state is touched.

Read as a person sees them (tests/test_report.py checks each in the rendered HTML): every legend
sits outside the axes, so it never covers a line, bar or error bar; every axis is labelled, with
its unit; no text is smaller than MIN_FONT_PT, which at DPI is >= 10 CSS px in report.html (an
image is shown at its natural size up to the page's 1100 px).
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from axiom_ray.evaluation import PassSummary
from axiom_ray.report.collect import POOL_TITLES, RunData, Scored, problem_order, scored_on
from axiom_ray.report.details import BOOT_SEED
from axiom_ray.rundir import PHASES

HEATMAP_LABELS = 80  # beyond this many problems the heatmap drops its row labels
DPI = 100
MIN_FONT_PT = 8  # 8 pt at 100 dpi is 11.1 px
MODEL_AXIS = "model (M0 = base, Mk = after k training rounds)"
RATE_AXIS = "rate (fraction, 0 to 1)"


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _legend_below(ax: Any, ncol: int = 2) -> None:
    """The legend under the axes, below the x-axis label: never over the data."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, frameon=False)


def _legend_right(ax: Any) -> None:
    """The legend to the right of the axes: never over the data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)


def _rate_axis(ax: Any, run: RunData, pool: str) -> None:
    scored = scored_on(run, pool)
    ax.set_title(POOL_TITLES[pool])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(RATE_AXIS)
    ax.set_xlabel(MODEL_AXIS)
    ax.grid(alpha=0.3)
    if not scored:
        ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
        return
    xs = [it.k for it, _ in scored]
    sums = [s for _, s in scored]
    if pool == "eval":
        # pass@1, and any larger configured k, each with its bootstrap interval
        for i, k in enumerate(run.ks()):  # nudged apart so the error bars do not overlap
            _pass_at_k_curve(ax, [x + 0.05 * i for x in xs], sums, k)
    else:
        ax.plot(xs, [s.pass_rate for s in sums], marker="o", label="per-sample pass rate")
    ax.plot(xs, [s.solve_rate for s in sums], marker="s", linestyle="--", label="solve rate")
    ax.set_xticks(xs, [it.short for it, _ in scored])
    ax.margins(x=0.15)
    _legend_below(ax)


def _pass_at_k_curve(ax: Any, xs: list[float], sums: list[PassSummary], k: int) -> None:
    values = [s.pass_at_k.get(k, math.nan) for s in sums]
    if all(math.isnan(v) for v in values):
        return  # too few samples per problem for this k
    cis = [s.pass_at_k_ci(k, seed=BOOT_SEED) for s in sums]
    err = [
        [
            max(p - lo, 0) if not math.isnan(p) else 0
            for p, (lo, _) in zip(values, cis, strict=True)
        ],
        [
            max(hi - p, 0) if not math.isnan(p) else 0
            for p, (_, hi) in zip(values, cis, strict=True)
        ],
    ]
    ax.errorbar(xs, values, yerr=err, marker="o", capsize=4, label=f"pass@{k} (95% CI)")


def figure_pass_rates(run: RunData) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, pool in zip(axes, ("train", "eval"), strict=True):
        _rate_axis(ax, run, pool)
    return fig


def figure_heatmap(run: RunData, pool: str) -> Any | None:
    """Rows problems, columns models, colour passes/N; grey where a model has no rows."""
    from matplotlib.figure import Figure

    scored = scored_on(run, pool)
    if not scored:
        return None
    ids = problem_order(run, pool, scored)
    grid = np.array([[_rate(s.per_problem.get(pid)) for _, s in scored] for pid in ids])
    many = len(ids) > HEATMAP_LABELS
    if many:  # thin rows read as noise; sorted by the base's rate, gains and losses show as bands
        filled = np.nan_to_num(grid, nan=-1.0)  # no rows sorts last
        order = np.lexsort((-filled.mean(axis=1), -filled[:, 0]))
        grid, ids = grid[order], [ids[i] for i in order]
    fig = Figure(figsize=(2.5 + 1.1 * len(scored), min(1.5 + 0.28 * len(ids), 20)))
    ax = fig.subplots()
    image = ax.imshow(
        np.ma.masked_invalid(grid),
        aspect="auto",
        cmap="RdYlGn",
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    ax.set_facecolor("#dddddd")
    ax.set_xticks(range(len(scored)), [it.short for it, _ in scored])
    ax.set_xlabel(MODEL_AXIS)
    if many:
        ax.set_yticks([])
        ax.set_ylabel(f"{len(ids)} problems, sorted by the base model's pass rate (one row each)")
    else:
        ax.set_yticks(range(len(ids)), ids, fontsize=MIN_FONT_PT)
        ax.set_ylabel("problem (id)")
    if len(ids) <= 40:
        _annotate(ax, scored, ids)
    ax.set_title(f"{POOL_TITLES[pool]}: passes / N (grey: not sampled)")
    bar = fig.colorbar(image, ax=ax, fraction=0.05)
    bar.set_label("pass rate (passes / N)")
    return fig


def _rate(counts: tuple[int, int] | None) -> float:
    return counts[0] / counts[1] if counts and counts[1] else math.nan


def _annotate(ax: Any, scored: list[Scored], ids: list[str]) -> None:
    for j, (_, s) in enumerate(scored):
        for i, pid in enumerate(ids):
            if pid in s.per_problem:
                c, n = s.per_problem[pid]
                # white on the colour map's dark ends (deep red, deep green), black between
                dark = n > 0 and not 0.2 <= c / n <= 0.8
                ax.text(j, i, f"{c}/{n}", ha="center", va="center", fontsize=MIN_FONT_PT,
                        color="white" if dark else "black")


def figure_phase_times(run: RunData) -> Any | None:
    """Stacked bars of the done phases' wall times, one bar per iteration."""
    secs = {
        p: [
            float(it.phase(p).seconds or 0) if it.phase(p).is_done else 0.0
            for it in run.iterations
        ]
        for p in PHASES
    }
    if not any(v for vals in secs.values() for v in vals):
        return None
    fig, ax, xs = _iteration_bars(run)
    bottom = [0.0] * len(xs)
    for p in PHASES:
        if any(secs[p]):
            ax.bar(xs, secs[p], bottom=bottom, label=p)
            bottom = [b + v for b, v in zip(bottom, secs[p], strict=True)]
    return _finish_bars(fig, ax, run, "wall time (s)", "Phase wall time per iteration (done phases)")


# What each throughput series measures, as its legend says it.
THROUGHPUT_LABELS = {"samples": "training-pool sampling", "eval": "held-out evaluation"}


def figure_tokens_per_s(run: RunData) -> Any | None:
    """Generation throughput per iteration: the training-pool sampling, and evaluation if timed."""
    series = {
        "samples": [it.metric("samples", "tokens_per_s") for it in run.iterations],
        "eval": [it.metric("eval", "tokens_per_s") for it in run.iterations],
    }
    series = {
        k: [float(v) if isinstance(v, int | float) else 0.0 for v in vals]
        for k, vals in series.items()
        if any(isinstance(v, int | float) for v in vals)
    }
    if not series:
        return None
    fig, ax, xs = _iteration_bars(run)
    width = 0.8 / len(series)
    for i, (name, vals) in enumerate(series.items()):
        ax.bar([x + (i - (len(series) - 1) / 2) * width for x in xs], vals, width=width,
               label=THROUGHPUT_LABELS[name])
    return _finish_bars(fig, ax, run, "throughput (generated tokens/s)", "Generation throughput per iteration")


def _iteration_bars(run: RunData) -> tuple[Any, Any, list[int]]:
    """A figure for bars per iteration: (figure, axes, the iterations' x positions)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5, 1.2 * len(run.iterations) + 3), 4))
    return fig, fig.subplots(), [it.k for it in run.iterations]


def _finish_bars(fig: Any, ax: Any, run: RunData, ylabel: str, title: str) -> Any:
    ax.set_xticks([it.k for it in run.iterations], [it.short for it in run.iterations])
    ax.set_xlabel(MODEL_AXIS)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _legend_right(ax)
    ax.grid(axis="y", alpha=0.3)
    return fig


def make_figures(run: RunData) -> dict[str, Any]:
    """matplotlib Figures by plot name; plots with nothing to show are left out."""
    figures: dict[str, Any] = {
        "pass_rates": figure_pass_rates(run) if run.iterations else None,
        "heatmap_train": figure_heatmap(run, "train"),
        "heatmap_eval": figure_heatmap(run, "eval"),
        "phase_times": figure_phase_times(run),
        "tokens_per_s": figure_tokens_per_s(run),
    }
    return {name: fig for name, fig in figures.items() if fig is not None}


def make_plots(run: RunData) -> dict[str, bytes]:
    """PNG bytes by plot name; plots with nothing to show are left out."""
    return {name: _png(fig) for name, fig in make_figures(run).items()}
