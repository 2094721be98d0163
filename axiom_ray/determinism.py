"""Determinism of problems: a reference's answers must not depend on conditions that must not matter.

A problem whose expected values drift with the clock, the time zone, the hash seed, the working
directory or chance turns correct candidates into "failed" rows and trains the model away from
right answers (codeio_1254 read today's date: its tests, computed on 2026-11-26, failed every
correct solution a day later). So every problem with a reference is run under several
conditions, each in a process of its own, and kept only when the reference passes its own tests
under every one of them:

    baseline   the real clock, UTC, working directory as given
    varied     the clock moved ~13 months and 5 hours forward, a +13:45 time zone, another
               working directory, another process (and so another hash seed and random state)
    back       the clock moved ~3 years back, a -10:00 time zone, a third working directory

A problem that fails is run again under one condition per factor to name the reason (REASONS).
Two runners: :func:`run_trusted` (plain subprocesses, for the project's own references; the fast
path) and :func:`sandbox_runner` (the sandbox's Judge, for imported code such as CodeI/O).

Pure: standard library and the (pure) sandbox only.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import reprlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from axiom_ray.importers import capture
from axiom_ray.problems import Problem
from axiom_ray.sandbox import Judge, Limits
from axiom_ray.sandbox.compare import values_equal

DAY_S = 86_400.0


@dataclass(frozen=True)
class Condition:
    """What one run of a reference changes. `tz` is a POSIX TZ string (no zoneinfo file needed:
    the sandbox hides most of /usr/share)."""

    name: str
    clock_shift_s: float = 0.0
    tz: str = "UTC0"
    workdir: str = ""  # a fresh subdirectory to chdir into ("" = stay where the runner starts)
    # PYTHONHASHSEED of the subprocess runner. The sandbox cannot set one (its fork server runs
    # under -I, which ignores it), so there each distinct value is a fork server of its own, with
    # its own random hash secret; equal values share a server, as two runs of one process would.
    hash_seed: int = 0


_FORWARD_S = 402 * DAY_S + 5.2 * 3600  # a year and a month on, another weekday and time of day
_BACK_S = -1101 * DAY_S - 7.7 * 3600  # three years back
_EAST, _WEST = "<+1345>-13:45", "<-10>10"
BASELINE = Condition("baseline")
# Several factors at once, so a clean problem costs three runs; a failing one is then run once per
# factor (REASONS) to say which one its answers depend on.
CONDITIONS: tuple[Condition, ...] = (
    BASELINE,
    Condition("varied", _FORWARD_S, _EAST, workdir="elsewhere", hash_seed=1),
    Condition("back", _BACK_S, _WEST, workdir="third/dir", hash_seed=12345),
)
# One factor each, in this order; the first whose run disagrees with the baseline names the reason.
REASONS: tuple[Condition, ...] = (
    Condition("chance (two identical runs disagree)"),
    Condition("the date and time", _FORWARD_S),
    Condition("the date and time", _BACK_S),
    Condition("the time zone", tz=_EAST),
    Condition("the time zone", tz=_WEST),
    Condition("the hash seed", hash_seed=1),
    Condition("the working directory", workdir="elsewhere"),
)

# Runs first in the reference's module, before its own imports: shifts every wall-clock reading
# (time.time/time_ns and the functions that default to "now", datetime.now/today/utcnow, date.today)
# by a fixed amount, sets the time zone and moves to another working directory. Applied under every
# condition, baseline included (shift 0), so the only difference between two runs is the condition.
_PRELUDE = '''\
def __axiom_condition(shift, tz, workdir):
    import datetime as dt, os, time
    os.environ["TZ"] = tz
    time.tzset()
    if workdir:
        os.makedirs(workdir, exist_ok=True)
        os.chdir(workdir)
    real_time, real_ns = time.time, time.time_ns
    time.time = lambda: real_time() + shift
    time.time_ns = lambda: real_ns() + int(shift * 1e9)
    def now_default(real):
        return lambda secs=None: real(time.time() if secs is None else secs)
    for name in ("localtime", "gmtime", "ctime"):
        setattr(time, name, now_default(getattr(time, name)))
    real_strftime, real_asctime = time.strftime, time.asctime
    time.strftime = lambda fmt, t=None: real_strftime(fmt, time.localtime() if t is None else t)
    time.asctime = lambda t=None: real_asctime(time.localtime() if t is None else t)

    class date(dt.date):
        @classmethod
        def today(cls):
            return cls.fromtimestamp(time.time())

        def __repr__(self):
            return "datetime." + super().__repr__()

    class datetime(dt.datetime):
        @classmethod
        def today(cls):
            return cls.fromtimestamp(time.time())

        @classmethod
        def now(cls, tz=None):
            return cls.fromtimestamp(time.time(), tz)

        @classmethod
        def utcnow(cls):
            return cls.utcfromtimestamp(time.time())

        def __repr__(self):
            return "datetime." + super().__repr__()

    dt.date, dt.datetime = date, datetime


__axiom_condition({shift!r}, {tz!r}, {workdir!r})
del __axiom_condition
'''


def prelude(condition: Condition) -> str:
    """Python source that puts the current process under `condition` (see _PRELUDE)."""
    return _PRELUDE.format(shift=condition.clock_shift_s, tz=condition.tz, workdir=condition.workdir)


# A runner takes problems and a condition and returns, per problem id, the reference's answer to
# each test: plain data, or RAISED when the call raised or the run was stopped.
Outputs = dict[str, list[Any]]
Runner = Callable[[Sequence[Problem], Condition], Outputs]
RAISED = "__raised__"


def raised(why: str) -> dict[str, str]:
    return {RAISED: why[:200]}


@dataclass
class Report:
    """Which problems of a set keep their answers under every condition, and why the others don't."""

    checked: int = 0
    unchecked: list[str] = field(default_factory=list)  # no reference to run
    dropped: dict[str, str] = field(default_factory=dict)  # id -> reason

    def describe(self, set_name: str) -> str:
        lines = [f"{set_name}: {self.checked} checked, {len(self.dropped)} dropped, "
                 f"{len(self.unchecked)} without a reference (not checkable)"]
        lines += [f"  drop {pid}: {why}" for pid, why in sorted(self.dropped.items())]
        return "\n".join(lines)


