"""The judge's handle on one fork server process (see forkserver.py for the other side)."""

from __future__ import annotations

import array
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
# The server's code is loaded by the import system (from its cached bytecode), not run as a
# script: compiling its source would leave ~3 MB of freed but resident heap in the server, whose
# page tables every fork then copies.
_BOOT = ("import importlib.util as u, sys; s = u.spec_from_file_location('axiom_forkserver', sys.argv[1]); "
         "m = u.module_from_spec(s); s.loader.exec_module(m); m.main()")
SERVER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}

# What candidates commonly import, imported once in the server so a verdict costs only a fork.
DEFAULT_PRELOAD = (
    "abc", "array", "bisect", "collections", "collections.abc", "copy", "dataclasses", "datetime",
    "decimal", "enum", "fractions", "functools", "hashlib", "heapq", "itertools", "json", "math",
    "numbers", "operator", "queue", "random", "re", "statistics", "string", "struct", "textwrap",
    "threading", "typing", "unicodedata",
)


def _recv_with_fds(sock: socket.socket) -> tuple[bytes, list[int]]:
    """What the server has sent, without blocking, and the descriptors that came with it (close-on-
    exec at once). socket.recv_fds would do, but before Python 3.12 it ignores its flags."""
    fds = array.array("i")
    data, ancdata, _, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(4 * fds.itemsize),
                                       socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)


class ServerDied(RuntimeError):
    """The fork server went away or stopped answering (the judge restarts it)."""


class ForkServer:
    """Start the server, say hello, and exchange control messages with it."""

    def __init__(self, level: str, config: dict[str, Any], timeout: float = 60.0) -> None:
        parent, child = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable or "python3", "-I", "-c", _BOOT, FORKSERVER, str(child.fileno())],
                pass_fds=(child.fileno(),), env=SERVER_ENV, cwd="/", stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, start_new_session=True)
        finally:
            child.close()
        self.sock = parent
        self.buf = b""
        self.fds: list[int] = []  # descriptors received, not yet claimed by a "go"
        self.go: tuple[int, int, int] | None = None  # channel, output, pidfd (-1: none)
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

    def send(self, msg: Any) -> None:
        try:
            self.sock.sendall(wire.dumps(msg))
        except OSError as e:
            self.dead = True
            raise ServerDied(f"sending to the fork server: {e}") from None

    def pump(self) -> None:
        """Read whatever the server has sent, without blocking; ServerDied at EOF."""
        while True:
            try:
                chunk, fds = _recv_with_fds(self.sock)
            except BlockingIOError:
                break
            except OSError as e:
                self.dead = True
                raise ServerDied(str(e)) from None
            self.fds.extend(fds)
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
            if msg[0] == "go":
                n = 3 if len(msg) > 1 and msg[1] else 2
                if len(self.fds) < n:
                    self.dead = True
                    raise ServerDied("the fork server sent too few descriptors with its go")
                self.go, self.fds = (self.fds[0], self.fds[1], self.fds[2] if n == 3 else -1), self.fds[n:]
            elif msg[0] == "exited":
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

    def start(self, timeout: float) -> tuple[int, int, int] | None:
        """Ask for a confined child: the judge's ends of its channel (a socket) and of its output
        pipe, and a pidfd of it (-1 unless it runs at idle priority), or None when the server
        could not fork one (the reason in `error`)."""
        self.exited, self.done, self.error, self.running = None, False, "", True
        self.send(["run"])
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            if self.go is not None:
                fds, self.go = self.go, None
                return fds
            if self.error:
                self.running = False
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                self.dead = True
                raise ServerDied(f"no child from the fork server within {timeout:g}s")
            select.select([self.sock], [], [], left)

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
        for fd in self.fds + list(self.go or ()):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds, self.go = [], None
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
