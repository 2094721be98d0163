"""`axiom report RUN_DIR`: report.md, a self-contained report.html and plots/*.png for a run.

The report reproduces axiom-rl's published figures (solve rate, per-sample pass rate, failed
samples, unique solutions, duplicates filtered, per-problem breakdown) for every iteration, on
the training pool and on the held-out problems, and adds what axiom-rl lacked: held-out pass@k
with bootstrap confidence intervals, phase timings and throughput.

It reads only what the manifest marks done (DESIGN.md contract 5: a phase that is running or
failed may have left partial files) and says what is missing, so a partial run reports too.
Pure: pyarrow, numpy and matplotlib's object API (Agg, no pyplot state); no torch, vLLM or Ray.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from axiom_ray.evaluation import (
    SUMMARY_COLUMNS,
    Summary,
    comparison_rows,
    fmt_pct,
    markdown_table,
    paired_difference,
    read_rows,
    summarize,
)
from axiom_ray.storage import Storage

PHASES = ("train", "redeploy", "samples", "eval")  # the order they run in within an iteration
BAR_WIDTH = 8  # axiom-rl's per-problem bars: one cell per sample at N=8
HEATMAP_LABELS = 80  # beyond this many problems the heatmap drops its row labels
BOOT_SEED = 0  # fixed so a report is reproducible from its run directory


class ReportError(RuntimeError):
    """A run directory the report cannot be written for; the message is one line."""


# --- the run directory -----------------------------------------------------------------------


class _RunStore:
    """The run directory (local path or pyarrow URI) plus atomic byte writes for the report."""

    def __init__(self, run_dir: str) -> None:
        self.storage = Storage(run_dir)
        self.root = self.storage.root

    def path(self, rel: str) -> str:
        return self.storage.uri(rel)

    def write(self, rel: str, data: bytes) -> str:
        """Write through a temporary sibling, so a reader never sees half a report or plot."""
        st = self.storage
        parent = rel.rpartition("/")[0]
        if parent:
            st.makedirs(parent)
        tmp = st.temp_name(rel)
        with st.fs.open_output_stream(f"{st.base}/{tmp}") as f:
            f.write(data)
        st.fs.move(f"{st.base}/{tmp}", f"{st.base}/{rel}")
        return self.path(rel)


def _load_manifest(store: _RunStore) -> dict[str, Any]:
    st = store.storage
    if not st.exists("manifest.json") or st.is_dir("manifest.json"):
        raise ReportError(f"{store.root}: no manifest.json here; is this a run directory?")
    try:
        manifest = st.read_json("manifest.json")
    except (ValueError, UnicodeDecodeError) as e:
        raise ReportError(f"{store.path('manifest.json')}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise ReportError(f"{store.path('manifest.json')}: expected a JSON object")
    return manifest


@dataclass
class IterationData:
    """What the run directory holds for model k."""

    k: int
    adapter: str | None
    phases: dict[str, dict[str, Any]]
    train_pool: Summary | None = None  # model k on the training problems (iter_k/samples)
    heldout: Summary | None = None  # model k on the held-out problems (iter_k/eval)
    heldout_greedy: Summary | None = None  # its greedy answers there, with evaluation.greedy
    train_set: Summary | None = None  # the SFT set that trained adapter k (iter_k/train)
    missing: list[str] = field(default_factory=list)  # phases not done
    curriculum: dict[str, Any] | None = None  # the problems the curriculum chose for iter_k/samples
    notes: list[str] = field(default_factory=list)  # done phases worth a remark

    @property
    def label(self) -> str:
        return "Base (Model 0)" if self.k == 0 else f"Model {self.k}"

    @property
    def short(self) -> str:
        return "M0 (base)" if self.k == 0 else f"M{self.k}"

    def phase(self, name: str) -> dict[str, Any]:
        return self.phases.get(name) or {}

    def metric(self, phase: str, key: str) -> Any:
        return (self.phase(phase).get("metrics") or {}).get(key)


@dataclass
class RunData:
    run_dir: str
    manifest: dict[str, Any]
    iterations: list[IterationData]

    def config(self, dotted: str) -> Any:
        """A config value from the manifest, None when absent (older or partial manifests)."""
        node: Any = self.manifest.get("config") or {}
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def problem_ids(self, split: str) -> list[str]:
        return [str(p) for p in (self.manifest.get("problems") or {}).get(split) or []]

    def has_eval(self) -> bool:
        """Whether this run evaluates on held-out problems at all (an empty set disables it)."""
        if self.problem_ids("eval"):
            return True
        configured = self.config("evaluation.problems")
        return bool(configured.strip()) if isinstance(configured, str) else True

    def ks(self) -> list[int]:
        return sorted({1, *(int(k) for k in self.config("evaluation.ks") or [])})

    def curriculum_on(self) -> bool:
        """Whether some iteration sampled a curriculum's subset of the training pool."""
        return any(it.curriculum for it in self.iterations)


