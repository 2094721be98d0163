"""The hostile suite: one test per attack, at every isolation level this machine offers.

Each test checks the verdict (never a forged pass), that nothing happened on the host (no
process left, no file touched, no connection, no secret leaked), that the verdict came within
the time limit plus a small constant, and that the same Judge then still passes a correct
candidate. Containment a level does not promise (see axiom_ray/sandbox/core.py) is skipped at
that level with the reason, never silently weakened.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid

import pytest

from axiom_ray.problems import Problem, TestCase
from axiom_ray.sandbox import Judge, Limits, Verdict, detect_isolation, level_rank
from axiom_ray.sandbox.server import DEFAULT_PRELOAD

LIMITS = Limits(timeout_s=1, wall_factor=1.5, wall_extra_s=0.5, memory_mb=256, max_processes=32,
                max_output_bytes=8 * 1024 * 1024, max_result_bytes=1024 * 1024, max_disk_mb=32,
                max_result_values=200_000)
SLACK_S = 2.0  # a verdict arrives within the wall limit plus this, whatever the candidate does
LEVELS_HERE = [lv for lv in ("namespaces", "landlock", "seccomp") if level_rank(lv) <= level_rank(detect_isolation().level)]

ADD = Problem(id="add", title="add", difficulty="easy", prompt="def add(a, b):", entry_point="add",
              tests=(TestCase((1, 2), {}, 3), TestCase((20, 22), {}, 42), TestCase((-7, 7), {}, 0)))
ADD_OK = "def add(a, b):\n    return a + b\n"


# Below the namespaces level, root runs candidates under an unprivileged uid that may not read an
# interpreter kept under /root (pyenv): preload what the attacks import so they really run.
PRELOAD = DEFAULT_PRELOAD + ("ctypes", "gc", "glob", "inspect", "subprocess", "unittest", "_socket", "socket", "uuid")


@pytest.fixture(scope="module", params=LEVELS_HERE)
def judge(request):
    with Judge(LIMITS, isolation=request.param, min_isolation="rlimits", preload=PRELOAD) as j:
        yield j


def require(judge: Judge, level: str, what: str) -> None:
    if level_rank(judge.level) < level_rank(level):
        pytest.skip(f"{what} is guaranteed from the {level!r} level up (this Judge: {judge.level!r})")


def tree(root: int) -> set[int]:
    """Every live descendant of `root` (zombies excluded)."""
    parent: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parent[int(name)] = int(fields[1])
    out, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - out
        out |= frontier
    return out


def attack(judge: Judge, code: str, problem: Problem = ADD) -> Verdict:
    """Judge a hostile candidate; check time, leftovers and that the Judge still serves."""
    server_pid = judge._server.proc.pid
    before = tree(server_pid)
    t0 = time.monotonic()
    verdict = judge.judge(problem, textwrap.dedent(code))
    elapsed = time.monotonic() - t0
    assert elapsed < judge.limits.wall_s + SLACK_S, f"verdict took {elapsed:.1f}s"
    assert verdict.isolation == judge.level
    if judge._server.proc.pid == server_pid:  # the same server: its tree is back to what it was,
        after = tree(server_pid)  # but for the next spare child (fresh, childless) it forked
        fresh = after - before
        assert len(fresh) <= 1 and all(not tree(p) for p in fresh), f"processes left behind: {fresh}"
    assert judge.judge(ADD, ADD_OK).passed, "the Judge stopped serving after a hostile candidate"
    return verdict


@pytest.fixture
def shared_dir():
    """A world-readable, world-writable directory outside the sandbox, removed afterwards."""
    d = tempfile.mkdtemp(prefix="axiom-hostile-")
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# --- forging the verdict ---------------------------------------------------------------------------


def test_eq_always_true_object(judge):
    v = attack(judge, """
        class Anything:
            def __eq__(self, other): return True
            def __ne__(self, other): return False
            __hash__ = object.__hash__
        def add(a, b):
            return Anything()
    """)
    assert v.status == "rejected" and v.passed_tests == 0


@pytest.mark.parametrize("base", ["int", "float", "str", "list", "tuple", "dict", "bool_like_int"])
def test_builtin_subclass_with_custom_eq(judge, base):
    cls = "int" if base == "bool_like_int" else base
    v = attack(judge, f"""
        class Liar({cls}):
            def __eq__(self, other): return True
            def __ne__(self, other): return False
            def __hash__(self): return 0
            __class__ = int  # type() is not fooled by this
        def add(a, b):
            return Liar()
    """)
    assert v.status == "rejected" and not v.passed


def test_bool_is_not_an_int(judge):
    one = Problem(id="one", title="one", difficulty="easy", prompt="", entry_point="one", tests=(TestCase((), {}, 1),))
    v = attack(judge, "def one():\n    return True\n", one)
    assert v.status == "failed"


def test_stack_walk_and_gc_rewrite(judge):
    v = attack(judge, """
        import gc, inspect, sys
        def add(a, b):
            f = sys._getframe()
            while f is not None:  # rewrite anything verdict-like up the stack
                for k in list(f.f_locals):
                    if k in ("passed", "ok", "result", "expected", "verdict", "status"):
                        f.f_locals[k] = True
                f = f.f_back
            for frame in inspect.stack():
                frame.frame.f_globals.setdefault("passed", True)
            for o in gc.get_objects():  # and anything that looks like an answer key
                if isinstance(o, dict) and "expected" in o:
                    o["expected"] = None
            return None
    """)
    assert not v.passed and v.status == "failed"


@pytest.mark.parametrize("where", ["load", "first call", "second call"])
def test_os_exit_zero(judge, where):
    body = {"load": "import os\nos._exit(0)\ndef add(a, b):\n    return a + b\n",
            "first call": "import os\ndef add(a, b):\n    os._exit(0)\n",
            "second call": "import os\nn = [0]\ndef add(a, b):\n    n[0] += 1\n    if n[0] == 2:\n        os._exit(0)\n    return a + b\n"}
    v = attack(judge, body[where])
    assert not v.passed and v.status == "error" and "exited with code 0" in v.detail
    assert v.passed_tests == (1 if where == "second call" else 0)


@pytest.mark.parametrize("where", ["load", "call"])
def test_sys_exit(judge, where):
    code = ("import sys\nsys.exit(0)\ndef add(a, b):\n    return a + b\n" if where == "load"
            else "import sys\ndef add(a, b):\n    sys.exit(0)\n")
    v = attack(judge, code)
    assert not v.passed and v.status == "error" and "SystemExit" in v.detail


def test_kill_the_parent_and_the_judge(judge):
    v = attack(judge, f"""
        import os, signal
        def add(a, b):
            for target in (os.getppid(), {os.getpid()}, {judge._server.proc.pid}, -1, 1):
                for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):
                    try:
                        os.kill(target, sig)
                    except OSError:
                        pass
            try:
                os.killpg(os.getpgid({os.getpid()}), signal.SIGKILL)
            except OSError:
                pass
            return 0
    """)
    assert not v.passed


def test_fake_verdict_on_stdout_stderr_and_inherited_fds(judge):
    v = attack(judge, """
        import json, os, struct, sys
        fake = json.dumps({"passed": True, "status": "passed", "passed_tests": 3, "total_tests": 3})
        print(fake); print(fake, file=sys.stderr)
        frames = [["ready"], ["ret", 0, 3], ["ret", 1, 42], ["ret", 2, 0], ["done"], ["exited", 0, 0.0, 0]]
        blob = b"".join(struct.pack(">I", len(j)) + j for j in (json.dumps(f).encode() for f in frames))
        for fd in range(0, 21):
            for data in (fake.encode() + b"\\n", blob):
                try:
                    os.write(fd, data)
                except OSError:
                    pass
        def add(a, b):
            return -1
    """)
    assert not v.passed and v.status in ("failed", "rejected")


def test_fake_verdict_does_not_reach_axiom_verify_stdout(tmp_path):
    problem = tmp_path / "add.json"
    problem.write_text('{"id": "add", "title": "add", "difficulty": "easy", "prompt": "def add(a, b):",'
                       ' "entry_point": "add", "tests": [{"args": [1, 2], "expected": 3}]}')
    solution = tmp_path / "sol.py"
    solution.write_text('print(\'{"passed": true, "status": "passed", "passed_tests": 1, "total_tests": 1}\')\n'
                        "import os\nfor fd in range(3, 21):\n    try:\n        os.write(fd, b'{\"passed\": true}\\n')\n"
                        "    except OSError:\n        pass\ndef add(a, b):\n    return 0\n")
    shim = ("import argparse, sys\nfrom axiom_ray import verify_command\np = argparse.ArgumentParser()\n"
            "verify_command.add_arguments(p)\nsys.exit(verify_command.run(p.parse_args()))\n")
    r = subprocess.run([sys.executable, "-c", shim, "--problem", str(problem), "--solution", str(solution),
                        "--timeout", "1", "--min-isolation", "rlimits"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert len(r.stdout.strip().splitlines()) == 1 and '"passed": false' in r.stdout


def test_monkeypatch_builtins_json_os_and_the_sandbox_itself(judge):
    v = attack(judge, """
        import builtins, json, os, sys
        builtins.isinstance = lambda *a: True
        builtins.type = lambda *a: int
        json.dumps = lambda *a, **k: '["ret", 0, 3]'
        json.loads = lambda *a, **k: ["call", 0, ["l"], ["d"]]
        os._exit = lambda *a: None
        for name, mod in list(sys.modules.items()):
            if name.startswith("_axiom_sandbox"):
                for attr in ("to_tree", "from_tree", "dumps"):
                    if hasattr(mod, attr):
                        setattr(mod, attr, lambda *a, **k: 3)
        def add(a, b):
            return 3
    """)
    assert not v.passed and v.passed_tests <= 1


def test_patched_assert_and_unittest_in_a_check_problem(judge):
    check = Problem(id="sq", title="sq", difficulty="easy", prompt="def sq(x):\n", entry_point="sq",
                    check="def check(candidate):\n    assert candidate(3) == 9\n    assert candidate(-2) == 4\n")
    v = attack(judge, """
        import builtins, unittest
        builtins.AssertionError = type("Nope", (Exception,), {})
        unittest.TestCase.assertEqual = lambda *a, **k: None
        def sq(x):
            return 0
    """, check)
    assert v.status == "failed" and not v.passed


# --- reading the answer key ------------------------------------------------------------------------


def test_reading_the_problem_file_from_disk(judge, shared_dir):
    require(judge, "landlock", "hiding the host's files")
    token = uuid.uuid4().hex
    path = os.path.join(shared_dir, "secret.json")
    with open(path, "w") as f:
        f.write(f'{{"expected": "{token}"}}')
    os.chmod(path, 0o644)
    secret = Problem(id="s", title="s", difficulty="easy", prompt="", entry_point="guess", tests=(TestCase((), {}, token),),
                     source=path)
    v = attack(judge, f"""
        import glob, json, os
        def guess():
            for p in [{path!r}] + glob.glob("/tmp/**/*.json", recursive=True) + glob.glob("/work/**/*.jsonl", recursive=True):
                try:
                    return json.load(open(p))["expected"]
                except Exception:
                    pass
            return "not found"
    """, secret)
    assert not v.passed and v.status == "failed"


def test_reading_the_judges_memory_environment_and_command_line(judge):
    token = "tok" + uuid.uuid4().hex
    secret = Problem(id="s", title="s", difficulty="easy", prompt="", entry_point="guess",
                     tests=(TestCase((), {}, token),))
    v = attack(judge, f"""
        import os, re
        def scan(pid):
            for name in ("environ", "cmdline"):
                try:
                    m = re.search(rb"tok[0-9a-f]{{32}}", open(f"/proc/{{pid}}/{{name}}", "rb").read())
                    if m:
                        return m.group().decode()
                except OSError:
                    pass
            try:
                maps = open(f"/proc/{{pid}}/maps").read().splitlines()
                with open(f"/proc/{{pid}}/mem", "rb", 0) as mem:
                    for line in maps:
                        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                        if "rw" not in line.split()[1] or hi - lo > 1 << 26:
                            continue
                        try:
                            mem.seek(lo)
                            m = re.search(rb"tok[0-9a-f]{{32}}", mem.read(hi - lo))
                            if m:
                                return m.group().decode()
                        except OSError:
                            pass
            except OSError:
                pass
        def guess():
            try:
                pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
            except OSError:
                pids = []
            for pid in [os.getppid(), {os.getpid()}] + pids:
                found = scan(pid)
                if found:
                    return found
            return "not found"
    """, secret)
    assert not v.passed and v.status == "failed"


def test_host_environment_is_not_visible(judge):
    token = "env" + uuid.uuid4().hex
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              env={**os.environ, "AXIOM_HOSTILE_SECRET": token})
    os.environ["AXIOM_HOSTILE_SECRET"] = token  # in the judge's own environment too
    try:
        probe = Problem(id="e", title="e", difficulty="easy", prompt="", entry_point="leaks",
                        tests=(TestCase((), {}, []),))
        v = attack(judge, f"""
            import os
            def leaks():
                found = [k for k, v in os.environ.items() if {token!r} in v]
                try:
                    pids = os.listdir("/proc")
                except OSError:
                    pids = []
                for pid in ["self", {helper.pid}, {os.getpid()}, os.getppid()] + pids:
                    try:
                        if {token!r}.encode() in open(f"/proc/{{pid}}/environ", "rb").read():
                            found.append(str(pid))
                    except OSError:
                        pass
                return found
        """, probe)
        assert v.passed, f"the host's environment leaked: {v.detail}"
    finally:
        del os.environ["AXIOM_HOSTILE_SECRET"]
        helper.kill()
        helper.wait()


# --- bounded time -----------------------------------------------------------------------------------


def test_infinite_loop(judge):
    v = attack(judge, "def add(a, b):\n    while True:\n        pass\n")
    assert v.status == "timeout"  # "CPU time limit", or the wall clock on a loaded machine


def test_sigterm_and_sigxcpu_ignored_busy_loop(judge):
    v = attack(judge, """
        import signal
        for s in (signal.SIGTERM, signal.SIGXCPU, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        def add(a, b):
            while True:
                pass
    """)
    assert v.status == "timeout"


def test_the_candidate_cannot_leave_the_idle_cpu_class(judge):
    if not judge._server.info.get("idle_priority"):
        pytest.skip("this server cannot read its candidates' run-queue wait: they run at normal priority")
    probe = Problem(id="sched", title="sched", difficulty="easy", prompt="", entry_point="sched",
                    tests=(TestCase((), {}, [os.SCHED_IDLE, "EPERM", "EPERM"]),))
    v = attack(judge, """
        import os
        def sched():
            out = [os.sched_getscheduler(0)]
            for leave in (lambda: os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0)),
                          lambda: os.setpriority(os.PRIO_PROCESS, 0, -5)):
                try:
                    leave()
                    out.append("left")
                except PermissionError:
                    out.append("EPERM")
            return out
    """, probe)
    assert v.passed, v


def test_busy_children_cannot_stretch_the_wall_clock(judge):
    """The backstop discounts a candidate's wait for a CPU only while it is a lone task: here its
    own busy children make it wait, and the verdict still comes within the wall-clock limit."""
    v = attack(judge, """
        import os
        def add(a, b):
            for _ in range(8):
                if os.fork() == 0:
                    while True:
                        pass
            while True:
                pass
    """)
    assert v.status == "timeout", v


def test_sleeping_forever_hits_the_wall_clock(judge):
    v = attack(judge, "import time\ndef add(a, b):\n    time.sleep(3600)\n")
    assert v.status == "timeout" and "wall-clock" in v.detail


def test_fork_bomb(judge):
    v = attack(judge, """
        import os
        def add(a, b):
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
    """)
    assert not v.passed and v.status in ("timeout", "error")


def test_thread_bomb(judge):
    v = attack(judge, """
        import threading, time
        def add(a, b):
            n = 0
            try:
                while True:
                    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
                    n += 1
            except BaseException:
                pass
            return -n
    """)
    assert not v.passed


@pytest.mark.parametrize("style", ["one allocation", "gradual"])
def test_memory_bomb(judge, style):
    code = ("def add(a, b):\n    return len(bytearray(1 << 36))\n" if style == "one allocation"
            else "def add(a, b):\n    hog = []\n    while True:\n        hog.append(bytearray(16 << 20))\n")
    one_test = Problem(id="add", title="add", difficulty="easy", prompt="", entry_point="add", tests=ADD.tests[:1])
    v = attack(judge, code, one_test)  # one test: filling ~200 MB page by page is slow on a busy machine
    assert v.status == "memory", v


def test_output_flood(judge):
    v = attack(judge, "import os\ndef add(a, b):\n    while True:\n        os.write(1, b'x' * 65536)\n")
    assert v.status == "error" and "output limit" in v.detail


def test_segfault(judge):
    v = attack(judge, "import faulthandler\ndef add(a, b):\n    faulthandler._read_null()  # a real NULL dereference\n")
    assert v.status == "error" and "SIGSEGV" in v.detail


def test_recursion_bomb(judge):
    v = attack(judge, "def add(a, b):\n    return add(a, b)\n")
    assert v.status == "error" and "RecursionError" in v.detail
    v = attack(judge, "def add(a, b):\n    x = []\n    for _ in range(10 ** 6):\n        x = [x]\n    return repr(x)\n")
    assert not v.passed


def test_giant_and_deeply_nested_results(judge):
    v = attack(judge, "def add(a, b):\n    return 'x' * (8 << 20)\n")
    assert v.status == "error" and "reply too large/slow" in v.detail
    v = attack(judge, "def add(a, b):\n    x = []\n    for _ in range(5000):\n        x = [x]\n    return x\n")
    assert v.status == "rejected"


# --- containment -------------------------------------------------------------------------------------


def test_double_forked_setsid_daemon_is_dead_after_the_verdict(judge, shared_dir):
    marker = os.path.join(shared_dir, "daemon-alive")
    v = attack(judge, f"""
        import os, time
        def add(a, b):
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    for _ in range(100):
                        time.sleep(0.05)
                        try:
                            open({marker!r}, "w").write(str(os.getpid()))
                        except OSError:
                            pass
                os._exit(0)
            time.sleep(0.1)
            return -1
    """)
    assert not v.passed
    if os.path.exists(marker):
        os.unlink(marker)  # written before the verdict (possible below landlock); must not come back
    time.sleep(0.5)
    assert not os.path.exists(marker), "a daemon outlived the verdict"


def test_subprocesses_are_dead_after_the_verdict(judge):
    v = attack(judge, """
        import os, subprocess, sys
        def add(a, b):
            procs = []
            for argv in (["sleep", "60"], [sys.executable, "-c", "import time; time.sleep(60)"]):
                try:
                    procs.append(subprocess.Popen(argv, start_new_session=True))
                except OSError:
                    pass
            os.system("sleep 60 &")
            try:
                os.posix_spawn("/bin/sleep", ["sleep", "60"], os.environ)
            except OSError:
                pass
            return -1
    """)
    assert not v.passed


def test_no_network_not_even_loopback(judge):
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    tcp.setblocking(False)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    try:
        v = attack(judge, f"""
            import socket, _socket
            def add(a, b):
                for make in (lambda: socket.create_connection(("127.0.0.1", {tcp.getsockname()[1]}), timeout=1),
                             lambda: _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)):
                    try:
                        s = make()
                        s.connect(("127.0.0.1", {tcp.getsockname()[1]}))
                        s.sendall(b"escaped")
                    except OSError:
                        pass
                try:
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"escaped", ("127.0.0.1", {udp.getsockname()[1]}))
                except OSError:
                    pass
                return -1
        """)
        assert not v.passed
        with pytest.raises(BlockingIOError):
            tcp.accept()
        with pytest.raises(BlockingIOError):
            udp.recvfrom(100)
    finally:
        tcp.close()
        udp.close()


def test_posix_system_and_unlink_on_host_files(judge, shared_dir):
    require(judge, "landlock", "protecting the host's files")
    victim = os.path.join(shared_dir, "victim.txt")
    with open(victim, "w") as f:
        f.write("intact")
    os.chmod(victim, 0o666)
    planted = os.path.join(shared_dir, "planted.txt")
    v = attack(judge, f"""
        import posix
        def add(a, b):
            for step in (lambda: posix.unlink({victim!r}), lambda: open({victim!r}, "w").write("pwned"),
                         lambda: posix.system("rm -f {victim}; echo pwned > {planted}"),
                         lambda: open({planted!r}, "w").write("pwned"), lambda: posix.rename({victim!r}, {planted!r})):
                try:
                    step()
                except OSError:
                    pass
            return -1
    """)
    assert not v.passed
    with open(victim) as f:
        assert f.read() == "intact"
    assert not os.path.exists(planted)


def test_huge_file_write_stays_in_the_sandbox(judge):
    v = attack(judge, """
        def add(a, b):
            with open("big.bin", "wb") as f:
                for _ in range(256):
                    f.write(b"x" * (1 << 20))
            return a + b
    """)
    assert not v.passed and v.status == "error"
    workdir = judge._server.info.get("workdir")
    if workdir:  # below the namespaces level: a private host directory, emptied after each verdict
        assert os.listdir(workdir) == []


def test_process_state_is_fresh_for_each_candidate(judge):
    """Nothing one candidate leaves (module state, files, environment) reaches the next."""
    attack(judge, """
        import os, json
        open("left.txt", "w").write("x")
        os.environ["LEFT"] = "1"
        json.LEFT = 1
        def add(a, b):
            return a + b
    """)
    probe = Problem(id="p", title="p", difficulty="easy", prompt="", entry_point="f", tests=(TestCase((), {}, [False, False, False]),))
    code = "import os, json\ndef f():\n    return [os.path.exists('left.txt'), 'LEFT' in os.environ, hasattr(json, 'LEFT')]\n"
    v = judge.judge(probe, code)
    assert v.passed, v.detail


def test_sandbox_signals_do_not_kill_the_test_process():
    # The suite itself survived every test above; this also covers SIGPIPE-style fallout.
    assert signal.getsignal(signal.SIGINT) is not None


# --- the judge itself: whatever comes back is this row's verdict, at a bounded cost -------------------

# A candidate can write frames of its own on its channel (fd 3), bypassing the honest encoder.
RAW_REPLY = """
import json, os, struct
def send(msg):
    body = msg if type(msg) is bytes else json.dumps(msg).encode("utf-8", "surrogatepass")
    os.write(3, struct.pack(">I", len(body)) + body)
