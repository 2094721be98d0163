"""The strict wire format between the judge and a candidate: plain data only, never pickle.

Both sides load this module (the fork server loads it by path, so it imports nothing from the
package). A value travels as JSON where every container is a tagged array:

    None/bool/str  -> JSON null/true/false/string      int   -> JSON int, or ["I", hex] when huge
    float          -> JSON number (always with . or e) bytes -> ["b", base64]
    list/tuple     -> ["l", ...] / ["t", ...]           set/frozenset -> ["s", ...] / ["f", ...]
    dict           -> ["d", k1, v1, k2, v2, ...]

`encode` accepts exact builtin types only (`type(x) is int`, not isinstance): a subclass of int
with a custom `__eq__` is not an int. `decode` is what the judge trusts: whatever bytes arrive, it
builds nothing but plain builtins, within depth and size limits. A frame is a 4-byte big-endian
length and one JSON document.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
from typing import Any

MAX_DEPTH = 400  # nesting of a decoded value; deeper answers are rejected, never recursed into
_SMALL_INT = 1 << 62  # beyond this, ints travel as hex so int() never meets a 4300-digit limit
_HEADER = struct.Struct(">I")


class WireError(ValueError):
    """A value is not plain data, or a frame is malformed or too large."""


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


def _dec(node: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    t = type(node)
    if node is None or t is bool or t is str or t is int or t is float:
        return node
    if t is not list or not node or type(node[0]) is not str:
        raise WireError("malformed value")
    tag, items = node[0], node[1:]
    if tag == "I" and len(items) == 1 and type(items[0]) is str:
        try:
            return int(items[0], 16)  # base 16 has no digit limit
        except ValueError:
            raise WireError("malformed int") from None
    if tag == "b" and len(items) == 1 and type(items[0]) is str:
        try:
            return base64.b64decode(items[0], validate=True)
        except ValueError:
            raise WireError("malformed bytes") from None
    if tag in ("l", "t", "s", "f"):
        vals = [_dec(v, depth + 1) for v in items]
        try:
            return {"l": list, "t": tuple, "s": set, "f": frozenset}[tag](vals)
        except TypeError:  # an unhashable element in a set
            raise WireError("unhashable set element") from None
    if tag == "d" and len(items) % 2 == 0:
        out = {}
        for i in range(0, len(items), 2):
            try:
                out[_dec(items[i], depth + 1)] = _dec(items[i + 1], depth + 1)
            except TypeError:
                raise WireError("unhashable dict key") from None
        return out
    raise WireError(f"unknown tag {tag[:10]!r}")


def from_tree(node: Any) -> Any:
    """Plain builtins from a tagged tree; WireError for anything malformed."""
    try:
        return _dec(node, 0)
    except RecursionError:
        raise WireError("value nested too deeply") from None


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # json.dumps would build one per call


def dumps(msg: Any) -> bytes:
    """One message (a JSON array of tags and trees) as a frame."""
    body = _ENCODER.encode(msg).encode("utf-8", "surrogatepass")
    return _HEADER.pack(len(body)) + body


def loads(body: bytes) -> Any:
    """The JSON document of a frame body; WireError when it is not valid JSON of arrays."""
    try:
        msg = json.loads(body.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
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