def phases_of(k: int, with_eval: bool = True) -> tuple[str, ...]:
    """Iteration 0 samples (and evaluates) the base model; later ones train and redeploy first."""
    first = ("samples",) if k == 0 else ("train", "redeploy", "samples")
    return (*first, "eval") if with_eval else first


def _read_phase(
    store: _RunStore, it: IterationData, phase: str, ks: Sequence[int], folder_name: str = ""
) -> Summary | None:
    """The phase's rows (its folder, or `folder_name` that it also writes), summarised, when the
    manifest marks it done (else maybe half written)."""
    if it.phase(phase).get("status") != "done":
        return None
    folder = f"iter_{it.k}/{folder_name or phase}"
    rows = read_rows(store.path(folder), columns=SUMMARY_COLUMNS)
    if folder_name and rows.num_rows == 0:
        return None  # an optional extra of the phase, not written by this run
    if rows.num_rows == 0 and phase != "train":
        it.notes.append(f"{phase}: done but {folder}/ holds no rows")
    return summarize(rows, ks=ks)


def _note_missing(it: IterationData, with_eval: bool) -> None:
    for phase in phases_of(it.k, with_eval):
        status = it.phase(phase).get("status")
        if status != "done":
            it.missing.append(f"{phase}: {status or 'not started'}")
    skipped = it.metric("train", "skipped")
    if skipped:  # the loop reuses model k-1 when there was nothing verified to train on
        it.notes.append(f"train: skipped ({skipped}), so model {it.k} is model {it.k - 1}")


def collect(run_dir: str) -> RunData:
    """Everything the report shows, read from the run directory (raises ReportError)."""
    store = _RunStore(run_dir)
    manifest = _load_manifest(store)
    run = RunData(store.root, manifest, [])
    raw = manifest.get("iterations") or {}
    for key in sorted((k for k in raw if str(k).isdigit()), key=int):
        entry = raw[key] or {}
        it = IterationData(int(key), entry.get("adapter"), dict(entry.get("phases") or {}))
        it.curriculum = (
            entry.get("curriculum") if isinstance(entry.get("curriculum"), dict) else None
        )
        _note_missing(it, run.has_eval())
        it.train_pool = _read_phase(store, it, "samples", ks=[1])
        it.heldout = _read_phase(store, it, "eval", ks=run.ks())
        it.heldout_greedy = _read_phase(store, it, "eval", ks=[1], folder_name="eval_greedy")
        if it.k > 0:
            it.train_set = _read_phase(store, it, "train", ks=[1])
        run.iterations.append(it)
    return run


# --- formatting helpers ----------------------------------------------------------------------


def fmt_seconds(s: float | None) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "—"
    if s < 1:
        return f"{s * 1000:.0f} ms"  # adapter swaps take tens of milliseconds
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def _num(x: Any, fmt: str = "{:,.0f}") -> str:
    return fmt.format(x) if isinstance(x, int | float) and not isinstance(x, bool) else "—"


def bar(c: int, n: int, width: int = BAR_WIDTH) -> str:
    """axiom-rl's `████░░░░`: filled share of passes; never empty unless 0, never full unless n/n."""
    if n <= 0:
        return "·" * width
    filled = round(c / n * width)
    filled = max(filled, 1) if c > 0 else 0
    filled = min(filled, width - 1) if c < n else width
    return "█" * filled + "░" * (width - filled)


def _ci_text(ci: tuple[float, float]) -> str:
    return "n/a" if math.isnan(ci[0]) else f"[{fmt_pct(ci[0])}, {fmt_pct(ci[1])}]"


# --- report blocks, rendered to both Markdown and HTML ---------------------------------------


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Pre:
    text: str


@dataclass(frozen=True)
class Image:
    name: str  # plots/<name>.png
    alt: str


Block = Heading | Para | Table | Pre | Image


