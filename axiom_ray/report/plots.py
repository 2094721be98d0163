"""The report's plots, as PNG bytes: pass rates, per-problem heatmaps, phase times and
generation throughput.

matplotlib is imported lazily, inside the functions that draw: it is an optional, slow import
that only `axiom report` needs. Its object API is used (Figure, no pyplot), so no global backend
or state is touched.
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


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _rate_axis(ax: Any, run: RunData, pool: str) -> None:
    scored = scored_on(run, pool)
    ax.set_title(POOL_TITLES[pool])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("rate")
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
    ax.legend(loc="lower right")


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


def plot_pass_rates(run: RunData) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, pool in zip(axes, ("train", "eval"), strict=True):
        _rate_axis(ax, run, pool)
    return _png(fig)


def plot_heatmap(run: RunData, pool: str) -> bytes | None:
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
    if many:
        ax.set_yticks([])
        ax.set_ylabel(f"{len(ids)} problems, sorted by the base model's pass rate")
    else:
        ax.set_yticks(range(len(ids)), ids, fontsize=8)
    if len(ids) <= 40:
        _annotate(ax, scored, ids)
    ax.set_title(f"{POOL_TITLES[pool]}: passes / N")
    fig.colorbar(image, ax=ax, fraction=0.05)
    return _png(fig)


def _rate(counts: tuple[int, int] | None) -> float:
    return counts[0] / counts[1] if counts and counts[1] else math.nan


def _annotate(ax: Any, scored: list[Scored], ids: list[str]) -> None:
    for j, (_, s) in enumerate(scored):
        for i, pid in enumerate(ids):
            if pid in s.per_problem:
                c, n = s.per_problem[pid]
                ax.text(j, i, f"{c}/{n}", ha="center", va="center", fontsize=7)


def plot_phase_times(run: RunData) -> bytes | None:
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
    return _finish_bars(fig, ax, run, "seconds", "Phase wall time per iteration (done phases)")


def plot_tokens_per_s(run: RunData) -> bytes | None:
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
        ax.bar([x + (i - (len(series) - 1) / 2) * width for x in xs], vals, width=width, label=name)
    return _finish_bars(fig, ax, run, "generated tokens / s", "Generation throughput per iteration")


def _iteration_bars(run: RunData) -> tuple[Any, Any, list[int]]:
    """A figure for bars per iteration: (figure, axes, the iterations' x positions)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5, 1.2 * len(run.iterations) + 3), 4))
    return fig, fig.subplots(), [it.k for it in run.iterations]


def _finish_bars(fig: Any, ax: Any, run: RunData, ylabel: str, title: str) -> bytes:
    ax.set_xticks([it.k for it in run.iterations], [it.short for it in run.iterations])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def make_plots(run: RunData) -> dict[str, bytes]:
    """PNG bytes by plot name; plots with nothing to show are left out."""
    plots: dict[str, bytes | None] = {
        "pass_rates": plot_pass_rates(run) if run.iterations else None,
        "heatmap_train": plot_heatmap(run, "train"),
        "heatmap_eval": plot_heatmap(run, "eval"),
        "phase_times": plot_phase_times(run),
        "tokens_per_s": plot_tokens_per_s(run),
    }
    return {name: png for name, png in plots.items() if png is not None}
