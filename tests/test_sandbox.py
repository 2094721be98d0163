"""The sandbox's judging: correct answers pass in every compare mode and style, wrong ones fail,
unusual-but-correct solutions are not false negatives, and the pure parts (wire, compare, limits)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from axiom_ray.problems import Problem, ProblemError, TestCase, find_problem
from axiom_ray.sandbox import (
    LEVELS,
    Judge,
    Limits,
    SandboxUnavailable,
    Verdict,
    detect_isolation,
    judge_one,
    kernel,
    level_rank,
    values_equal,
    wire,
)
from axiom_ray.sandbox.channel import TOO_LARGE, Channel, Stop
from axiom_ray.sandbox.render import clean_text, render

LIMITS = Limits(timeout_s=2, wall_factor=3, wall_extra_s=5)  # generous wall: CI machines are busy
BEST = detect_isolation().level
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def problem(entry: str, tests: list[tuple], compare: str = "exact", **kw) -> Problem:
    cases = tuple(TestCase(tuple(a), dict(k), e) for a, k, e in tests)
    return Problem(id=entry, title=entry, difficulty="easy", prompt=f"def {entry}(...)", entry_point=entry,
                   tests=cases, compare=compare, **kw)


ADD = problem("add", [((1, 2), {}, 3), ((5, 5), {}, 10), ((-1, 1), {}, 0)])
ADD_OK = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def judge():
    with Judge(LIMITS, min_isolation="rlimits") as j:
        yield j


def run(judge: Judge, prob: Problem, code: str) -> Verdict:
    return judge.judge(prob, textwrap.dedent(code))


# --- verdicts ------------------------------------------------------------------------------------


def test_correct_solution_passes_with_the_level_recorded(judge):
    v = run(judge, ADD, ADD_OK)
    assert v.passed and v.status == "passed" and (v.passed_tests, v.total_tests) == (3, 3)
    assert v.isolation == judge.level == BEST and v.reward == 1.0 and v.duration_ms > 0
    assert set(v.to_dict()) == {"passed", "status", "passed_tests", "total_tests", "duration_ms", "isolation", "detail"}


def test_wrong_answer_fails_with_partial_credit_and_no_expected_value_in_detail(judge):
    v = run(judge, ADD, "def add(a, b):\n    return 3\n")
    assert not v.passed and v.status == "failed" and v.passed_tests == 1 and v.total_tests == 3
    assert v.detail.startswith("test 2: wrong answer") and "10" not in v.detail


def test_exact_is_type_strict_for_bools_but_not_for_sequences(judge):
    bools = problem("one", [((), {}, 1)])
    assert run(judge, bools, "def one():\n    return True\n").status == "failed"
    pair = problem("pair", [((), {}, [0, 1])])
    assert run(judge, pair, "def pair():\n    return (0, 1)\n").passed  # JSON has no tuples


def test_kwargs_are_passed(judge):
    p = problem("greet", [((), {"name": "ada", "punct": "!"}, "hi ada!")])
    assert run(judge, p, "def greet(name, punct='.'):\n    return 'hi ' + name + punct\n").passed


def test_float_compare(judge):
    p = problem("mean", [(([1, 2],), {}, 1.5), (([0.1, 0.2],), {}, 0.15)], compare="float")
    assert run(judge, p, "def mean(xs):\n    return sum(xs) / len(xs) + 1e-12\n").passed
    assert run(judge, p, "def mean(xs):\n    return sum(xs) / len(xs) + 1e-3\n").status == "failed"


def test_unordered_compare(judge):
    p = problem("pairs", [(([3, 1, 2],), {}, [[1, 2], [3, 4], [1, 2]])], compare="unordered")
    assert run(judge, p, "def pairs(xs):\n    return [(3, 4), [1, 2], (1, 2)]\n").passed
    assert run(judge, p, "def pairs(xs):\n    return [[1, 2], [3, 4], [3, 4]]\n").status == "failed"


def test_exception_in_one_test_fails_that_test_only(judge):
    v = run(judge, ADD, "def add(a, b):\n    if a == 5:\n        raise ValueError('nope')\n    return a + b\n")
    assert v.status == "error" and v.passed_tests == 2 and "ValueError: nope" in v.detail


def test_syntax_error_and_missing_entry_point_are_errors(judge):
    v = run(judge, ADD, "def add(a, b)\n    return a + b\n")
    assert v.status == "error" and v.detail.startswith("SyntaxError") and v.passed_tests == 0
    v = run(judge, ADD, "def plus(a, b):\n    return a + b\n")
    assert v.status == "error" and "'add' is not defined" in v.detail


def test_oversized_or_non_string_code_is_rejected_before_running(judge):
    assert judge.judge(ADD, "#" * (LIMITS.max_code_bytes + 1)).status == "rejected"
    assert judge.judge(ADD, b"def add(a, b): return a + b").status == "rejected"  # type: ignore[arg-type]


def test_non_plain_return_values_are_rejected(judge):
    v = run(judge, problem("gen", [((), {}, [1, 2])]), "def gen():\n    return (i for i in (1, 2))\n")
    assert v.status == "rejected" and "generator" in v.detail


# --- check-style (HumanEval) problems ---------------------------------------------------------------

CHECK = Problem(
    id="rot", title="rot", difficulty="easy", entry_point="decode",
    prompt='def encode(s):\n    return s[1:] + s[:1]\n\n\ndef decode(s):\n    """Undo encode."""\n',
    check="def check(candidate):\n    for w in ['abc', 'hello', 'x']:\n        assert candidate(encode(w)) == w\n"
          "    assert candidate('') == ''\n",
)


def test_check_program_passes_a_correct_candidate(judge):
    v = run(judge, CHECK, CHECK.prompt + "    return s[-1:] + s[:-1]\n")
    assert v.passed and (v.passed_tests, v.total_tests) == (1, 1)


def test_check_program_fails_a_wrong_candidate_with_its_line(judge):
    v = run(judge, CHECK, CHECK.prompt + "    return s\n")
    assert v.status == "failed" and v.detail == "check failed: assertion (check line 3)"


def test_check_helpers_come_from_the_problem_not_the_candidate(judge):
    # Redefining the helper so that decode(encode(w)) == w trivially must not help.
    cheat = "def encode(s):\n    return s\n\ndef decode(s):\n    return s\n"
    assert run(judge, CHECK, cheat).status == "failed"


def test_check_sees_candidate_exceptions_as_the_same_builtin_type(judge):
    p = Problem(id="v", title="v", difficulty="easy", prompt="", entry_point="f",
                check="def check(candidate):\n    try:\n        candidate(-1)\n    except ValueError:\n"
                      "        pass\n    else:\n        assert False\n    assert candidate(2) == 4\n")
    assert run(judge, p, "def f(x):\n    if x < 0:\n        raise ValueError(x)\n    return x * 2\n").passed
    v = run(judge, p, "def f(x):\n    raise KeyError(x)\n")
    assert v.status == "error" and "KeyError" in v.detail


def test_check_calls_run_ahead_only_when_certain_and_get_their_own_answers(judge):
    # A check's first literal calls go out with the code; one in a branch, a short-circuit, an
    # assert message or a loop must never run unless the check makes it (f(-1) would hang), and
    # every call, ahead or not, must get its own answer (True, 1 and 1.0 are different calls).
    p = Problem(id="o", title="o", difficulty="easy", prompt="", entry_point="f",
                check="def check(candidate):\n"
                      "    assert candidate(1) == 'int' and candidate(True) == 'bool'\n"
                      "    assert candidate(1.0) == 'float', candidate(-1)\n"
                      "    x = candidate(2) == 'int' or candidate(-1)\n"
                      "    if candidate('a') == 'nope':\n        candidate(-1)\n"
                      "    for v in ['s', 3, [1, (2,)]]:\n        assert candidate(v) == type(v).__name__\n"
                      "    assert candidate(b'x', k={'z': None}) == 'bytes'\n")
    code = "def f(x, k=None):\n    while x == -1:\n        pass\n    return type(x).__name__\n"
    assert run(judge, p, code).passed
    v = run(judge, p, code.replace("return type", "return 'int' if x == 1 else type"))  # True == 1
    assert v.status == "failed" and v.detail == "check failed: assertion (check line 2)"
    counter = "n = []\ndef f(x, k=None):\n    n.append(x)\n    return type(x).__name__ if len(n) < 6 else 0\n"
    assert run(judge, p, counter).status == "failed"


def test_humaneval_canonical_solution_passes(judge):
    try:
        he = find_problem("HumanEval/38")  # decode_cyclic: its check uses encode_cyclic
    except ProblemError as e:
        pytest.skip(str(e))
    assert run(judge, he, he.reference).passed
    assert run(judge, he, he.prompt + "    return s\n").status == "failed"


# --- no false negatives --------------------------------------------------------------------------

UNUSUAL = {
    "heavy printing": """
        def add(a, b):
            for i in range(20000):
                print("debug line", i, "x" * 100)
            import sys
            print("to stderr" * 1000, file=sys.stderr)
            return a + b
    """,
    "deep recursion": """
        import sys
        def depth(n):
            return 0 if n == 0 else 1 + depth(n - 1)
        def add(a, b):
            return a + b + depth(8000) - 8000
    """,
    "deep memoised recursion": """
        from functools import lru_cache
        @lru_cache(maxsize=None)
        def s(n):
            return 0 if n == 0 else n + s(n - 1)
        def add(a, b):
            s.cache_clear()
            return a + b + s(5000) - 5000 * 5001 // 2
    """,
    "threads": """
        import threading
        from concurrent.futures import ThreadPoolExecutor
        def add(a, b):
            out = []
            ts = [threading.Thread(target=out.append, args=(1,)) for _ in range(16)]
            [t.start() for t in ts]; [t.join() for t in ts]
            with ThreadPoolExecutor(8) as ex:
                total = sum(ex.map(lambda x: x, [a, b]))
            return total + len(out) - 16
    """,
    "stdlib imports": """
        import collections, heapq, bisect, itertools, functools, fractions, decimal, statistics
        import datetime, re, string, math, cmath, json, copy, random, operator, array, textwrap
        import xml.etree.ElementTree as ET, csv, io, zlib, hashlib, base64, struct, uuid, pprint
        import typing, dataclasses, enum, abc, numbers, difflib, calendar, time, os, sys, tempfile
        def add(a, b):
            return int(fractions.Fraction(a) + int(decimal.Decimal(b)))
    """,
    "scratch files in the working directory": """
        import os, tempfile
        def add(a, b):
            with open("scratch.txt", "w") as f:
                f.write(str(a))
            os.makedirs("sub/dir", exist_ok=True)
            with tempfile.NamedTemporaryFile("w+", dir=".") as t:
                t.write(str(b)); t.flush(); t.seek(0); b2 = int(t.read())
            with open(os.path.join(tempfile.gettempdir(), "t.txt"), "w") as f:
                f.write("x")
            return int(open("scratch.txt").read()) + b2
    """,
    "dataclasses with postponed annotations": """
        from __future__ import annotations
        from dataclasses import dataclass, field
        from typing import ClassVar
        @dataclass(frozen=True, order=True)
        class P:
            x: int
            tags: list[str] = field(default_factory=list)
            unit: ClassVar[int] = 0
        def add(a, b):
            return (P(a) < P(a + 1)) * 0 + P(a).x + P(b).x
    """,
    "a __main__ block": """
        def add(a, b):
            return a + b
        if __name__ == "__main__":
            print(add(int(input()), 2))
            raise SystemExit(1)
    """,
    "asyncio (a socketpair inside)": """
        import asyncio
        async def _add(a, b):
            await asyncio.sleep(0)
            return a + b
        def add(a, b):
            return asyncio.run(_add(a, b))
    """,
    "a subprocess": """
        import subprocess, sys
        def add(a, b):
            out = subprocess.run([sys.executable, "-c", f"print({a} + {b})"], capture_output=True, text=True)
            return int(out.stdout)
    """,
    "big integers and odd floats": """
        import math
        def add(a, b):
            big = math.factorial(3000)  # 9131 digits: beyond int()'s str limit
            assert big // math.factorial(2999) == 3000
            return a + b
    """,
}


@pytest.mark.parametrize("name", list(UNUSUAL))
def test_unusual_correct_solutions_pass(judge, name):
    v = run(judge, ADD, UNUSUAL[name])
    assert v.passed, f"{name}: {v}"


def test_each_candidate_gets_a_fresh_random_seed(judge):
    p = problem("r", [((), {}, 0)])
    details = {run(judge, p, "import random\ndef r():\n    return random.random()\n").detail for _ in range(4)}
    assert len(details) == 4


def test_huge_integer_and_special_values_cross_exactly(judge):
    big = 7 ** 5000
    p = problem("f", [((), {}, [big, -big, 0.5, "é\u2603", None, True])])
    code = "def f():\n    return [7 ** 5000, -(7 ** 5000), 0.5, 'é\\u2603', None, True]\n"
    assert run(judge, p, code).passed


# --- every available level judges the same ---------------------------------------------------------


@pytest.mark.parametrize("level", [lv for lv in LEVELS if level_rank(lv) <= level_rank(BEST)])
def test_each_available_level_judges_correctly(level):
    with Judge(LIMITS, isolation=level, min_isolation="rlimits") as j:
        assert j.level == level
        code = UNUSUAL["stdlib imports"]
        if level != "namespaces" and os.geteuid() == 0 and not j.report.features["stdlib_world_readable"]:
            # Root with an interpreter only root can read (pyenv under /root) and no namespaces:
            # the candidate's own uid can import only what the fork server preloaded.
            code = "import fractions, decimal, heapq, json, re\ndef add(a, b):\n    return a + b\n"
        v = run(j, ADD, code)
        assert v.passed and v.isolation == level, v
        assert run(j, ADD, "def add(a, b):\n    return a - b\n").status == "failed"
        assert run(j, CHECK, CHECK.prompt + "    return s[-1:] + s[:-1]\n").passed


def test_a_starved_candidate_keeps_its_verdict():
    """Candidates take the CPU others leave idle; one starved past the wall-clock limit by
    normal-priority work (here busy processes, in the sampling pass the generators) is judged as
    on an idle machine: the backstop does not count its wait for a CPU."""
    limits = Limits(timeout_s=1, wall_factor=1, wall_extra_s=0.5)
    busy = problem("busy", [((), {}, 1)])
    code = "def busy():\n    x = 0\n    for i in range(4_000_000):\n        x += i\n    return 1\n"
    with Judge(limits, min_isolation="rlimits") as j:
        if not j._server.info.get("idle_priority"):
            pytest.skip("this server cannot read its candidates' run-queue wait")
        # A candidate's session gets the lowest weight only when no other did within 100 ms
        # (forkserver.lower_autogroup): leave the next spare child that much room.
        time.sleep(0.2)
        assert run(j, busy, code).passed  # on a quiet machine
        time.sleep(0.2)
        hog = "import time\nt = time.time()\nwhile time.time() - t < 8:\n    pass\n"
        hogs = [subprocess.Popen([sys.executable, "-c", hog], start_new_session=True)
                for _ in range(2 * (os.cpu_count() or 1))]
        try:
            time.sleep(1.0)  # the hogs are running
            t0 = time.monotonic()
            v = run(j, busy, code)
            elapsed = time.monotonic() - t0
        finally:
            for h in hogs:
                h.kill()
                h.wait()
    assert v.passed, v
    assert elapsed > limits.wall_s, f"not starved ({elapsed:.1f}s): the test proves nothing"


def test_judge_restarts_a_dead_fork_server():
    with Judge(LIMITS, min_isolation="rlimits") as j:
        assert run(j, ADD, ADD_OK).passed
        os.killpg(j._server.proc.pid, signal.SIGKILL)  # the whole server, from outside
        j._server.proc.wait()
        v = run(j, ADD, ADD_OK)
        assert v.passed, v


def test_judge_one_and_closed_judge():
    assert judge_one(ADD, ADD_OK, LIMITS, min_isolation="rlimits").passed
    j = Judge(LIMITS, min_isolation="rlimits")
    j.close()
    j.close()
    with pytest.raises(RuntimeError, match="closed"):
        j.judge(ADD, ADD_OK)


def test_refuses_to_start_below_the_minimum_with_the_reason():
    with pytest.raises(SandboxUnavailable, match="below the required minimum 'landlock'"):
        Judge(LIMITS, isolation="seccomp", min_isolation="landlock")
    with pytest.raises(ValueError, match="unknown isolation level"):
        Judge(LIMITS, min_isolation="chroot")


def test_detect_isolation_reports_features():
    report = detect_isolation()
    assert report.level in LEVELS
    assert {"root", "landlock_abi", "arch", "proc"} <= set(report.features)
    assert report.level in report.describe()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"),
                    reason="needs root, setpriv and a system python3 to become uid 1000")
def test_works_as_an_unprivileged_user():
    """Users run as uid 1000 in containers: same verdicts, with the level that uid gets."""
    script = textwrap.dedent(f"""
        import sys, json
        sys.path.insert(0, {REPO!r})
        from axiom_ray.problems import Problem, TestCase
        from axiom_ray.sandbox import Judge, Limits
        p = Problem(id="add", title="add", difficulty="easy", prompt="", entry_point="add",
                    tests=(TestCase((1, 2), {{}}, 3),))
        out = []
        for level in ("best", "landlock", "seccomp"):
            with Judge(Limits(timeout_s=1), isolation=level, min_isolation="rlimits") as j:
                out.append([j.level, j.judge(p, "def add(a, b):\\n    return a + b\\n").passed,
                            j.judge(p, "def add(a, b):\\n    return 0\\n").passed])
        print(json.dumps(out))
    """)
    probe = subprocess.run(["setpriv", "--reuid", "1000", "--regid", "1000", "--clear-groups",
                            "/usr/bin/python3", "-c", "import sys; print(sys.version_info[:2] >= (3, 10))"],
                           capture_output=True, text=True, cwd="/")
    if probe.stdout.strip() != "True":
        pytest.skip("the system python3 cannot run as uid 1000 here")
    r = subprocess.run(["setpriv", "--reuid", "1000", "--regid", "1000", "--clear-groups",
                        "/usr/bin/python3", "-c", script], capture_output=True, text=True, cwd="/", timeout=120)
    assert r.returncode == 0, r.stderr
    levels = json.loads(r.stdout.strip().splitlines()[-1])
    assert [lv[1:] for lv in levels] == [[True, False]] * 3
    assert levels[1][0] == "landlock" or detect_isolation().features["landlock_abi"] == 0


def test_falls_back_without_user_namespaces():
    """Kubernetes pods often forbid user namespaces: simulate one with a seccomp filter that
    refuses unshare/mount (as uid 1000 where we can), and expect the next level, announced."""
    script = textwrap.dedent(f"""
        import json, os, sys
        sys.path.insert(0, {REPO!r})
        from axiom_ray.sandbox import kernel
        prog, _ = kernel.seccomp_program((), confine_signals=False)
        kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
        kernel.seccomp_installer(prog)()
        from axiom_ray.problems import Problem, TestCase
        from axiom_ray.sandbox import Judge, Limits, SandboxUnavailable, detect_isolation
        p = Problem(id="add", title="add", difficulty="easy", prompt="", entry_point="add",
                    tests=(TestCase((1, 2), {{}}, 3),))
        report = detect_isolation()
        try:
            Judge(Limits(timeout_s=1), min_isolation="namespaces")
            refused = ""
        except SandboxUnavailable as e:
            refused = str(e)
        with Judge(Limits(timeout_s=1), min_isolation="rlimits") as j:
            ok = j.judge(p, "def add(a, b):\\n    return a + b\\n").passed
        print(json.dumps([report.level, report.missing, refused, ok, os.getuid()]))
    """)
    if os.geteuid() == 0 and shutil.which("setpriv") and os.path.exists("/usr/bin/python3"):
        argv = ["setpriv", "--reuid", "1000", "--regid", "1000", "--clear-groups", "/usr/bin/python3", "-c", script]
    else:
        argv = [sys.executable, "-c", script]
    r = subprocess.run(argv, capture_output=True, text=True, cwd="/", timeout=120)
    assert r.returncode == 0, r.stderr
    level, missing, refused, ok, _uid = json.loads(r.stdout.strip().splitlines()[-1])
    assert level != "namespaces" and "namespaces" in missing and ok
    assert "below the required minimum 'namespaces'" in refused and "namespaces:" in refused
    if detect_isolation().features["landlock_abi"] > 0:
        assert level == "landlock"


def test_limits_validation():
    assert Limits().wall_s == 17.0 and Limits().starved_wall_s == 170.0
    with pytest.raises(ValueError, match="positive"):
        Limits(timeout_s=0)


# --- the pure parts ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, True, 0, -5, 2 ** 100, -(2 ** 70), 1.5, float("inf"), "s\u2603", b"\x00\xff",
                                   [1, [2, (3,)]], (), {1, frozenset({2})}, {"a": {(1, 2): [None]}}])
def test_wire_round_trips_plain_data(value):
    back = wire.from_tree(json.loads(json.dumps(wire.to_tree(value))))
    assert back == value and type(back) is type(value)


def test_wire_refuses_subclasses_and_objects():
    class MyInt(int):
        pass

    for bad in (MyInt(3), [MyInt(3)], {"k": object()}, type("S", (str,), {})("x"), {1: {2: MyInt(1)}}):
        with pytest.raises(wire.WireError):
            wire.to_tree(bad)


@pytest.mark.parametrize("tree", [{"a": 1}, ["zz", 1], ["s", ["l"]], ["d", 1], ["I", "xyz"], ["b", "!!"], []])
def test_wire_decoder_rejects_malformed_trees(tree):
    with pytest.raises(wire.WireError):
        wire.from_tree(tree)


def test_wire_decoder_rejects_deep_nesting():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(wire.WireError):
        wire.loads(deep.encode())
    tree: list = ["l"]
    for _ in range(wire.MAX_DEPTH + 5):
        tree = ["l", tree]
    with pytest.raises(wire.WireError):
        wire.from_tree(tree)


def _run_bpf(program, nr: int, arch: int, arg0: int = 0, arg1: int = 0) -> int:
    """What a classic-BPF seccomp program returns for one syscall (the opcodes kernel.py emits)."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, arg1, 0, 0, 0, 0)
    pc, acc = 0, 0
    while True:
        ins = program[pc]
        if ins.code == 0x20:  # ld [k]
            acc, pc = struct.unpack_from("=I", data, ins.k)[0], pc + 1
        elif ins.code in (0x15, 0x35, 0x45):  # jeq, jge, jset
            hit = {0x15: acc == ins.k, 0x35: acc >= ins.k, 0x45: bool(acc & ins.k)}[ins.code]
            pc += 1 + (ins.jt if hit else ins.jf)
        elif ins.code == 0x06:  # ret
            return ins.k
        else:
            raise AssertionError(f"unexpected opcode {ins.code:#x}")