send(["ready"])
"""
P61 = 2 ** 61 - 1  # ints k * P61 all hash to 0; tuples and frozensets of them hash alike too


def raw(build: str) -> str:
    """A candidate whose code `build` makes `frame`, its reply to test 1 (a message, or the bytes
    of one); tests 2 and 3 get right answers, then it leaves."""
    return (RAW_REPLY + build + "\nsend(frame)\nsend(['ret', 1, 42])\nsend(['ret', 2, 0])\nos._exit(0)\n"
            "def add(a, b):\n    return a + b\n")


def assert_renderable(v: Verdict) -> None:
    """A detail any consumer can take: short, printable, valid UTF-8 and JSON."""
    assert len(v.detail) <= 300 and v.detail.isprintable(), v.detail
    v.detail.encode("utf-8")
    json.loads(json.dumps(v.to_dict()))


UNRENDERABLE = {
    "a million-digit int": ("def add(a, b):\n    return 1 << 3_400_000\n", "failed"),
    "a negative one": ("def add(a, b):\n    return -(1 << 3_000_000) - 1\n", "failed"),
    "surrogates and NULs": ("def add(a, b):\n    return '\\ud800\\x00\\udfff\\n' * 1000\n", "failed"),
    "a huge bytes": ("def add(a, b):\n    return bytes(600_000)\n", "failed"),
    "nested 399 deep": ("def add(a, b):\n    x = big = 1 << 2000\n    for _ in range(399):\n        x = [x, {big}]\n"
                        "    return x\n", "failed"),
    "a set of huge ints": ("def add(a, b):\n    return {k << 50_000 for k in range(50)}\n", "failed"),
    "an exception message of surrogates": ("def add(a, b):\n    raise ValueError('\\ud800\\x00' * 999)\n", "error"),
    "an exception type that is not a name": (raw('frame = ["exc", 0, [[[[[]]]]], "\\ud800" * 9000]'), "error"),
    "a malformed reply": (raw('frame = ["ret"]'), "rejected"),
    "a reply to another test": (raw('frame = ["ret", [0], 3]'), "rejected"),
}


@pytest.mark.parametrize("name", list(UNRENDERABLE))
def test_a_value_the_judge_cannot_render_is_that_rows_verdict(judge, name):
    code, status = UNRENDERABLE[name]
    v = attack(judge, code)  # within the limits, then the same Judge passes the next candidate
    assert v.status == status and not v.passed, v
    assert_renderable(v)


def test_a_bad_row_in_a_batch_leaves_the_other_rows_their_verdicts(tmp_path):
    problems = tmp_path / "add.jsonl"
    problems.write_text('{"id": "add", "title": "add", "difficulty": "easy", "prompt": "def add(a, b):",'
                        ' "entry_point": "add", "tests": [{"args": [1, 2], "expected": 3}]}\n')
    codes = [ADD_OK, "def add(a, b):\n    return 1 << 3_400_000\n", ADD_OK,
             "def add(a, b):\n    raise ValueError('\\ud800\\x00')\n", ADD_OK]
    solutions = tmp_path / "sol.jsonl"
    solutions.write_text("".join(json.dumps({"problem_id": "add", "code": c, "sample_id": i}) + "\n"
                                 for i, c in enumerate(codes)))
    shim = ("import argparse, sys\nfrom axiom_ray import verify_command\np = argparse.ArgumentParser()\n"
            "verify_command.add_arguments(p)\nsys.exit(verify_command.run(p.parse_args()))\n")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", shim, "--problems", str(problems), "--solutions", str(solutions),
                        "--timeout", "1", "--workers", "1", "--min-isolation", "rlimits"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr  # not 2: nothing about the input was bad
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row.get("status") for row in rows[:-1]] == ["passed", "failed", "passed", "error", "passed"]
    assert [row["duration_ms"] < 5000 for row in rows[:-1]] == [True] * 5, rows  # no stall for any row
    assert rows[-1]["summary"] and time.monotonic() - t0 < 60


COSTLY = {  # (the candidate's code that builds `frame`, what the verdict names)
    "a set of ints that hash alike":
        (f'frame = ["ret", 0, ["s"] + [["I", format(k * {P61}, "x")] for k in range(1, 25_000)]]', "hash alike"),
    "a frozenset of them":
        (f'frame = ["ret", 0, ["f"] + [["I", format(k * {P61}, "x")] for k in range(1, 25_000)]]', "hash alike"),
    "a dict whose keys hash alike":
        (f'frame = ["ret", 0, ["d"] + [x for k in range(1, 20_000) for x in (["I", format(k * {P61}, "x")], k)]]',
         "hash alike"),
    "a set of tuples that hash alike":
        (f'frame = ["ret", 0, ["s"] + [["t", ["I", format(k * {P61}, "x")]] for k in range(1, 20_000)]]', "hash alike"),
    "a set of floats that hash alike": ('frame = ["ret", 0, ["s"] + [2.0 ** (61 * k) for k in range(-17, 17)]]', "hash alike"),
    "more values than the limit": ('frame = ["ret", 0, ["l"] + [0] * 300_000]', "values"),  # 0.6 MB: under the byte limit
    "nested past the limit": ('x = ["l"]\nfor _ in range(450):\n    x = ["l", x]\nframe = ["ret", 0, x]', "nested"),
    "nested past json's depth": ("frame = b'[\"ret\", 0, ' + b'[' * 100_000 + b']' * 100_000 + b']'", "nested"),
    "larger than the limit": ('frame = ["ret", 0, "x" * (2 << 20)]', "bytes"),
}


@pytest.mark.parametrize("name", list(COSTLY))
def test_a_reply_crafted_to_cost_the_judge_is_bounded(judge, name):
    build, reason = COSTLY[name]
    v = attack(judge, raw(build))  # the verdict within the wall limit + SLACK_S; the Judge still serves
    assert v.status == "error" and "reply too large/slow" in v.detail and reason in v.detail, v
    assert_renderable(v)


@pytest.mark.parametrize("shape", ["ints", "pairs"])
def test_a_check_program_is_not_handed_values_that_hash_alike(judge, shape):
    """The check program, run in the judge, may make a set or dict of anything it is given."""
    check = Problem(id="uniq", title="uniq", difficulty="easy", prompt="def uniq(x):\n", entry_point="uniq",
                    check="def check(candidate):\n    got = candidate([1, 1])\n    assert len(set(got)) == len(dict(got)) == 1\n")
    item = "['I', format(k * P, 'x')]" if shape == "ints" else "['t', ['I', format(k * P, 'x')], 0]"
    v = attack(judge, RAW_REPLY + f"P = {P61}\nsend(['ret', 0, ['l'] + [{item} for k in range(1, 20_000)]])\n"
                                  "import time\ntime.sleep(30)\ndef uniq(x):\n    return x\n", check)
    assert v.status == "error" and "reply too large/slow" in v.detail, v


def test_the_judges_cpu_per_reply_is_capped():
    with Judge(Limits(timeout_s=5, max_judge_cpu_s=0.001), min_isolation="rlimits") as j:
        big = Problem(id="big", title="big", difficulty="easy", prompt="", entry_point="f",
                      tests=(TestCase((), {}, list(range(100_000))),))
        v = j.judge(big, "def f():\n    return [[i] for i in range(100_000)]\n")
        assert v.status == "error" and "reply too large/slow" in v.detail and "CPU" in v.detail, v
        assert j.judge(ADD, ADD_OK).passed


# --- candidates never meet ----------------------------------------------------------------------------

SYSV_AND_TEMP = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
KEY, TOKEN = {key}, {token!r}
PATHS = ["/dev/shm/" + TOKEN, "/tmp/" + TOKEN, "/var/tmp/" + TOKEN, "/dev/mqueue/" + TOKEN]
"""
WRITER = SYSV_AND_TEMP + """
def add(a, b):
    made = []
    shm = libc.shmget(KEY, 1 << 30, 0o1666)  # IPC_CREAT | 0o666: a gigabyte
    if shm >= 0:
        made.append("shm")
        libc.shmat.restype = ctypes.c_void_p
        addr = libc.shmat(shm, None, 0)
        if addr not in (None, ctypes.c_void_p(-1).value):
            ctypes.memmove(addr, TOKEN.encode(), len(TOKEN))
            ctypes.memset(addr + 4096, 1, 64 << 20)  # pin 64 MB
            libc.shmdt(ctypes.c_void_p(addr))
    if libc.msgget(KEY, 0o1666) >= 0:
        made.append("msg")
        buf = ctypes.create_string_buffer(8 + len(TOKEN))
        ctypes.memmove(ctypes.addressof(buf), (1).to_bytes(8, "little") + TOKEN.encode(), 8 + len(TOKEN))
        libc.msgsnd(libc.msgget(KEY, 0), buf, len(TOKEN), 0)
    if libc.semget(KEY, 1, 0o1666) >= 0:
        made.append("sem")
    try:
        libc.mq_open.restype = ctypes.c_int
        if libc.mq_open(("/" + TOKEN).encode(), os.O_CREAT | os.O_RDWR, 0o666, None) >= 0:
            made.append("mq")
    except AttributeError:
        pass
    for path in PATHS:
        try:
            with open(path, "w") as f:
                f.write(TOKEN)
            made.append(path)
        except OSError:
            pass
    return made
"""
READER = SYSV_AND_TEMP + """
def add(a, b):
    seen = []
    for name, get in (("shm", lambda: libc.shmget(KEY, 0, 0)), ("msg", lambda: libc.msgget(KEY, 0)),
                      ("sem", lambda: libc.semget(KEY, 0, 0))):
        if get() >= 0:
            seen.append(name)
    for path in PATHS:
        try:
            with open(path) as f:
                seen.append(f.read())
        except OSError:
            pass
    try:
        if libc.mq_open(("/" + TOKEN).encode(), os.O_RDONLY) >= 0:
            seen.append("mq")
    except AttributeError:
        pass
    return seen
"""


