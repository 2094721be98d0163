"""Sample rows (DESIGN.md contract 4): ids, AST hashes and the training-set selection.

Pure: pyarrow is imported lazily; no torch, vLLM or Ray.
"""

from __future__ import annotations

import ast
import hashlib
from typing import Any

# Contract 4 columns, in order, then the extras this project adds.
SAMPLE_COLUMNS = (
    "run_id", "iteration", "problem_id", "sample_id", "prompt", "completion", "code", "passed",
    "passed_tests", "total_tests", "status", "reward", "duration_ms", "model", "adapter",
    "temperature", "seed", "num_tokens", "code_hash", "created_at",
)
# code_tokens: tokens of the extracted code, the part of the reply the verifier runs (num_tokens
# counts every generated token).
EXTRA_COLUMNS = ("attempt", "index", "finish_reason", "isolation", "verdict_detail", "code_tokens")
_TYPES = {
    "run_id": "string", "iteration": "int64", "problem_id": "string", "sample_id": "string",
    "prompt": "string", "completion": "string", "code": "string", "passed": "bool_",
    "passed_tests": "int64", "total_tests": "int64", "status": "string", "reward": "float64",
    "duration_ms": "float64", "model": "string", "adapter": "string", "temperature": "float64",
    "seed": "int64", "num_tokens": "int64", "code_hash": "string", "created_at": "string",
    "attempt": "int64", "index": "int64", "finish_reason": "string", "isolation": "string",
    "verdict_detail": "string", "code_tokens": "int64",
}


def sample_schema() -> Any:
    """The Parquet schema of sample rows (explicit, so an all-null column such as `adapter` of
    the base model stays a nullable string instead of becoming NaN or a null type)."""
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, _TYPES[name])()) for name in SAMPLE_COLUMNS + EXTRA_COLUMNS])


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