@pytest.mark.skipif(kernel.ARCH not in ("x86_64", "aarch64"), reason="no syscall table for this machine")
@pytest.mark.parametrize("confine_signals", [False, True])
def test_seccomp_filter_decides_every_syscall_as_specified(confine_signals):
    k = kernel
    program, pgid_index = k.seccomp_program((4242,), confine_signals)
    k.set_own_pgid(program, pgid_index, 777)
    arch = k._AUDIT_ARCH[k.ARCH]
    allow, kill = k._SECCOMP_RET_ALLOW, k._SECCOMP_RET_KILL_PROCESS
    eperm, eacces, enosys = (k._SECCOMP_RET_ERRNO | e for e in (1, 13, 38))
    denied = {k._nr(name) for name in k.DENIED_SYSCALLS} - {None}
    special = {k._nr(n) for n in ("socket", "clone3", "clone", "ioctl", "kill", "tkill", "tgkill")}
    for nr in range(600):
        want = eperm if nr in denied else allow
        if nr not in special:
            assert _run_bpf(program, nr, arch) == want, nr
        assert _run_bpf(program, nr, arch ^ 1) == kill  # another architecture's numbers
    if k.ARCH == "x86_64":
        assert _run_bpf(program, 0x40000000 + 1, arch) == eperm  # the x32 ABI (its write)
    assert _run_bpf(program, k._nr("socket"), arch) == eacces
    assert _run_bpf(program, k._nr("clone3"), arch) == enosys
    assert _run_bpf(program, k._nr("clone"), arch, 0x11) == allow
    for flag in (k.CLONE_NEWUSER, k.CLONE_NEWPID, k.CLONE_NEWNS, k.CLONE_NEWNET):
        assert _run_bpf(program, k._nr("clone"), arch, flag | 0x11) == eperm
    assert _run_bpf(program, k._nr("ioctl"), arch, 1, 0x5412) == eperm  # TIOCSTI
    assert _run_bpf(program, k._nr("ioctl"), arch, 1, 0x5401) == allow
    for name in ("kill", "tkill", "tgkill"):
        cases = {0: allow, 12345: allow, (-777) & 0xFFFFFFFF: allow, (-1) & 0xFFFFFFFF: eperm,
                 (-778) & 0xFFFFFFFF: eperm, 4242: eperm}
        for target, want in cases.items():
            assert _run_bpf(program, k._nr(name), arch, target) == (want if confine_signals else allow), (name, target)


