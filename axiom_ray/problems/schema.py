"""The problem schema: Problem, TestCase, ProblemError, and the validation of one problem object.

A problem is the contract between a problem file and the judge (docs/design.md, "Problem file").
Fields of one problem object:

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
compare         no         exact | float | unordered (default exact): the judge's comparison
                           rule for ``expected``, defined in axiom_ray.sandbox.compare
split           no         train | heldout (default train)
reference       no         a trusted reference solution, used only to self-check the data.
                           It is NOT part of the prompt and must never reach the model.
set, source     no         filled in by the loader; accepted so ``to_dict`` output reloads
==============  =========  ==================================================================

Test values must be plain JSON data (null, bool, int, float, str, list, object with str keys);
NaN and Infinity are rejected because they can never compare equal. Unknown fields are errors
(a typo such as ``expect`` would otherwise silently drop a test). Every failure raises
:class:`ProblemError` naming the file, the line (JSONL) or problem, the id and the field.
"""

from __future__ import annotations

import ast
import keyword
import math
import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

from axiom_ray.sandbox.compare import MODES as COMPARE_MODES

DIFFICULTIES = ("easy", "medium", "hard")
SPLITS = ("train", "heldout")

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
            "args": jsonable(self.args),
            "kwargs": jsonable(self.kwargs),
            "expected": jsonable(self.expected),
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
        return parse_problem(d, str(where), default_set="", default_source=source)


def fail(where: str, field_name: str | None, message: str) -> NoReturn:
    """Raise the ProblemError that names where (file, line or problem, id) and which field."""
    prefix = f"{where}: field '{field_name}'" if field_name else f"{where}:"
    raise ProblemError(f"{prefix} {message}")


def type_name(value: Any) -> str:
    """A value's type as a problem file's author knows it (``null`` for None)."""
    return "null" if value is None else type(value).__name__


def parse_problem(obj: Any, where: str, *, default_set: str, default_source: str) -> Problem:
    """Validate one problem object; `where` locates it (``file:line`` or ``file: problem #n``)."""
    if not isinstance(obj, dict):
        fail(where, None, f"a problem must be an object, got {type_name(obj)}")
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
            fail(where, f"{prefix}{key}", f"is not a known field (known: {known})")


def _required_str(obj: dict[str, Any], name: str, where: str) -> str:
    if name not in obj:
        fail(where, name, "is missing")
    value = obj[name]
    if not isinstance(value, str):
        fail(where, name, f"must be a string, got {type_name(value)}")
    if not value.strip():
        fail(where, name, "must not be empty")
    return value


def _optional_str(obj: dict[str, Any], name: str, where: str, default: str | None) -> str | None:
    value = obj.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        fail(where, name, f"must be a string, got {type_name(value)}")
    return value


def _id_field(obj: dict[str, Any], where: str) -> str:
    pid = _required_str(obj, "id", where)
    if not _ID_RE.fullmatch(pid):
        fail(where, "id", f"{pid!r} is not a valid id (letters, digits, '_', '-', '.'; max 128)")
    return pid


def _identifier(value: str, where: str, name: str) -> str:
    if not value.isidentifier() or keyword.iskeyword(value):
        fail(where, name, f"{value!r} is not a valid Python identifier")
    return value


def _choice(
    obj: dict[str, Any], name: str, allowed: tuple[str, ...], default: str, where: str
) -> str:
    value = obj.get(name)
    if value is None:
        return default
    if value not in allowed or not isinstance(value, str):
        fail(where, name, f"must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _require_def(source: str, name: str, where: str, field_name: str) -> None:
    """The code must parse and define `name` at top level (the judge calls it by that name)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        fail(where, field_name, f"is not valid Python (line {exc.lineno}: {exc.msg})")
    defined = {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }
    if name not in defined:
        fail(where, field_name, f"must define a top-level function {name!r}")


def _tests(
    obj: dict[str, Any], where: str, *, compare: str, has_check: bool
) -> tuple[TestCase, ...]:
    raw = obj.get("tests")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        fail(where, "tests", f"must be a list, got {type_name(raw)}")
    if has_check and raw:
        fail(
            where, "tests", "must be empty when 'check' is given (a problem uses one or the other)"
        )
    if not has_check and not raw:
        what = "is missing" if "tests" not in obj else "must not be empty"
        fail(where, "tests", f"{what} (give at least one test, or a 'check' program)")
    return tuple(_test_case(t, i, where, compare) for i, t in enumerate(raw))


def _test_case(raw: Any, index: int, where: str, compare: str) -> TestCase:
    name = f"tests[{index}]"
    if not isinstance(raw, dict):
        fail(where, name, f"must be an object with args/kwargs/expected, got {type_name(raw)}")
    _reject_unknown(raw, _TEST_FIELDS, where, f"{name}.")
    args = raw.get("args", [])
    if not isinstance(args, list):
        fail(where, f"{name}.args", f"must be a list, got {type_name(args)}")
    kwargs = raw.get("kwargs", {})
    if not isinstance(kwargs, dict):
        fail(where, f"{name}.kwargs", f"must be an object, got {type_name(kwargs)}")
    for key in kwargs:
        if not isinstance(key, str) or not key.isidentifier():
            fail(where, f"{name}.kwargs", f"key {key!r} is not a valid parameter name")
    if "expected" not in raw:
        fail(where, f"{name}.expected", "is missing")
    expected = raw["expected"]
    _check_plain(args, where, f"{name}.args")
    _check_plain(kwargs, where, f"{name}.kwargs")
    _check_plain(expected, where, f"{name}.expected")
    if compare == "unordered" and not isinstance(expected, list):
        fail(where, f"{name}.expected", "must be a list when compare is 'unordered'")
    return TestCase(args=tuple(args), kwargs=dict(kwargs), expected=expected)


def _check_plain(value: Any, where: str, name: str) -> None:
    """Test values must be plain JSON data (YAML can produce dates, sets, ...)."""
    t = type(value)
    if t is float and not math.isfinite(value):
        fail(where, name, "must be a finite number (NaN/Infinity never compare equal)")
    if value is None or t in (bool, int, float, str):
        return
    if t is list:
        for i, item in enumerate(value):
            _check_plain(item, where, f"{name}[{i}]")
        return
    if t is dict:
        for key, item in value.items():
            if not isinstance(key, str):
                fail(where, name, f"object keys must be strings, got {type_name(key)}")
            _check_plain(item, where, f"{name}.{key}")
        return
    fail(where, name, f"holds a {t.__name__}; only JSON data is allowed")


def jsonable(value: Any) -> Any:
    """Tuples become lists (recursively) so `to_dict` output is JSON-serialisable."""
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value