def sysv_objects(key: int) -> list[str]:
    found = []
    for kind in ("shm", "msg", "sem"):
        with open(f"/proc/sysvipc/{kind}") as f:
            found += [f"{kind}:{line.split()[1]}" for line in f.read().splitlines()[1:] if int(line.split()[0]) == key]
    return found


def test_candidates_share_no_ipc_objects_temp_files_or_pinned_memory(judge):
    token = "axiom-" + uuid.uuid4().hex[:12]
    key = int(uuid.uuid4().hex[:7], 16)
    fields = {"key": key, "token": token}
    nothing = Problem(id="n", title="n", difficulty="easy", prompt="", entry_point="add", tests=(TestCase((1, 2), {}, []),))
    writer = attack(judge, WRITER.format(**fields), nothing)
    # Whatever the writer managed, nothing of it is left on the host once its verdict is out:
    assert sysv_objects(key) == [], "SysV IPC objects (and the memory they pin) outlived the candidate"
    left = [p for p in ("/dev/shm/" + token, "/tmp/" + token, "/var/tmp/" + token, "/dev/mqueue/" + token)
            if os.path.lexists(p)]
    if left and os.geteuid() != 0 and level_rank(judge.level) < level_rank("landlock"):
        pytest.skip(f"an unprivileged candidate below landlock shares the judge's uid: {left} stays")
    assert left == [], f"temp files outlived the candidate: {left}"
    reader = attack(judge, READER.format(**fields), nothing)
    assert reader.passed, f"the next candidate saw the previous one's state: {reader.detail} (writer made {writer.detail})"