def check_problems(problems: Sequence[Problem], runner: Runner,
                   conditions: Sequence[Condition] = CONDITIONS) -> Report:
    """Run every reference under every condition. A problem is kept when its answers agree across
    the conditions and pass its tests; otherwise the factor behind it is named (REASONS)."""
    checkable = [p for p in problems if p.reference]
    report = Report(checked=len(checkable), unchecked=[p.id for p in problems if not p.reference])
    runs = [runner(checkable, c) for c in conditions]
    base = runs[0]
    suspects = []
    for p in checkable:
        if any(_timed_out(run[p.id]) for run in runs):  # its verdicts would follow the machine's load
            report.dropped[p.id] = "its reference runs out of CPU time in some runs (too close to the limit)"
        elif any(not _agree(p, base[p.id], run[p.id]) for run in runs[1:]):
            suspects.append(p)
        elif (why := _test_failure(p, base[p.id])) is not None:
            report.dropped[p.id] = f"its reference fails its own tests under every condition ({why})"
    for reason in REASONS:
        if not suspects:
            break
        again = runner(suspects, reason)
        for p in [p for p in suspects if not _agree(p, base[p.id], again[p.id])]:
            report.dropped[p.id] = f"answers depend on {reason.name}"
        suspects = [p for p in suspects if p.id not in report.dropped]
    for p in suspects:
        report.dropped[p.id] = "answers depend on several conditions at once"
    return report


def _timed_out(outputs: list[Any]) -> bool:
    return any(type(v) is dict and str(v.get(RAISED, "")).startswith("stopped: timeout") for v in outputs)


