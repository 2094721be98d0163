"""The judge's handle on one fork server process (see forkserver.py for the other side)."""

from __future__ import annotations

import collections
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from axiom_ray.sandbox import wire
from axiom_ray.sandbox.core import SandboxUnavailable

FORKSERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "forkserver.py")
SERVER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}

# What candidates commonly import, imported once in the server so a verdict costs only a fork.
DEFAULT_PRELOAD = (
    "abc", "array", "bisect", "collections", "collections.abc", "copy", "dataclasses", "datetime",
    "decimal", "enum", "fractions", "functools", "hashlib", "heapq", "itertools", "json", "math",
    "numbers", "operator", "queue", "random", "re", "statistics", "string", "struct", "textwrap",
    "threading", "typing", "unicodedata",
)


class ServerDied(RuntimeError):
    """The fork server went away or stopped answering (the judge restarts it)."""


class ForkServer:
    """Start the server, say hello, and exchange control messages with it."""

    def __init__(self, level: str, config: dict[str, Any], timeout: float = 60.0) -> None:
        parent, child = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable or "python3", "-I", FORKSERVER, str(child.fileno())],
                pass_fds=(child.fileno(),), env=SERVER_ENV, cwd="/", stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, start_new_session=True)
        finally:
            child.close()
        self.sock = parent
        self.buf = b""
        self.inbox: collections.deque[Any] = collections.deque()
        self.exited: tuple[int, float, int] | None = None
        self.done = self.running = self.dead = False
        self.error = ""
        try:
            self.send(["config", {**config, "level": level}])
            msg = self.recv(timeout)
        except ServerDied as e:
            self.close()
            raise SandboxUnavailable(f"the sandbox fork server did not start: {e}") from None
        if msg[0] == "unavailable":
            self.close()
            reasons = "; ".join(f"{lv}: {why}" for lv, why in msg[1].items())
            raise SandboxUnavailable(f"no sandbox isolation level could be set up ({reasons})")
        self.info: dict[str, Any] = msg[1]
        self.level: str = self.info["level"]

    # -- messages --

    def send(self, msg: Any, fds: tuple[int, ...] = ()) -> None:
        data = wire.dumps(msg)
        try:
            if fds:
                sent = socket.send_fds(self.sock, [data], list(fds))
                data = data[sent:]
            if data:
                self.sock.sendall(data)
        except OSError as e:
            self.dead = True
            raise ServerDied(f"sending to the fork server: {e}") from None

    def pump(self) -> None:
        """Read whatever the server has sent, without blocking; ServerDied at EOF."""
        while True:
            try:
                chunk = self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as e:
                self.dead = True
                raise ServerDied(str(e)) from None
            if not chunk:
                self.dead = True
                raise ServerDied("the fork server exited")
            self.buf += chunk
        while len(self.buf) >= wire.HEADER_SIZE:
            n = wire.frame_length(self.buf[: wire.HEADER_SIZE])
            if len(self.buf) < wire.HEADER_SIZE + n:
                break
            msg = wire.loads(self.buf[wire.HEADER_SIZE: wire.HEADER_SIZE + n])
            self.buf = self.buf[wire.HEADER_SIZE + n:]
            if msg[0] == "exited":
                self.exited = (int(msg[1]), float(msg[2]), int(msg[3]))
            elif msg[0] == "done":
                self.done = True
            elif msg[0] == "error" and self.running:
                self.error, self.done = str(msg[1]), True
            else:
                self.inbox.append(msg)

    def recv(self, timeout: float) -> Any:
        """The next message other than a run's own ("exited", "done", "error"), within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            if self.inbox:
                return self.inbox.popleft()
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerDied(f"no answer from the fork server within {timeout:g}s")
            select.select([self.sock], [], [], left)

    # -- one run --

    def start(self, rcfg: dict[str, Any], chan_fd: int, out_fd: int) -> None:
        """Ask for a confined child on these descriptors; no reply is awaited (the judge talks to
        the child at once: its first messages wait in the socket while the server forks)."""
        self.exited, self.done, self.error, self.running = None, False, "", True
        self.send(["run", rcfg], (chan_fd, out_fd))

    def finish(self, kill: bool, grace: float = 2.0, timeout: float = 15.0) -> tuple[int, float, int] | None:
        """Wait until the candidate and everything it started are gone; `kill` (or a candidate
        that does not leave within `grace` seconds of its "bye") makes the server kill them."""
        try:
            if not kill:
                self._wait_done(grace)
            if not self.done:
                self.send(["finish"])
                self._wait_done(timeout)
            if not self.done:
                self.dead = True
                raise ServerDied(f"the fork server did not clean up within {timeout:g}s")
            return self.exited
        finally:
            self.running = False

    def _wait_done(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            left = deadline - time.monotonic()
            if self.done or left <= 0:
                return
            select.select([self.sock], [], [], left)

    # -- lifetime --

    def alive(self) -> bool:
        return not self.dead and self.proc.poll() is None

    def close(self) -> None:
        """EOF on the control socket ends the server (and, in its pid namespace, everything in it);
        a server that does not leave in time is killed with its whole process group."""
        with contextlib.suppress(OSError):
            self.sock.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
