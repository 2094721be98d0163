"""The judge: runs a candidate in a forked, confined child and decides the verdict itself.

The expected values and `check` programs stay in this process. The candidate's child receives
its code and the arguments of one call at a time, and answers with plain data (wire.py); this
process decodes it strictly and compares (compare.py). For HumanEval-style problems, `check`
runs here with `candidate` a proxy whose calls cross into the child (check.py). The bytes to and
from the child go through channel.py; what a verdict shows of its values, through render.py.

Whatever a candidate sends back costs the judge bounded time and memory (Limits.max_result_bytes,
max_result_values, max_judge_cpu_s; wire.MAX_DEPTH, wire.MAX_ALIKE) and ends as that row's
verdict: a reply beyond the bounds is "error: reply too large/slow", a judge-side failure on it
is "error" with its reason, and the next candidate on this Judge is judged as if it had not been.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import functools
import logging
import math
import os
import signal
import socket
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from axiom_ray.sandbox import cpu_wait, wire
from axiom_ray.sandbox.channel import TOO_LARGE, Channel, Stop
from axiom_ray.sandbox.check import CandidateProxy, check_line, literal_calls
from axiom_ray.sandbox.compare import values_equal
from axiom_ray.sandbox.core import (
    DEFAULT_MIN_ISOLATION,
    IsolationReport,
    Limits,
    SandboxUnavailable,
    Verdict,
    level_rank,
)
from axiom_ray.sandbox.cpu_wait import CandidateClock, host_pid
from axiom_ray.sandbox.render import clean_text, message_text, render
from axiom_ray.sandbox.server import DEFAULT_PRELOAD, ForkServer, ServerDied

if TYPE_CHECKING:  # a type only: axiom_ray.problems imports the sandbox (compare.MODES)
    from axiom_ray.problems import Problem

log = logging.getLogger(__name__)


@dataclass
class _Tally:
    total: int
    passed: int = 0
    first: tuple[str, str] | None = None  # (status, detail) of the first failed test
    rejected: str | None = None  # the candidate returned something that is not plain data
    stop: Stop | None = None

    def fail(self, status: str, detail: str) -> None:
        if status == "rejected" and self.rejected is None:
            self.rejected = detail
        if self.first is None:
            self.first = (status, detail)


class Judge:
    """Judges candidates with a warm fork server. One candidate at a time per Judge (calls are
    serialised by a lock); run several Judges for parallelism (one per verifier actor or thread).

    Raises SandboxUnavailable when the isolation this machine allows is below `min_isolation`.
    `isolation` forces a level ("best": the strongest that works here). `idle_priority`: the
    candidates take only the CPU others leave idle (sandbox/cpu_wait.py), where this machine's
    /proc lets the judge discount their wait for a CPU from the wall-clock backstop.
    """

    def __init__(self, limits: Limits | None = None, min_isolation: str = DEFAULT_MIN_ISOLATION,
                 isolation: str = "best", allow_packages: tuple[str, ...] = (),
                 preload: tuple[str, ...] = DEFAULT_PRELOAD, idle_priority: bool = True) -> None:
        self.limits = limits or Limits()
        level_rank(min_isolation)
        if isolation != "best":
            level_rank(isolation)
        self.min_isolation, self.isolation = min_isolation, isolation
        self._config = {"judge_pid": os.getpid(), "allow_packages": list(allow_packages),
                        "preload": list(preload), "selftest_limits": _rcfg(Limits(timeout_s=5)),
                        # candidates at idle CPU priority only where the judge can see their wait
                        "idle_priority": idle_priority and cpu_wait.measurable(),
                        "rcfg": _rcfg(self.limits)}  # the server keeps a child with these limits ready
        self._lock = threading.Lock()
        self._checks: dict[tuple[str, str, str], tuple[Any, Any, list[tuple[bytes, Any]]]] = {}
        self._server: ForkServer | None = None
        self._closed = False
        self._start()
        self._finalizer = weakref.finalize(self, _close_server, self._holder)

    # -- lifetime --

    def _start(self) -> None:
        server = ForkServer(self.isolation, self._config)
        if level_rank(server.level) < level_rank(self.min_isolation):
            server.close()
            missing = "; ".join(f"{lv}: {why}" for lv, why in server.info.get("missing", {}).items())
            raise SandboxUnavailable(
                f"sandbox isolation {server.level!r} is below the required minimum {self.min_isolation!r}"
                f" ({missing or 'nothing stronger was attempted'}); lower the minimum only on purpose"
                f" (--min-isolation {server.level}), or allow user namespaces or Landlock")
        if level_rank(server.level) < level_rank("landlock") and os.geteuid() != 0:
            _protect_this_process()
        if self._server is None:
            log.info("sandbox: isolation %s (fork server pid %s)", server.level, server.proc.pid)
        self._server = server
        self._holder = [server]

    @property
    def level(self) -> str:
        assert self._server is not None
        return self._server.level

    @property
    def report(self) -> IsolationReport:
        assert self._server is not None
        return _isolation_report(self._server.info)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._server is not None:
                self._server.close()
            self._finalizer.detach()

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- judging --

    def judge(self, problem: Problem, code: str) -> Verdict:
        """Run `code` against `problem`'s hidden tests (or its check program)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this Judge is closed")
            t0 = time.monotonic()
            total = problem.num_tests
            reason = self._precheck(code)
            if problem.check is None and not problem.tests:
                return Verdict(False, "error", 0, 0, _ms(t0), self.level, "the problem has no tests")
            if reason:
                return Verdict(False, "rejected", 0, total, _ms(t0), self.level, reason)
            if self._server is None or not self._server.alive():
                self._restart()
            try:
                return self._run(problem, code, t0)
            except Exception as e:  # a judge-side bug costs this row, never the batch or the next row
                log.exception("sandbox: judge-side failure")
                if self._server is not None:
                    self._server.close()  # in an unknown state: the next row starts a fresh one
                return Verdict(False, "error", 0, total, _ms(t0), self.level,
                               f"judge-side failure: {type(e).__name__}")

    def _precheck(self, code: Any) -> str:
        if not isinstance(code, str):
            return f"the code is a {type(code).__name__}, not a str"
        if len(code) > self.limits.max_code_bytes or len(code.encode("utf-8", "surrogatepass")) > self.limits.max_code_bytes:
            return f"the code exceeds {self.limits.max_code_bytes} bytes"
        return ""

    def _restart(self) -> None:
        log.warning("sandbox: restarting the fork server")
        if self._server is not None:
            self._server.close()
        self._start()
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _close_server, self._holder)

    def _run(self, problem: Problem, code: str, t0: float) -> Verdict:
        server = self._server
        assert server is not None
        tally = _Tally(problem.num_tests)
        exited = None
        judge_end: socket.socket | None = None
        out_r = pidfd = -1
        try:
            fds = server.start(timeout=self.limits.wall_s)
            if fds is None:
                tally.stop = Stop("server", server.error)
            else:
                judge_end, out_r, pidfd = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fds[0]), fds[1], fds[2]
                chan = Channel(judge_end, out_r, server, t0 + self.limits.wall_s, self.limits,
                               clock=self._clock(server, pidfd))
                try:
                    self._converse(problem, code, chan, tally)
                except Stop as stop:
                    tally.stop = stop
                except Exception as e:  # MemoryError on a reply, or a bug: this row's error
                    log.warning("sandbox: judge-side failure on a reply: %r", e)
                    tally.stop = Stop("judge", f"judge-side failure on a reply: {type(e).__name__}")
                # After "bye" the candidate leaves by itself; anything else is killed now.
                exited = server.finish(kill=tally.stop is not None)
        except ServerDied as e:
            log.warning("sandbox: fork server failed during a run: %s", e)
            tally.stop = Stop("server", str(e))
            server.close()
        finally:
            if judge_end is not None:
                judge_end.close()
            for fd in (out_r, pidfd):
                if fd >= 0:
                    os.close(fd)
        return self._verdict(tally, exited, t0)

    def _clock(self, server: ForkServer, pidfd: int) -> CandidateClock | None:
        """The idle-priority candidate's run-queue wait, read through its pidfd. What it leaves
        behind is adopted by the fork server at the lower levels, by itself (the init of its
        pid namespace) at "namespaces"."""
        pid = host_pid(pidfd) if pidfd >= 0 else None
        if pid is None:
            return None
        return CandidateClock(pid, reaper=None if server.level == "namespaces" else server.proc.pid)

    def _converse(self, problem: Problem, code: str, chan: Channel, tally: _Tally) -> None:
        # Tests are pipelined: the code, every call and the "bye" go out at once, and the
        # candidate answers them in order (the inputs are no secret; the expected values stay).
        # A check program's literal calls go out the same way (see CandidateProxy).
        prefetched: list[tuple[bytes, Any]] = []
        if problem.check is not None:
            with contextlib.suppress(SyntaxError):  # _run_check reports it
                prefetched = self._compiled_check(problem)[2]
            calls = [["call", seq, *trees] for seq, (_, trees) in enumerate(prefetched)]
        else:
            calls = self._calls(problem, tally)
        chan.send(["load", code, problem.entry_point], *(c for c in calls if c is not None),
                  *([["bye"]] if problem.check is None else []))
        first = chan.recv()
        if first[0] == "load_error" and len(first) == 3:
            name, msg = message_text(first[1], 80), message_text(first[2], 300)
            tally.fail("memory" if name == "MemoryError" else "error", f"{name}: {msg}")
        elif first[0] == "exc" and len(first) == 4 and first[1] == -1:
            tally.fail("memory", "MemoryError while loading")
        elif first[0] == "setup_error" and len(first) == 2:
            log.error("sandbox: candidate set-up failed: %s", message_text(first[1], 200))
            tally.fail("error", f"sandbox set-up failed: {message_text(first[1], 200)}")
        elif first[0] != "ready":
            tally.fail("rejected", "protocol violation before the first test")
        elif problem.check is not None:
            self._run_check(problem, chan, tally, prefetched)
            chan.send(["bye"])
        else:
            self._run_tests(problem, calls, chan, tally)

    def _calls(self, problem: Problem, tally: _Tally) -> list[Any]:
        """The call messages of a test problem (None for a test whose arguments cannot travel)."""
        calls: list[Any] = []
        for i, tc in enumerate(problem.tests):
            try:
                calls.append(["call", i, wire.to_tree(list(tc.args)), wire.to_tree(dict(tc.kwargs))])
            except wire.WireError as e:
                tally.fail("error", f"test {i + 1}: the problem's arguments are not plain data ({e})")
                calls.append(None)
        return calls

    def _run_tests(self, problem: Problem, calls: list[Any], chan: Channel, tally: _Tally) -> None:
        for i, tc in enumerate(problem.tests):
            if calls[i] is None:
                continue
            started = time.thread_time()
            reply = chan.recv()
            self._judge_reply(problem, tc.expected, reply, i, chan, tally)
            chan.charge(started, f"test {i + 1}: ")

    def _judge_reply(self, problem: Problem, expected: Any, reply: list[Any], i: int, chan: Channel,
                     tally: _Tally) -> None:
        """Decide test i from the candidate's reply to it (decode and compare within the limits)."""
        kind, where = reply[0], f"test {i + 1}: "
        if kind == "ret" and len(reply) == 3 and reply[1] == i:
            try:
                value = chan.decode(reply[2], where)
                same = values_equal(expected, value, problem.compare)
            except wire.TooLarge as e:  # compare.py met values that hash alike
                raise Stop("too_large", f"{where}{TOO_LARGE}: {e}") from None
            except wire.WireError as e:
                tally.fail("rejected", f"{where}returned {e}")
                return
            if same:
                tally.passed += 1
            else:
                tally.fail("failed", f"{where}wrong answer (got {render(value)})")
        elif kind == "exc" and len(reply) == 4 and reply[1] in (i, -1):
            name, msg = message_text(reply[2], 80), message_text(reply[3], 300)
            tally.fail("memory" if name == "MemoryError" else "error", f"{where}{name}: {msg}")
        elif kind == "bad" and len(reply) == 3 and reply[1] == i:
            tally.fail("rejected", f"{where}returned {message_text(reply[2], 200)}")
        else:
            tally.fail("rejected", f"{where}protocol violation")
            raise Stop("rejected", "protocol violation")

    def _run_check(self, problem: Problem, chan: Channel, tally: _Tally, prefetched: list[tuple[bytes, Any]]) -> None:
        try:
            prompt_code, check_code, _ = self._compiled_check(problem)
        except SyntaxError as e:
            tally.fail("error", f"the problem's check program does not compile: {e.msg} (line {e.lineno})")
            return
        ns: dict[str, Any] = {"__name__": "__check__", "__builtins__": builtins}
        if prompt_code is not None:
            # Helpers the check uses (HumanEval/38's encode_cyclic) come from the problem's own
            # prompt, run here: the candidate's redefinition of them must not count.
            with contextlib.suppress(Exception):
                exec(prompt_code, ns)
        proxy = CandidateProxy(chan, tally.fail, problem.entry_point, prefetched)
        ns[problem.entry_point] = proxy
        try:
            exec(check_code, ns)
            check = ns.get("check")
            if not callable(check):
                tally.fail("error", "the problem's check program defines no check(candidate)")
                return
            check(proxy)
        except Exception as e:
            if e is proxy.last_exc:
                tally.fail("memory" if isinstance(e, MemoryError) else "error", f"{type(e).__name__}: {e}"[:300])
            elif isinstance(e, AssertionError):
                tally.fail("failed", f"check failed: assertion{check_line(e)}")
            else:
                tally.fail("failed", f"check failed: {type(e).__name__}{check_line(e)}")
            return
        if tally.first is None:
            tally.passed = 1

    def _compiled_check(self, problem: Problem) -> tuple[Any, Any, list[tuple[bytes, Any]]]:
        """The prompt's and the check's code objects and the check's literal calls (cached)."""
        key = (problem.id, problem.prompt, problem.check or "")
        if key not in self._checks:
            if len(self._checks) > 4096:
                self._checks.clear()
            try:
                prompt_code = compile(problem.prompt, "<prompt>", "exec")
            except (SyntaxError, ValueError):
                prompt_code = None  # a prose prompt: no helpers to define
            check_code = compile(problem.check or "", "<check>", "exec")
            self._checks[key] = (prompt_code, check_code, literal_calls(problem.check or "", problem.entry_point))
        return self._checks[key]

    def _verdict(self, tally: _Tally, exited: tuple[int, float, int] | None, t0: float) -> Verdict:
        status, detail = "passed", ""
        if tally.rejected is not None:
            status, detail = "rejected", tally.rejected
        elif tally.stop is not None:
            status, detail = self._stop_status(tally, tally.stop, exited)
        elif tally.first is not None:
            status, detail = tally.first
        elif tally.passed != tally.total:
            status, detail = "error", "not every test ran"
        passed = status == "passed"
        return Verdict(passed, status, tally.passed if not passed else tally.total, tally.total,
                       _ms(t0), self.level, clean_text(detail, 300))

    def _stop_status(self, tally: _Tally, stop: Stop, exited: tuple[int, float, int] | None) -> tuple[str, str]:
        if stop.kind in ("too_large", "judge"):  # the judge stopped it: the reason is known
            return "error", stop.detail
        cpu_limit = max(1, math.ceil(self.limits.timeout_s))
        if exited is not None:
            status, cpu, maxrss_kb = exited
            # RLIMIT_CPU's SIGKILL. rusage is tick-sampled and reads a few percent low on a busy
            # machine, hence the margin; nothing else in a sandbox burns 80% of the limit and
            # then dies of SIGKILL (memory exhaustion raises MemoryError under RLIMIT_AS).
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGKILL, signal.SIGXCPU) \
                    and cpu >= 0.8 * cpu_limit:
                return "timeout", f"CPU time limit of {cpu_limit}s"
        if stop.kind == "timeout":
            return "timeout", f"wall-clock limit of {self.limits.wall_s:g}s"
        if stop.kind == "output":
            return "error", stop.detail
        if stop.kind == "server":
            return "error", f"sandbox failure: {stop.detail}"
        if stop.kind == "rejected":
            return "rejected", stop.detail
        if tally.first is not None and tally.first[0] == "memory":
            return tally.first
        where = f"after {tally.passed} passed test(s)" if tally.total else ""
        if exited is None:
            return "error", f"the candidate closed its channel {where}".strip()
        status, cpu, maxrss_kb = exited
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == signal.SIGKILL and maxrss_kb * 1024 >= 0.9 * self.limits.memory_mb * 1024 * 1024:
                return "memory", f"killed at {maxrss_kb // 1024} MB"
            return "error", f"killed by {_signame(sig)} {where}".strip()
        return "error", f"exited with code {os.waitstatus_to_exitcode(status)} {where}".strip()


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000, 3)


