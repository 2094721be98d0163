"""How long a running candidate has waited for a CPU, read by the judge from /proc.

Candidates run in the SCHED_IDLE class (forkserver.confine): they take the CPU the generators
leave idle. On a busy machine one may then wait long for a CPU, and the wall-clock backstop,
meant for a candidate that sleeps or blocks, would time out a correct answer. The channel
(sandbox/channel.py) moves its deadline back by this wait, so the verdict is the one an idle
machine gives. The candidate's pid comes from a pidfd its fork server sends with "go" (the
judge cannot learn it otherwise inside the pid namespaces), resolved through /proc/self/fdinfo.

The wait counts only while the candidate is a lone task: a thread or child of its own that used
CPU could itself have made the wait, and contention a candidate makes must never stretch its own
time. Pure stdlib.
"""

from __future__ import annotations

import os


def host_pid(pidfd: int) -> int | None:
    """The pid, in this process's pid namespace, of the process `pidfd` refers to."""
    try:
        with open(f"/proc/self/fdinfo/{pidfd}") as f:
            for line in f:
                if line.startswith("Pid:"):
                    pid = int(line.split()[1])
                    return pid if pid > 0 else None  # -1: exited; 0: not in our namespace
    except (OSError, ValueError, IndexError):
        pass
    return None


def _stat_fields(path: str) -> list[str]:
    """A /proc stat line's fields after the command name (state first)."""
    with open(path) as f:
        return f.read().rsplit(")", 1)[1].split()


def _children(pid: int) -> list[str]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return f.read().split()


class CandidateClock:
    """The run-queue wait of one running candidate.

    `reaper` is the process that adopts what the candidate leaves behind, where that is not the
    candidate itself (the fork server at the lower levels, a child subreaper): anything but the
    candidate among its children means the candidate has had a process of its own."""

    def __init__(self, pid: int, reaper: int | None) -> None:
        self.pid, self.reaper = pid, reaper

    def waited(self) -> float:
        """Seconds the candidate has been runnable but waiting for a CPU (its schedstat's second
        field) while a lone task; 0 once it has had a thread or a process of its own that used
        CPU, or when /proc cannot tell (it has exited, say)."""
        pid = self.pid
        try:
            with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
                waited_ns = int(f.read().split()[1])
            threads = os.listdir(f"/proc/{pid}/task")
            whole, main = _stat_fields(f"/proc/{pid}/stat"), _stat_fields(f"/proc/{pid}/task/{pid}/stat")
            # utime, stime, cutime, cstime: fields 14-17 of stat, [11:15] after the command
            own_cpu, main_cpu = int(whole[11]) + int(whole[12]), int(main[11]) + int(main[12])
            reaped_cpu = int(whole[13]) + int(whole[14])
            has_children = bool(_children(pid))
            leftovers = self.reaper is not None and set(_children(self.reaper)) - {str(pid)}
        except (OSError, ValueError, IndexError):
            return 0.0
        alone = len(threads) == 1 and own_cpu == main_cpu and not reaped_cpu and not has_children and not leftovers
        return waited_ns / 1e9 if alone else 0.0


def measurable() -> bool:
    """Whether this machine's /proc tells a pidfd's pid, a task's run-queue wait and children."""
    tid = os.getpid()
    try:
        pidfd = os.pidfd_open(tid)
    except (AttributeError, OSError):
        return False
    try:
        return host_pid(pidfd) == tid and os.path.exists(f"/proc/{tid}/task/{tid}/schedstat") \
            and os.path.exists(f"/proc/{tid}/task/{tid}/children")
    finally:
        os.close(pidfd)
