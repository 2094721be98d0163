"""The report's longer sections: the per-problem breakdown, held-out pass@k, phase timings and
training, the curriculum's choices and the configuration."""

from __future__ import annotations

import math
import shlex
from typing import Any

from axiom_ray.evaluation import PassSummary
from axiom_ray.report.blocks import (
    Block,
    Heading,
    Para,
    Pre,
    Table,
    bar,
    fmt_ci,
    fmt_num,
    fmt_pct,
    fmt_seconds,
)
from axiom_ray.report.collect import (
    POOL_TITLES,
    IterationData,
    RunData,
    base_on,
    problem_order,
    scored_on,
)
from axiom_ray.rundir import PHASES, phases_of

BOOT_SEED = 0  # fixed so a report is reproducible from its run directory


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
    scored = scored_on(run, pool)
    if not scored:
        return None
    base = base_on(run, pool)
    grid = [["Problem", *(it.label for it, _ in scored)]]
    for pid in problem_order(run, pool, scored):
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


def _same_problems(base: PassSummary | None, s: PassSummary, k: int) -> PassSummary | None:
    """The base, to compare totals with, when model k sampled the same problems (else the
    relative change would mix problem sets)."""
    if k == 0 or base is None or set(base.per_problem) != set(s.per_problem):
        return None
    return base


def _total(s: PassSummary, base: PassSummary | None) -> str:
    text = f"{s.first_passed}/{s.first_samples} ({s.pass_rate * 100:.0f}%)"
    if base is not None and base.pass_rate > 0:
        text += f" {(s.pass_rate / base.pass_rate - 1) * 100:+.0f}%"
    return text


def breakdown_blocks(run: RunData) -> list[Block]:
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


def passk_blocks(run: RunData) -> list[Block]:
    scored = scored_on(run, "eval")
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
            fmt_ci(s.pass_at_k_ci(1, seed=BOOT_SEED)),
        ]
        row += [fmt_pct(s.pass_at_k[k]) if k in s.pass_at_k else "n/a" for k in ks if k > 1]
        if greedy:
            g = it.heldout_greedy
            row += [fmt_pct(g.pass_at_k.get(1, math.nan)), fmt_ci(g.pass_at_k_ci(1, seed=BOOT_SEED))] if g else ["n/a", ""]
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
    if phase not in phases_of(it.k) and entry.status is None:
        return ""  # iteration 0 has no train or redeploy phase
    if entry.is_done:
        return fmt_seconds(entry.seconds)
    return entry.status or "not started"


def timing_blocks(run: RunData) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Phase timings")]
    if not run.iterations:
        return [*blocks, Para("No phase has run yet.")]
    shown = [p for p in PHASES if p != "eval" or run.has_eval()]
    header = ["Iteration", *shown, "Total (done phases)", "Generated tokens/s", "Tokens generated"]
    rows = []
    for it in run.iterations:
        total = sum(
            float(it.phase(p).seconds or 0)
            for p in phases_of(it.k, run.has_eval())
            if it.phase(p).is_done
        )
        rows.append(
            [
                str(it.k),
                *(_phase_cell(it, p) for p in PHASES if p in shown),
                fmt_seconds(total),
                fmt_num(it.metric("samples", "tokens_per_s"), "{:,.1f}"),
                fmt_num(it.metric("samples", "tokens")),
            ]
        )
    blocks.append(Table(header, rows))
    blocks += training_blocks(run)
    return blocks


def training_blocks(run: RunData) -> list[Block]:
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
                fmt_num(it.metric("train", "examples")) + (f" ({ts.samples})" if ts else ""),
                str(ts.problems) if ts else "—",
                fmt_num(it.metric("train", "steps")),
                fmt_num(it.metric("train", "final_loss"), "{:.4f}"),
                # training's own figure (training.TrainResult.tokens_per_second), not a pass's
                fmt_num(it.metric("train", "tokens_per_second"), "{:,.0f}"),
                fmt_seconds(
                    it.metric("redeploy", "seconds") or it.phase("redeploy").seconds
                ),
            ]
        )
    return [Heading(3, "Training"), Table(header, rows)]




def _model_text(run: RunData) -> str:
    """The display name, with the configured spelling beside it when they differ."""
    shown, configured = run.manifest.model, run.config("model")
    if shown and configured and shown != configured:
        return f"{shown} (`{configured}`)"
    return str(shown or configured or "—")


def config_blocks(run: RunData) -> list[Block]:
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
        ("Training stack", _training_stack(c)),
        (
            "Training data",
            f"max {c('data.max_per_problem')} per problem, dedupe {c('data.dedupe')}, "
            f"accumulate {c('data.accumulate')}",
        ),
        ("Curriculum", _curriculum_setting(run)),
        (
            "Run",
            f"`{run.manifest.run_id or '—'}` created {run.manifest.created_at or '—'}",
        ),
    ]
    blocks: list[Block] = [Heading(2, "Configuration"), Table(["Setting", "Value"], rows)]
    args = run.manifest.argv
    if args:
        cmd = shlex.join((["python"] if args[0].endswith(".py") else []) + args)
        blocks.append(Para(f"Reproduce with: `{cmd}`"))
    else:
        blocks.append(Para("The manifest records no command line to reproduce this run."))
    return blocks


def _training_stack(c: Any) -> str:
    """Quantization, strategy, workers and the global batch (a manifest from before these keys
    existed trained plain LoRA with DDP)."""
    quant = c("training.quantization")
    lora = "LoRA" if quant in ("none", "—") else f"QLoRA {quant}"
    strategy = "DDP"
    if c("training.strategy") == "deepspeed":
        strategy = f"DeepSpeed ZeRO-{c('training.zero_stage')}"
        if c("training.offload_optimizer") is True:
            strategy += ", optimizer offloaded to CPU"
    workers, batch, accum = c("training.num_workers"), c("training.batch_size"), c("training.grad_accum")
    total = workers * batch * accum if all(isinstance(v, int) for v in (workers, batch, accum)) else "—"
    return (f"{lora}, {strategy}, {workers} worker(s); global batch "
            f"{batch} x {accum} x {workers} = {total}")


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


def curriculum_blocks(run: RunData) -> list[Block]:
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


