"""The report's building blocks (headings, paragraphs, tables, preformatted text, images),
rendered to both Markdown and HTML by render.py, and the formatting of the figures in them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

BAR_WIDTH = 8  # axiom-rl's per-problem bars: one cell per sample at N=8


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


def fmt_pct(x: float) -> str:
    """62.5% / 100% / 96.3%: one decimal, no trailing .0 (axiom-rl's style)."""
    if math.isnan(x):
        return "n/a"
    s = f"{x * 100:.1f}"
    return f"{s[:-2] if s.endswith('.0') else s}%"


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


def fmt_num(x: Any, fmt: str = "{:,.0f}") -> str:
    """A number from the manifest, "—" when it is absent (an older or partial manifest)."""
    return fmt.format(x) if isinstance(x, int | float) and not isinstance(x, bool) else "—"


def fmt_ci(ci: tuple[float, float]) -> str:
    return "n/a" if math.isnan(ci[0]) else f"[{fmt_pct(ci[0])}, {fmt_pct(ci[1])}]"


def bar(c: int, n: int, width: int = BAR_WIDTH) -> str:
    """axiom-rl's `████░░░░`: filled share of passes; never empty unless 0, never full unless n/n."""
    if n <= 0:
        return "·" * width
    filled = round(c / n * width)
    filled = max(filled, 1) if c > 0 else 0
    filled = min(filled, width - 1) if c < n else width
    return "█" * filled + "░" * (width - filled)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)
