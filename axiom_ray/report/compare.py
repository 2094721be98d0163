"""`axiom compare RUN_A RUN_B [RUN_C ...]`: runs side by side, per iteration.

For every model k, each run's pass@1 on its training pool and on the held-out problems with the
95% bootstrap interval (evaluation.bootstrap_ci over problems, the report's BOOT_SEED), the paired
difference of each run against the first on the problems both scored (evaluation.
paired_difference, the loop's own), and the config keys on which the runs differ (from each
manifest). Written as compare.md, compare.html and plots/compare.png, through the report's
blocks and renderers; the Markdown is also printed.

Held-out figures only compare when the runs were scored on the same held-out problems: runs
scored on different sets are refused (CompareError, one line) unless `intersection`, which
restricts every held-out figure to the problems all runs share.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from axiom_ray.config import flat_keys
from axiom_ray.evaluation import PassSummary, bootstrap_ci, paired_difference, pass_at_k
from axiom_ray.report.blocks import Block, Heading, Image, Para, Table, fmt_ci, fmt_pct
from axiom_ray.report.collect import ReportError, RunData, open_run, pool_summary, read_run
from axiom_ray.report.details import BOOT_SEED
from axiom_ray.report.render import render_html, render_markdown
from axiom_ray.storage import Storage

POOLS = {"train": "Training pool", "eval": "Held-out problems"}
PLOT = "compare"


class CompareError(ReportError):
    """Runs that cannot be compared as asked; the message (one line) says why and what to pass."""


@dataclass(frozen=True)
class Rate:
    """pass@1 of one model on a set of problems: the mean over problems and its interval."""

    problems: int
    value: float
    lo: float
    hi: float

    def cell(self) -> str:
        return f"{fmt_pct(self.value)} {fmt_ci((self.lo, self.hi))} ({self.problems})"


def rate(summary: PassSummary | None, ids: frozenset[str] | None = None) -> Rate | None:
    """pass@1 over the problems of `summary` (only those in `ids`, when given), attempt-0
    samples, with the percentile-bootstrap interval over problems."""
    if summary is None or not summary.samples:
        return None
    # in the summary's own problem order: unrestricted, the interval is the run report's
    # (PassSummary.pass_at_k_ci with the same seed)
    values = [pass_at_k(n, c, 1) for pid, (c, n) in summary.per_problem.items()
              if n >= 1 and (ids is None or pid in ids)]
    if not values:
        return None
    lo, hi = bootstrap_ci(values, seed=BOOT_SEED)
    return Rate(len(values), sum(values) / len(values), lo, hi)


@dataclass
class Compared:
    """The runs (first = the reference of the paired differences) and what they are compared on."""

    labels: list[str]
    runs: list[RunData]
    heldout: frozenset[str] | None  # the held-out problems every figure uses; None: each run's own (all equal)
    heldout_note: str

    @property
    def iterations(self) -> list[int]:
        return sorted({it.k for run in self.runs for it in run.iterations})

    def summary(self, i: int, k: int, pool: str) -> PassSummary | None:
        it = next((it for it in self.runs[i].iterations if it.k == k), None)
        return pool_summary(it, pool) if it is not None else None

    def rate(self, i: int, k: int, pool: str) -> Rate | None:
        return rate(self.summary(i, k, pool), self.heldout if pool == "eval" else None)


def run_labels(run_dirs: Sequence[str]) -> list[str]:
    """Each run's folder name; a repeated name gets its position (#2) to tell them apart."""
    names = [os.path.basename(d.rstrip("/")) or d for d in run_dirs]
    return [f"{n} #{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def heldout_ids(run: RunData) -> frozenset[str]:
    """The held-out problems the run was scored on: the manifest's list, else its rows'."""
    listed = run.problem_ids("eval")
    if listed:
        return frozenset(listed)
    return frozenset(p for it in run.iterations if it.heldout for p in it.heldout.per_problem)


def shared_heldout(labels: Sequence[str], runs: Sequence[RunData], intersection: bool) -> tuple[frozenset[str] | None, str]:
    """(the held-out problems to compare on, a sentence saying which); CompareError when the
    runs' sets differ and `intersection` is off, or when they share none."""
    sets = [heldout_ids(r) for r in runs]
    if all(s == sets[0] for s in sets):
        return None, f"Every run was scored on the same {len(sets[0])} held-out problems."
    common = frozenset.intersection(*sets)
    sizes = ", ".join(f"{label}: {len(s)}" for label, s in zip(labels, sets, strict=True))
    if not intersection:
        raise CompareError(f"the runs were scored on different held-out problems ({sizes}; {len(common)} shared): "
                           "pass --intersection to compare them on the shared ones")
    if not common:
        raise CompareError(f"the runs share no held-out problem ({sizes})")
    return common, (f"The runs were scored on different held-out problems ({sizes}): every held-out figure "
                    f"below uses only the {len(common)} they all share (--intersection).")


def load(run_dirs: Sequence[str], intersection: bool = False) -> Compared:
    if len(run_dirs) < 2:
        raise CompareError("compare needs at least two run directories")
    labels = run_labels(run_dirs)
    runs = [read_run(open_run(d)) for d in run_dirs]
    heldout, note = shared_heldout(labels, runs, intersection)
    return Compared(labels, runs, heldout, note)


# --- blocks ----------------------------------------------------------------------------------


def runs_table(c: Compared) -> Table:
    rows = []
    for label, run in zip(c.labels, c.runs, strict=True):
        done = [str(it.k) for it in run.iterations if not it.missing]
        rows.append([label, f"`{run.run_dir}`", run.manifest.run_id or "—", str(run.config("model")),
                     ", ".join(done) or "none", str(len(heldout_ids(run)))])
    return Table(["Run", "Directory", "Run id", "Model", "Iterations complete", "Held-out problems"], rows)


def rates_table(c: Compared, pool: str) -> Table:
    rows = []
    for k in c.iterations:
        cells = [(r.cell() if (r := c.rate(i, k, pool)) else "—") for i in range(len(c.runs))]
        if any(cell != "—" for cell in cells):  # a model no run has finished on this pool: no row
            rows.append([f"M{k}", *cells])
    return Table(["Model", *c.labels], rows)


def paired_table(c: Compared, pool: str) -> Table | None:
    """Each run minus the first, per model k, on the problems both scored."""
    ref = c.labels[0]
    rows = []
    for k in c.iterations:
        a = c.summary(0, k, pool)
        cells = []
        for i in range(1, len(c.runs)):
            b = c.summary(i, k, pool)
            if a is None or b is None or not a.samples or not b.samples:
                cells.append("—")
                continue
            if pool == "eval" and c.heldout is not None:
                a, b = restrict(a, c.heldout), restrict(b, c.heldout)
            cells.append(paired_difference(a, b, seed=BOOT_SEED).describe())
        if any(cell != "—" for cell in cells):
            rows.append([f"M{k}", *cells])
    if not rows:
        return None
    return Table(["Model", *(f"{label} − {ref}" for label in c.labels[1:])], rows)


def restrict(s: PassSummary, ids: frozenset[str]) -> PassSummary:
    """`s` with only the per-problem counts of `ids` (all paired_difference reads)."""
    return PassSummary(per_problem={p: v for p, v in s.per_problem.items() if p in ids})


def differing_config(c: Compared) -> Table | None:
    flat = [flat_keys(run.manifest.config) for run in c.runs]
    keys = sorted({k for f in flat for k in f})
    rows = [[f"`{k}`", *(_value(f.get(k, "—")) for f in flat)] for k in keys
            if len({repr(f.get(k, "—")) for f in flat}) > 1]
    return Table(["Config key", *c.labels], rows) if rows else None


def _value(v: Any) -> str:
    return "''" if v == "" else str(v)


def build_blocks(c: Compared) -> list[Block]:
    ref = c.labels[0]
    blocks: list[Block] = [Heading(1, "axiom-ray comparison: " + " vs ".join(c.labels)),
                           Heading(2, "Runs"), runs_table(c), Para(c.heldout_note),
                           Image(PLOT, "pass@1 per model, each run, with 95% bootstrap intervals")]
    for pool, title in POOLS.items():
        blocks += [Heading(2, f"{title}: pass@1 [95% CI] (problems)"), rates_table(c, pool)]
        paired = paired_table(c, pool)
        if paired is not None:
            blocks += [Para(f"Paired difference against {ref} on the problems both scored, in percentage "
                            "points, with its 95% paired bootstrap interval over problems:"), paired]
    blocks += [Para("pass@1: the mean over problems of each problem's unbiased pass@1 from first-round "
                    "(attempt 0) samples; with one greedy sample, whether it passed. Intervals resample "
                    "problems. Training pools may differ between runs (other sets, a curriculum): the "
                    "paired difference there uses only the problems both sampled.")]
    diff = differing_config(c)
    blocks += [Heading(2, "Config keys that differ")]
    blocks += [diff] if diff else [Para("None: the runs were made with the same configuration.")]
    return blocks


def plot(c: Compared) -> bytes:
    """Two panels (training pool, held-out): pass@1 per model k, one line per run, interval bars;
    the legend sits below the panels, clear of the data."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.6))
    axes = fig.subplots(1, 2, sharey=True)
    n = len(c.runs)
    for ax, (pool, title) in zip(axes, POOLS.items(), strict=True):
        for i, label in enumerate(c.labels):
            points = [(k, r) for k in c.iterations if (r := c.rate(i, k, pool))]
            if not points:
                continue
            xs = [k + (i - (n - 1) / 2) * 0.06 for k, _ in points]  # nudged apart: bars do not overlap
            ys = [r.value * 100 for _, r in points]
            err = [[max(r.value - r.lo, 0) * 100 for _, r in points], [max(r.hi - r.value, 0) * 100 for _, r in points]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, label=label)
        ax.set_title(title)
        ax.set_xlabel("model (iteration k; M0 = base)")
        ax.set_xticks(c.iterations, [f"M{k}" for k in c.iterations])
        ax.set_ylim(0, 105)
        ax.margins(x=0.15)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("pass@1 (%)")
    handles, names = axes[0].get_legend_handles_labels()
    if not handles:
        handles, names = axes[1].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(n, 4), frameon=False)
    fig.subplots_adjust(bottom=0.22, wspace=0.08)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def write_comparison(run_dirs: Sequence[str], out: str, intersection: bool = False) -> tuple[str, dict[str, str]]:
    """Compare the runs; write OUT/compare.md, OUT/compare.html and OUT/plots/compare.png (a local
    path or URI). Returns (the Markdown, {"md"|"html"|"plot": where each was written})."""
    c = load(run_dirs, intersection)
    blocks = build_blocks(c)
    png = plot(c)
    markdown = render_markdown(blocks)
    storage = Storage(out)
    storage.makedirs("")
    files = {"md": ("compare.md", markdown.encode("utf-8")),
             "html": ("compare.html", render_html(blocks, {PLOT: png}).encode("utf-8")),
             "plot": (f"plots/{PLOT}.png", png)}
    for rel, content in files.values():
        storage.write_bytes_atomic(rel, content)
    return markdown, {key: storage.uri(rel) for key, (rel, _) in files.items()}