def _agree(p: Problem, a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(values_equal(x, y, p.compare) for x, y in zip(a, b, strict=True))


def _test_failure(p: Problem, outputs: list[Any]) -> str | None:
    expected = [t.expected for t in p.tests] if p.check is None else [None]
    for i, (want, got) in enumerate(zip(expected, outputs, strict=True)):
        if not values_equal(want, got, p.compare):
            return f"test {i + 1}: got {reprlib.repr(got)}"
    return None


def keep_deterministic(problems: Iterable[Problem], report: Report) -> list[Problem]:
    return [p for p in problems if p.id not in report.dropped]


# --- the subprocess runner (trusted references) ----------------------------------------------

# Answers cross back as tagged JSON (sets, tuples and non-string keys survive): ["L", [...]] a
# sequence, ["S", [...]] a set, ["D", [[k, v], ...]] a dict, ["R", repr] anything else.
_RUNNER = '''\
import copy, json, sys
def tag(v):
    if v is None or type(v) in (bool, int, float, str):
        return v
    if type(v) in (list, tuple):
        return ["L", [tag(x) for x in v]]
    if type(v) in (set, frozenset):
        return ["S", sorted((tag(x) for x in v), key=json.dumps)]
    if type(v) is dict:
        return ["D", [[tag(k), tag(x)] for k, x in v.items()]]
    return ["R", repr(v)[:200]]
out = {}
for p in json.load(sys.stdin):
    namespace = {"__name__": "__main__"}
    answers = out[p["id"]] = []
    try:
        exec(compile(p["prelude"] + p["reference"], "<" + p["id"] + ">", "exec"), namespace)
        fn = namespace[p["entry_point"]]
    except BaseException as exc:
        answers.extend({"__raised__": "%s: %.200s" % (type(exc).__name__, exc)} for _ in p["tests"])
        continue
    for t in p["tests"]:
        try:
            answers.append(tag(fn(*copy.deepcopy(t["args"]), **copy.deepcopy(t["kwargs"]))))
        except BaseException as exc:
            answers.append({"__raised__": "%s: %.200s" % (type(exc).__name__, exc)})
print(json.dumps(out))
'''


def _untag(v: Any) -> Any:
    if type(v) is not list:
        return v
    kind, body = v
    if kind == "L":
        return [_untag(x) for x in body]
    if kind == "S":
        return frozenset(_untag(x) for x in body)
    if kind == "D":
        return {_untag(k): _untag(x) for k, x in body}
    return raised(f"not plain data: {body}")


def run_trusted(problems: Sequence[Problem], condition: Condition, timeout_s: float = 600) -> Outputs:
    """The references' answers from a fresh interpreter under `condition`: for the project's own
    references only (a plain subprocess, no sandbox). A `check` problem answers None when its
    check program passes."""
    payload = [_payload(p, condition) for p in problems]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "TZ": condition.tz, "PYTHONHASHSEED": str(condition.hash_seed)}
    with _fixed_workdir() as cwd:
        out = subprocess.run([sys.executable, "-s", "-c", _RUNNER], input=json.dumps(payload),
                             capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout_s,
                             check=False)
    if out.returncode != 0:
        raise RuntimeError(f"determinism runner failed ({condition.name}): {out.stderr[-2000:]}")
    answers = json.loads(out.stdout.strip().splitlines()[-1])
    return {pid: [_untag(v) for v in values] for pid, values in answers.items()}


@contextmanager
def _fixed_workdir() -> Iterator[str]:
    """An empty directory at the same path for every run (a per-run temporary path would make a
    reference that reads its working directory look random), locked against a concurrent run."""
    root = Path(tempfile.gettempdir(), f"axiom-determinism-{os.getuid()}")
    root.mkdir(mode=0o700, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        work = root / "work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            yield str(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _payload(p: Problem, condition: Condition) -> dict[str, Any]:
    reference = p.reference or ""
    if p.check is None:
        entry, tests = p.entry_point, [{"args": list(t.args), "kwargs": dict(t.kwargs)} for t in p.tests]
    else:  # the check program is the one "test"; it returns None when it passes
        reference += f"\n{p.check}\n\ndef __axiom_checked():\n    return check({p.entry_point})\n"
        entry, tests = "__axiom_checked", [{"args": [], "kwargs": {}}]
    return {"id": p.id, "prelude": prelude(condition), "reference": reference,
            "entry_point": entry, "tests": tests}


# --- the sandbox runner (imported code) -------------------------------------------------------


def sandbox_runner(judge_for: Callable[[Condition], AbstractContextManager[Judge]]) -> Runner:
    """A runner that calls `prelude + reference` in the sandbox, each condition on the Judge that
    `judge_for` gives (one fork server per condition: its own process, hash seed and random state).
    `JudgesBySeed(limits).judge_for` gives one per hash seed."""

    def run(problems: Sequence[Problem], condition: Condition) -> Outputs:
        with judge_for(condition) as judge:
            return {p.id: _sandboxed_answers(judge, p, condition) for p in problems}

    return run


class JudgesBySeed:
    """One Judge per distinct `Condition.hash_seed`, started on first use, closed together."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._judges: dict[int, Judge] = {}

    def judge_for(self, condition: Condition) -> AbstractContextManager[Judge]:
        if condition.hash_seed not in self._judges:
            self._judges[condition.hash_seed] = Judge(self.limits)
        return nullcontext(self._judges[condition.hash_seed])

    def close(self) -> None:
        for judge in self._judges.values():
            judge.close()

    def __enter__(self) -> JudgesBySeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sandboxed_answers(judge: Judge, p: Problem, condition: Condition) -> list[Any]:
    code = prelude(condition) + (p.reference or "")
    if p.check is not None:
        verdict = judge.judge(p, code)
        return [None if verdict.passed else raised(f"{verdict.status} {verdict.detail}")]
    answers: list[Any] = []

    def session(candidate: Callable[..., Any]) -> None:
        for t in p.tests:
            result = capture.call(candidate, *copy.deepcopy(list(t.args)), **copy.deepcopy(dict(t.kwargs)))
            answers.append(result.value if result.ok else raised(result.error))

    verdict = capture.run_in_sandbox(judge, code, p.entry_point, session)
    stopped = raised(f"stopped: {verdict.status} {verdict.detail}")
    return answers + [stopped] * (len(p.tests) - len(answers))
