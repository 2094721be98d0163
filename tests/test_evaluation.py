"""pass@k, the summary of a pass (PassSummary), bootstrap intervals, paired differences and
Parquet reading (pure: no Ray)."""

from __future__ import annotations

import itertools
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from axiom_ray.evaluation import (
    PairedDifference,
    PassSummary,
    bootstrap_ci,
    paired_difference,
    pass_at_k,
    read_rows,
    summarize,
)


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """The definition: the share of k-subsets of the n samples holding a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 8))
def test_pass_at_k_matches_enumeration(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_is_stable_for_large_n() -> None:
    assert pass_at_k(200, 1, 100) == pytest.approx(0.5)
    assert pass_at_k(1000, 0, 500) == 0.0
    assert pass_at_k(1000, 1000, 1) == 1.0
    assert pass_at_k(10_000, 3, 1) == pytest.approx(3 / 10_000)


@pytest.mark.parametrize(("n", "c", "k"), [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_rejects_impossible_inputs(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(n, c, k)


def row(
    pid: str,
    passed: bool,
    code_hash: str | None = None,
    attempt: int = 0,
    status: str | None = None,
) -> dict:
    return {
        "problem_id": pid,
        "passed": passed,
        "attempt": attempt,
        "status": status or ("passed" if passed else "failed"),
        "code_hash": code_hash,
        "code": f"code-{code_hash}",
    }


def hand_built_rows() -> list[dict]:
    """Three problems x 4 first-round samples, plus a resample of the unsolved one."""
    return [
        # p1: 3/4, two passes share an AST hash (one duplicate)
        row("p1", True, "h1"),
        row("p1", True, "h1"),
        row("p1", True, "h2"),
        row("p1", False, status="timeout"),
        # p2: 1/4
        row("p2", True, "h3"),
        row("p2", False),
        row("p2", False, status="error"),
        row("p2", False, status="memory"),
        # p3: 0/4 in attempt 0, solved by the second attempt (which the pass rate ignores)
        *[row("p3", False) for _ in range(4)],
        row("p3", False, attempt=1, status="rejected"),
        row("p3", True, "h4", attempt=1),
        # the same hash under another problem is another solution (dedupe is per problem)
        row("p3", True, "h1", attempt=1),
    ]


def test_summarize_hand_built_table() -> None:
    s = summarize(hand_built_rows(), ks=(1, 2, 4))
    assert (s.problems, s.solved) == (3, 3)
    assert s.solve_rate == 1.0
    assert (s.first_passed, s.first_samples) == (4, 12)
    assert s.pass_rate == pytest.approx(4 / 12)
    assert (s.samples, s.passed, s.failed) == (15, 6, 9)
    assert (s.unique_solutions, s.duplicates) == (5, 1)
    assert s.status == {
        "error": 1,
        "failed": 5,
        "memory": 1,
        "passed": 6,
        "rejected": 1,
        "timeout": 1,
    }
    assert s.per_problem == {"p1": (3, 4), "p2": (1, 4), "p3": (0, 4)}
    assert s.pass_at_k[1] == pytest.approx((3 / 4 + 1 / 4 + 0) / 3)
    assert s.pass_at_k[2] == pytest.approx((pass_at_k(4, 3, 2) + pass_at_k(4, 1, 2)) / 3)
    assert s.pass_at_k[4] == pytest.approx(2 / 3)


def test_summarize_accepts_a_pyarrow_table_and_skips_undefined_pass_at_k() -> None:
    rows = hand_built_rows()
    table = pa.Table.from_pylist(rows)
    assert summarize(table, ks=(1, 4)) == summarize(rows, ks=(1, 4))
    # k above a problem's sample count has no unbiased estimate: left out, not padded
    assert 5 not in summarize(rows, ks=(1, 5)).pass_at_k


def test_summarize_empty_and_minimal_columns() -> None:
    empty = summarize(pa.table({}))
    assert empty == PassSummary()
    assert (empty.solve_rate, empty.pass_rate, empty.pass_at_k) == (0.0, 0.0, {})
    # rows without attempt, status or code_hash (older files): attempt 0, status from passed
    s = summarize([{"problem_id": "a", "passed": True}, {"problem_id": "a", "passed": False}])
    assert (s.first_passed, s.first_samples, s.status) == (1, 2, {"failed": 1, "passed": 1})


def test_bootstrap_ci_contains_mean_and_is_deterministic() -> None:
    values = [0.0, 0.25, 1.0, 0.5, 0.75, 1.0, 0.0, 0.125]
    lo, hi = bootstrap_ci(values, n_boot=500, seed=3)
    mean = sum(values) / len(values)
    assert 0.0 <= lo < mean < hi <= 1.0
    assert bootstrap_ci(values, n_boot=500, seed=3) == (lo, hi)
    assert bootstrap_ci(values, n_boot=500, seed=4) != (lo, hi)
    assert bootstrap_ci([0.4] * 5) == pytest.approx((0.4, 0.4))
    assert all(math.isnan(x) for x in bootstrap_ci([]))


def test_summary_pass_at_k_ci_brackets_pass_at_1() -> None:
    s = summarize(hand_built_rows())
    lo, hi = s.pass_at_k_ci(1)
    assert lo <= s.pass_at_k[1] <= hi


def test_read_rows_missing_empty_and_partial_files(tmp_path) -> None:
    assert read_rows(str(tmp_path / "absent")).num_rows == 0
    (tmp_path / "empty").mkdir()
    assert read_rows(str(tmp_path / "empty")).num_rows == 0
    d = tmp_path / "samples"
    d.mkdir()
    rows = hand_built_rows()
    pq.write_table(pa.Table.from_pylist(rows[:5]), d / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist(rows[5:]), d / "part-1.parquet")
    # a writer's temporary file is never read
    pq.write_table(pa.Table.from_pylist(rows[:2]), d / ".tmp-part-2.parquet")
    (d / "notes.txt").write_text("not parquet")
    table = read_rows(str(d))
    assert table.num_rows == len(rows)
    assert summarize(table) == summarize(rows)
    narrow = read_rows(f"file://{d}", columns=["problem_id", "passed", "no_such_column"])
    assert narrow.column_names == ["problem_id", "passed"]


def _summary(per_problem: dict[str, tuple[int, int]]) -> PassSummary:
    return PassSummary(problems=len(per_problem), per_problem=per_problem)


def test_paired_difference_sees_a_gain_spread_over_problems() -> None:
    base = _summary({f"p{i}": (1, 4) for i in range(20)})
    better = _summary({f"p{i}": (3 if i < 12 else 1, 4) for i in range(20)})
    d = paired_difference(base, better)
    assert d.problems == 20 and abs(d.diff - 12 * 0.5 / 20) < 1e-9
    assert 0 < d.lo <= d.diff <= d.hi and d.verdict == "gain"
    assert paired_difference(better, base).verdict == "loss"


def test_paired_difference_says_no_detectable_change_when_the_interval_covers_zero() -> None:
    base = _summary({"a": (0, 4), "b": (4, 4), "c": (2, 4)})
    other = _summary({"a": (1, 4), "b": (3, 4), "c": (2, 4), "only_here": (4, 4)})
    d = paired_difference(base, other)
    assert d.problems == 3 and d.diff == 0.0  # only the shared problems count
    assert d.lo < 0 < d.hi and d.verdict == "no detectable change"
    assert "no detectable change, 3 problems" in d.describe()
    assert paired_difference(base, _summary({"z": (1, 1)})).verdict == "not measured"


def test_pass_summary_is_the_manifest_figures_with_one_meaning_each() -> None:
    rows = [dict(r, num_tokens=10, code_tokens=4) for r in hand_built_rows()]
    s = summarize(rows).timed(3.0)
    assert (s.tokens, s.tokens_kept, s.tokens_per_s) == (150, 60, 50.0)
    metrics = s.phase_metrics(problems=3)
    assert metrics == {"candidates": 15, "passed": 6, "solved": 3, "tokens": 150, "tokens_kept": 60,
                       "seconds": 3.0, "tokens_per_s": 50.0, "problems": 3, "pass_rate": round(4 / 12, 4)}
    # the pass rate counts first-round samples only: the resample that solved p3 does not move it
    assert metrics["pass_rate"] == round(s.pass_rate, 4) != round(s.passed / s.samples, 4)
    assert summarize(rows).tokens_per_s == 0.0  # not timed


def test_paired_difference_round_trips_through_the_manifest() -> None:
    base = _summary({f"p{i}": (1, 4) for i in range(20)})
    better = _summary({f"p{i}": (3 if i < 12 else 1, 4) for i in range(20)})
    d = paired_difference(base, better)
    back = PairedDifference.from_dict(d.to_dict())
    assert back.describe() == d.describe() and back.verdict == d.verdict == "gain"
    assert back.alpha == pytest.approx(d.alpha)
    empty = PairedDifference.from_dict(paired_difference(base, _summary({"z": (1, 1)})).to_dict())
    assert (empty.problems, empty.verdict) == (0, "not measured")

