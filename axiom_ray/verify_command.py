"""`axiom verify`: judge one candidate, or a batch, in the sandbox (docs/design.md, "Command line").

Single:  axiom verify --problem FILE_OR_ID --solution FILE [--problem-id ID] [--timeout S]
         prints one JSON verdict; exit 0 passed, 1 not passed, 2 bad input.
Batch:   axiom verify --problems FILE.jsonl --solutions FILE.jsonl [--workers N]
         prints one JSON verdict per solution row, in input order, then a summary line;
         exit 0 when every candidate passed, 1 otherwise, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from axiom_ray.problems import (
    Problem,
    ProblemError,
    find_problem,
    load_problem_file,
    resolve_problems,
)
from axiom_ray.sandbox import (
    DEFAULT_MIN_ISOLATION,
    LEVELS,
    Judge,
    Limits,
    SandboxUnavailable,
    detect_isolation,
    level_rank,
)

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(Exception):
    """Bad command-line input: one line on stderr, exit 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    single = parser.add_argument_group("one candidate")
    single.add_argument("--problem", metavar="FILE_OR_ID",
                        help="a problem file (.json, .jsonl, .yaml) or a built-in problem id")
    single.add_argument("--problem-id", metavar="ID", help="which problem of a multi-problem file")
    single.add_argument("--solution", metavar="FILE", help="the candidate's Python source ('-': stdin)")
    batch = parser.add_argument_group("a batch")
    batch.add_argument("--problems", metavar="SPEC",
                       help="problem files (JSONL), set names or ids, comma-separated")
    batch.add_argument("--solutions", metavar="FILE.jsonl",
                       help="one JSON object per line: problem_id, code, optional sample_id")
    batch.add_argument("--workers", type=int, default=0,
                       help="parallel sandboxes (default: the number of CPUs)")
    limits = parser.add_argument_group("sandbox")
    limits.add_argument("--timeout", type=float, default=Limits.timeout_s,
                        help=f"CPU seconds per candidate (default: {Limits.timeout_s:g}); "
                             f"wall clock: {Limits.wall_factor:g}x that + {Limits.wall_extra_s:g}s")
    limits.add_argument("--memory-mb", type=int, default=Limits.memory_mb,
                        help=f"address-space limit per process (default: {Limits.memory_mb})")
    limits.add_argument("--min-isolation", choices=LEVELS, default=DEFAULT_MIN_ISOLATION,
                        help=f"refuse to run below this isolation level (default: {DEFAULT_MIN_ISOLATION}; "
                             f"levels, weakest first: {', '.join(LEVELS)})")
    limits.add_argument("--isolation", choices=("best", *LEVELS), default="best",
                        help="force an isolation level (default: the strongest this machine allows)")
    limits.add_argument("--report-isolation", action="store_true",
                        help="print what this machine allows (JSON) and exit: 0 when it meets "
                             "--min-isolation, 2 when not")


def run(args: argparse.Namespace) -> int:
    try:
        if getattr(args, "report_isolation", False):
            return _report_isolation(args.min_isolation)
        limits = _limits(args)
        single = any(getattr(args, k, None) is not None for k in ("problem", "solution", "problem_id"))
        many = any(getattr(args, k, None) is not None for k in ("problems", "solutions"))
        if single and many:
            raise BadInput("give either --problem/--solution or --problems/--solutions, not both")
        if many:
            return _run_batch(args, limits)
        if not single:
            raise BadInput("nothing to verify: give --problem FILE --solution FILE "
                           "(or --problems FILE.jsonl --solutions FILE.jsonl)")
        return _run_single(args, limits)
    except BadInput as e:
        return _bad(str(e))
    except SandboxUnavailable as e:
        return _bad(f"sandbox unavailable: {e}")
    except Exception as e:  # ProblemError (a ValueError) and friends: their message names the file

        if isinstance(e, (ProblemError, OSError, ValueError)):
            return _bad(str(e))
        raise


def _report_isolation(min_isolation: str) -> int:

    report = detect_isolation()
    ok = level_rank(report.level) >= level_rank(min_isolation)
    print(json.dumps({**report.to_dict(), "min_isolation": min_isolation, "meets_minimum": ok}), flush=True)
    return EXIT_PASSED if ok else EXIT_BAD_INPUT


