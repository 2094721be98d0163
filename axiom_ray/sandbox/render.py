"""Showing what a candidate sent, safely: a verdict's detail must be short, printable, and cheap.

A candidate controls the values it returns and the text of its exceptions; rendering them must
neither take long (an int of a million digits, a set of a million elements) nor produce text that
breaks JSON, Parquet (strict UTF-8) or a terminal.
"""

from __future__ import annotations

import builtins
import itertools
import math
import reprlib
from typing import Any

_MAX_SHOWN_INT_BITS = 1000  # a larger int is shown by its size: int-to-str is quadratic and capped


class _SafeRepr(reprlib.Repr):
    """reprlib (bounded depth and width) that can show any plain value: an int by its size when
    rendering it would be slow or refused (4300-digit limit), bytes cut before rendering."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = 60
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdict = 6

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > _MAX_SHOWN_INT_BITS:
            return f"<int of about {int((x.bit_length() - 1) * math.log10(2)) + 1} digits>"
        return super().repr_int(x, level)

    def repr_bytes(self, x: bytes, level: int) -> str:
        shown = builtins.repr(x[: self.maxother])
        return shown if len(x) <= self.maxother else shown + "..."

    # reprlib sorts a whole set or dict to show its first few elements: not a million of them.
    def repr_set(self, x: set[Any], level: int) -> str:
        return self._repr_iterable(x, level, "{", "}", self.maxset) if x else "set()"

    def repr_frozenset(self, x: frozenset[Any], level: int) -> str:
        return self._repr_iterable(x, level, "frozenset({", "})", self.maxfrozenset) if x else "frozenset()"

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        shown = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}" for k, v in itertools.islice(x.items(), self.maxdict)]
        return "{" + ", ".join(shown) + (", ..." if len(x) > self.maxdict else "") + "}"


_REPR = _SafeRepr()


def render(value: Any, limit: int = 100) -> str:
    """A short, printable rendering of any value a candidate returned; never raises."""
    try:
        return clean_text(_REPR.repr(value), limit)
    except Exception:  # RecursionError, MemoryError, anything: a detail is still written
        return "<a value that cannot be shown>"


def clean_text(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with control characters, NULs and lone surrogates
    escaped: a verdict's detail must survive JSON, Parquet (strict UTF-8) and a terminal."""
    text = text[:limit]
    if not text.isprintable():
        text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)[:limit]
    return text


def message_text(value: Any, limit: int) -> str:
    """A text field of a candidate's message (an exception's name or message): clean text, or
    the type of whatever else was sent in its place (never str() of it: that could be huge)."""
    return clean_text(value, limit) if type(value) is str else f"<{type(value).__name__}>"
