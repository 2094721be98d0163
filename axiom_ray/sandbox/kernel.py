"""Thin ctypes wrappers for the Linux isolation primitives the fork server uses.

Pure stdlib (the fork server loads this file by path): namespaces (unshare, setns, mount,
pivot_root), capabilities, prctl, a seccomp-BPF deny-list assembled by hand (no libseccomp), and
Landlock. Python 3.11 has no os.unshare/os.setns, hence ctypes. Every wrapper raises OSError with
the syscall's name, so a failed set-up says exactly what the kernel refused.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
from typing import Any

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# Namespace flags clone() can carry (CLONE_NEWTIME shares bits with the exit signal, so clone()
# cannot ask for it; unshare, which could, is denied outright).
CLONE_NS_ALL = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

ARCH = os.uname().machine  # (what platform.machine() says, without importing platform)
# Syscall numbers that differ by architecture; x86_64 from arch/x86/entry/syscalls/syscall_64.tbl,
# aarch64 from include/uapi/asm-generic/unistd.h (aarch64 is not exercised by this project's CI).
_NR = {
    "x86_64": dict(
        socket=41, connect=42, ptrace=101, syslog=103, personality=135, uselib=134, vhangup=153,
        modify_ldt=154, pivot_root=155, adjtimex=159, chroot=161, acct=163, settimeofday=164,
        mount=165, umount2=166, swapon=167, swapoff=168, reboot=169, sethostname=170,
        setdomainname=171, iopl=172, ioperm=173, init_module=175, delete_module=176, quotactl=179,
        lookup_dcookie=212, clock_settime=227, kexec_load=246, add_key=248, request_key=249,
        keyctl=250, unshare=272, perf_event_open=298, fanotify_init=300, name_to_handle_at=303,
        open_by_handle_at=304, clock_adjtime=305, setns=308, process_vm_readv=310,
        process_vm_writev=311, kcmp=312, finit_module=313, kexec_file_load=320, bpf=321,
        userfaultfd=323, clone=56, kill=62, tkill=200, tgkill=234, rt_sigqueueinfo=129,
        rt_tgsigqueueinfo=297, ioctl=16, capset=126,
        shmget=29, shmat=30, shmctl=31, semget=64, semop=65, semctl=66, shmdt=67, msgget=68,
        msgsnd=69, msgrcv=70, msgctl=71, semtimedop=220, mq_open=240, mq_unlink=241,
        mq_timedsend=242, mq_timedreceive=243, mq_notify=244, mq_getsetattr=245,
    ),
    "aarch64": dict(
        socket=198, connect=203, ptrace=117, syslog=116, personality=92, vhangup=58, pivot_root=41,
        adjtimex=171, chroot=51, acct=89, settimeofday=170, mount=40, umount2=39, swapon=224,
        swapoff=225, reboot=142, sethostname=161, setdomainname=162, init_module=105,
        delete_module=106, quotactl=60, lookup_dcookie=18, clock_settime=112, kexec_load=104,
        add_key=217, request_key=218, keyctl=219, unshare=97, perf_event_open=241,
        fanotify_init=262, name_to_handle_at=264, open_by_handle_at=265, clock_adjtime=266,
        setns=268, process_vm_readv=270, process_vm_writev=271, kcmp=272, finit_module=273,
        kexec_file_load=294, bpf=280, userfaultfd=282, clone=220, kill=129, tkill=130, tgkill=131,
        rt_sigqueueinfo=138, rt_tgsigqueueinfo=240, ioctl=29, capset=91,
        mq_open=180, mq_unlink=181, mq_timedsend=182, mq_timedreceive=183, mq_notify=184,
        mq_getsetattr=185, msgget=186, msgctl=187, msgrcv=188, msgsnd=189, semget=190, semctl=191,
        semtimedop=192, semop=193, shmget=194, shmctl=195, shmat=196, shmdt=197,
    ),
}
# The same number on every architecture (added after the tables were unified).
_NR_COMMON = dict(
    pidfd_send_signal=424, io_uring_setup=425, io_uring_enter=426, io_uring_register=427,
    open_tree=428, move_mount=429, fsopen=430, fsconfig=431, fsmount=432, fspick=433,
    pidfd_open=434, clone3=435, pidfd_getfd=438, mount_setattr=442, quotactl_fd=443,
    landlock_create_ruleset=444, landlock_add_rule=445, landlock_restrict_self=446,
)
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
SYSCALL_PIVOT_ROOT = _NR.get(ARCH, {}).get("pivot_root", -1)


def _err(what: str) -> OSError:
    e = ctypes.get_errno()
    return OSError(e, f"{what}: {os.strerror(e)}")


def _syscall(nr: int, *args: Any) -> int:
    cargs = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    return int(_libc.syscall(ctypes.c_long(nr), *cargs))


def unshare(flags: int) -> None:
    if _libc.unshare(ctypes.c_int(flags)) != 0:
        raise _err("unshare")


def setns(fd: int, nstype: int) -> None:
    if _libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)) != 0:
        raise _err("setns")


class Prepared:
    """A libc call whose arguments ctypes converted once, in the fork server: a fork child then
    makes it touching a handful of objects rather than ctypes' conversion machinery (every page
    it touches is a copy-on-write fault)."""

    def __init__(self, what: str, name: str, *args: Any) -> None:
        self.what, self.fn, self.args = what, getattr(_libc, name), args

    def __call__(self) -> None:
        if self.fn(*self.args) != 0:
            raise _err(self.what)


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def prepared_mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> Prepared:
    return Prepared(f"mount {target}", "mount", _b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    prepared_mount(source, target, fstype, flags, data)()


def umount2(target: str, flags: int) -> None:
    if _libc.umount2(os.fsencode(target), ctypes.c_int(flags)) != 0:
        raise _err(f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    if _syscall(SYSCALL_PIVOT_ROOT, os.fsencode(new_root), os.fsencode(put_old)) != 0:
        raise _err("pivot_root")


# fork(2) through glibc with the GIL held (PyDLL): the child starts without running CPython's
# after-fork work (threading's and random's Python hooks, lock re-initialisation), which in a warm
# server costs more than the fork itself (~150 copy-on-write faults, ~0.5 ms). Only for a
# single-threaded caller, where that work has nothing to repair; see bare_fork's callers.
_pylibc = ctypes.PyDLL(None, use_errno=True)
_pylibc.fork.restype = ctypes.c_int
_pylibc.fork.argtypes = ()


def bare_fork() -> int:
    """fork() without CPython's at-fork hooks: 0 in the child, the child's pid in the parent."""
    pid = int(_pylibc.fork())
    if pid < 0:
        raise _err("fork")
    return pid


def malloc_trim() -> None:
    """Return the free memory of the C heap to the kernel (glibc; a no-op elsewhere)."""
    with contextlib.suppress(AttributeError):
        _libc.malloc_trim(0)


_IPC_RMID = 0


def ipc_remove(kind: str, ident: int) -> None:
    """Remove one SysV IPC object ("shm", "msg" or "sem", by id), as its owner or with
    CAP_IPC_OWNER; a shared memory segment goes once the last process detaches it."""
    if kind == "shm":
        ret = _libc.shmctl(ctypes.c_int(ident), ctypes.c_int(_IPC_RMID), None)
    elif kind == "msg":
        ret = _libc.msgctl(ctypes.c_int(ident), ctypes.c_int(_IPC_RMID), None)
    else:
        ret = _libc.semctl(ctypes.c_int(ident), ctypes.c_int(0), ctypes.c_int(_IPC_RMID))
    if ret != 0:
        raise _err(f"{kind}ctl IPC_RMID")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    ret = _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                      ctypes.c_ulong(arg4), ctypes.c_ulong(arg5))
    if ret == -1:
        raise _err(f"prctl({option})")
    return int(ret)


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40  # CAP_CHECKPOINT_RESTORE: the last one as of Linux 6.x


def drop_bounding_set() -> None:
    """Empty the bounding set (needs CAP_SETPCAP): no later exec can gain a capability back."""
    for cap in range(last_cap() + 1):
        with contextlib.suppress(OSError):  # a capability this kernel does not know
            prctl(PR_CAPBSET_DROP, cap)


def lock_securebits() -> None:
    """Make uid 0 an ordinary uid for good (NOROOT, NO_SETUID_FIXUP, NO_CAP_AMBIENT_RAISE, locked):
    inside a user namespace the candidate is uid 0, and an exec must not make it root again."""
    prctl(PR_SET_SECUREBITS, 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80)


_CAP_HEADER = ctypes.create_string_buffer(struct.pack("=Ii", 0x20080522, 0), 8)  # version 3, self
_CAP_DATA = ctypes.create_string_buffer(24)  # two zeroed __user_cap_data_struct


_AMBIENT_CLEAR = (ctypes.c_int(PR_CAP_AMBIENT), ctypes.c_ulong(PR_CAP_AMBIENT_CLEAR_ALL), ctypes.c_ulong(0),
                  ctypes.c_ulong(0), ctypes.c_ulong(0))
_CAPSET = ctypes.c_long(_NR.get(ARCH, {}).get("capset", -1))


def clear_capabilities() -> None:
    """Empty the ambient, inheritable, permitted and effective sets of this process. (The
    arguments are built at import, in the server: a fork child touches as little as it can.)"""
    _libc.prctl(*_AMBIENT_CLEAR)  # fails, harmlessly, only before Linux 4.3 (no ambient set)
    if _libc.syscall(_CAPSET, _CAP_HEADER, _CAP_DATA) != 0:
        raise _err("capset")


# --- seccomp -----------------------------------------------------------------------------------

_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_SECCOMP_RET_KILL_PROCESS = 0x80000000
_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06


class _Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Filter))]


# Denied outright (EPERM): escaping namespaces, reading other processes, kernel state, io_uring
# (its operations bypass seccomp), the new mount API, stealing file descriptors, and SysV IPC and
# POSIX message queues: kernel objects that outlive the process, could carry data from one
# candidate to the next, and pin memory no rlimit counts (POSIX shared memory and semaphores are
# files under /dev/shm: the working directory's tmpfs at the namespaces level).
DENIED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "mount", "umount2", "pivot_root",
    "chroot", "unshare", "setns", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key",
    "request_key", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
    "open_by_handle_at", "name_to_handle_at", "iopl", "ioperm", "modify_ldt", "uselib",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "lookup_dcookie", "sethostname",
    "setdomainname", "settimeofday", "clock_settime", "adjtimex", "clock_adjtime", "syslog",
    "vhangup", "pidfd_getfd", "pidfd_open", "pidfd_send_signal", "fanotify_init", "open_tree",
    "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "personality",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    "shmget", "shmat", "shmctl", "shmdt", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop",
    "semctl", "semtimedop", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify",
    "mq_getsetattr",
)
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C


def _nr(name: str) -> int | None:
    return _NR.get(ARCH, {}).get(name, _NR_COMMON.get(name))


class _Asm:
    """A tiny BPF assembler: jumps to labels, resolved to the 8-bit relative offsets BPF wants."""

    def __init__(self) -> None:
        self.ins: list[tuple[int, str | int, str | int, int]] = []
        self.labels: dict[str, int] = {}

    def op(self, code: int, k: int = 0, jt: str | int = 0, jf: str | int = 0) -> None:
        self.ins.append((code, jt, jf, k & 0xFFFFFFFF))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.ins)

    def build(self) -> ctypes.Array[_Filter]:
        out = (_Filter * len(self.ins))()
        for i, (code, jt, jf, k) in enumerate(self.ins):
            def rel(j: str | int, i: int = i) -> int:
                off = j if isinstance(j, int) else self.labels[j] - i - 1
                if not 0 <= off <= 255:
                    raise ValueError("BPF jump out of range")
                return off

            out[i] = _Filter(code, rel(jt), rel(jf), k)
        return out


def seccomp_program(protected_pids: tuple[int, ...], confine_signals: bool) -> tuple[ctypes.Array[_Filter], int]:
    """The deny-list filter: EPERM for DENIED_SYSCALLS, EACCES for socket() (socketpair stays:
    asyncio needs it), ENOSYS for clone3 (glibc then falls back to clone, whose flags we can see),
    EPERM for clone with namespace flags, TIOCSTI/TIOCLINUX ioctls, and, when `confine_signals`,
    signals to -1, to protected pids (the judge, the fork server) and to foreign process groups.
    Anything else is allowed: a deny-list, because CPython needs a long tail of syscalls.

    Returns the program and the index of the instruction that names the candidate's own process
    group (-1 without `confine_signals`): the fork server builds the program once and each child
    patches in its own pgid (set_own_pgid), which keeps BPF assembly off the per-fork path.
    """
    if ARCH not in _NR:
        raise OSError(f"seccomp: no syscall table for {ARCH}")
    special = {nr: "eperm" for nr in map(_nr, DENIED_SYSCALLS) if nr is not None}
    special.update({_nr("socket"): "eacces", _nr("clone3"): "enosys", _nr("clone"): "clone", _nr("ioctl"): "ioctl"})
    if confine_signals:
        special.update({_nr(name): "signal" for name in ("kill", "tkill", "tgkill")})
    a = _Asm()
    pgid_index = -1
    a.op(_LD_W_ABS, 4)  # seccomp_data.arch
    a.op(_JEQ, _AUDIT_ARCH[ARCH], jt=0, jf="kill")
    a.op(_LD_W_ABS, 0)  # seccomp_data.nr
    if ARCH == "x86_64":
        a.op(_JGE, 0x40000000, jt="eperm", jf=0)  # the x32 ABI: a second syscall table to bypass us
    # A binary search over the syscall numbers, not a list to walk: the kernel runs the filter
    # for each of ~450 syscalls when it is installed (to cache the always-allowed ones), once
    # per candidate, and a walk of 70 comparisons made that the dearest step of a fork.
    _search(a, sorted(special.items()), "top")  # type: ignore[arg-type]

    a.label("clone")
    a.op(_LD_W_ABS, 16)  # args[0] (flags), low 32 bits
    a.op(_JSET, CLONE_NS_ALL, jt="eperm", jf=0)
    a.op(_RET, _SECCOMP_RET_ALLOW)

    a.label("ioctl")
    a.op(_LD_W_ABS, 24)  # args[1] (request), low 32 bits
    a.op(_JEQ, _TIOCSTI, jt="eperm", jf=0)
    a.op(_JEQ, _TIOCLINUX, jt="eperm", jf=0)
    a.op(_RET, _SECCOMP_RET_ALLOW)

    if confine_signals:
        a.label("signal")
        a.op(_LD_W_ABS, 16)  # args[0]: the target pid (pid_t: the kernel reads the low 32 bits)
        a.op(_JEQ, 0, jt="allow", jf=0)  # our own process group
        pgid_index = len(a.ins)
        a.op(_JEQ, 0, jt="allow", jf=0)  # -own pgid, patched in by set_own_pgid
        a.op(_JSET, 0x80000000, jt="eperm", jf=0)  # -1 and every other process group
        for pid in protected_pids:
            a.op(_JEQ, pid, jt="eperm", jf=0)
        a.label("allow")
        a.op(_RET, _SECCOMP_RET_ALLOW)

    a.label("eperm")
    a.op(_RET, _SECCOMP_RET_ERRNO | 1)
    a.label("eacces")
    a.op(_RET, _SECCOMP_RET_ERRNO | 13)
    a.label("enosys")
    a.op(_RET, _SECCOMP_RET_ERRNO | 38)
    a.label("kill")
    a.op(_RET, _SECCOMP_RET_KILL_PROCESS)
    return a.build(), pgid_index


def _search(a: _Asm, entries: list[tuple[int, str]], name: str) -> None:
    """Jump to each syscall number's label, or allow it; `entries` sorted by number."""
    if len(entries) <= 4:
        for nr, label in entries:
            a.op(_JEQ, nr, jt=label, jf=0)
        a.op(_RET, _SECCOMP_RET_ALLOW)
        return
    mid = len(entries) // 2
    a.op(_JGE, entries[mid][0], jt=f"{name}R", jf=0)
    _search(a, entries[:mid], f"{name}L")
    a.label(f"{name}R")
    _search(a, entries[mid:], f"{name}R")