def _summary_row(label: str, s: Summary) -> list[str]:
    return [
        label,
        f"{fmt_pct(s.solve_rate)} ({s.solved}/{s.problems})",
        f"{fmt_pct(s.sample_pass_rate)} ({s.first_passed}/{s.first_samples})",
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


def _pool(it: IterationData, pool: str) -> Summary | None:
    return {"train": it.train_pool, "eval": it.heldout, "eval_greedy": it.heldout_greedy}[pool]


Scored = tuple[IterationData, Summary]  # a model and its figures on one pool


def _have(run: RunData, pool: str) -> list[Scored]:
    """The models with finished rows on `pool` ("train" or "eval"), in iteration order."""
    return [(it, s) for it in run.iterations if (s := _pool(it, pool)) is not None and s.samples]


def _base(run: RunData, pool: str) -> Summary | None:
    s = _pool(run.iterations[0], pool) if run.iterations else None
    return s if s is not None and s.samples else None


POOL_TITLES = {"train": "Training pool", "eval": "Held-out problems",
               "eval_greedy": "Held-out problems, greedy"}
POOL_WHAT = {
    "train": "model k sampling the training problems (`iter_k/samples`); iteration k+1 trains on these",
    "eval": "model k on problems never trained on (`iter_k/eval`)",
}


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


def _model_text(run: RunData) -> str:
    """The display name, with the configured spelling beside it when they differ."""
    shown, configured = run.manifest.get("model"), run.config("model")
    if shown and configured and shown != configured:
        return f"{shown} (`{configured}`)"
    return str(shown or configured or "—")


def _config_blocks(run: RunData) -> list[Block]:
    def c(dotted: str) -> Any:
        value = run.config(dotted)
        return "—" if value is None else value

    n_train, n_eval = len(run.problem_ids("train")), len(run.problem_ids("eval"))
    rows = [
        ("Model", _model_text(run)),
        ("Engine", str(c("generation.engine"))),
        ("Training problems", f"{c('problems')} ({n_train} problems)"),
        ("Held-out problems", f"{c('evaluation.problems') or '—'} ({n_eval} problems)"),
        (
            "Samples per problem (Best-of-N)",
            f"{c('generation.samples')}, max attempts {c('generation.max_attempts')}",
        ),
        (
            "Sampling",
            f"temperature {c('generation.temperature')}, top_p {c('generation.top_p')}, "
            f"max tokens {c('generation.max_tokens')}",
        ),
        (
            "Evaluation",
            f"{c('evaluation.samples')} samples at temperature "
            f"{c('evaluation.temperature')}, pass@k for k in {c('evaluation.ks')}",
        ),
        ("Seed", str(c("seed"))),
        ("Iterations", f"{c('iterations')} planned after the base; {len(run.iterations)} recorded"),
        (
            "LoRA SFT",
            f"r {c('training.lora_r')}, alpha {c('training.lora_alpha')}, "
            f"epochs {c('training.epochs')}, lr {c('training.lr')}, "
            f"batch {c('training.batch_size')} x accum {c('training.grad_accum')}",
        ),
        (
            "Training data",
            f"max {c('data.max_per_problem')} per problem, dedupe {c('data.dedupe')}, "
            f"accumulate {c('data.accumulate')}",
        ),
        ("Curriculum", _curriculum_setting(run)),
        (
            "Run",
            f"`{run.manifest.get('run_id', '—')}` created {run.manifest.get('created_at', '—')}",
        ),
    ]
    blocks: list[Block] = [Heading(2, "Configuration"), Table(["Setting", "Value"], rows)]
    argv = run.manifest.get("argv")
    if argv:
        args = [str(a) for a in argv]
        cmd = shlex.join((["python"] if args[0].endswith(".py") else []) + args)
        blocks.append(Para(f"Reproduce with: `{cmd}`"))
    else:
        blocks.append(Para("The manifest records no command line to reproduce this run."))
    return blocks


def _curriculum_setting(run: RunData) -> str:
    mode = run.config("data.curriculum")
    if mode is None:
        return "—"  # a manifest from before the curriculum existed
    active = run.curriculum_on()
    text = str(mode)
    if mode == "auto":
        text += " (on for this run)" if active else " (off for this run)"
    if active or mode == "on":
        text += (
            f": at most {run.config('data.curriculum_size')} problems per iteration, "
            f"{run.config('data.curriculum_explore')} of them for never-tried or unsolved ones, "
            f"step up a difficulty at {run.config('data.curriculum_step_up')} solved"
        )
    return text


CURRICULUM_NOTE = (
    "With the curriculum, each iteration samples its own subset of the training pool (see "
    "Curriculum), so training-pool rows of different iterations cover different problems; "
    "the held-out problems are the same for every model."
)


def _curriculum_blocks(run: RunData) -> list[Block]:
    """What the curriculum chose per iteration (only for runs where it was on)."""
    chosen = [it for it in run.iterations if it.curriculum]
    if not chosen:
        return []
    header = [
        "Iteration",
        "Problems sampled",
        "Frontier",
        "Sometimes solved",
        "Never tried",
        "Unsolved",
        "Mastered skipped",
        "Easy / medium / hard",
    ]
    rows = []
    for it in chosen:
        cur = it.curriculum or {}
        kinds, levels = cur.get("chosen") or {}, cur.get("difficulty") or {}
        rows.append(
            [
                str(it.k),
                f"{len(cur.get('ids') or [])} of {cur.get('pool', '?')}",
                str(cur.get("frontier", "—")),
                *(str(kinds.get(c, 0)) for c in ("learning", "untried", "unsolved")),
                str(cur.get("mastered_skipped", 0)),
                " / ".join(str(levels.get(lv, 0)) for lv in ("easy", "medium", "hard")),
            ]
        )
    intro = (
        "Each iteration samples at most the configured number of training problems, chosen from "
        "the earlier iterations' samples: problems every sample solved last time are skipped, "
        "sometimes-solved ones come first, a share goes to never-tried or unsolved ones, and the "
        "frontier difficulty steps up once most tried problems of the easier level are solved "
        "(rules: `axiom_ray/curriculum.py`; the chosen ids: `iterations.K.curriculum` in the "
        "manifest)."
    )
    return [Heading(2, "Curriculum"), Para(intro), Table(header, rows)]


def _pass_rate_bars(scored: list[Scored]) -> Pre:
    """axiom-rl's PER-SAMPLE PASS RATE box, one 40-cell bar per model."""
    width = max(len(it.label) for it, _ in scored)
    lines = []
    for it, s in scored:
        filled = round(s.sample_pass_rate * 40)
        lines.append(
            f"{it.label.ljust(width)}  {'█' * filled}{'░' * (40 - filled)}  "
            f"{fmt_pct(s.sample_pass_rate)} ({s.first_passed}/{s.first_samples})"
        )
    return Pre("\n".join(lines))


def _results_blocks(run: RunData) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Results per iteration")]
    for pool in ("train", "eval"):
        scored = _have(run, pool)
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
            base, other = _base(run, pool), _pool(it, pool)
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


def paired_rows(run: RunData, pool: str) -> list[list[str]]:
    """One row per model k >= 1: its paired difference against the base and against model k-1."""
    scored = _have(run, pool)
    rows = []
    for i, (it, s) in enumerate(scored):
        if i == 0:
            continue
        base, prev = scored[0], scored[i - 1]
        vs_base = paired_difference(base[1], s)
        vs_prev = paired_difference(prev[1], s)
        rows.append([it.label, f"{fmt_pct(vs_base.a)} -> {fmt_pct(vs_base.b)}", vs_base.describe(),
                     f"vs {prev[0].label}: {vs_prev.describe()}" if i > 1 else "(same as vs base)"])
    return rows


def _paired_blocks(run: RunData) -> list[Block]:
    blocks: list[Block] = []
    for pool in ("train", "eval", "eval_greedy"):
        rows = paired_rows(run, pool)
        if rows:
            blocks += [Heading(3, POOL_TITLES[pool]),
                       Table(["Model", "pass@1 (base -> model)", "vs base", "vs previous"], rows)]
    return [Heading(2, "Paired differences"), Para(PAIRED_NOTE), *blocks] if blocks else []


def _common_problems_note(base: Summary, other: Summary, label: str) -> Para | None:
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

    def rate(s: Summary) -> str:
        c = sum(s.per_problem[p][0] for p in common)
        n = sum(s.per_problem[p][1] for p in common)
        return f"{fmt_pct(c / n if n else math.nan)} ({c}/{n})"

    return Para(
        f"The two models sampled different problems (curriculum); on the {len(common)} both "
        f"sampled, the per-sample pass rate went from {rate(base)} to {rate(other)}."
    )


def _problem_order(run: RunData, pool: str, scored: list[Scored]) -> list[str]:
    """The manifest's order, then any problem only the rows know (e.g. an older pool)."""
    known = {p for _, s in scored for p in s.per_problem}
    order = [p for p in run.problem_ids(pool) if p in known]
    return order + sorted(known - set(order))


def _cell(counts: tuple[int, int] | None, base: tuple[int, int] | None, mark: bool) -> str:
    if counts is None or counts[1] == 0:
        return "—"
    c, n = counts
    arrow = ""
    if mark and base is not None and base[1]:
        delta = c / n - base[0] / base[1]
        arrow = "⬆" if delta > 1e-9 else "⬇" if delta < -1e-9 else ""
    return f"{f'{c}/{n}':>5} {bar(c, n)} {arrow}".rstrip()


def per_problem_text(run: RunData, pool: str) -> str | None:
    """axiom-rl's per-problem breakdown: passes out of N per problem, base vs each iteration.

    A problem a model did not sample (the curriculum) shows "—"; arrows compare with the first
    model that sampled the problem (the base, unless the curriculum chose it later)."""
    scored = _have(run, pool)
    if not scored:
        return None
    base = _base(run, pool)
    grid = [["Problem", *(it.label for it, _ in scored)]]
    for pid in _problem_order(run, pool, scored):
        first = next(j for j, (_, s) in enumerate(scored) if pid in s.per_problem)
        ref = scored[first][1].per_problem[pid]
        grid.append(
            [
                pid,
                *(_cell(s.per_problem.get(pid), ref, j > first) for j, (_, s) in enumerate(scored)),
            ]
        )
    grid.append(["TOTAL", *(_total(s, _same_problems(base, s, it.k)) for it, s in scored)])
    # Column widths from every cell (totals are the widest), two spaces between columns.
    widths = [max(len(row[j]) for row in grid) + 2 for j in range(len(grid[0]))]
    lines = ["".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in grid]
    rule = "─" * (sum(widths) - 2)
    return "\n".join([lines[0], rule, *lines[1:-1], rule, lines[-1]])


def _same_problems(base: Summary | None, s: Summary, k: int) -> Summary | None:
    """The base, to compare totals with, when model k sampled the same problems (else the
    relative change would mix problem sets)."""
    if k == 0 or base is None or set(base.per_problem) != set(s.per_problem):
        return None
    return base


def _total(s: Summary, base: Summary | None) -> str:
    text = f"{s.first_passed}/{s.first_samples} ({s.sample_pass_rate * 100:.0f}%)"
    if base is not None and base.sample_pass_rate > 0:
        text += f" {(s.sample_pass_rate / base.sample_pass_rate - 1) * 100:+.0f}%"
    return text


def _breakdown_blocks(run: RunData) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Per-problem breakdown"),
        Para(
            "Passes out of N first-round samples per problem; ⬆/⬇ against the base (against "
            "the first model that sampled the problem when a curriculum chose it later); — where "
            "a model did not sample it."
        ),
    ]
    for pool in ("train", "eval"):
        text = per_problem_text(run, pool)
        blocks += [
            Heading(3, POOL_TITLES[pool]),
            Pre(text) if text else Para("No finished sample rows yet."),
        ]
    return blocks


