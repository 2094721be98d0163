"""Reading problem files: .jsonl, .json and .yaml/.yml, each error naming the file, line and field.

``.jsonl`` holds one problem object per line (blank lines are skipped), ``.json`` one object or a
list of objects, ``.yaml``/``.yml`` one mapping or a list of mappings; each object is validated by
schema.parse_problem. Loads are cached per file (keyed by path, size and mtime): the returned
Problem objects are shared between callers and must be treated as read-only.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

from axiom_ray.problems.schema import Problem, ProblemError, fail, parse_problem, type_name

PROBLEM_FILE_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml")


def load_problem_file(
    path: str | os.PathLike[str], *, set_name: str | None = None
) -> list[Problem]:
    """Load and validate a .json, .jsonl, .yaml or .yml problem file.

    `set_name` is recorded on each problem (default: the file stem, '_' -> '-').
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise ProblemError(f"{p}: cannot read problem file ({exc.strerror or exc})") from None
    if not p.is_file():
        raise ProblemError(f"{p}: not a file")
    name = set_name if set_name is not None else p.stem.replace("_", "-")
    return list(_load_file_cached(str(p), st.st_mtime_ns, st.st_size, name))


@functools.lru_cache(maxsize=64)
def _load_file_cached(path: str, _mtime_ns: int, _size: int, set_name: str) -> tuple[Problem, ...]:
    suffix = Path(path).suffix.lower()
    if suffix not in PROBLEM_FILE_SUFFIXES:
        raise ProblemError(
            f"{path}: unsupported problem file type {suffix or '(none)'!r}; "
            f"use one of {', '.join(PROBLEM_FILE_SUFFIXES)}"
        )
    text = _read_text(path)
    if suffix == ".jsonl":
        located = _jsonl_objects(path, text)
    elif suffix == ".json":
        located = _indexed(path, strict_json(text, path))
    else:
        located = _indexed(path, _yaml_document(path, text))
    problems = tuple(
        parse_problem(obj, where, default_set=set_name, default_source=path)
        for where, obj in located
    )
    if not problems:
        raise ProblemError(f"{path}: holds no problems")
    _check_unique_ids(problems, [where for where, _ in located])
    return problems


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ProblemError(f"{path}: cannot read problem file ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProblemError(f"{path}: not UTF-8 text (byte {exc.start})") from None


class _DuplicateKey(Exception):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed (not standard JSON)")


def _jsonl_objects(path: str, text: str) -> list[tuple[str, Any]]:
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        out.append((f"{path}:{lineno}", strict_json(line, path, lineno)))
    return out


def strict_json(text: str, path: str, lineno: int | None = None) -> Any:
    """One JSON value: a whole file, or line `lineno` of a JSONL file. Strict (no NaN or
    Infinity, no key twice in one object); a ProblemError names the file, line and column."""
    at = path if lineno is None else f"{path}:{lineno}"
    try:
        return json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        line = exc.lineno if lineno is None else lineno
        raise ProblemError(f"{path}:{line}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except _DuplicateKey as exc:
        twice = "appears twice in one object" if lineno is None else "appears twice"
        raise ProblemError(f"{at}: key '{exc.args[0]}' {twice}") from None
    except ValueError as exc:
        raise ProblemError(f"{at}: invalid JSON: {exc}") from None


def _yaml_document(path: str, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ProblemError(f"{loc}: invalid YAML: {problem}") from None


def _indexed(path: str, document: Any) -> list[tuple[str, Any]]:
    """A .json/.yaml document is one problem object or a list of them."""
    if document is None:
        return []
    if isinstance(document, dict):
        return [(path, document)]
    if isinstance(document, list):
        return [(f"{path}: problem #{i + 1}", obj) for i, obj in enumerate(document)]
    raise ProblemError(
        f"{path}: must hold a problem object or a list of them, got {type_name(document)}"
    )


def _check_unique_ids(problems: Sequence[Problem], wheres: Sequence[str]) -> None:
    first: dict[str, str] = {}
    for problem, where in zip(problems, wheres, strict=True):
        if problem.id in first:
            fail(f"{where} (id {problem.id!r})", "id", f"duplicates the id at {first[problem.id]}")
        first[problem.id] = where
