"""CodeI/O rows of reasoning-gym (Apache-2.0) -> problems/codeio.jsonl, a large training pool.

Source: ``reasoning_gym/data/codeio.jsonl.gz`` in the PyPI package ``reasoning-gym`` (3,002 rows).
Each row has ``task_description``, ``input_output_spec``, a reference ``code_sample`` defining
``main_solution(**inputs)`` and an ``input_generator`` defining ``generate_inputs(rng: Random)``.

A row becomes a problem "write ``main_solution``" whose hidden tests are the reference's outputs
on seeded generated inputs. Everything from the row runs in the sandbox, never in this process:

1. static screen: both snippets parse, ``main_solution`` is defined at top level, and they import
   only the standard library (the verifier's sandbox offers nothing else to candidates either);
2. run A (one fork server): ``generate_inputs(Random(seed))`` for ``SEEDS_PER_ROW`` seeds, each
   input round-tripped through JSON, then ``main_solution`` on it; a pair is kept when both calls
   succeed and the input and output are plain JSON data of bounded size;
3. the problem is built and validated (``Problem.from_dict``);
4. determinism (``axiom_ray/determinism.py``): the reference runs on the finished problem under
   the verifier's limits under every condition there (the real clock, the clock moved a year
   forward and three back, other time zones, other working directories, one fork server each and
   so other hash seeds and ``random`` states); it must pass its tests under all of them, or the
   row is dropped with the factor its answers depend on.

Rows that fail a step are dropped with the reason counted. The shortest pair becomes the example
shown in the prompt, the others (at least ``MIN_TESTS``) are hidden. Difficulty comes from the
size of the reference (non-blank, non-comment lines): <= 20 easy, <= 50 medium, else hard.
"""

from __future__ import annotations

import ast
import gzip
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axiom_ray import determinism
from axiom_ray.importers.capture import CallResult, call, run_in_sandbox
from axiom_ray.importers.sources import read_member
from axiom_ray.problems import Problem, ProblemError
from axiom_ray.sandbox import Judge, Limits

PACKAGE = "reasoning-gym==0.1.25"
DATA_FILE = "reasoning_gym/data/codeio.jsonl.gz"
SEEDS_PER_ROW = 10  # generated inputs per row: one example shown, the rest hidden (at most 8)
MAX_TESTS = 8
MIN_TESTS = 5
MAX_VALUE_CHARS = 1500  # JSON size of one input or one output
MAX_EXAMPLE_CHARS = 400
ENTRY = "axiom_codeio_entry"
# CPU time decides; the wall clock is a loose backstop so that a busy machine drops no row.
RUN_LIMITS = Limits(timeout_s=4, wall_factor=10)  # run A: every generator and reference call
# The reference on the finished problem, under each determinism condition: half the CPU time the
# tests then allow it (CHECK_LIMITS), so a row kept here never times out later on a busy machine.
IMPORT_CHECK_LIMITS = Limits(timeout_s=1, wall_factor=20)
CHECK_LIMITS = Limits(timeout_s=2, wall_factor=10)
_DRIVER = """

def axiom_codeio_entry(op, arg):
    if op == "gen":
        return generate_inputs(Random(arg))
    return main_solution(*arg[0], **arg[1])
"""


class CodeIOError(ValueError):
    """A row is dropped; the message is the reason (counted in the import summary)."""


@dataclass(frozen=True)
class Row:
    index: int
    task_description: str
    input_output_spec: str
    code_sample: str
    input_generator: str
    rated_difficulty: int | None = None


@dataclass(frozen=True)
class Pair:
    args: list[Any]
    kwargs: dict[str, Any]
    expected: Any

    def size(self) -> int:
        return len(json.dumps([self.args, self.kwargs, self.expected]))


@dataclass
class Outcome:
    """What became of one row: a problem object, or the reason it was dropped."""

    index: int
    problem: dict[str, Any] | None = None
    reason: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Judges:
    """One worker's fork servers: run A's, and the determinism check's (one per hash seed)."""

    a: Judge
    by_seed: determinism.JudgesBySeed

    @classmethod
    def start(cls) -> Judges:
        return cls(Judge(RUN_LIMITS), determinism.JudgesBySeed(IMPORT_CHECK_LIMITS))

    def close(self) -> None:
        self.a.close()
        self.by_seed.close()


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def read_rows(path: str | Path) -> list[Row]:
    """Every row, indexed from 0 in file order, from the reasoning-gym wheel or the data file."""
    data = read_member(path, DATA_FILE)
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    lines = [line for line in data.decode("utf-8").splitlines() if line.strip()]
    return [_row(i, json.loads(line)) for i, line in enumerate(lines)]


def _row(index: int, obj: dict[str, Any]) -> Row:
    keys = ("task_description", "input_output_spec", "code_sample", "input_generator")
    for key in keys:
        if not isinstance(obj.get(key), str):
            raise CodeIOError(f"row {index}: field {key!r} is missing or not a string")
    rated = obj.get("difficulty")
    return Row(index, *(obj[k] for k in keys), rated if isinstance(rated, int) else None)


