"""Run untrusted code in the sandbox and bring back what it returns.

The sandbox's Judge only answers pass/fail. An importer needs the values themselves (the outputs
of a reference solution become a problem's expected values), so it hands the Judge a synthetic
problem whose ``check`` program calls back into this module: the check runs judge-side with
``candidate`` a proxy into the sandboxed process, and a *session* (plain Python written by the
importer, trusted) drives that proxy and keeps whatever it needs. Only plain data crosses the
process boundary, exactly as for a candidate's answers.

    def session(candidate):
        results.append(call(candidate, "gen", 7))

    verdict = run_in_sandbox(judge, code, "entry", session)
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from axiom_ray.problems import Problem
from axiom_ray.sandbox import Judge, Verdict

Session = Callable[[Callable[..., Any]], None]

_SESSIONS: dict[str, Session] = {}
_LOCK = threading.Lock()
_CHECK = (
    "def check(candidate):\n"
    "    from axiom_ray.importers.capture import run_registered\n"
    "    run_registered({token!r}, candidate)\n"
)


@dataclass(frozen=True)
class CallResult:
    """One call into the sandboxed code: its plain-data return value, or the exception it raised."""

    ok: bool
    value: Any = None
    error: str = ""


def call(candidate: Callable[..., Any], *args: Any, **kwargs: Any) -> CallResult:
    """Call the sandboxed function; an exception it raised becomes a failed CallResult.

    Only ``Exception`` is caught: the judge stops a run (timeout, crash, flood) with a
    BaseException, which must end the session.
    """
    try:
        return CallResult(True, candidate(*args, **kwargs))
    except Exception as exc:  # the code's own exception, rebuilt judge-side
        return CallResult(False, error=f"{type(exc).__name__}: {exc}"[:300])


def run_registered(token: str, candidate: Callable[..., Any]) -> None:
    """Entry point of the synthetic check program: run the session registered under `token`."""
    with _LOCK:
        session = _SESSIONS.get(token)
    if session is None:
        raise RuntimeError(f"no capture session {token!r} (the check ran outside run_in_sandbox)")
    session(candidate)


def run_in_sandbox(judge: Judge, code: str, entry_point: str, session: Session) -> Verdict:
    """Load `code` in the sandbox and run `session` against its `entry_point`.

    The returned Verdict says how the run ended: ``passed`` when the session returned normally,
    ``timeout``/``memory``/``error`` when the sandbox stopped it (results the session kept
    before that stay valid).
    """
    token = uuid.uuid4().hex
    problem = Problem(
        id=f"capture-{token}",
        title="capture",
        difficulty="easy",
        prompt="(capture session)",  # prose: the judge has no helpers to define from it
        entry_point=entry_point,
        check=_CHECK.format(token=token),
    )
    with _LOCK:
        _SESSIONS[token] = session
    try:
        return judge.judge(problem, code)
    finally:
        with _LOCK:
            del _SESSIONS[token]
