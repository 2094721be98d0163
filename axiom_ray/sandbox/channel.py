"""The judge's byte channel to one candidate: frames on its socket, its output drained and
counted, the fork server's "exited" noticed, all against one wall-clock deadline.

Every way a run ends early is a `Stop`, raised here or by the code reading the replies.
"""

from __future__ import annotations

import math
import os
import select
import socket
import time
from typing import Any

from axiom_ray.sandbox import wire
from axiom_ray.sandbox.core import Limits
from axiom_ray.sandbox.cpu_wait import CandidateClock
from axiom_ray.sandbox.server import ForkServer, ServerDied

TOO_LARGE = "reply too large/slow"


class Stop(BaseException):
    """The run ends early (timeout, the candidate died, a flood, a protocol violation).

    A BaseException, so that a check program's `except Exception:` cannot swallow it.
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind, detail)
        self.kind, self.detail = kind, detail


class Channel:
    """Judge-side I/O with one candidate: frames on its socket, its stdout/stderr drained and
    counted, the server's "exited" noticed, all against one wall-clock deadline."""

    def __init__(self, sock: socket.socket, out_fd: int, server: ForkServer, deadline: float,
                 limits: Limits, clock: CandidateClock | None = None) -> None:
        self.sock, self.out_fd, self.server = sock, out_fd, server
        self.deadline, self.limits = deadline, limits
        # An idle-priority candidate waits while the generators use the CPUs: the wall-clock
        # backstop, meant for one that sleeps or blocks, does not count that wait (`clock`), up
        # to Limits.starved_wall_s (a starved candidate still ends).
        self.clock = clock
        self.first_deadline = deadline
        self.last_deadline = deadline - limits.wall_s + limits.starved_wall_s
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
                # Replies buffered in time are still judged after the candidate's deadline, but
                # not for longer than the candidate itself may run: a flood stops there.
                if time.monotonic() > self.deadline + self.limits.wall_s:
                    raise Stop("too_large", f"{TOO_LARGE}: judging the replies ran past twice the wall-clock limit")
                return msg
            if self.eof:
                raise Stop("exit")
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
            raise Stop("too_large", f"{TOO_LARGE}: {e}") from None
        except wire.WireError as e:
            raise Stop("rejected", str(e)) from None

    def _refuse_oversized_head(self, n: int) -> bool:
        """Stop when the first buffered frame, of `n` bytes, is over the reply limit; True when
        that cannot be told yet (only its header has arrived)."""
        if n <= self.limits.max_result_bytes + 4096:
            return False
        if len(self.rbuf) == wire.HEADER_SIZE:
            return True  # is it a message at all? its first byte says
        if self.rbuf[wire.HEADER_SIZE] != ord("["):  # every message is a JSON array
            raise Stop("rejected", "malformed frame")
        raise Stop("too_large", f"{TOO_LARGE}: {n} bytes, over the limit of {self.limits.max_result_bytes}")

    def decode(self, tree: Any, where: str, for_check: bool = False) -> Any:
        """A reply's value (wire.from_tree within this run's limits); Stop beyond them, WireError
        for a malformed one. A value `for_check` code is guarded all through (it may make a set
        of any part of it)."""
        try:
            value = wire.from_tree(tree, self.limits.max_result_values)
            if for_check:
                wire.check_alike_inside(value)
            return value
        except wire.TooLarge as e:
            raise Stop("too_large", f"{where}{TOO_LARGE}: {e}") from None

    def charge(self, started: float, where: str) -> None:
        """Stop when the judge's CPU on one reply since `started` (time.thread_time: other Judges
        may share this process) went past the limit. The structural bounds keep it far below;
        this is the backstop that names it."""
        spent = time.thread_time() - started
        if spent > self.limits.max_judge_cpu_s:
            raise Stop("too_large", f"{where}{TOO_LARGE}: judging it took {spent:.1f}s of CPU "
                                     f"(limit {self.limits.max_judge_cpu_s:g}s)")

    def _time_left(self) -> float:
        """Seconds to the wall-clock deadline, which first moves back by the time the candidate
        has waited for a CPU (an idle-priority candidate on a busy machine); Stop("timeout") once
        it has passed."""
        left = self.deadline - time.monotonic()
        if left <= 0 and self.clock is not None and self.deadline < self.last_deadline:
            self.deadline = min(self.first_deadline + self.clock.waited(), self.last_deadline)
            left = self.deadline - time.monotonic()
        if left <= 0:
            raise Stop("timeout")
        return left

    def _wait(self, write: bool) -> None:
        left = self._time_left()
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
                    raise Stop("server", str(e)) from None
                if self.server.error:
                    raise Stop("server", self.server.error)
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
                raise Stop("rejected", "the candidate sent far more than it was asked for")

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
                raise Stop("output", f"output limit of {self.limits.max_output_bytes} bytes exceeded")