# ---------------------------------------------------------------------------------------------
# One row
# ---------------------------------------------------------------------------------------------


def import_row(row: Row, judges: Judges) -> dict[str, Any]:
    """The problem object for `row`; CodeIOError names why the row is dropped."""
    params = screen(row)
    code = "from random import Random\n" + row.code_sample + "\n\n" + row.input_generator + _DRIVER
    pairs = generate_pairs(judges.a, code, row.index, params)
    problem = build_problem(row, pairs, params)
    report = determinism.check_problems(
        [Problem.from_dict(problem)], determinism.sandbox_runner(judges.by_seed.judge_for)
    )
    for why in report.dropped.values():
        raise CodeIOError(f"not deterministic: {why}")
    return problem


def screen(row: Row) -> list[str]:
    """Static checks; returns main_solution's positional parameter names."""
    trees = []
    for name, src in (("code_sample", row.code_sample), ("input_generator", row.input_generator)):
        try:
            trees.append(ast.parse(src))
        except SyntaxError:
            raise CodeIOError(f"{name} is not valid Python") from None
    outside = sorted(set().union(*(_imports(t) for t in trees)) - set(sys.stdlib_module_names))
    if outside:
        raise CodeIOError(f"imports outside the standard library ({outside[0]})")
    main = _top_function(trees[0], "main_solution")
    if _top_function(trees[1], "generate_inputs") is None or main is None:
        raise CodeIOError("main_solution or generate_inputs is not defined at top level")
    return [a.arg for a in main.args.posonlyargs + main.args.args]


