"""Sample rows (docs/design.md, "Sample row"): their one typed definition and Arrow schema, ids,
AST hashes and the training-set selection.

`SampleRow` is the only place the columns are spelled: the generator's candidates, the
generation stage's rows, the verifier's verdict columns and the Parquet schema all derive from
it. Pure: pyarrow is imported lazily (only `sample_schema` needs it); no torch, vLLM or Ray.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field, fields
from typing import Any, TypedDict

# Marks the columns the verifier fills, naming the sandbox Verdict attribute each comes from
# ("reward" is a Verdict property).
_VERDICT = "verdict"


def _verdict(attr: str) -> Any:
    return field(metadata={_VERDICT: attr})


@dataclass(frozen=True, kw_only=True)
class SampleRow:
    """One judged candidate, one Parquet row; the fields are the columns in file order."""

    run_id: str
    iteration: int
    problem_id: str
    sample_id: str  # samples.sample_id(): deterministic, the same on a resumed run
    prompt: str
    completion: str  # the whole generated reply
    code: str  # the code extracted from it, what the verifier runs
    passed: bool = _verdict("passed")
    passed_tests: int = _verdict("passed_tests")
    total_tests: int = _verdict("total_tests")
    status: str = _verdict("status")
    reward: float = _verdict("reward")
    duration_ms: float = _verdict("duration_ms")
    model: str
    adapter: str | None  # run-relative path of the adapter that served it; None for the base
    temperature: float
    seed: int
    num_tokens: int  # every generated token
    code_hash: str  # samples.code_hash() of `code`
    created_at: str
    attempt: int  # 0 for the first Best-of-N round, >0 for resamples of unsolved problems
    index: int  # the candidate's index among the n of its problem in its attempt
    finish_reason: str
    isolation: str = _verdict("isolation")
    verdict_detail: str = _verdict("detail")
    code_tokens: int  # tokens of `code` (num_tokens counts the prose around it too)


SAMPLE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(SampleRow))
# Column -> the Verdict attribute it is read from.
VERDICT_COLUMNS: dict[str, str] = {f.name: f.metadata[_VERDICT] for f in fields(SampleRow) if _VERDICT in f.metadata}
# What the generation stage writes; the verifier adds VERDICT_COLUMNS.
GENERATION_COLUMNS: tuple[str, ...] = tuple(c for c in SAMPLE_COLUMNS if c not in VERDICT_COLUMNS)
_GENERATION_SET = frozenset(GENERATION_COLUMNS)  # checked once per generated row
# Python type of each column (annotations are strings here: `from __future__ import annotations`).
_PY_TYPES = {"str": str, "str | None": str, "int": int, "float": float, "bool": bool}
COLUMN_TYPES: dict[str, type] = {f.name: _PY_TYPES[str(f.type)] for f in fields(SampleRow)}
_ARROW_TYPES = {str: "string", int: "int64", float: "float64", bool: "bool_"}


class Candidate(TypedDict):
    """What a generator answers for one request: the row's generation columns it knows (the
    generation stage adds the pass's identity and the prompt)."""

    problem_id: str
    index: int
    completion: str
    code: str
    code_tokens: int
    num_tokens: int
    finish_reason: str
    model: str
    adapter: str | None


def sample_schema() -> Any:
    """The Parquet schema of sample rows (explicit, so an all-null column such as `adapter` of
    the base model stays a nullable string instead of becoming NaN or a null type)."""
    import pyarrow as pa  # lazy: this module stays importable without pyarrow

    return pa.schema([(name, getattr(pa, _ARROW_TYPES[COLUMN_TYPES[name]])()) for name in SAMPLE_COLUMNS])


def generation_row(**columns: Any) -> dict[str, Any]:
    """The generation stage's row (every column but the verdict's), in file order; a missing or
    unknown column fails here rather than as a schema error at the Parquet write."""
    if columns.keys() != _GENERATION_SET:
        raise ValueError(f"generation row: missing {sorted(_GENERATION_SET - columns.keys())}, "
                         f"unknown {sorted(columns.keys() - _GENERATION_SET)}")
    return {name: columns[name] for name in GENERATION_COLUMNS}


def verdict_columns(verdict: Any) -> dict[str, Any]:
    """A sandbox Verdict as the row's verdict columns."""
    return {column: getattr(verdict, attr) for column, attr in VERDICT_COLUMNS.items()}



def sample_id(run_id: str, iteration: int, problem_id: str, kind: str, attempt: int, index: int) -> str:
    """Deterministic id of one candidate: the same run, iteration, problem and index give the same
    id on every execution, so a resumed phase reproduces exactly the ids of an uninterrupted one."""
    key = f"{run_id}/{iteration}/{kind}/{problem_id}/{attempt}/{index}"
    return hashlib.sha256(key.encode()).hexdigest()[:20]


class _StripDocstrings(ast.NodeTransformer):
    """Docstrings do not change behaviour; two solutions differing only there are duplicates."""

    def _strip(self, node: Any) -> Any:
        self.generic_visit(node)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Module = _strip


def code_hash(code: str) -> str:
    """Hash of the normalised AST (comments, formatting and docstrings ignored); code that does
    not parse hashes its whitespace-normalised text instead."""
    try:
        tree = _StripDocstrings().visit(ast.parse(code))
        canonical = ast.dump(tree, annotate_fields=False, include_attributes=False)
    except (SyntaxError, ValueError, RecursionError):
        canonical = "\0text\0" + " ".join(code.split())
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def select_training_rows(rows: list[dict[str, Any]], max_per_problem: int, dedupe: bool) -> list[dict[str, Any]]:
    """From one problem's rows: passed only, deterministic order (iteration, attempt, index),
    at most one per AST hash when `dedupe`, at most `max_per_problem`."""
    passed = sorted((r for r in rows if r["passed"]),
                    key=lambda r: (r["iteration"], r["attempt"], r["index"], r["sample_id"]))
    seen: set[str] = set()
    chosen: list[dict[str, Any]] = []
    for row in passed:
        if dedupe and row["code_hash"] in seen:
            continue
        seen.add(row["code_hash"])
        chosen.append(row)
        if len(chosen) >= max_per_problem:
            break
    return chosen