def test_values_equal_modes():
    assert values_equal(3, 3.0) and not values_equal(1, True) and not values_equal(True, 1)
    assert values_equal([1, (2, 3)], ((1, [2, 3]))) and not values_equal([1, 2], [2, 1])
    assert values_equal({"a": [1]}, {"a": (1,)}) and not values_equal({"a": 1}, {"a": 1, "b": 2})
    assert values_equal({1, 2}, frozenset({2, 1})) and not values_equal({1}, {True})
    assert values_equal(0.1 + 0.2, 0.3, "float") and not values_equal(0.1, 0.2, "float")
    assert values_equal([1.0, {"x": 2.0}], [1.0000001, {"x": 2.0}], "float")
    assert not values_equal(True, 1.0, "float")
    assert values_equal([[1], [2], [1]], [[2], (1,), [1]], "unordered")
    assert not values_equal([[1], [2]], [[2], [2]], "unordered")
    assert not values_equal(None, 0) and not values_equal("1", 1) and not values_equal(b"a", "a")


# The comparison rules are compare.py's alone: these test the function the judge calls.
@pytest.mark.parametrize(
    ("expected", "actual", "mode", "ok"),
    [
        ([0, 1], [0, 1], "exact", True),
        ([0, 1], (0, 1), "exact", True),
        ([0, 1], [1, 0], "exact", False),
        (True, 1, "exact", False),
        (1, True, "exact", False),
        (False, 0, "exact", False),
        (2, 2.0, "exact", True),
        ("1", 1, "exact", False),
        (None, None, "exact", True),
        (None, [], "exact", False),
        ({"a": [1]}, {"a": (1,)}, "exact", True),
        ({"a": 1}, {"a": 1, "b": 2}, "exact", False),
        (0.1 + 0.2, 0.3, "exact", False),
        # bool is never a number, also as a set element or a dict key
        ({1}, {True}, "exact", False),
        ({1: 2}, {True: 2}, "exact", False),
        ({1: [1.0]}, {True: [1.0]}, "float", False),
        ({1.0}, {1}, "exact", True),
        ({"a": 1}, {"a": True}, "exact", False),
        ([float("nan")], [float("nan")], "exact", False),  # NaN equals nothing under exact
        (0.1 + 0.2, 0.3, "float", True),
        ([1.0, [2.0]], [1.0000001, [1.9999999]], "float", True),
        ([1.0], [1.1], "float", False),
        (0.0, 1e-10, "float", True),
        (1.0, True, "float", False),
        ([float("nan")], [float("nan")], "float", True),  # ... and NaN equals NaN under float
        (10**30, 10**30 + 1, "float", True),  # ints compare with isclose too under float
        (1.0, 10**400, "float", False),
        (10**400, 10**400 + 1, "float", False),  # too large for a float: compared exactly
        ([1, 2, 2], [2, 1, 2], "unordered", True),
        ([1, 2, 2], [2, 1, 1], "unordered", False),
        ([1, 2], (2, 1), "unordered", True),
        ([1, 2], {2, 1}, "unordered", False),  # a set is not a sequence
        ([1, 2], [1, 2, 2], "unordered", False),
        ([[1, 2], [3]], [[3], [1, 2]], "unordered", True),
        ([[1, 2], [3]], [[3], [2, 1]], "unordered", False),  # inner lists keep their order
        ([True], [1], "unordered", False),
        ([1], 1, "unordered", False),
    ],
)
def test_values_equal_rules(expected, actual, mode, ok):
    assert values_equal(expected, actual, mode) is ok


