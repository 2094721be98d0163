import subprocess
import sys
import typing

import pyarrow as pa
import pytest

from axiom_ray.samples import (
    GENERATION_COLUMNS,
    SAMPLE_COLUMNS,
    VERDICT_COLUMNS,
    Candidate,
    code_hash,
    generation_row,
    sample_id,
    sample_schema,
    select_training_rows,
    verdict_columns,
)
from axiom_ray.sandbox import Verdict

# The Parquet schema every run directory has; a change here breaks reading older runs.
PARQUET_SCHEMA = [
    ("run_id", pa.string()), ("iteration", pa.int64()), ("problem_id", pa.string()), ("sample_id", pa.string()),
    ("prompt", pa.string()), ("completion", pa.string()), ("code", pa.string()), ("passed", pa.bool_()),
    ("passed_tests", pa.int64()), ("total_tests", pa.int64()), ("status", pa.string()), ("reward", pa.float64()),
    ("duration_ms", pa.float64()), ("model", pa.string()), ("adapter", pa.string()), ("temperature", pa.float64()),
    ("seed", pa.int64()), ("num_tokens", pa.int64()), ("code_hash", pa.string()), ("created_at", pa.string()),
    ("attempt", pa.int64()), ("index", pa.int64()), ("finish_reason", pa.string()), ("isolation", pa.string()),
    ("verdict_detail", pa.string()), ("code_tokens", pa.int64()),
]


def test_sample_schema_keeps_the_parquet_columns_types_and_order():
    assert sample_schema().equals(pa.schema(PARQUET_SCHEMA), check_metadata=True)
    assert tuple(name for name, _ in PARQUET_SCHEMA) == SAMPLE_COLUMNS
    assert set(GENERATION_COLUMNS) | set(VERDICT_COLUMNS) == set(SAMPLE_COLUMNS)
    assert set(typing.get_type_hints(Candidate)) <= set(GENERATION_COLUMNS)


def test_verdict_columns_come_from_the_verdict():
    v = Verdict(True, "passed", 3, 3, 12.5, "landlock", "ok")
    assert verdict_columns(v) == {"passed": True, "passed_tests": 3, "total_tests": 3, "status": "passed",
                                  "reward": 1.0, "duration_ms": 12.5, "isolation": "landlock",
                                  "verdict_detail": "ok"}


def test_generation_row_orders_columns_and_refuses_a_missing_or_unknown_one():
    values = {name: i for i, name in enumerate(reversed(GENERATION_COLUMNS))}
    assert tuple(generation_row(**values)) == GENERATION_COLUMNS
    with pytest.raises(ValueError, match="missing.*'code'"):
        generation_row(**{k: v for k, v in values.items() if k != "code"})
    with pytest.raises(ValueError, match="unknown.*'passed'"):
        generation_row(**values, passed=True)


def test_samples_imports_without_pyarrow_torch_or_ray():
    code = "import sys, axiom_ray.samples; print(sorted({'pyarrow', 'torch', 'ray', 'vllm'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_sample_id_is_deterministic_and_distinct():
    a = sample_id("run", 1, "two_sum", "samples", 0, 3)
    assert a == sample_id("run", 1, "two_sum", "samples", 0, 3)
    others = {sample_id("run", 1, "two_sum", "samples", 0, i) for i in range(8)}
    assert len(others) == 8
    assert a != sample_id("run", 1, "two_sum", "eval", 0, 3)
    assert a != sample_id("run", 2, "two_sum", "samples", 0, 3)


def test_code_hash_ignores_formatting_comments_and_docstrings():
    a = "def f(x):\n    return x+1\n"
    b = 'def f( x ):\n    """Add one."""\n    # comment\n    return (x + 1)\n'
    assert code_hash(a) == code_hash(b)
    assert code_hash(a) != code_hash("def f(x):\n    return x + 2\n")
    # code that does not parse still hashes, by its normalised text
    assert code_hash("def f(:") == code_hash("def  f(:")


def _row(i, passed, h, it=0, attempt=0):
    return {"iteration": it, "attempt": attempt, "index": i, "sample_id": f"s{i}", "passed": passed,
            "code_hash": h}


def test_select_training_rows_dedupes_caps_and_orders():
    rows = [_row(3, True, "b"), _row(0, True, "a"), _row(1, True, "a"), _row(2, False, "c"), _row(4, True, "d")]
    chosen = select_training_rows(rows, max_per_problem=10, dedupe=True)
    assert [r["index"] for r in chosen] == [0, 3, 4]
    assert [r["index"] for r in select_training_rows(rows, 2, True)] == [0, 3]
    assert [r["index"] for r in select_training_rows(rows, 10, False)] == [0, 1, 3, 4]
    assert select_training_rows([_row(0, False, "x")], 10, True) == []
