"""The strict wire format between the judge and a candidate: plain data only, never pickle.

Both sides load this module (the fork server loads it by path, so it imports nothing from the
package). A value travels as JSON where every container is a tagged array:

    None/bool/str  -> JSON null/true/false/string      int   -> JSON int, or ["I", hex] when huge
    float          -> JSON number (always with . or e) bytes -> ["b", base64]
    list/tuple     -> ["l", ...] / ["t", ...]           set/frozenset -> ["s", ...] / ["f", ...]
    dict           -> ["d", k1, v1, k2, v2, ...]

`encode` accepts exact builtin types only (`type(x) is int`, not isinstance): a subclass of int
with a custom `__eq__` is not an int. `decode` is what the judge trusts: whatever bytes arrive, it
builds nothing but plain builtins, and spends bounded time and memory doing it (TooLarge beyond):
a frame's JSON values are counted before json parses it, nesting is capped, the decoder never
recurses, and no set or dict is built from values of which too many hash alike (inserting n
values that share a hash costs n^2 comparisons; hashes of ints, floats and tuples are
predictable, so a candidate can craft them). A frame is a 4-byte big-endian length and one JSON
document.
"""

from __future__ import annotations

import base64
import json
import operator
import re
import socket
import struct
from collections import Counter
from collections.abc import Sequence
from itertools import compress
from typing import Any

MAX_DEPTH = 400  # nesting of a decoded value; deeper answers are rejected, never recursed into
MAX_VALUES = 1_000_000  # JSON values in one frame (the judge passes Limits.max_result_values)
MAX_ALIKE = 16  # distinct values sharing one hash in one container (legitimate data: 1 or 2)
_SMALL_INT = 1 << 62  # beyond this, ints travel as hex so int() never meets a 4300-digit limit
_HEADER = struct.Struct(">I")
_SCALARS = frozenset({type(None), bool, str, int, float})
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # unrolled: linear, no backtracking


class WireError(ValueError):
    """A value is not plain data, or a frame is malformed or too large."""


class TooLarge(WireError):
    """Well-formed, but beyond what the judge spends on one reply (size, nesting, count, hashes)."""


