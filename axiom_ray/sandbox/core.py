"""The sandbox's public value types: limits, verdicts, isolation levels and reports."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Isolation levels, weakest first. Each includes everything below it.
#   rlimits     CPU/address-space/process/file/size limits, own process group, the idle CPU
#               class (and the lowest-weight scheduler autogroup), scrubbed environment,
#               a private working directory, root drops to an unprivileged uid of its own, every
#               descendant killed after the verdict (child subreaper sweep).
#   seccomp     + a syscall filter: no socket(), ptrace, process_vm_*, mount, unshare, setns,
#               bpf, io_uring, keyctl, SysV IPC, POSIX message queues, ...; no signals to the
#               judge, the server or other groups. (Root: what the candidate's uid left in /tmp,
#               /var/tmp, /dev/shm and /dev/mqueue is removed after it; at "rlimits" its SysV
#               objects too.)
#   landlock    + the filesystem: read-only stdlib and system libraries, read-write working
#               directory, nothing else (no /proc, no site-packages, no repository, no /tmp);
#               no TCP (Landlock ABI >= 4); signals and abstract sockets scoped (ABI >= 6).
#   namespaces  + fresh user, pid, network, mount, IPC and UTS namespaces: a minimal read-only
#               root, no network interface (not even loopback), a fresh /proc showing only the
#               candidate, an empty tmpfs as /tmp, /dev/shm and working directory, and one pid,
#               mount and IPC namespace per candidate whose end kills every process it started.
LEVELS: tuple[str, ...] = ("rlimits", "seccomp", "landlock", "namespaces")
DEFAULT_MIN_ISOLATION = "landlock"  # the weakest level that keeps the answer key unreadable

STATUSES = ("passed", "failed", "timeout", "memory", "error", "rejected")


def level_rank(level: str) -> int:
    """Position of `level` in LEVELS; ValueError naming the valid ones for anything else."""
    try:
        return LEVELS.index(level)
    except ValueError:
        raise ValueError(f"unknown isolation level {level!r}: expected one of {', '.join(LEVELS)}") from None


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot start at the isolation level required (the message says what is missing)."""


STARVED_WALL_FACTOR = 10


@dataclass(frozen=True)
class Limits:
    """Per-candidate limits. CPU time is the primary clock; the wall clock is a backstop for a
    candidate that sleeps or blocks: wall = timeout_s * wall_factor + wall_extra_s."""

    timeout_s: float = 5.0  # CPU seconds for the whole candidate (rounded up to whole seconds)
    wall_factor: float = 3.0  # generous: on a loaded machine a correct answer gets less CPU per second
    wall_extra_s: float = 2.0
    memory_mb: int = 1024  # address space (RLIMIT_AS) of each process
    max_processes: int = 64  # processes and threads (RLIMIT_NPROC)
    max_open_files: int = 256
    max_file_size_mb: int = 16  # any one file written (RLIMIT_FSIZE)
    max_disk_mb: int = 64  # the whole working directory (a tmpfs at the namespaces level)
    max_output_bytes: int = 64 * 1024 * 1024  # stdout+stderr: read and discarded; beyond, killed
    max_result_bytes: int = 16 * 1024 * 1024  # one encoded return value
    # What the judge spends on one reply, beyond which the row is "error: reply too large/slow"
    # (with max_result_bytes and wire.MAX_DEPTH / wire.MAX_ALIKE: see README, isolation model).
    max_result_values: int = 1_000_000  # JSON values in one reply, counted before parsing it
    max_judge_cpu_s: float = 3.0  # judge CPU to read, decode and compare one reply
    max_code_bytes: int = 1024 * 1024
    recursion_limit: int = 20_000
    stack_mb: int = 64  # main-thread stack, for deep recursion

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Limits.{f.name} must be a positive number, got {value!r}")
        if self.memory_mb < 64:
            raise ValueError("Limits.memory_mb must be >= 64 (the interpreter itself needs ~30 MB)")

    @property
    def wall_s(self) -> float:
        return self.timeout_s * self.wall_factor + self.wall_extra_s

    @property
    def starved_wall_s(self) -> float:
        """The most a verdict may take when candidates run at a low CPU priority on a busy
        machine: the wall-clock backstop does not count a lone candidate's wait for a CPU
        (sandbox/cpu_wait.py), up to this."""
        return self.wall_s * STARVED_WALL_FACTOR

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Verdict:
    """The judge's decision on one candidate. `detail` is short and never shows an expected value."""

    passed: bool
    status: str  # passed | failed | timeout | memory | error | rejected
    passed_tests: int
    total_tests: int
    duration_ms: float
    isolation: str  # the level this verdict was actually produced under
    detail: str = ""

    @property
    def reward(self) -> float:
        return self.passed_tests / self.total_tests if self.total_tests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class IsolationReport:
    """What this machine allows, from a real fork-server start (not a guess from sysctls)."""

    level: str  # the best level that works here
    features: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # level -> why it is unavailable

    def describe(self) -> str:
        lines = [f"isolation: {self.level}"]
        lines += [f"  {lv} unavailable: {why}" for lv, why in self.missing.items()]
        lines += [f"  {k}: {v}" for k, v in sorted(self.features.items())]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
