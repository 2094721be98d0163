"""A free local TCP port, for the dashboards of the test clusters (8265 is left to scripts/run.sh
and to whichever cluster the session started first)."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
