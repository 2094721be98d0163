"""The judge: runs a candidate in a forked, confined child and decides the verdict itself.

The expected values and `check` programs stay in this process. The candidate's child receives
its code and the arguments of one call at a time, and answers with plain data (wire.py); this
process decodes it strictly and compares (compare.py). For HumanEval-style problems, `check`
runs here with `candidate` a proxy whose calls cross into the child.

Whatever a candidate sends back costs the judge bounded time and memory (Limits.max_result_bytes,
max_result_values, max_judge_cpu_s; wire.MAX_DEPTH, wire.MAX_ALIKE) and ends as that row's
verdict: a reply beyond the bounds is "error: reply too large/slow", a judge-side failure on it
is "error" with its reason, and the next candidate on this Judge is judged as if it had not been.
"""

from __future__ import annotations

import ast
import builtins
import collections
import contextlib
import functools
import itertools
import logging
import math
import os
import reprlib
import select
import signal
import socket
import threading
import time
import traceback
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from axiom_ray.sandbox import wire
from axiom_ray.sandbox.compare import values_equal
from axiom_ray.sandbox.core import (
    DEFAULT_MIN_ISOLATION,
    IsolationReport,
    Limits,
    SandboxUnavailable,
    Verdict,
    level_rank,
)
from axiom_ray.sandbox.server import DEFAULT_PRELOAD, ForkServer, ServerDied

if TYPE_CHECKING:
    from axiom_ray.problems import Problem

log = logging.getLogger(__name__)
_MAX_PREFETCH = 1000  # literal calls of a check program sent with the code
_MAX_SHOWN_INT_BITS = 1000  # a larger int is shown by its size: int-to-str is quadratic and capped
TOO_LARGE = "reply too large/slow"


class _SafeRepr(reprlib.Repr):
    """reprlib (bounded depth and width) that can show any plain value: an int by its size when
    rendering it would be slow or refused (4300-digit limit), bytes cut before rendering."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = 60
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdict = 6

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > _MAX_SHOWN_INT_BITS:
            return f"<int of about {int((x.bit_length() - 1) * math.log10(2)) + 1} digits>"
        return super().repr_int(x, level)

    def repr_bytes(self, x: bytes, level: int) -> str:
        shown = builtins.repr(x[: self.maxother])
        return shown if len(x) <= self.maxother else shown + "..."

    # reprlib sorts a whole set or dict to show its first few elements: not a million of them.
    def repr_set(self, x: set[Any], level: int) -> str:
        return self._repr_iterable(x, level, "{", "}", self.maxset) if x else "set()"

    def repr_frozenset(self, x: frozenset[Any], level: int) -> str:
        return self._repr_iterable(x, level, "frozenset({", "})", self.maxfrozenset) if x else "frozenset()"

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        shown = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}" for k, v in itertools.islice(x.items(), self.maxdict)]
        return "{" + ", ".join(shown) + (", ..." if len(x) > self.maxdict else "") + "}"


_REPR = _SafeRepr()


def render(value: Any, limit: int = 100) -> str:
    """A short, printable rendering of any value a candidate returned; never raises."""
    try:
        return clean_text(_REPR.repr(value), limit)
    except Exception:  # RecursionError, MemoryError, anything: a detail is still written
        return "<a value that cannot be shown>"


def clean_text(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with control characters, NULs and lone surrogates
    escaped: a verdict's detail must survive JSON, Parquet (strict UTF-8) and a terminal."""
    text = text[:limit]
    if not text.isprintable():
        text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)[:limit]
    return text


def _field(value: Any, limit: int) -> str:
    """A text field of a candidate's message (an exception's name or message): clean text, or
    the type of whatever else was sent in its place (never str() of it: that could be huge)."""
    return clean_text(value, limit) if type(value) is str else f"<{type(value).__name__}>"