def test_values_equal_rejects_non_plain_values_and_unknown_modes():
    class Sneaky(int):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = int.__hash__

    assert not values_equal(5, Sneaky(3))
    assert not values_equal([5], [Sneaky(3)], "unordered")
    with pytest.raises(ValueError, match="unknown compare mode"):
        values_equal(1, 1, "fuzzy")


def test_the_judge_applies_the_comparison_rules(judge):
    keys = problem("keys", [((), {}, {1: 2})])
    assert run(judge, keys, "def keys():\n    return {True: 2}\n").status == "failed"
    assert run(judge, keys, "def keys():\n    return {1.0: 2}\n").passed
    members = problem("members", [((), {}, {1})])
    assert run(judge, members, "def members():\n    return {True}\n").status == "failed"
    assert run(judge, members, "def members():\n    return frozenset({1})\n").passed
    pair = problem("pair", [((), {}, [1, 2])], compare="unordered")
    assert run(judge, pair, "def pair():\n    return (2, 1)\n").passed
    assert run(judge, pair, "def pair():\n    return {1, 2}\n").status == "failed"
    big = problem("big", [((), {}, 10**30)], compare="float")
    assert run(judge, big, "def big():\n    return 10**30 + 1\n").passed


def test_wire_bounds_what_one_reply_costs_the_judge():
    p61 = 2 ** 61 - 1
    with pytest.raises(wire.TooLarge):  # distinct values that hash alike, as a set, dict or frozenset
        wire.from_tree(["s", *(["I", format(k * p61, "x")] for k in range(1, 100))])
    with pytest.raises(wire.TooLarge):
        wire.from_tree(["d", *(x for k in range(1, 100) for x in (["t", ["I", format(k * p61, "x")]], 0))])
    crafted = wire.from_tree(["l", *(["t", ["I", format(k * p61, "x")], k] for k in range(1, 100))])
    assert len(crafted) == 99  # a list may hold them: only a check program could make a dict of it
    with pytest.raises(wire.TooLarge):
        wire.check_alike_inside({"pairs": crafted})
    wire.check_alike_inside([[(i, i + 1), frozenset({i})] for i in range(10_000)] + [0] * 10_000)
    # Legitimate data that hashes alike: repeats, -1 and -2, powers of two 61 bits apart.
    wire.check_alike([0] * 10_000 + [-1, -2] * 5000 + [float("nan")] * 100)
    assert len(wire.from_tree(["s", *(["I", format(2 ** k, "x")] for k in range(900))])) == 900
    with pytest.raises(wire.TooLarge):
        wire.from_tree(["l", *range(1000)], max_values=999)
    assert wire.from_tree(["l", *range(1000)], max_values=1000) == list(range(1000))