def test_each_candidate_has_an_ipc_namespace_of_its_own(judge):
    require(judge, "namespaces", "an IPC namespace per candidate")
    probe = Problem(id="ns", title="ns", difficulty="easy", prompt="", entry_point="f", tests=(TestCase((), {}, ""),))
    code = "import os\ndef f():\n    return os.readlink('/proc/self/ns/ipc')\n"
    seen = {judge.judge(probe, code).detail for _ in range(3)}
    assert len(seen) == 3, seen  # each "wrong answer (got 'ipc:[inode]')" names another namespace


# --- clean-up ------------------------------------------------------------------------------------------

HOSTILE_TREE = """
import os
def build(depth, outside):
    os.mkfifo("fifo")
    os.symlink("loop_b", "loop_a"); os.symlink("loop_a", "loop_b")
    os.symlink("/", "root"); os.symlink(outside, "outside")
    os.mkdir("locked"); open("locked/f", "w").close(); os.chmod("locked/f", 0); os.chmod("locked", 0)
    os.mkdir("wide")
    for i in range(200):
        os.mkdir(f"wide/{i}")
    for _ in range(depth):  # a chain longer than PATH_MAX and deeper than any recursion limit
        os.mkdir("d"); os.chdir("d")
    os.mkfifo("fifo"); os.symlink("..", "up"); open("f", "w").write("x")
    os.chmod(".", 0o500)
"""