def _imports(tree: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def _top_function(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    return None


def row_seeds(index: int) -> list[int]:
    return [index * 1000 + k for k in range(SEEDS_PER_ROW)]


def generate_pairs(judge: Judge, code: str, index: int, params: list[str]) -> list[Pair]:
    """Run A: seeded inputs and the reference's outputs; the usable, distinct pairs."""
    pairs: list[Pair] = []
    seen: set[str] = set()

    def session(candidate: Callable[..., Any]) -> None:
        for seed in row_seeds(index):
            pair = _one_pair(candidate, seed, params)
            key = json.dumps([pair.args, pair.kwargs], sort_keys=True) if pair else ""
            if pair is not None and key not in seen:
                seen.add(key)
                pairs.append(pair)

    verdict = run_in_sandbox(judge, code, ENTRY, session)
    if not verdict.passed:
        raise CodeIOError(
            f"generator or reference stopped: {verdict.status} ({verdict.detail[:80]})"
        )
    if len(pairs) < MIN_TESTS + 1:
        raise CodeIOError(f"too few usable input/output pairs ({len(pairs)})")
    if len({json.dumps(p.expected, sort_keys=True) for p in pairs}) == 1:
        raise CodeIOError("the output is the same for every input")
    return pairs


def _one_pair(candidate: Callable[..., Any], seed: int, params: list[str]) -> Pair | None:
    generated = call(candidate, "gen", seed)
    inputs = _plain_json(generated)
    if not isinstance(inputs, dict) or len(json.dumps(inputs)) > MAX_VALUE_CHARS:
        return None
    args, kwargs = split_arguments(inputs, params)
    result = call(candidate, "run", [args, kwargs])
    expected = _plain_json(result)
    if expected is _NOT_JSON or len(json.dumps(expected)) > MAX_VALUE_CHARS:
        return None
    return Pair(args, kwargs, expected)


_NOT_JSON: Any = object()


def _plain_json(result: CallResult) -> Any:
    """The value as JSON data (tuples become lists), or _NOT_JSON when it cannot be one exactly."""
    if not result.ok or not _is_json_data(result.value):
        return _NOT_JSON
    return json.loads(json.dumps(result.value))


def _is_json_data(value: Any) -> bool:
    t = type(value)
    if value is None or t in (bool, int, str):
        return True
    if t is float:
        return math.isfinite(value)
    if t in (list, tuple):
        return all(_is_json_data(v) for v in value)
    if t is dict:
        return all(type(k) is str and _is_json_data(v) for k, v in value.items())
    return False


def split_arguments(inputs: dict[str, Any], params: list[str]) -> tuple[list[Any], dict[str, Any]]:
    """Positional arguments for the leading parameters the inputs name, keywords for the rest.

    Positional where possible, so a candidate that renames a parameter still passes.
    """
    args = []
    for name in params:
        if name not in inputs:
            break
        args.append(inputs[name])
    rest = {k: v for k, v in inputs.items() if k not in params[: len(args)]}
    return args, rest


# ---------------------------------------------------------------------------------------------
# The problem
# ---------------------------------------------------------------------------------------------


def build_problem(row: Row, pairs: list[Pair], params: list[str]) -> dict[str, Any]:
    ordered = sorted(pairs, key=Pair.size)
    example = ordered[0]
    hidden = [p for p in pairs if p is not example][:MAX_TESTS]  # seed order
    if example.size() > MAX_EXAMPLE_CHARS:
        raise CodeIOError("even the smallest example is too large to show")
    float_out = any(_has_float(p.expected) for p in pairs)
    problem: dict[str, Any] = {
        "id": f"codeio_{row.index:04d}",
        "title": title(row.task_description),
        "difficulty": difficulty(row.code_sample),
        "split": "train",
        "prompt": prompt(row, params, example, float_out),
        "entry_point": "main_solution",
        "tests": [_case(p) for p in hidden],
        "reference": row.code_sample,
    }
    if float_out:
        problem["compare"] = "float"
    try:
        Problem.from_dict(problem)
    except ProblemError as exc:
        raise CodeIOError(f"invalid problem ({exc})") from None
    return problem


def _case(pair: Pair) -> dict[str, Any]:
    case: dict[str, Any] = {"args": pair.args}
    if pair.kwargs:
        case["kwargs"] = pair.kwargs
    case["expected"] = pair.expected
    return case


def title(description: str, words: int = 10) -> str:
    parts = description.split()
    text = " ".join(parts[:words])
    return text + (" ..." if len(parts) > words else "")


def difficulty(code: str) -> str:
    lines = [ln for ln in code.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if len(lines) <= 20:
        return "easy"
    return "medium" if len(lines) <= 50 else "hard"


def prompt(row: Row, params: list[str], example: Pair, float_out: bool) -> str:
    call_text = _call_text(example)
    lines = [
        row.task_description.strip(),
        "",
        row.input_output_spec.strip(),
        "",
        "Write a Python function `main_solution` that computes this, using only the standard "
        "library. Its arguments are plain JSON-style values (lists, never tuples) and it must "
        "return plain JSON-style data (None, bool, int, float, str, lists, dicts with string keys).",
        *(["Floats are compared with a relative tolerance of 1e-6."] if float_out else []),
        "",
        "Function signature:",
        f"def main_solution({', '.join(params)}):",
        "",
        "Example:",
        f"{call_text} returns {example.expected!r}",
        "",
    ]
    return "\n".join(lines)


def _call_text(pair: Pair) -> str:
    parts = [repr(a) for a in pair.args] + [f"{k}={v!r}" for k, v in pair.kwargs.items()]
    return f"main_solution({', '.join(parts)})"


def _has_float(value: Any) -> bool:
    if type(value) is float:
        return True
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    return False


# ---------------------------------------------------------------------------------------------
# Many rows
# ---------------------------------------------------------------------------------------------


def import_rows(rows: Iterable[Row], judges: Judges) -> Iterator[Outcome]:
    """One Outcome per row, in order (a worker's share of the import)."""
    for row in rows:
        t0 = time.monotonic()
        try:
            outcome = Outcome(row.index, problem=import_row(row, judges))
        except CodeIOError as exc:
            outcome = Outcome(row.index, reason=str(exc))
        except (ValueError, TypeError, RecursionError, MemoryError) as exc:
            # Data this module did not foresee (e.g. an int too long for str()): drop the row,
            # never the worker and the rows after it.
            outcome = Outcome(row.index, reason=f"unusable values ({type(exc).__name__}: {exc})")
        outcome.seconds = time.monotonic() - t0
        yield outcome


@dataclass
class Summary:
    """An import's result: the problems in row order, and why the other rows were dropped."""

    problems: list[dict[str, Any]]
    dropped: dict[str, int]
    rows_seen: int
    rows_total: int
    seconds: float

    def describe(self) -> str:
        lines = [
            f"codeio: {len(self.problems)} problems from {self.rows_seen} of {self.rows_total} "
            f"rows in {self.seconds:.0f} s"
        ]
        lines += [
            f"  dropped {n:>5}  {why}" for why, n in sorted(self.dropped.items(), key=_by_count)
        ]
        return "\n".join(lines)


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def import_all(
    rows: list[Row],
    *,
    workers: int = 2,
    budget_s: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> Summary:
    """Import `rows` with `workers` threads (one set of fork servers each).

    With `budget_s`, workers stop taking new rows once that many seconds have passed: the result
    is then the rows seen so far (a prefix of the input in each worker's share, reported).
    """
    t0 = time.monotonic()
    shares = [rows[w::workers] for w in range(workers)]
    deadline = None if budget_s is None else t0 + budget_s
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_worker, share, deadline, progress) for share in shares]
        outcomes = [o for f in futures for o in f.result()]
    outcomes.sort(key=lambda o: o.index)
    dropped = Counter(_reason_key(o.reason) for o in outcomes if o.problem is None)
    return Summary(
        problems=[o.problem for o in outcomes if o.problem is not None],
        dropped=dict(dropped),
        rows_seen=len(outcomes),
        rows_total=len(rows),
        seconds=time.monotonic() - t0,
    )


def _worker(
    share: list[Row], deadline: float | None, progress: Callable[[int], None] | None
) -> list[Outcome]:
    judges = Judges.start()
    out: list[Outcome] = []
    try:
        for outcome in import_rows(share, judges):
            out.append(outcome)
            if progress is not None:
                progress(1)
            if deadline is not None and time.monotonic() > deadline:
                break
    finally:
        judges.close()
    return out


def _reason_key(reason: str) -> str:
    """The reason without its row-specific detail (for counting)."""
    return reason.split(" (")[0]