def _enc(x: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return x if -_SMALL_INT < x < _SMALL_INT else ["I", format(x, "x")]
    if t is float:
        return x
    if t is bytes:
        return ["b", base64.b64encode(x).decode("ascii")]
    if t is list or t is tuple or t is set or t is frozenset:
        tag = {list: "l", tuple: "t", set: "s", frozenset: "f"}[t]
        return [tag, *(_enc(v, depth + 1) for v in x)]
    if t is dict:
        out: list[Any] = ["d"]
        for k, v in x.items():
            out.append(_enc(k, depth + 1))
            out.append(_enc(v, depth + 1))
        return out
    raise WireError(f"not plain data: {t.__module__}.{t.__qualname__}")


def to_tree(value: Any) -> Any:
    """The JSON-ready tagged tree of a plain value; WireError for anything else."""
    try:
        return _enc(value, 0)
    except RecursionError:
        raise WireError("value nested too deeply (or cyclic)") from None


def from_tree(tree: Any, max_values: int = MAX_VALUES) -> Any:
    """Plain builtins from a tagged tree, without recursion: WireError for anything malformed,
    TooLarge for more than MAX_DEPTH levels, more than `max_values` values, or a set, frozenset
    or dict holding more than MAX_ALIKE distinct values that hash alike."""
    left = [max_values]
    root = _open(tree, left)
    if type(root) is not _Frame:
        return root
    stack = [root]
    while True:
        frame = stack[-1]
        items, vals = frame.items, frame.vals
        while frame.pos < len(items):
            child = _open(items[frame.pos], left)
            frame.pos += 1
            if type(child) is _Frame:
                if len(stack) >= MAX_DEPTH:
                    raise TooLarge(f"nested deeper than {MAX_DEPTH} levels")
                stack.append(child)
                break
            vals.append(child)
        else:
            stack.pop()
            value = _build(frame.tag, vals)
            if not stack:
                return value
            stack[-1].vals.append(value)


class _Frame:
    """A container being decoded: its tag, its encoded items, the next one to decode, the decoded."""

    __slots__ = ("tag", "items", "pos", "vals")

    def __init__(self, tag: str, items: list[Any]) -> None:
        self.tag, self.items, self.pos, self.vals = tag, items, 0, []


def _open(node: Any, left: list[int]) -> Any:
    """A scalar or leaf's value, a container of scalars built at once, or a _Frame to descend into."""
    t = type(node)
    if t in _SCALARS:
        return node
    if t is not list or not node or type(node[0]) is not str:
        raise WireError("malformed value")
    tag, items = node[0], node[1:]
    if tag == "I" and len(items) == 1 and type(items[0]) is str:
        try:
            return int(items[0], 16)  # base 16 has no digit limit, and is linear
        except ValueError:
            raise WireError("malformed int") from None
    if tag == "b" and len(items) == 1 and type(items[0]) is str:
        try:
            return base64.b64decode(items[0], validate=True)
        except ValueError:
            raise WireError("malformed bytes") from None
    if tag not in _BUILDERS:
        raise WireError(f"unknown tag {tag[:10]!r}")
    if tag == "d" and len(items) % 2:
        raise WireError("malformed dict")
    left[0] -= len(items)
    if left[0] < 0:
        raise TooLarge("more values than the judge decodes in one reply")
    if list not in map(type, items):  # only scalars (the common case): no frame, no per-item call
        return _build(tag, items)
    return _Frame(tag, items)


def _build(tag: str, vals: list[Any]) -> Any:
    if tag == "l" or tag == "t":
        return vals if tag == "l" else tuple(vals)
    keys = vals if tag != "d" else vals[0::2]
    try:
        check_alike(keys)
        if tag == "d":
            return dict(zip(keys, vals[1::2], strict=True))
        return set(vals) if tag == "s" else frozenset(vals)
    except TypeError:  # an unhashable element or key
        raise WireError("unhashable set element or dict key") from None


_BUILDERS = frozenset({"l", "t", "s", "f", "d"})
_SCALAR_KEYS = frozenset({int, float, str, bytes})
_FLAT_TUPLE = frozenset({type(None), bool, int, float, str, bytes})


def check_alike_inside(value: Any) -> None:
    """check_alike over every scalar, flat tuple and frozenset anywhere inside `value`: what code
    given the value (a check program) may put in a set or dict, such as the first items of a
    list of pairs. (A nested tuple is covered through its flat parts: hashing each tuple of a
    chain would cost depth x size.) Iterative and linear."""
    found: list[Any] = []
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t in _SCALAR_KEYS:
            found.append(v)
        elif t is list or t is set:
            stack.extend(v)
        elif t is tuple or t is frozenset:
            if t is frozenset or set(map(type, v)) <= _FLAT_TUPLE:
                found.append(v)
            stack.extend(v)
        elif t is dict:
            stack.extend(v)
            stack.extend(v.values())
    check_alike(found)


def check_alike(values: Sequence[Any]) -> None:
    """TooLarge when more than MAX_ALIKE distinct `values` share one hash: a set or dict of them
    would cost quadratic time to build. Equal values are fine (a list may repeat one a million
    times), and so are a few distinct ones (2**k and 2**(k+61) hash alike). TypeError for an
    unhashable value. Linear, in C: only hashes shared by more than MAX_ALIKE values are looked
    at, in rounds that each drop every value equal to the first one left with its hash, so what
    is left after k rounds has more than k distinct values for its hash. (Hash values are dict
    keys here: an int's hash is itself modulo 2**61-1, so those collide at most 8 ways.)"""
    if len(values) <= MAX_ALIKE:
        return
    hashes = list(map(hash, values))
    crowded = {h for h, n in Counter(hashes).items() if n > MAX_ALIKE}
    if not crowded:
        return
    keep = list(map(crowded.__contains__, hashes))
    values, hashes = list(compress(values, keep)), list(compress(hashes, keep))
    for _ in range(MAX_ALIKE):
        firsts = list(map(dict(zip(reversed(hashes), reversed(values), strict=True)).__getitem__, hashes))
        keep = list(map(operator.and_, map(operator.is_not, values, firsts), map(operator.ne, values, firsts)))
        if not any(keep):
            return
        values, hashes = list(compress(values, keep)), list(compress(hashes, keep))
    raise TooLarge(f"more than {MAX_ALIKE} distinct values that hash alike")


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # json.dumps would build one per call


def dumps(msg: Any) -> bytes:
    """One message (a JSON array of tags and trees) as a frame."""
    body = _ENCODER.encode(msg).encode("utf-8", "surrogatepass")
    return _HEADER.pack(len(body)) + body


def _separators(body: bytes) -> int:
    return 1 + body.count(b"[") + body.count(b",") + body.count(b":") + body.count(b"{")


def too_many_values(body: bytes, limit: int) -> bool:
    """Whether `body` holds more than `limit` JSON values, decided before json builds one object:
    every value but the first follows a '[', ',' or ':'. Those characters are counted in C; only
    when strings hold enough of them to matter are the strings blanked out and the rest counted
    again (json stops at the first invalid string, before which both agree on where strings are)."""
    if _separators(body) <= limit:
        return False
    return _separators(_JSON_STRING.sub(b"", body)) > limit


def loads(body: bytes, max_values: int | None = None) -> Any:
    """The JSON document of a frame body; WireError when it is not valid JSON of arrays, TooLarge
    when it holds more than `max_values` JSON values (None: no count)."""
    if max_values is not None and too_many_values(body, max_values):
        raise TooLarge(f"more than {max_values} values in one reply")
    try:
        msg = json.loads(body.decode("utf-8", "surrogatepass"))
    except RecursionError:  # json's C parser counts its depth against the recursion limit
        raise TooLarge("nested too deeply") from None
    except ValueError as e:  # UnicodeDecodeError is a ValueError
        raise WireError(f"malformed frame: {type(e).__name__}") from None
    if type(msg) is not list or not msg or type(msg[0]) is not str:
        raise WireError("malformed frame")
    return msg


def frame_length(header: bytes) -> int:
    return int(_HEADER.unpack(header)[0])


HEADER_SIZE = _HEADER.size


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("channel closed")
        buf += chunk
    return bytes(buf)


def recv_msg(sock: socket.socket, max_bytes: int = 1 << 30) -> Any:
    """Blocking receive of one message (the fork server's self-test, as the judge)."""
    n = frame_length(recv_exact(sock, HEADER_SIZE))
    if n > max_bytes:
        raise WireError(f"frame of {n} bytes exceeds {max_bytes}")
    return loads(recv_exact(sock, n))
