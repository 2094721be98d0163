"""The check-program side of judging (HumanEval style): `check(candidate)` runs in the judge's
process with `candidate` a proxy whose every call crosses into the candidate's process.

The check's certain, literal calls are found in its source (literal_calls) and sent ahead with
the code; a candidate's exception is rebuilt judge-side as the same builtin type.
"""

from __future__ import annotations

import ast
import builtins
import collections
import time
import traceback
from collections.abc import Callable
from typing import Any

from axiom_ray.sandbox import wire
from axiom_ray.sandbox.channel import Channel, Stop
from axiom_ray.sandbox.render import message_text

MAX_PREFETCH = 1000  # literal calls of a check program sent with the code


class CandidateError(Exception):
    """An exception the candidate raised, re-raised judge-side inside a check program."""


class CandidateProxy:
    """`candidate` inside a check program: each call crosses into the candidate's process.

    The calls the check's source makes with literal arguments, up to the first that has other
    arguments, went out with the code (`prefetched`, in source order): a check that runs them in
    that order finds each answer waiting instead of paying a round trip per assert. The first
    call that is not the next prefetched one goes out by itself, and from then on the answers to
    the remaining prefetched calls are dropped unread."""

    def __init__(self, chan: Channel, fail: Callable[[str, str], None], name: str,
                 prefetched: list[tuple[bytes, Any]]) -> None:
        self._chan, self._fail, self.__name__ = chan, fail, name  # fail(status, detail): the run's tally
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
                self._fail("rejected", f"{where}returned {e}")
                raise Stop("rejected", str(e)) from None
            self._chan.charge(started, where)
            return value
        if reply[0] == "exc" and len(reply) == 4 and reply[1] in (seq, -1):
            self.last_exc = rebuild_exception(message_text(reply[2], 80), message_text(reply[3], 300))
            raise self.last_exc
        if reply[0] == "bad" and len(reply) == 3 and reply[1] == seq:
            self._fail("rejected", f"{where}returned {message_text(reply[2], 200)}")
            raise Stop("rejected", message_text(reply[2], 200))
        self._fail("rejected", "protocol violation")
        raise Stop("rejected", "protocol violation")


def literal_calls(check: str, entry_point: str) -> list[tuple[bytes, Any]]:
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
        if len(out) >= MAX_PREFETCH:
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


def rebuild_exception(name: str, message: str) -> BaseException:
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


def check_line(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<check>"]
    return f" (check line {frames[-1].lineno})" if frames else ""