def _rcfg(limits: Limits) -> dict[str, Any]:
    """The limits the fork server applies to a child (what it needs, nothing more)."""
    keys = ("timeout_s", "memory_mb", "max_processes", "max_open_files", "max_file_size_mb",
            "max_disk_mb", "recursion_limit", "stack_mb")
    return {k: getattr(limits, k) for k in keys}


def _close_server(holder: list[ForkServer]) -> None:
    for server in holder:
        server.close()


def _protect_this_process() -> None:
    """Below Landlock, an unprivileged candidate shares the judge's uid and could read
    /proc/<judge>/mem or write to /proc/<judge>/fd/1; a non-dumpable process refuses both."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
        log.warning("sandbox: below the landlock level; this process is now non-dumpable")


def judge_one(problem: Problem, code: str, limits: Limits | None = None, **judge_kwargs: Any) -> Verdict:
    """One verdict with a throw-away Judge (starts a fork server: use a Judge for many)."""
    with Judge(limits, **judge_kwargs) as j:
        return j.judge(problem, code)


def _isolation_report(info: dict[str, Any]) -> IsolationReport:
    """A fork server's hello as an IsolationReport."""
    return IsolationReport(level=info["level"], features={**info["features"], "proc": info["has_proc"],
                                                          "idle_priority": info.get("idle_priority", False)},
                           missing=dict(info.get("missing", {})))


@functools.lru_cache(maxsize=1)
def detect_isolation() -> IsolationReport:
    """What this machine allows, found by starting a fork server at the best level (cached)."""
    server = ForkServer("best", {"judge_pid": os.getpid(), "allow_packages": [], "preload": [],
                                 "selftest_limits": _rcfg(Limits()), "idle_priority": cpu_wait.measurable()})
    try:
        return _isolation_report(server.info)
    finally:
        server.close()
