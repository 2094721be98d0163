"""The comparison rules: whether a candidate's value matches the expected one (the judge's verdict).

This module is their one owner. The judge (judge.py) decides every test with `values_equal`, the
determinism check (axiom_ray/determinism.py) compares two runs with it, and a problem's `compare`
field (axiom_ray/problems) names one of `MODES`. The candidate's value arrives decoded, as plain
data (wire.py); `expected` comes from the problem file (plain JSON data, never NaN).

exact      type-strict equality of plain data:
           - bool is never a number, at any depth: True != 1, False != 0, also as a set element
             or a dict key ({1} != {True}, {1: 2} != {True: 2});
           - an int equals the float of the same value (2 == 2.0); a NaN never equals another;
           - list and tuple are both "a sequence" (JSON has no tuples), set and frozenset both
             "a set"; a sequence never equals a set;
           - dicts need the same keys and equal values, keys compared by these same rules;
           - str, bytes and None equal only themselves; anything else never matches.
float      like exact, but two numbers (bools excepted) match when
           math.isclose(rel_tol=FLOAT_REL_TOL, abs_tol=FLOAT_ABS_TOL), ints included (an int too
           large for a float compares exactly), recursively through sequences and dict values;
           NaN equals NaN here. Set elements and dict keys still compare exactly.
unordered  `expected` is a list taken as a multiset: the actual value must be a sequence (a set
           is not) whose elements match the expected ones one to one under exact. Only the top
           level is unordered: inner lists keep their order.

An unknown mode is a ValueError (a Problem's `compare` is validated when it loads).

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
FLOAT_REL_TOL = 1e-6
FLOAT_ABS_TOL = 1e-9
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
            return math.isclose(e, a, rel_tol=FLOAT_REL_TOL, abs_tol=FLOAT_ABS_TOL)
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
    if mode not in MODES:
        raise ValueError(f"unknown compare mode {mode!r}; expected one of {', '.join(MODES)}")
    try:
        if mode == "float":
            return _close(expected, actual)
        if mode == "unordered" and type(expected) in (list, tuple) and type(actual) in (list, tuple):
            return _counted(expected) == _counted(actual)
        return canon(expected) == canon(actual)
    except (TypeError, RecursionError):
        return False
