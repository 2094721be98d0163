"""Problems whose answers drift with the clock, time zone, hash seed, working directory or chance
are found and named (axiom_ray/determinism.py), and no shipped set contains one."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from axiom_ray import determinism as D
from axiom_ray import problems as P
from axiom_ray.importers import codeio
from axiom_ray.problems import Problem

# Each reference answers one call; its stored expected value is the baseline answer, so only the
# factor it depends on can make it disagree.
DRIFTING = {
    "today": ("from datetime import date\ndef f():\n    return date.today().isoformat()\n",
              "the date and time"),
    "now_year": ("import datetime\ndef f():\n    return datetime.datetime.now().year\n",
                 "the date and time"),
    "epoch_day": ("import time\ndef f():\n    return int(time.time() // 86400)\n", "the date and time"),
    "zone": ("import time\ndef f():\n    return time.strftime('%z', time.localtime(0))\n",
             "the time zone"),
    "cwd": ("import os\ndef f():\n    return os.getcwd()\n", "the working directory"),
    "dice": ("import random\ndef f():\n    return random.random()\n", "chance"),
    "set_order": ("def f():\n    return list({'alpha', 'beta', 'gamma', 'delta', 'eps', 'zeta'})\n",
                  "the hash seed"),
}
STEADY = {
    "fixed_date": "from datetime import date, timedelta\n"
                  "def f():\n    return (date(2024, 2, 28) + timedelta(days=2)).isoformat()\n",
    "sorted_set": "def f():\n    return sorted({'b', 'a', 'c'})\n",
    "seeded": "import random\ndef f():\n    return random.Random(7).random()\n",
    "fixed_epoch": "import time\ndef f():\n    return time.strftime('%Y', time.gmtime(0))\n",
}


def _problem(pid: str, reference: str, expected: object = None) -> Problem:
    return Problem.from_dict({"id": pid, "prompt": "p", "entry_point": "f", "reference": reference,
                              "tests": [{"args": [], "expected": expected}]})


def _with_baseline_answers(runner: D.Runner, sources: dict[str, str]) -> list[Problem]:
    bare = [_problem(pid, src) for pid, src in sources.items()]
    answers = runner(bare, D.BASELINE)
    return [_problem(p.id, p.reference or "", answers[p.id][0]) for p in bare]


def test_the_varied_condition_moves_the_clock_a_year_forward() -> None:
    probe = _problem("probe", "import datetime, time\n"
                     "def f():\n    return [datetime.date.today().isoformat(), time.time(),"
                     " datetime.datetime.now().isoformat(), time.strftime('%z')]\n")
    # Against the baseline run, not this process's clock: holds under any real date (or faketime).
    ((_, base_now, _, base_zone),) = D.run_trusted([probe], D.BASELINE)["probe"]
    ((today, now, _, zone),) = D.run_trusted([probe], D.CONDITIONS[1])["probe"]
    shift = D.CONDITIONS[1].clock_shift_s
    assert abs((now - base_now) - shift) < 60 and (base_zone, zone) == ("+0000", "+1345")
    moved = dt.datetime.fromtimestamp(now, dt.timezone(dt.timedelta(hours=13, minutes=45)))
    assert today == moved.date().isoformat()
    assert dt.date.fromisoformat(today) > dt.datetime.fromtimestamp(base_now, dt.timezone.utc).date()


def test_trusted_runner_names_the_factor_of_each_drifting_reference() -> None:
    probs = _with_baseline_answers(D.run_trusted, {k: v for k, (v, _) in DRIFTING.items()} | STEADY)
    report = D.check_problems(probs, D.run_trusted)
    assert report.checked == len(probs)
    assert set(report.dropped) == set(DRIFTING)
    for pid, (_, factor) in DRIFTING.items():
        assert factor in report.dropped[pid], (pid, report.dropped[pid])


def test_a_reference_that_fails_its_tests_everywhere_is_dropped_as_such() -> None:
    report = D.check_problems([_problem("wrong", "def f():\n    return 1\n", 2)], D.run_trusted)
    assert "fails its own tests under every condition" in report.dropped["wrong"]


def test_problems_without_a_reference_are_counted_unchecked() -> None:
    bare = Problem.from_dict({"id": "x", "prompt": "p", "entry_point": "f",
                              "tests": [{"args": [], "expected": 1}]})
    report = D.check_problems([bare], D.run_trusted)
    assert (report.checked, report.unchecked, report.dropped) == (0, ["x"], {})


@pytest.fixture(scope="module")
def judges() -> Iterator[D.JudgesBySeed]:
    with D.JudgesBySeed(codeio.CHECK_LIMITS) as j:
        yield j


SANDBOXED = ("today", "zone", "cwd", "dice", "set_order")


def test_sandbox_runner_names_the_factor_of_each_drifting_reference(judges: D.JudgesBySeed) -> None:
    runner = D.sandbox_runner(judges.judge_for)
    sources = {k: DRIFTING[k][0] for k in SANDBOXED} | STEADY
    report = D.check_problems(_with_baseline_answers(runner, sources), runner)
    assert set(report.dropped) == set(SANDBOXED)
    for pid in SANDBOXED:
        assert DRIFTING[pid][1] in report.dropped[pid], (pid, report.dropped[pid])


def test_sandbox_runner_drops_a_reference_close_to_the_cpu_limit(judges: D.JudgesBySeed) -> None:
    slow = _problem("slow", "def f():\n    while True:\n        pass\n", 1)
    report = D.check_problems([slow], D.sandbox_runner(judges.judge_for))
    assert "out of CPU time" in report.dropped["slow"]


# --- every shipped set ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["axiom-rl", "leetcode-easy", "basics", "humaneval"])
def test_our_references_answer_the_same_under_every_condition(name: str) -> None:
    report = D.check_problems(P.load_set(name), D.run_trusted)
    assert report.checked > 0 and report.dropped == {}


def test_codeio_sample_answers_the_same_under_every_condition(judges: D.JudgesBySeed) -> None:
    sample = random.Random(0).sample(P.load_set("codeio"), 40)
    report = D.check_problems(sample, D.sandbox_runner(judges.judge_for))
    assert report.dropped == {}


@pytest.mark.slow
def test_every_codeio_problem_answers_the_same_under_every_condition(judges: D.JudgesBySeed) -> None:
    report = D.check_problems(P.load_set("codeio"), D.sandbox_runner(judges.judge_for))
    assert report.checked == len(P.load_set("codeio")) and report.dropped == {}


def test_dropped_problems_are_listed_and_gone_from_their_sets() -> None:
    listing = Path(P.problems_dir(), "nondeterministic.tsv").read_text().splitlines()
    rows = [line.split("\t") for line in listing if not line.startswith("#")]
    assert rows and all(len(r) == 3 for r in rows)
    for set_name, pid, _reason in rows:
        assert pid not in {p.id for p in P.load_set(set_name)}
