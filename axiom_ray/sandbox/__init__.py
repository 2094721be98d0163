"""The sandbox: run one candidate against hidden tests and decide the verdict where it cannot reach.

Pure stdlib (no torch, vLLM or Ray), imports in milliseconds.

    from axiom_ray.sandbox import Judge, Limits
    with Judge(Limits(timeout_s=5)) as judge:
        verdict = judge.judge(problem, code)      # Verdict(passed, status, passed_tests, ...)

A Judge keeps a warm fork server (forkserver.py) so a verdict costs a fork, not an interpreter
start. Inside: judge.py (the Judge) over channel.py (bytes to and from the candidate),
check.py (check programs), compare.py (the comparison rules), render.py (a verdict's detail).
The isolation level actually used is in every Verdict; a Judge refuses to start below
`min_isolation` (SandboxUnavailable says what is missing). Levels and what each guarantees: core.py.
"""

from axiom_ray.sandbox.check import CandidateError
from axiom_ray.sandbox.compare import values_equal
from axiom_ray.sandbox.core import (
    DEFAULT_MIN_ISOLATION,
    LEVELS,
    STATUSES,
    IsolationReport,
    Limits,
    SandboxUnavailable,
    Verdict,
    level_rank,
)
from axiom_ray.sandbox.judge import Judge, detect_isolation, judge_one

__all__ = [
    "DEFAULT_MIN_ISOLATION",
    "LEVELS",
    "STATUSES",
    "CandidateError",
    "IsolationReport",
    "Judge",
    "Limits",
    "SandboxUnavailable",
    "Verdict",
    "detect_isolation",
    "judge_one",
    "level_rank",
    "values_equal",
]