def _passk_blocks(run: RunData) -> list[Block]:
    scored = _have(run, "eval")
    blocks: list[Block] = [Heading(2, "Held-out pass@k")]
    if not scored:
        return [*blocks, Para("No finished held-out evaluation yet.")]
    ks = run.ks()
    greedy = any(it.heldout_greedy is not None for it, _ in scored)
    header = ["Model", "Problems", "pass@1", "95% CI (bootstrap over problems)"]
    header += [f"pass@{k}" for k in ks if k > 1]
    header += ["greedy pass@1", "95% CI"] if greedy else []
    rows = []
    for it, s in scored:
        row = [
            it.label,
            str(s.problems),
            fmt_pct(s.pass_at_k.get(1, math.nan)),
            _ci_text(s.pass_at_k_ci(1, seed=BOOT_SEED)),
        ]
        row += [fmt_pct(s.pass_at_k[k]) if k in s.pass_at_k else "n/a" for k in ks if k > 1]
        if greedy:
            g = it.heldout_greedy
            row += [fmt_pct(g.pass_at_k.get(1, math.nan)), _ci_text(g.pass_at_k_ci(1, seed=BOOT_SEED))] if g else ["n/a", ""]
        rows.append(row)
    temperature = run.config("evaluation.temperature")
    at = f" at temperature {temperature}" if temperature is not None else ""
    note = (
        f"Unbiased estimator (Chen et al. 2021) over first-round samples{at}; interval: 1000 bootstrap resamples of the "
        f"problems, seed {BOOT_SEED}."
    )
    return [*blocks, Table(header, rows), Para(note)]


