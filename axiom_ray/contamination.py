"""Contamination: n-gram overlap between training problems and held-out problems.

A held-out score means little if a training problem states the same task. This module compares
every training prompt with every held-out prompt on word n-grams of normalised text (lower case,
runs of letters and digits; punctuation, layout and identifier style are ignored) and flags the
pairs whose overlap reaches a threshold. ``train-large`` leaves the flagged training problems out
(``problems/train_large_exclusions.tsv``, written by ``scripts/import_problems.py contamination``).

Overlap of a pair = shared n-grams / n-grams of the shorter prompt (containment: a short held-out
task copied inside a long training prompt scores 1.0). N-grams that occur in more than
``max_df`` held-out problems are phrasing of the benchmark itself ("write a python function to
find the ..."), not of one task, and are ignored on both sides.

    axiom problems contamination [--train train,codeio] [--heldout heldout,mbpp,humaneval]
                                 [--n 8] [--threshold 0.3] [--out report.json]

Pure standard library; no Ray.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from axiom_ray.problems import Problem, ProblemError, resolve_problems

DEFAULT_N = 8
DEFAULT_THRESHOLD = 0.3
DEFAULT_MAX_DF = 5
DEFAULT_MIN_SHARED = 2
DEFAULT_TRAIN = "train,codeio"
DEFAULT_HELDOUT = "heldout,mbpp,humaneval"

Gram = tuple[str, ...]
_WORD_RE = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Pair:
    """One training problem that overlaps one held-out problem."""

    train_id: str
    train_set: str
    heldout_id: str
    heldout_set: str
    shared: int  # n-grams in common (boilerplate excluded)
    score: float  # shared / n-grams of the shorter prompt
    sample: str  # one shared n-gram, as text


@dataclass(frozen=True)
class Report:
    n: int
    threshold: float
    max_df: int
    min_shared: int
    train_count: int
    heldout_count: int
    ignored_ngrams: int  # held-out n-grams dropped as boilerplate (in > max_df problems)
    pairs: tuple[Pair, ...]  # at or above the threshold, highest score first

    def flagged_train_ids(self) -> list[str]:
        """Training problems with at least one flagged pair, in first-flagged order."""
        return list(dict.fromkeys(p.train_id for p in self.pairs))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["pairs"] = [asdict(p) for p in self.pairs]
        out["flagged_train_ids"] = self.flagged_train_ids()
        return out

    def table(self, limit: int | None = 20) -> str:
        head = (
            f"contamination: {self.train_count} training x {self.heldout_count} held-out problems,"
            f" word {self.n}-grams, threshold {self.threshold:g}: {len(self.pairs)} pair(s),"
            f" {len(self.flagged_train_ids())} training problem(s) flagged"
        )
        shown = self.pairs if limit is None else self.pairs[:limit]
        rows = [
            f"  {p.score:5.2f} {p.shared:4d}  {p.train_id:<28} {p.heldout_id:<28} {p.sample!r}"
            for p in shown
        ]
        if shown:
            rows.insert(0, f"  {'score':>5} {'grams':>4}  {'training':<28} {'held-out':<28} sample")
        if len(shown) < len(self.pairs):
            rows.append(f"  ... {len(self.pairs) - len(shown)} more (see --out)")
        return "\n".join([head, *rows])


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """Normalised words: lower case runs of letters and digits."""
    return _WORD_RE.findall(text.lower())


def ngrams(text: str, n: int = DEFAULT_N) -> frozenset[Gram]:
    """The word n-grams of `text`; a text shorter than n words is one gram of all its words."""
    w = words(text)
    if len(w) < n:
        return frozenset([tuple(w)]) if w else frozenset()
    return frozenset(tuple(w[i : i + n]) for i in range(len(w) - n + 1))


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def contamination_report(
    train: Sequence[Problem],
    heldout: Sequence[Problem],
    *,
    n: int = DEFAULT_N,
    threshold: float = DEFAULT_THRESHOLD,
    max_df: int = DEFAULT_MAX_DF,
    min_shared: int = DEFAULT_MIN_SHARED,
) -> Report:
    """Every (training, held-out) pair whose prompt overlap reaches `threshold`."""
    if n < 1 or not 0 < threshold <= 1 or max_df < 1 or min_shared < 1:
        raise ValueError("need n >= 1, 0 < threshold <= 1, max_df >= 1, min_shared >= 1")
    held_grams = [ngrams(p.prompt, n) for p in heldout]
    boiler = _boilerplate(held_grams, max_df)
    held_grams = [g - boiler for g in held_grams]
    index = _inverted_index(held_grams)
    pairs = []
    for problem in train:
        grams = ngrams(problem.prompt, n) - boiler
        for j, shared in _shared_counts(grams, index).items():
            pair = _pair(problem, heldout[j], grams, held_grams[j], shared, min_shared, threshold)
            if pair is not None:
                pairs.append(pair)
    pairs.sort(key=lambda p: (-p.score, -p.shared, p.train_id, p.heldout_id))
    return Report(
        n, threshold, max_df, min_shared, len(train), len(heldout), len(boiler), tuple(pairs)
    )


def _boilerplate(grams: Iterable[frozenset[Gram]], max_df: int) -> frozenset[Gram]:
    df = Counter(g for gs in grams for g in gs)
    return frozenset(g for g, count in df.items() if count > max_df)


def _inverted_index(grams: Sequence[frozenset[Gram]]) -> dict[Gram, list[int]]:
    index: dict[Gram, list[int]] = defaultdict(list)
    for j, gs in enumerate(grams):
        for g in gs:
            index[g].append(j)
    return index


def _shared_counts(grams: frozenset[Gram], index: dict[Gram, list[int]]) -> Counter[int]:
    counts: Counter[int] = Counter()
    for g in grams:
        counts.update(index.get(g, ()))
    return counts


def _pair(
    train: Problem,
    held: Problem,
    train_grams: frozenset[Gram],
    held_grams: frozenset[Gram],
    shared: int,
    min_shared: int,
    threshold: float,
) -> Pair | None:
    smaller = min(len(train_grams), len(held_grams))
    score = shared / smaller if smaller else 0.0
    if shared < min(min_shared, smaller) or score < threshold:
        return None
    sample = " ".join(min(train_grams & held_grams))
    return Pair(train.id, train.set, held.id, held.set, shared, round(score, 4), sample)


# ---------------------------------------------------------------------------------------------
# train-large's exclusion list
# ---------------------------------------------------------------------------------------------


def exclusions_text(report: Report, command: str) -> str:
    """The TSV that axiom_ray/problems/sets.py reads for ``train-large``: one flagged pair per line."""
    head = [
        "# Training problems left out of the train-large set: each near-duplicates a held-out",
        f"# problem (word {report.n}-grams, overlap >= {report.threshold:g}, "
        f"boilerplate df > {report.max_df}, at least {report.min_shared} shared).",
        f"# Regenerate: {command}",
        "# train_id\theldout_id\tscore",
    ]
    seen: set[str] = set()
    lines = []
    for p in report.pairs:
        if p.train_id not in seen:
            seen.add(p.train_id)
            lines.append(f"{p.train_id}\t{p.heldout_id}\t{p.score:.4f}")
    return "\n".join(head + sorted(lines)) + "\n"


# ---------------------------------------------------------------------------------------------
# CLI: axiom problems contamination
# ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--train",
        default=DEFAULT_TRAIN,
        help=f"training problems: set names, ids or files, comma-separated (default: {DEFAULT_TRAIN})",
    )
    parser.add_argument(
        "--heldout",
        default=DEFAULT_HELDOUT,
        help=f"held-out problems, same syntax (default: {DEFAULT_HELDOUT})",
    )
    parser.add_argument(
        "--n", type=int, default=DEFAULT_N, help=f"words per n-gram (default: {DEFAULT_N})"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="flag a pair when shared n-grams / n-grams of the shorter prompt reach this "
        f"(default: {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--max-df",
        type=int,
        default=DEFAULT_MAX_DF,
        help="ignore n-grams found in more than this many held-out problems (boilerplate; "
        f"default: {DEFAULT_MAX_DF})",
    )
    parser.add_argument(
        "--limit", type=int, default=20, help="pairs shown in the table (default: 20; 0: all)"
    )
    parser.add_argument("--out", help="also write the full report as JSON to this file")


def run(args: argparse.Namespace) -> int:
    """Print the table (and write JSON with --out); 0, or 2 on bad input."""
    try:
        train = resolve_problems(args.train)
        heldout = resolve_problems(args.heldout)
        report = contamination_report(
            train, heldout, n=args.n, threshold=args.threshold, max_df=args.max_df
        )
    except (ProblemError, ValueError) as exc:
        print(f"axiom problems contamination: {exc}", file=sys.stderr)
        return 2
    print(report.table(limit=args.limit or None))
    if args.out:
        Path(args.out).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"report: {args.out}")
    return 0