def test_wire_counts_a_frames_values_before_parsing_it():
    body = json.dumps(["ret", 0, ["l", *(["a,b:[c"] * 1000)]]).encode()  # separators inside strings
    assert not wire.too_many_values(body, 1010) and wire.too_many_values(body, 1000)
    assert wire.loads(body, 1010)[2][1] == "a,b:[c"
    with pytest.raises(wire.TooLarge):
        wire.loads(json.dumps(["ret", 0, ["l", *range(5000)]]).encode(), 4000)
    with pytest.raises(wire.TooLarge):  # deeper than json's own recursion: too large, not malformed
        wire.loads(b"[" * 100_000 + b"]" * 100_000)


def test_details_render_any_value_safely():
    assert render(1 << 3_000_000) == "<int of about 903090 digits>"
    assert render(-(10 ** 200)).startswith("-1000")
    for value in ("\ud800\x00\n" * 100, b"\x00" * 10 ** 6, [[[[[[[[1]]]]]]]], {frozenset({1 << 5000})}):
        shown = render(value)
        assert len(shown) <= 100 and shown.isprintable(), shown
        shown.encode("utf-8")
    assert clean_text("ok\x00\ud800", 300) == "ok\\x00\\ud800"


class _BufferedSocket:
    """A socket whose whole input is already buffered: recv hands it out chunk by chunk, then
    would block (what a candidate faster than the judge looks like)."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)

    def recv(self, n: int) -> bytes:
        if not self.data:
            raise BlockingIOError
        chunk, self.data = bytes(self.data[:n]), self.data[n:]
        return chunk


def test_an_oversized_reply_is_too_large_however_fast_it_arrives():
    limits = Limits(max_result_bytes=1024 * 1024)
    reply = wire.dumps(["ret", 0, "x" * (8 << 20)])  # 8 MiB, all of it waiting at once
    chan = Channel.__new__(Channel)  # only the reading half: no candidate, server or poller
    chan.sock, chan.limits, chan.rbuf, chan.eof = _BufferedSocket(reply), limits, bytearray(), False
    with pytest.raises(Stop) as stopped:
        chan._read()
    assert stopped.value.kind == "too_large" and TOO_LARGE in stopped.value.detail
    assert len(chan.rbuf) <= 1 << 18  # named at the first chunk, not after buffering the flood