def _phase_cell(it: IterationData, phase: str) -> str:
    entry = it.phase(phase)
    if phase not in phases_of(it.k) and not entry:
        return ""  # iteration 0 has no train or redeploy phase
    if entry.get("status") == "done":
        return fmt_seconds(entry.get("seconds"))
    return entry.get("status") or "not started"


def _timing_blocks(run: RunData) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Phase timings")]
    if not run.iterations:
        return [*blocks, Para("No phase has run yet.")]
    shown = [p for p in PHASES if p != "eval" or run.has_eval()]
    header = ["Iteration", *shown, "Total (done phases)", "Generated tokens/s", "Tokens generated"]
    rows = []
    for it in run.iterations:
        total = sum(
            float(it.phase(p).get("seconds") or 0)
            for p in phases_of(it.k, run.has_eval())
            if it.phase(p).get("status") == "done"
        )
        rows.append(
            [
                str(it.k),
                *(_phase_cell(it, p) for p in PHASES if p in shown),
                fmt_seconds(total),
                _num(it.metric("samples", "tokens_per_s"), "{:,.1f}"),
                _num(it.metric("samples", "tokens")),
            ]
        )
    blocks.append(Table(header, rows))
    blocks += _training_blocks(run)
    return blocks


def _training_blocks(run: RunData) -> list[Block]:
    trained = [it for it in run.iterations if it.k > 0]
    if not trained:
        return []
    header = [
        "Adapter",
        "Examples (rows)",
        "Problems covered",
        "Steps",
        "Final loss",
        "Train tokens/s",
        "Redeploy",
    ]
    rows = []
    for it in trained:
        ts = it.train_set
        rows.append(
            [
                f"{it.k} (`{it.adapter or '—'}`)",
                _num(it.metric("train", "examples")) + (f" ({ts.samples})" if ts else ""),
                str(ts.problems) if ts else "—",
                _num(it.metric("train", "steps")),
                _num(it.metric("train", "final_loss"), "{:.4f}"),
                _num(
                    it.metric("train", "tokens_per_s") or it.metric("train", "tokens_per_second"),
                    "{:,.0f}",
                ),
                fmt_seconds(
                    it.metric("redeploy", "seconds") or it.phase("redeploy").get("seconds")
                ),
            ]
        )
    return [Heading(3, "Training"), Table(header, rows)]


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
    title = f"axiom-ray report: {m.get('experiment') or m.get('run_id') or 'run'}"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    intro = (
        f"Model `{m.get('model') or run.config('model') or '?'}`, run `{m.get('run_id', '?')}` "
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
        *_curriculum_blocks(run),
        *_breakdown_blocks(run),
        *_passk_blocks(run),
        *_timing_blocks(run),
        *_plot_blocks(plots),
        *_config_blocks(run),
    ]


