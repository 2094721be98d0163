"""Comparing a candidate's (decoded, plain) value with the expected one, in the judge's process.

exact      equality of plain data: bool is never a number (True is not 1), an int equals the
           float of the same value, list and tuple are both "a sequence" (JSON has no tuples),
           set and frozenset are both "a set", dict keys and values compare the same way.
float      like exact, but numbers compare with math.isclose(rel_tol=1e-6, abs_tol=1e-9),
           recursively through sequences and dict values (NaN equals NaN here).
unordered  the top-level sequence as a multiset of exact elements.

The candidate's value may be crafted so that its canonical forms hash alike (their hashes derive
from ints and floats the candidate chose): every set, dict or counter built here from them goes
through wire.check_alike first, and wire.TooLarge propagates to the judge ("reply too large/slow").
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from axiom_ray.sandbox.wire import check_alike

MODES = ("exact", "float", "unordered")
_FLAT = frozenset({int, float, str, bytes, type(None)})  # scalars whose == is already exact equality


def canon(x: Any) -> Any:
    """A hashable canonical form in which exact-equal values are equal and nothing else is."""
    t = type(x)
    if t is bool:
        return ("b", x)
    if t is int or t is float:
        return ("n", x)  # 1 == 1.0 and hash(1) == hash(1.0): they meet
    if t is list or t is tuple:
        if set(map(type, x)) <= _FLAT:  # no bools, no containers: the elements are their own form
            return ("Q", tuple(x))  # (values exact-equal to a flat sequence are flat sequences)
        return ("q", tuple(canon(v) for v in x))
    if t is set or t is frozenset:
        if set(map(type, x)) <= _FLAT:
            return ("F", frozenset(x))  # hashed alike at most MAX_ALIKE ways already (it is a set)
        return ("S", _frozen([canon(v) for v in x]))
    if t is dict:
        if set(map(type, x)) <= _FLAT and set(map(type, x.values())) <= _FLAT:
            return ("E", _frozen(list(x.items())))
        return ("D", _frozen([(canon(k), canon(v)) for k, v in x.items()]))
    if x is None:
        return ("0",)
    if t is str:
        return ("s", x)
    if t is bytes:
        return ("y", x)
    raise TypeError(f"not plain data: {t.__name__}")


def _frozen(forms: list[Any]) -> frozenset[Any]:
    check_alike(forms)
    return frozenset(forms)


def _counted(values: Any) -> Counter[Any]:
    forms = list(values) if set(map(type, values)) <= _FLAT else [canon(v) for v in values]
    check_alike(forms)
    return Counter(forms)


def _close(e: Any, a: Any) -> bool:
    te, ta = type(e), type(a)
    if te is bool or ta is bool:
        return te is ta and e == a
    if te in (int, float) and ta in (int, float):
        if isinstance(e, float) and isinstance(a, float) and math.isnan(e) and math.isnan(a):
            return True
        try:
            return math.isclose(e, a, rel_tol=1e-6, abs_tol=1e-9)
        except OverflowError:  # an int too large for a float
            return e == a
    if te in (list, tuple) and ta in (list, tuple):
        return len(e) == len(a) and all(_close(x, y) for x, y in zip(e, a, strict=True))
    if te is dict and ta is dict:
        if len(e) != len(a):
            return False
        forms = [canon(k) for k in a]
        check_alike(forms)
        keys = dict(zip(forms, a, strict=True))
        return all(canon(k) in keys and _close(v, a[keys[canon(k)]]) for k, v in e.items())
    return canon(e) == canon(a)


def values_equal(expected: Any, actual: Any, mode: str = "exact") -> bool:
    """Whether the candidate's `actual` matches `expected` under `mode` (see module doc)."""
    try:
        if mode == "float":
            return _close(expected, actual)
        if mode == "unordered" and type(expected) in (list, tuple) and type(actual) in (list, tuple):
            return _counted(expected) == _counted(actual)
        return canon(expected) == canon(actual)
    except (TypeError, RecursionError):
        return False