def _bad(message: str) -> int:
    print(f"axiom verify: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _limits(args: argparse.Namespace) -> Limits:
    try:
        return Limits(timeout_s=float(args.timeout), memory_mb=int(args.memory_mb))
    except ValueError as e:
        raise BadInput(str(e)) from None


def _judge(args: argparse.Namespace, limits: Limits) -> Judge:
    return Judge(limits, min_isolation=args.min_isolation, isolation=args.isolation)


# --- one candidate -----------------------------------------------------------------------------


def _run_single(args: argparse.Namespace, limits: Limits) -> int:
    if args.problem is None or args.solution is None:
        raise BadInput("single mode needs both --problem and --solution")
    problem = _single_problem(args.problem, args.problem_id)
    code = _read_solution(args.solution)
    with _judge(args, limits) as judge:
        verdict = judge.judge(problem, code)
    print(json.dumps({"problem_id": problem.id, **verdict.to_dict()}), flush=True)
    return EXIT_PASSED if verdict.passed else EXIT_FAILED


def _single_problem(spec: str, problem_id: str | None) -> Problem:

    if os.path.exists(spec):
        problems = load_problem_file(spec)
        if problem_id is not None:
            matches = [p for p in problems if p.id == problem_id]
            if not matches:
                raise BadInput(f"{spec}: no problem with id {problem_id!r} (it holds: {_ids(problems)})")
            return matches[0]
        if len(problems) > 1:
            raise BadInput(f"{spec} holds {len(problems)} problems ({_ids(problems)}); pick one with --problem-id")
        return problems[0]
    if spec.endswith((".json", ".jsonl", ".yaml", ".yml")):
        raise BadInput(f"{spec}: no such problem file")
    problem = find_problem(spec)  # HumanEval/0 is an id, not a path
    if problem_id is not None and problem_id != problem.id:
        raise BadInput(f"--problem-id {problem_id!r} does not match the problem {problem.id!r}")
    return problem


def _ids(problems: list[Problem]) -> str:
    ids = [p.id for p in problems]
    return ", ".join(ids[:8]) + (f", ... ({len(ids) - 8} more)" if len(ids) > 8 else "")


def _read_solution(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise BadInput(f"{path}: no such solution file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read the solution ({e})") from None


# --- a batch -----------------------------------------------------------------------------------


def _run_batch(args: argparse.Namespace, limits: Limits) -> int:

    if args.problems is None or args.solutions is None:
        raise BadInput("batch mode needs both --problems and --solutions")
    problems = {p.id: p for p in resolve_problems(args.problems)}
    rows = list(_solution_rows(args.solutions, problems))
    workers = args.workers if args.workers > 0 else (os.cpu_count() or 1)
    workers = max(1, min(workers, len(rows) or 1))
    t0 = time.monotonic()
    pool = _JudgePool(workers, lambda: _judge(args, limits))
    counts: Counter[str] = Counter()
    try:
        with ThreadPoolExecutor(workers) as ex:
            for row, verdict in zip(rows, ex.map(lambda r: pool.judge(problems[r["problem_id"]], r["code"]), rows), strict=True):
                counts[verdict.status] += 1
                out = {"problem_id": row["problem_id"]}
                if "sample_id" in row:
                    out["sample_id"] = row["sample_id"]
                print(json.dumps({**out, **verdict.to_dict()}), flush=True)
    finally:
        level = pool.level
        pool.close()
    seconds = time.monotonic() - t0
    summary = {"summary": True, "total": len(rows), "passed": counts["passed"],
               "statuses": dict(sorted(counts.items())), "workers": workers, "isolation": level,
               "seconds": round(seconds, 3), "verdicts_per_second": round(len(rows) / seconds, 2) if seconds else None}
    print(json.dumps(summary), flush=True)
    return EXIT_PASSED if counts["passed"] == len(rows) else EXIT_FAILED


def _solution_rows(path: str, problems: dict[str, Problem]) -> Iterator[dict[str, Any]]:
    """Validated rows of a solutions JSONL file (all of it, before anything runs)."""
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 - closed below; errors name the file
    except OSError as e:
        raise BadInput(f"{path}: cannot read the solutions file ({e.strerror or e})") from None
    with f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except ValueError as e:
                raise BadInput(f"{where}: not valid JSON ({e})") from None
            if not isinstance(row, dict):
                raise BadInput(f"{where}: a row must be a JSON object")
            for key in ("problem_id", "code"):
                if not isinstance(row.get(key), str):
                    raise BadInput(f"{where}: field {key!r} is missing or not a string")
            if row["problem_id"] not in problems:
                raise BadInput(f"{where}: unknown problem_id {row['problem_id']!r} (not in --problems)")
            yield row


class _JudgePool:
    """N Judges (one fork server each), started in parallel, lent to one thread at a time."""

    def __init__(self, n: int, make: Any) -> None:
        self._free: queue.Queue[Judge] = queue.Queue()
        self._all: list[Judge] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def start() -> None:
            try:
                j = make()
            except BaseException as e:
                errors.append(e)
                return
            with lock:
                self._all.append(j)
            self._free.put(j)

        threads = [threading.Thread(target=start) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.close()
            raise errors[0]

    @property
    def level(self) -> str:
        return self._all[0].level if self._all else ""

    def judge(self, problem: Problem, code: str) -> Any:
        j = self._free.get()
        try:
            return j.judge(problem, code)
        finally:
            self._free.put(j)

    def close(self) -> None:
        for j in self._all:
            j.close()