class _Stop(BaseException):
    """The run ends early (timeout, the candidate died, a flood, a protocol violation).

    A BaseException, so that a check program's `except Exception:` cannot swallow it.
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind, detail)
        self.kind, self.detail = kind, detail


class CandidateError(Exception):
    """An exception the candidate raised, re-raised judge-side inside a check program."""


@dataclass
class _Tally:
    total: int
    passed: int = 0
    first: tuple[str, str] | None = None  # (status, detail) of the first failed test
    rejected: str | None = None  # the candidate returned something that is not plain data
    stop: _Stop | None = None

    def fail(self, status: str, detail: str) -> None:
        if status == "rejected" and self.rejected is None:
            self.rejected = detail
        if self.first is None:
            self.first = (status, detail)


class _Channel:
    """Judge-side I/O with one candidate: frames on its socket, its stdout/stderr drained and
    counted, the server's "exited" noticed, all against one wall-clock deadline."""

    def __init__(self, sock: socket.socket, out_fd: int, server: ForkServer, deadline: float,
                 limits: Limits) -> None:
        self.sock, self.out_fd, self.server = sock, out_fd, server
        self.deadline, self.limits = deadline, limits
        # Replies buffered in time are still judged after the candidate's deadline, but not for
        # longer than the candidate itself may run: a flood of costly replies stops there.
        self.judge_deadline = deadline + limits.wall_s
        sock.setblocking(False)
        os.set_blocking(out_fd, False)
        self.rbuf = bytearray()
        self.eof = False
        self.out_bytes = 0
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        self.poller.register(out_fd, select.POLLIN)
        self.poller.register(server.sock, select.POLLIN)

    def send(self, *msgs: Any) -> None:
        """Send messages (in one write: a pipelined batch wakes the candidate once). Replies that
        arrive meanwhile are buffered, so a candidate answering big results never deadlocks us."""
        data = memoryview(b"".join(wire.dumps(m) for m in msgs))
        while data:
            try:
                data = data[self.sock.send(data):]
                continue
            except BlockingIOError:
                pass
            except OSError:  # the candidate is gone; recv will tell why
                self.eof = True
                return
            self._wait(write=True)

    def recv(self) -> Any:
        while True:
            msg = self._frame()
            if msg is not None:
                if time.monotonic() > self.judge_deadline:
                    raise _Stop("too_large", f"{TOO_LARGE}: judging the replies ran past twice the wall-clock limit")
                return msg
            if self.eof:
                raise _Stop("exit")
            self._wait(write=False)

    def _frame(self) -> Any | None:
        if len(self.rbuf) < wire.HEADER_SIZE:
            return None
        n = wire.frame_length(bytes(self.rbuf[: wire.HEADER_SIZE]))
        if self._refuse_oversized_head(n):
            return None
        if len(self.rbuf) < wire.HEADER_SIZE + n:
            return None
        body = bytes(self.rbuf[wire.HEADER_SIZE: wire.HEADER_SIZE + n])
        del self.rbuf[: wire.HEADER_SIZE + n]
        try:
            return wire.loads(body, self.limits.max_result_values + 16)  # + the message's own fields
        except wire.TooLarge as e:
            raise _Stop("too_large", f"{TOO_LARGE}: {e}") from None
        except wire.WireError as e:
            raise _Stop("rejected", str(e)) from None

    def _refuse_oversized_head(self, n: int) -> bool:
        """_Stop when the first buffered frame, of `n` bytes, is over the reply limit; True when
        that cannot be told yet (only its header has arrived)."""
        if n <= self.limits.max_result_bytes + 4096:
            return False
        if len(self.rbuf) == wire.HEADER_SIZE:
            return True  # is it a message at all? its first byte says
        if self.rbuf[wire.HEADER_SIZE] != ord("["):  # every message is a JSON array
            raise _Stop("rejected", "malformed frame")
        raise _Stop("too_large", f"{TOO_LARGE}: {n} bytes, over the limit of {self.limits.max_result_bytes}")

    def decode(self, tree: Any, where: str, for_check: bool = False) -> Any:
        """A reply's value (wire.from_tree within this run's limits); _Stop beyond them, WireError
        for a malformed one. A value `for_check` code is guarded all through (it may make a set
        of any part of it)."""
        try:
            value = wire.from_tree(tree, self.limits.max_result_values)
            if for_check:
                wire.check_alike_inside(value)
            return value
        except wire.TooLarge as e:
            raise _Stop("too_large", f"{where}{TOO_LARGE}: {e}") from None

    def charge(self, started: float, where: str) -> None:
        """_Stop when the judge's CPU on one reply since `started` (time.thread_time: other Judges
        may share this process) went past the limit. The structural bounds keep it far below;
        this is the backstop that names it."""
        spent = time.thread_time() - started
        if spent > self.limits.max_judge_cpu_s:
            raise _Stop("too_large", f"{where}{TOO_LARGE}: judging it took {spent:.1f}s of CPU "
                                     f"(limit {self.limits.max_judge_cpu_s:g}s)")

    def _wait(self, write: bool) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _Stop("timeout")
        self.poller.modify(self.sock, select.POLLIN | (select.POLLOUT if write else 0))
        for fd, _ev in self.poller.poll(max(1, math.ceil(left * 1000))):
            if fd == self.out_fd:
                self._drain_output()
            elif fd == self.sock.fileno():
                self._read()
            else:
                try:
                    self.server.pump()
                except ServerDied as e:
                    raise _Stop("server", str(e)) from None
                if self.server.error:
                    raise _Stop("server", self.server.error)
        if self.server.exited is not None and not self.eof:
            # The candidate is dead; what it sent before dying is already buffered (a forked
            # descendant may still hold the socket open, so EOF alone is not enough).
            self._read()
            self.eof = True

    def _read(self) -> None:
        while True:
            try:
                chunk = self.sock.recv(1 << 18)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
                self.poller.unregister(self.sock)
                self.poller.register(self.sock, 0)  # keep modify() valid
                return
            self.rbuf += chunk
            if len(self.rbuf) > wire.HEADER_SIZE:
                # An oversized first reply is named as such however fast the candidate sends
                # it: otherwise a fast sender fills the buffer below and reads as a flood.
                self._refuse_oversized_head(wire.frame_length(bytes(self.rbuf[: wire.HEADER_SIZE])))
            if len(self.rbuf) > 4 * self.limits.max_result_bytes + 65536:  # many replies unread
                raise _Stop("rejected", "the candidate sent far more than it was asked for")

    def _drain_output(self) -> None:
        for _ in range(16):  # bounded: a flood must not keep the judge in this loop
            try:
                chunk = os.read(self.out_fd, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                self.poller.unregister(self.out_fd)
                return
            self.out_bytes += len(chunk)
            if self.out_bytes > self.limits.max_output_bytes:
                raise _Stop("output", f"output limit of {self.limits.max_output_bytes} bytes exceeded")


class _CandidateProxy:
    """`candidate` inside a check program: each call crosses into the candidate's process.

    The calls the check's source makes with literal arguments, up to the first that has other
    arguments, went out with the code (`prefetched`, in source order): a check that runs them in
    that order finds each answer waiting instead of paying a round trip per assert. The first
    call that is not the next prefetched one goes out by itself, and from then on the answers to
    the remaining prefetched calls are dropped unread."""

    def __init__(self, chan: _Channel, tally: _Tally, name: str, prefetched: list[tuple[bytes, Any]]) -> None:
        self._chan, self._tally, self.__name__ = chan, tally, name
        self._queue = collections.deque((seq, key) for seq, (key, _) in enumerate(prefetched))
        self._seq = len(prefetched)
        self._stale: set[int] = set()
        self.last_exc: BaseException | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            trees = [wire.to_tree(list(args)), wire.to_tree(kwargs)]
        except wire.WireError as e:
            raise TypeError(f"argument not transferable to the candidate: {e}") from None
        key = wire.dumps(trees)  # exact: True, 1 and 1.0 are three different calls
        started = time.thread_time()
        if self._queue and self._queue[0][1] == key:
            seq = self._queue.popleft()[0]
        else:
            self._stale.update(seq for seq, _ in self._queue)
            self._queue.clear()
            seq, self._seq = self._seq, self._seq + 1
            self._chan.send(["call", seq, *trees])
        reply = self._chan.recv()
        while len(reply) > 1 and type(reply[1]) is int and reply[1] in self._stale:
            self._stale.discard(reply[1])
            reply = self._chan.recv()
        where = f"call {seq + 1}: "
        if reply[0] == "ret" and len(reply) == 3 and reply[1] == seq:
            try:
                value = self._chan.decode(reply[2], where, for_check=True)
            except wire.WireError as e:
                self._tally.fail("rejected", f"{where}returned {e}")
                raise _Stop("rejected", str(e)) from None
            self._chan.charge(started, where)
            return value
        if reply[0] == "exc" and len(reply) == 4 and reply[1] in (seq, -1):
            self.last_exc = _rebuild_exception(_field(reply[2], 80), _field(reply[3], 300))
            raise self.last_exc
        if reply[0] == "bad" and len(reply) == 3 and reply[1] == seq:
            self._tally.fail("rejected", f"{where}returned {_field(reply[2], 200)}")
            raise _Stop("rejected", _field(reply[2], 200))
        self._tally.fail("rejected", "protocol violation")
        raise _Stop("rejected", "protocol violation")


def _literal_calls(check: str, entry_point: str) -> list[tuple[bytes, Any]]:
    """The calls to the candidate that `def check(candidate)` makes first and for certain, in the
    order it makes them, up to the first one that is not certain (in a branch, a loop, a
    short-circuit, an assert's message, a lambda) or whose arguments are not literals that can
    travel: (exact key, [args tree, kwargs tree]) each. Only such calls may run ahead: the
    candidate must never run a call the check would not have made (it could hang on it)."""
    try:
        module = ast.parse(check)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    fn = next((n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    if fn is None or not fn.args.args:
        return []
    names = {fn.args.args[0].arg, entry_point}
    out: list[tuple[bytes, Any]] = []
    for stmt in fn.body:
        if isinstance(stmt, (ast.Pass, ast.Import, ast.ImportFrom)):
            continue
        if isinstance(stmt, ast.Assert):
            value = stmt.test  # the message is evaluated only when the check fails anyway
        elif isinstance(stmt, ast.Expr) or (isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets)):
            value = stmt.value
        else:
            break
        if len(out) >= _MAX_PREFETCH:
            break
        if not _certain_calls(value, names, out):
            break
    return out


def _certain_calls(node: ast.AST, names: set[str], out: list[tuple[bytes, Any]]) -> bool:
    """Append the candidate calls evaluating `node` certainly makes, in order; False at the first
    call that is not certain or not literal (where the prefetched calls must end)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
        try:
            if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
                return False
            trees = [wire.to_tree([ast.literal_eval(a) for a in node.args]),
                     wire.to_tree({k.arg: ast.literal_eval(k.value) for k in node.keywords})]
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError, wire.WireError):
            return False
        out.append((wire.dumps(trees), trees))
        return True
    if isinstance(node, ast.BoolOp):
        certain, maybe = node.values[:1], node.values[1:]
    elif isinstance(node, ast.IfExp):
        certain, maybe = [node.test], [node.body, node.orelse]
    elif isinstance(node, ast.Compare):  # a chain stops at its first false link
        certain, maybe = [node.left, node.comparators[0]], node.comparators[1:]
    elif isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Dict)):
        certain, maybe = [], [node]  # run later, many times, or in another order
    else:
        certain, maybe = list(ast.iter_child_nodes(node)), []
    if not all(_certain_calls(c, names, out) for c in certain):
        return False
    return not any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in names
                   for m in maybe for n in ast.walk(m))


def _rebuild_exception(name: str, message: str) -> BaseException:
    """The candidate's exception as the same builtin type (so a check that expects, say, a
    ValueError sees one); anything else, and never a BaseException like SystemExit, becomes a
    CandidateError."""
    cls = getattr(builtins, name, None)
    exc: BaseException
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            exc = cls(message)
        except Exception:
            exc = CandidateError(f"{name}: {message}")
    else:
        exc = CandidateError(f"{name}: {message}")
    return exc


def _check_line(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<check>"]
    return f" (check line {frames[-1].lineno})" if frames else ""


class Judge:
    """Judges candidates with a warm fork server. One candidate at a time per Judge (calls are
    serialised by a lock); run several Judges for parallelism (one per verifier actor or thread).

    Raises SandboxUnavailable when the isolation this machine allows is below `min_isolation`.
    `isolation` forces a level ("best": the strongest that works here).
    """

    def __init__(self, limits: Limits | None = None, min_isolation: str = DEFAULT_MIN_ISOLATION,
                 isolation: str = "best", allow_packages: tuple[str, ...] = (),
                 preload: tuple[str, ...] = DEFAULT_PRELOAD) -> None:
        self.limits = limits or Limits()
        level_rank(min_isolation)
        if isolation != "best":
            level_rank(isolation)
        self.min_isolation, self.isolation = min_isolation, isolation
        self._config = {"judge_pid": os.getpid(), "allow_packages": list(allow_packages),
                        "preload": list(preload), "selftest_limits": _rcfg(Limits(timeout_s=5)),
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
        info = self._server.info
        return IsolationReport(level=info["level"], features={**info["features"], "proc": info["has_proc"]},
                               missing=dict(info.get("missing", {})))

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
        out_r = -1
        try:
            fds = server.start(timeout=self.limits.wall_s)
            if fds is None:
                tally.stop = _Stop("server", server.error)
            else:
                judge_end, out_r = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fds[0]), fds[1]
                chan = _Channel(judge_end, out_r, server, t0 + self.limits.wall_s, self.limits)
                try:
                    self._converse(problem, code, chan, tally)
                except _Stop as stop:
                    tally.stop = stop
                except Exception as e:  # MemoryError on a reply, or a bug: this row's error
                    log.warning("sandbox: judge-side failure on a reply: %r", e)
                    tally.stop = _Stop("judge", f"judge-side failure on a reply: {type(e).__name__}")
                # After "bye" the candidate leaves by itself; anything else is killed now.
                exited = server.finish(kill=tally.stop is not None)
        except ServerDied as e:
            log.warning("sandbox: fork server failed during a run: %s", e)
            tally.stop = _Stop("server", str(e))
            server.close()
        finally:
            if judge_end is not None:
                judge_end.close()
            if out_r >= 0:
                os.close(out_r)
        return self._verdict(tally, exited, t0)

    def _converse(self, problem: Problem, code: str, chan: _Channel, tally: _Tally) -> None:
        # Tests are pipelined: the code, every call and the "bye" go out at once, and the
        # candidate answers them in order (the inputs are no secret; the expected values stay).
        # A check program's literal calls go out the same way (see _CandidateProxy).
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
            name, msg = _field(first[1], 80), _field(first[2], 300)
            tally.fail("memory" if name == "MemoryError" else "error", f"{name}: {msg}")
        elif first[0] == "exc" and len(first) == 4 and first[1] == -1:
            tally.fail("memory", "MemoryError while loading")
        elif first[0] == "setup_error" and len(first) == 2:
            log.error("sandbox: candidate set-up failed: %s", _field(first[1], 200))
            tally.fail("error", f"sandbox set-up failed: {_field(first[1], 200)}")
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

    def _run_tests(self, problem: Problem, calls: list[Any], chan: _Channel, tally: _Tally) -> None:
        for i, tc in enumerate(problem.tests):
            if calls[i] is None:
                continue
            started = time.thread_time()
            reply = chan.recv()
            self._judge_reply(problem, tc.expected, reply, i, chan, tally)
            chan.charge(started, f"test {i + 1}: ")

    def _judge_reply(self, problem: Problem, expected: Any, reply: list[Any], i: int, chan: _Channel,
                     tally: _Tally) -> None:
        """Decide test i from the candidate's reply to it (decode and compare within the limits)."""
        kind, where = reply[0], f"test {i + 1}: "
        if kind == "ret" and len(reply) == 3 and reply[1] == i:
            try:
                value = chan.decode(reply[2], where)
                same = values_equal(expected, value, problem.compare)
            except wire.TooLarge as e:  # compare.py met values that hash alike
                raise _Stop("too_large", f"{where}{TOO_LARGE}: {e}") from None
            except wire.WireError as e:
                tally.fail("rejected", f"{where}returned {e}")
                return
            if same:
                tally.passed += 1
            else:
                tally.fail("failed", f"{where}wrong answer (got {render(value)})")
        elif kind == "exc" and len(reply) == 4 and reply[1] in (i, -1):
            name, msg = _field(reply[2], 80), _field(reply[3], 300)
            tally.fail("memory" if name == "MemoryError" else "error", f"{where}{name}: {msg}")
        elif kind == "bad" and len(reply) == 3 and reply[1] == i:
            tally.fail("rejected", f"{where}returned {_field(reply[2], 200)}")
        else:
            tally.fail("rejected", f"{where}protocol violation")
            raise _Stop("rejected", "protocol violation")

    def _run_check(self, problem: Problem, chan: _Channel, tally: _Tally, prefetched: list[tuple[bytes, Any]]) -> None:
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
        proxy = _CandidateProxy(chan, tally, problem.entry_point, prefetched)
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
                tally.fail("failed", f"check failed: assertion{_check_line(e)}")
            else:
                tally.fail("failed", f"check failed: {type(e).__name__}{_check_line(e)}")
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
            self._checks[key] = (prompt_code, check_code, _literal_calls(problem.check or "", problem.entry_point))
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

    def _stop_status(self, tally: _Tally, stop: _Stop, exited: tuple[int, float, int] | None) -> tuple[str, str]:
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
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
        log.warning("sandbox: below the landlock level; this process is now non-dumpable")


def judge_one(problem: Problem, code: str, limits: Limits | None = None, **judge_kwargs: Any) -> Verdict:
    """One verdict with a throw-away Judge (starts a fork server: use a Judge for many)."""
    with Judge(limits, **judge_kwargs) as j:
        return j.judge(problem, code)


@functools.lru_cache(maxsize=1)
def detect_isolation() -> IsolationReport:
    """What this machine allows, found by starting a fork server at the best level (cached)."""
    server = ForkServer("best", {"judge_pid": os.getpid(), "allow_packages": [], "preload": [],
                                 "selftest_limits": _rcfg(Limits())})
    try:
        info = server.info
        return IsolationReport(level=info["level"], features={**info["features"], "proc": info["has_proc"]},
                               missing=dict(info.get("missing", {})))
    finally:
        server.close()
