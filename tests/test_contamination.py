"""Contamination report: n-gram overlap between training and held-out prompts. Pure: no Ray."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from axiom_ray import contamination as C
from axiom_ray import problems as P
from axiom_ray.problems import Problem

BASE = (
    "Given a list of integers nums and an integer target, return the indices of the two "
    "numbers that add up to target, as a list with the smaller index first."
)


def _p(pid: str, prompt: str, set_name: str = "s") -> Problem:
    return Problem(pid, pid, "easy", prompt, "f", set=set_name)


def test_words_and_ngrams_normalise_case_punctuation_and_layout() -> None:
    assert C.words("Two-Sum: RETURN  nums[i]+x_y\n") == [
        "two",
        "sum",
        "return",
        "nums",
        "i",
        "x",
        "y",
    ]
    assert C.ngrams("a b c d", n=2) == {("a", "b"), ("b", "c"), ("c", "d")}
    assert C.ngrams("a b", n=3) == {("a", "b")}
    assert C.ngrams("  ...  ", n=3) == frozenset()
    assert C.ngrams(BASE.upper().replace(" ", "\n  ")) == C.ngrams(BASE)


def test_near_duplicate_is_flagged_and_unrelated_is_not() -> None:
    reworded = "Task: " + BASE.replace("smaller index first", "smaller index first, please")
    train = [_p("copy", reworded, "train"), _p("other", "Reverse a string s and return it now.")]
    held = [_p("held", BASE, "heldout"), _p("held2", "Count the vowels in a word w; return int.")]
    report = C.contamination_report(train, held, n=8, threshold=0.5)
    assert [(p.train_id, p.heldout_id) for p in report.pairs] == [("copy", "held")]
    pair = report.pairs[0]
    assert pair.score > 0.8 and pair.shared > 10 and pair.train_set == "train"
    assert len(pair.sample.split()) == 8 and pair.sample in " ".join(C.words(BASE))
    assert report.flagged_train_ids() == ["copy"]


def test_containment_of_a_short_heldout_inside_a_long_training_prompt() -> None:
    long_train = "Background story. " * 30 + BASE + " Extra requirements follow. " * 30
    report = C.contamination_report([_p("long", long_train)], [_p("short", BASE)])
    assert len(report.pairs) == 1 and report.pairs[0].score == 1.0


def test_threshold_and_partial_overlap() -> None:
    half = " ".join(BASE.split()[:14]) + " then sort the array and print every prime number."
    train, held = [_p("half", half)], [_p("held", BASE)]
    score = C.contamination_report(train, held, threshold=0.01).pairs[0].score
    assert 0.1 < score < 0.9
    assert C.contamination_report(train, held, threshold=min(1.0, score + 0.01)).pairs == ()
    assert len(C.contamination_report(train, held, threshold=score).pairs) == 1


def test_boilerplate_shared_by_many_heldout_problems_is_ignored() -> None:
    stem = "Write a python function that takes the input list and returns the answer for"
    held = [_p(f"h{i}", f"{stem} task number {i} about topic {i * 7}.") for i in range(8)]
    train = [_p("t", f"{stem} something else entirely different from all of them.")]
    assert C.contamination_report(train, held, max_df=3).pairs == ()
    flagged = C.contamination_report(train, held, max_df=100, threshold=0.3)
    assert len(flagged.pairs) == 8
    assert C.contamination_report(train, held, max_df=3).ignored_ngrams > 0


def test_bad_parameters() -> None:
    for kwargs in ({"n": 0}, {"threshold": 0}, {"threshold": 1.5}, {"max_df": 0}):
        with pytest.raises(ValueError):
            C.contamination_report([], [], **kwargs)


def test_report_serialises_and_prints() -> None:
    report = C.contamination_report([_p("copy", BASE)], [_p("held", BASE)])
    d = json.loads(json.dumps(report.to_dict()))
    assert d["pairs"][0]["train_id"] == "copy" and d["flagged_train_ids"] == ["copy"]
    table = report.table()
    assert "1 pair(s)" in table and "copy" in table and "held" in table
    text = C.exclusions_text(report, "cmd")
    assert "copy\theld\t1.0000" in text and "# Regenerate: cmd" in text


def test_cli_run_prints_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = tmp_path / "train.jsonl"
    held = tmp_path / "held.jsonl"
    obj = {"prompt": BASE + "\ndef f(x):", "entry_point": "f", "tests": [{"expected": 1}]}
    train.write_text(json.dumps({"id": "t1", **obj}) + "\n")
    held.write_text(json.dumps({"id": "h1", **obj}) + "\n")
    parser = argparse.ArgumentParser()
    C.add_arguments(parser)
    out = tmp_path / "report.json"
    args = parser.parse_args(["--train", str(train), "--heldout", str(held), "--out", str(out)])
    assert C.run(args) == 0
    assert "t1" in capsys.readouterr().out
    assert json.loads(out.read_text())["flagged_train_ids"] == ["t1"]
    assert C.run(parser.parse_args(["--train", "no_such_problem_id"])) == 2
    assert "no_such_problem_id" in capsys.readouterr().err


def test_builtin_sets_report_runs_and_train_large_exclusions_are_current() -> None:
    train = P.resolve_problems(C.DEFAULT_TRAIN)
    heldout = P.resolve_problems(C.DEFAULT_HELDOUT)
    report = C.contamination_report(train, heldout)
    assert report.train_count == len(train) > 300 and report.heldout_count == len(heldout) > 500
    vendored = P.read_exclusions(P.problems_dir() / P.TRAIN_LARGE_EXCLUSIONS)
    assert vendored == set(report.flagged_train_ids()), (
        "problems/train_large_exclusions.tsv is stale: "
        "run python scripts/import_problems.py contamination"
    )
    large = {p.id for p in P.load_set("train-large")}
    assert not large & vendored
    assert large == {p.id for p in train} - vendored