def set_own_pgid(program: ctypes.Array[_Filter], index: int, pgid: int) -> None:
    if index >= 0:
        program[index].k = (-pgid) & 0xFFFFFFFF


def seccomp_installer(program: ctypes.Array[_Filter]) -> Prepared:
    """The call that installs `program` on the calling (single-threaded) process; it needs
    no_new_privs or CAP_SYS_ADMIN. The program's memory is used as it is then (set_own_pgid)."""
    prog = _Fprog(len(program), ctypes.cast(program, ctypes.POINTER(_Filter)))
    return Prepared("seccomp", "prctl", ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(2), ctypes.byref(prog),
                    ctypes.c_ulong(0), ctypes.c_ulong(0))


# --- Landlock ----------------------------------------------------------------------------------

LL_EXECUTE, LL_WRITE_FILE, LL_READ_FILE, LL_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
LL_FILE_RIGHTS_RO = LL_EXECUTE | LL_READ_FILE
_LL_TRUNCATE, _LL_IOCTL_DEV = 1 << 14, 1 << 15


def landlock_abi() -> int:
    """The Landlock ABI version (0: unavailable: an old kernel, or the LSM not enabled)."""
    ret = _syscall(_NR_COMMON["landlock_create_ruleset"], None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    return max(0, ret)


def _ll_fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1  # EXECUTE .. MAKE_SYM (ABI 1)
    if abi >= 2:
        rights |= 1 << 13  # REFER
    if abi >= 3:
        rights |= _LL_TRUNCATE
    if abi >= 5:
        rights |= _LL_IOCTL_DEV
    return rights


def landlock_ruleset(read_paths: list[str], write_paths: list[str], abi: int) -> int:
    """A ruleset fd: read-only beneath `read_paths`, everything beneath `write_paths`, no TCP
    (ABI 4) and no signals or abstract sockets beyond the sandbox (ABI 6). Built once in the fork
    server; each candidate only calls restrict_self, which is cheap."""
    fs = _ll_fs_rights(abi)
    net = 0b11 if abi >= 4 else 0  # BIND_TCP | CONNECT_TCP, with no rule allowing any port
    scoped = 0b11 if abi >= 6 else 0  # ABSTRACT_UNIX_SOCKET | SIGNAL
    attr = struct.pack("=QQQ", fs, net, scoped)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    fd = _syscall(_NR_COMMON["landlock_create_ruleset"], attr[:size], size, 0)
    if fd < 0:
        raise _err("landlock_create_ruleset")
    file_only = LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | (_LL_TRUNCATE if abi >= 3 else 0)
    for paths, access in ((read_paths, LL_FILE_RIGHTS_RO | LL_READ_DIR), (write_paths, fs)):
        for path in paths:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a path this system lacks
            try:
                allowed = access if os.path.isdir(path) else access & file_only
                rule = struct.pack("=Qi", allowed, pfd)
                if _syscall(_NR_COMMON["landlock_add_rule"], fd, 1, rule, 0) != 0:
                    raise _err(f"landlock_add_rule {path}")
            finally:
                os.close(pfd)
    return fd


def landlock_restrict(ruleset_fd: int) -> None:
    if _syscall(_NR_COMMON["landlock_restrict_self"], ruleset_fd, 0) != 0:
        raise _err("landlock_restrict_self")