# --- renderers -------------------------------------------------------------------------------


def render_markdown(blocks: Sequence[Block]) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Table):
            out.append(markdown_table(b.header, b.rows))
        elif isinstance(b, Pre):
            out.append(f"```text\n{b.text}\n```")
        else:
            out.append(f"![{b.alt}](plots/{b.name}.png)")
    return "\n\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #ccc;margin-top:1.8em}
table{border-collapse:collapse;margin:.8em 0}th,td{border:1px solid #ccc;padding:.3em .6em;
text-align:left;vertical-align:top}th{background:#f2f2f2}tr:nth-child(even) td{background:#fafafa}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:13px;line-height:1.25}
code{background:#f0f0f0;padding:0 .2em}figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}
figcaption{color:#555;font-size:.9em}
"""


def _inline_html(text: str) -> str:
    """The two Markdown inlines the report uses: **bold** and `code`."""
    s = html.escape(text)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", s)


def _para_html(text: str) -> str:
    lines = text.split("\n")
    if all(line.startswith("- ") for line in lines):
        return "<ul>" + "".join(f"<li>{_inline_html(line[2:])}</li>" for line in lines) + "</ul>"
    return f"<p>{_inline_html(text)}</p>"


def _table_html(t: Table) -> str:
    head = "".join(f"<th>{_inline_html(h)}</th>" for h in t.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_inline_html(str(c))}</td>" for c in row) + "</tr>"
        for row in t.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(blocks: Sequence[Block], plots: Mapping[str, bytes]) -> str:
    """One self-contained page: CSS inline, every plot a base64 data URI."""
    title = next((b.text for b in blocks if isinstance(b, Heading)), "axiom-ray report")
    parts = []
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"<h{b.level}>{_inline_html(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            parts.append(_para_html(b.text))
        elif isinstance(b, Table):
            parts.append(_table_html(b))
        elif isinstance(b, Pre):
            parts.append(f"<pre>{html.escape(b.text)}</pre>")
        else:
            data = base64.b64encode(plots[b.name]).decode("ascii")
            parts.append(
                f'<figure><img alt="{html.escape(b.alt)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(b.alt)}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )


# --- plots (matplotlib's object API: no pyplot, no global backend switch) -----------------------


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _rate_axis(ax: Any, run: RunData, pool: str) -> None:
    scored = _have(run, pool)
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
        ax.plot(xs, [s.sample_pass_rate for s in sums], marker="o", label="per-sample pass rate")
    ax.plot(xs, [s.solve_rate for s in sums], marker="s", linestyle="--", label="solve rate")
    ax.set_xticks(xs, [it.short for it, _ in scored])
    ax.margins(x=0.15)
    ax.legend(loc="lower right")


def _pass_at_k_curve(ax: Any, xs: list[float], sums: list[Summary], k: int) -> None:
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
    import numpy as np
    from matplotlib.figure import Figure

    scored = _have(run, pool)
    if not scored:
        return None
    ids = _problem_order(run, pool, scored)
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
    from matplotlib.figure import Figure

    secs = {
        p: [
            float(it.phase(p).get("seconds") or 0) if it.phase(p).get("status") == "done" else 0.0
            for it in run.iterations
        ]
        for p in PHASES
    }
    if not any(v for vals in secs.values() for v in vals):
        return None
    fig = Figure(figsize=(max(5, 1.2 * len(run.iterations) + 3), 4))
    ax = fig.subplots()
    xs = [it.k for it in run.iterations]
    bottom = [0.0] * len(xs)
    for p in PHASES:
        if any(secs[p]):
            ax.bar(xs, secs[p], bottom=bottom, label=p)
            bottom = [b + v for b, v in zip(bottom, secs[p], strict=True)]
    ax.set_xticks(xs, [it.short for it in run.iterations])
    ax.set_ylabel("seconds")
    ax.set_title("Phase wall time per iteration (done phases)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def plot_tokens_per_s(run: RunData) -> bytes | None:
    """Generation throughput per iteration: the training-pool sampling, and evaluation if timed."""
    from matplotlib.figure import Figure

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
    fig = Figure(figsize=(max(5, 1.2 * len(run.iterations) + 3), 4))
    ax = fig.subplots()
    width = 0.8 / len(series)
    xs = [it.k for it in run.iterations]
    for i, (name, vals) in enumerate(series.items()):
        ax.bar([x + (i - (len(series) - 1) / 2) * width for x in xs], vals, width=width, label=name)
    ax.set_xticks(xs, [it.short for it in run.iterations])
    ax.set_ylabel("generated tokens / s")
    ax.set_title("Generation throughput per iteration")
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


# --- entry point -----------------------------------------------------------------------------


def write_report(run_dir: str) -> dict[str, str]:
    """Write RUN/report.md, RUN/report.html and RUN/plots/*.png (local path or pyarrow URI).

    Returns {"md": path, "html": path, <plot name>: path} in the run directory's own form.

    Raises ReportError (one line) when run_dir has no readable manifest.json.
    """
    store = _RunStore(run_dir)
    run = collect(run_dir)
    plots = make_plots(run)
    blocks = build_blocks(run, plots)
    paths = {
        "md": store.write("report.md", render_markdown(blocks).encode("utf-8")),
        "html": store.write("report.html", render_html(blocks, plots).encode("utf-8")),
    }
    paths |= {name: store.write(f"plots/{name}.png", png) for name, png in plots.items()}
    return paths