def test_a_hostile_tree_in_the_working_directory_is_cleaned_up(judge, shared_dir):
    canary = os.path.join(shared_dir, "canary")
    with open(canary, "w") as f:
        f.write("intact")
    server = judge._server.proc.pid
    v = attack(judge, HOSTILE_TREE + f"build(2500, {shared_dir!r})\ndef add(a, b):\n    return a + b\n")
    assert v.passed, v  # the tree is the candidate's own business
    assert judge._server.proc.pid == server, "the fork server died cleaning up"
    with open(canary) as f:
        assert f.read() == "intact"
    workdir = judge._server.info.get("workdir")
    if workdir:  # below the namespaces level: a host directory, empty again
        assert os.listdir(workdir) == []
    probe = Problem(id="p", title="p", difficulty="easy", prompt="", entry_point="f", tests=(TestCase((), {}, []),))
    assert judge.judge(probe, "import os\ndef f():\n    return os.listdir('.')\n").passed


def test_empty_tree_survives_what_a_candidate_can_build(tmp_path):
    """The clean-up itself, on a tree built here (as root it also meets modes root ignores)."""
    spec = importlib.util.spec_from_file_location("axiom_forkserver_test", os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "axiom_ray", "sandbox", "forkserver.py"))
    fs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fs)
    top, outside = tmp_path / "work", tmp_path / "outside"
    top.mkdir()
    outside.mkdir()
    (outside / "canary").write_text("intact")
    cwd = os.getcwd()
    os.chdir(top)
    try:
        ns: dict = {}
        exec(HOSTILE_TREE, ns)
        ns["build"](3000, str(outside))
    finally:
        os.chdir(cwd)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        t0 = time.process_time()  # CPU: linear in the entries, whatever else runs on the machine
        fs.empty_tree(fd)
        assert time.process_time() - t0 < 10
    finally:
        os.close(fd)
    assert os.listdir(top) == [] and (outside / "canary").read_text() == "intact"
