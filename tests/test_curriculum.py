"""The curriculum's selection rules (axiom_ray/curriculum.py): pure, no Ray, milliseconds."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from axiom_ray.curriculum import (
    MIN_EVIDENCE,
    Record,
    curriculum_enabled,
    load_records,
    merge_records,
    records_from_rows,
    select_problems,
)


@dataclass(frozen=True)
class P:
    id: str
    difficulty: str = "easy"


def pool_of(easy: int = 0, medium: int = 0, hard: int = 0) -> list[P]:
    return (
        [P(f"e{i}", "easy") for i in range(easy)]
        + [P(f"m{i}", "medium") for i in range(medium)]
        + [P(f"h{i}", "hard") for i in range(hard)]
    )


def rec(
    passed: int, samples: int = 8, solved: bool | None = None, iteration: int = 0, times: int = 1
) -> Record:
    return Record(passed, samples, passed > 0 if solved is None else solved, iteration, times)


def select(pool, records, size=8, explore=0.25, step_up=0.7, seed=0, iteration=1):
    return select_problems(
        pool, records, iteration=iteration, seed=seed, size=size, explore=explore, step_up=step_up
    )


@pytest.mark.parametrize(
    "mode, size, on",
    [
        ("auto", 10, False),
        ("auto", 50, False),
        ("auto", 51, True),
        ("auto", 1790, True),
        ("on", 10, True),
        ("off", 1790, False),
    ],
)
def test_auto_is_on_for_large_pools_only(mode, size, on):
    assert curriculum_enabled(mode, size) is on


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="data.curriculum"):
        curriculum_enabled("sometimes", 10)


def test_records_count_first_round_and_any_attempt():
    rows = (
        [{"problem_id": "a", "passed": True, "attempt": 0}] * 8
        + [{"problem_id": "b", "passed": i < 3, "attempt": 0} for i in range(8)]
        + [{"problem_id": "c", "passed": False, "attempt": 0}] * 8
        + [{"problem_id": "c", "passed": True, "attempt": 1}]  # a resample solved it
        + [{"problem_id": "d", "passed": False, "attempt": None}] * 8
    )
    r = records_from_rows(2, rows)
    assert (r["a"].passed, r["a"].samples, r["a"].kind) == (8, 8, "mastered")
    assert (r["b"].passed, r["b"].kind) == (3, "learning")
    assert (r["c"].passed, r["c"].samples, r["c"].solved, r["c"].kind) == (0, 8, True, "learning")
    assert (r["d"].samples, r["d"].kind) == (8, "unsolved")
    assert r["a"].iteration == 2


def test_latest_record_wins_and_times_count():
    merged = merge_records([(1, {"a": rec(8, iteration=1)}), (0, {"a": rec(2), "b": rec(0)})])
    assert merged["a"].kind == "mastered" and merged["a"].times == 2 and merged["a"].iteration == 1
    assert merged["b"].times == 1


def test_iteration_0_is_a_seeded_subset_favouring_easy():
    pool = pool_of(easy=20, medium=20, hard=20)
    first = select(pool, {}, size=8, iteration=0)
    assert len(first.ids) == 8 and all(pid.startswith("e") for pid in first.ids)
    assert first.ids == select(pool, {}, size=8, iteration=0).ids  # deterministic
    assert first.ids != select(pool, {}, size=8, iteration=0, seed=1).ids  # seeded
    assert first.chosen["untried"] == 8 and first.frontier == "easy"
    # fewer easy problems than the cap: the rest comes from the next level up, not from hard
    small = select(pool_of(easy=3, medium=20, hard=20), {}, size=8, iteration=0)
    assert small.difficulty == {"easy": 3, "medium": 5, "hard": 0}


def test_choice_does_not_depend_on_pool_order_and_keeps_it():
    pool = pool_of(easy=30)
    a = select(pool, {}, size=10, iteration=0)
    b = select(list(reversed(pool)), {}, size=10, iteration=0)
    assert set(a.ids) == set(b.ids)
    assert list(a.ids) == [p.id for p in pool if p.id in a.ids]


def test_skips_mastered_prefers_learning_and_keeps_an_exploration_share():
    pool = pool_of(easy=20)
    records = {f"e{i}": rec(8) for i in range(5)}  # mastered
    records |= {f"e{i}": rec(i - 4) for i in range(5, 13)}  # learning: 1..8 passes -> e12 mastered
    records |= {f"e{i}": rec(0) for i in range(13, 17)}  # unsolved; e17..e19 untried
    s = select(pool, records, size=8, explore=0.25)
    assert not {f"e{i}" for i in range(5)} & set(s.ids)
    assert "e12" not in s.ids  # 8/8 is mastered too
    # 6 learning slots, pass rates nearest 1/2 first: 4/8, 3/8, 5/8, 2/8, 6/8, then 1/8 or 7/8
    learning = [pid for pid in s.ids if 5 <= int(pid[1:]) <= 11]
    assert len(learning) == 6 and {"e8", "e7", "e9", "e6", "e10"} <= set(learning)
    # 2 exploration slots: never-tried before unsolved
    assert {pid for pid in s.ids if int(pid[1:]) >= 13} == {"e17", "e18", "e19"} & set(s.ids)
    assert s.chosen == {"learning": 6, "untried": 2, "unsolved": 0, "mastered": 0}
    assert s.mastered_skipped == 6


def test_slots_one_side_cannot_fill_go_to_the_other():
    pool = pool_of(easy=12)
    few_learning = {"e0": rec(4)} | {f"e{i}": rec(0) for i in range(1, 12)}
    s = select(pool, few_learning, size=8, explore=0.25)
    assert s.chosen["learning"] == 1 and len(s.ids) == 8
    few_exploring = {f"e{i}": rec(1 + i % 6) for i in range(11)}  # e11 untried
    s = select(pool, few_exploring, size=8, explore=0.5)
    assert s.chosen == {"learning": 7, "untried": 1, "unsolved": 0, "mastered": 0}


def test_unsolved_retried_fewer_times_first():
    pool = pool_of(easy=4)
    records = {
        "e0": rec(0, times=3),
        "e1": rec(0, times=1),
        "e2": rec(0, times=2),
        "e3": rec(0, times=1),
    }
    assert set(select(pool, records, size=2, explore=1.0).ids) == {"e1", "e3"}


def test_steps_up_when_the_easy_ones_are_mostly_solved():
    pool = pool_of(easy=10, medium=10, hard=10)
    easy_solved = {f"e{i}": rec(4 if i < 8 else 0) for i in range(10)}  # 8 of 10 solved (>= 70%)
    s = select(pool, easy_solved, size=4, explore=1.0)
    assert s.frontier == "medium" and s.difficulty == {"easy": 0, "medium": 4, "hard": 0}
    # not mostly solved: stay on easy (its five unsolved ones), then the next level up
    easy_hard = {f"e{i}": rec(4 if i < 5 else 0) for i in range(10)}
    s = select(pool, easy_hard, size=7, explore=1.0)
    assert s.frontier == "easy" and s.difficulty == {"easy": 5, "medium": 2, "hard": 0}
    # medium mostly solved too: hard is the frontier; untried easy ones come before harder
    both = easy_solved | {f"m{i}": rec(5) for i in range(10)}
    s = select(pool, both, size=4, explore=1.0)
    assert s.frontier == "hard" and s.difficulty["hard"] == 4


def test_no_step_up_without_enough_evidence():
    pool = pool_of(easy=30, medium=10)
    few = {
        f"e{i}": rec(8 if i else 5) for i in range(MIN_EVIDENCE - 1)
    }  # all solved, too few tried
    assert select(pool, few, size=4).frontier == "easy"
    enough = {f"e{i}": rec(5) for i in range(MIN_EVIDENCE)}
    assert select(pool, enough, size=4).frontier == "medium"


def test_step_up_threshold_is_the_config_knob():
    pool = pool_of(easy=10, medium=10)
    half = {f"e{i}": rec(4 if i < 5 else 0) for i in range(10)}
    assert select(pool, half, step_up=0.5).frontier == "medium"
    assert select(pool, half, step_up=0.7).frontier == "easy"


def test_everything_mastered_samples_the_mastered_again():
    pool = pool_of(easy=10)
    s = select(pool, {p.id: rec(8) for p in pool}, size=4)
    assert len(s.ids) == 4 and s.chosen["mastered"] == 4 and s.mastered_skipped == 6


def test_cap_larger_than_the_pool_takes_every_problem_not_mastered():
    pool = pool_of(easy=10)
    s = select(pool, {"e0": rec(8), "e1": rec(3)}, size=64)
    assert set(s.ids) == {f"e{i}" for i in range(1, 10)}


def test_selection_record_round_trips_to_json():
    import json

    s = select(pool_of(easy=5), {"e0": rec(2)}, size=3, iteration=2)
    d = json.loads(json.dumps(s.to_dict()))
    assert d["ids"] == list(s.ids) and d["pool"] == 5 and d["size"] == 3
    assert "ids" not in s.summary() and s.summary()["frontier"] == "easy"


def test_bad_size_is_refused():
    with pytest.raises(ValueError, match="size"):
        select(pool_of(easy=3), {}, size=0)


def test_load_records_reads_samples_parquet(tmp_path):
    def write(k: int, rows: list[dict]) -> str:
        folder = tmp_path / f"iter_{k}" / "samples"
        folder.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), folder / "part-0.parquet")
        return str(folder)

    row = {"problem_id": "a", "passed": True, "attempt": 0, "code": "x" * 100}
    d0 = write(0, [row] * 4 + [{**row, "problem_id": "b", "passed": False}] * 4)
    d1 = write(1, [row] * 2 + [{**row, "passed": False}] * 2)
    records = load_records([(0, d0), (1, d1), (2, str(tmp_path / "iter_2/samples"))])
    assert records["a"] == Record(2, 4, True, 1, 2)
    assert records["b"] == Record(0, 4, False, 0, 1)
