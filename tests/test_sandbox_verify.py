"""`axiom verify` (verify_command): one JSON verdict and exit codes 0/1/2; batch mode in order."""

from __future__ import annotations

import argparse
import json

import pytest

from axiom_ray import verify_command

PROBLEM = {"id": "add", "title": "Add", "difficulty": "easy", "prompt": "def add(a, b):", "entry_point": "add",
           "tests": [{"args": [1, 2], "expected": 3}, {"args": [2, 2], "expected": 4}]}
OTHER = {**PROBLEM, "id": "sub", "entry_point": "sub", "tests": [{"args": [3, 2], "expected": 1}]}


def verify(capsys, *argv: str) -> tuple[int, list[dict], str]:
    parser = argparse.ArgumentParser(prog="axiom verify")
    verify_command.add_arguments(parser)
    code = verify_command.run(parser.parse_args([*argv, "--timeout", "2", "--min-isolation", "rlimits"]))
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


@pytest.fixture
def files(tmp_path):
    one = tmp_path / "add.json"
    one.write_text(json.dumps(PROBLEM))
    many = tmp_path / "set.jsonl"
    many.write_text(json.dumps(PROBLEM) + "\n" + json.dumps(OTHER) + "\n")
    good = tmp_path / "good.py"
    good.write_text("def add(a, b):\n    return a + b\n")
    bad = tmp_path / "bad.py"
    bad.write_text("def add(a, b):\n    return 4\n")
    return {"one": str(one), "many": str(many), "good": str(good), "bad": str(bad), "dir": tmp_path}


def test_single_passed_and_failed(capsys, files):
    code, out, err = verify(capsys, "--problem", files["one"], "--solution", files["good"])
    assert code == 0 and len(out) == 1 and err == ""
    assert {"passed", "status", "passed_tests", "total_tests", "duration_ms", "isolation", "detail"} <= set(out[0])
    assert out[0]["passed"] is True and out[0]["passed_tests"] == 2
    code, out, _ = verify(capsys, "--problem", files["one"], "--solution", files["bad"])
    assert code == 1 and out[0]["status"] == "failed" and out[0]["passed_tests"] == 1


def test_single_from_a_set_file_and_a_builtin_id(capsys, files):
    code, out, _ = verify(capsys, "--problem", files["many"], "--problem-id", "add", "--solution", files["good"])
    assert code == 0 and out[0]["problem_id"] == "add"
    code, out, _ = verify(capsys, "--problem", "two_sum", "--solution", files["good"])
    assert code == 1 and out[0]["problem_id"] == "two_sum" and out[0]["status"] == "error"


@pytest.mark.parametrize("case", ["missing problem", "missing solution", "several problems", "unknown id in file",
                                  "malformed problem", "unknown builtin", "nothing", "both modes"])
def test_bad_input_is_one_line_and_exit_2(capsys, files, case):
    broken = files["dir"] / "broken.json"
    broken.write_text('{"id": "x", "title": 3}')
    argv = {
        "missing problem": ["--problem", str(files["dir"] / "nope.json"), "--solution", files["good"]],
        "missing solution": ["--problem", files["one"], "--solution", str(files["dir"] / "nope.py")],
        "several problems": ["--problem", files["many"], "--solution", files["good"]],
        "unknown id in file": ["--problem", files["many"], "--problem-id", "zzz", "--solution", files["good"]],
        "malformed problem": ["--problem", str(broken), "--solution", files["good"]],
        "unknown builtin": ["--problem", "no_such_problem_id", "--solution", files["good"]],
        "nothing": [],
        "both modes": ["--problem", files["one"], "--solutions", files["good"]],
    }[case]
    code, out, err = verify(capsys, *argv)
    assert code == 2 and out == []
    assert len(err.strip().splitlines()) == 1 and err.startswith("axiom verify: error: ") and "Traceback" not in err


def test_batch_in_input_order_with_a_summary(capsys, files):
    rows = [{"problem_id": "add", "code": "def add(a, b):\n    return a + b\n", "sample_id": "a0"},
            {"problem_id": "sub", "code": "def sub(a, b):\n    return a + b\n"},
            {"problem_id": "add", "code": "def add(a, b):\n    while True: pass\n", "sample_id": "a1"},
            {"problem_id": "sub", "code": "def sub(a, b):\n    return a - b\n", "sample_id": "s1"}]
    sols = files["dir"] / "sols.jsonl"
    sols.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = verify(capsys, "--problems", files["many"], "--solutions", str(sols), "--workers", "2")
    assert code == 1 and len(out) == 5
    assert [o.get("sample_id") for o in out[:4]] == ["a0", None, "a1", "s1"]
    assert [o["status"] for o in out[:4]] == ["passed", "failed", "timeout", "passed"]
    summary = out[4]
    assert summary["summary"] and summary["total"] == 4 and summary["passed"] == 2 and summary["workers"] == 2
    assert summary["statuses"] == {"failed": 1, "passed": 2, "timeout": 1} and summary["verdicts_per_second"] > 0


def test_batch_rejects_bad_rows_before_running(capsys, files):
    sols = files["dir"] / "sols.jsonl"
    sols.write_text('{"problem_id": "add", "code": "x"}\n{"problem_id": "nope", "code": "x"}\n')
    code, out, err = verify(capsys, "--problems", files["many"], "--solutions", str(sols))
    assert code == 2 and out == [] and "sols.jsonl:2" in err and "unknown problem_id" in err
    sols.write_text('{"problem_id": "add"}\n')
    code, _, err = verify(capsys, "--problems", files["many"], "--solutions", str(sols))
    assert code == 2 and "'code'" in err


def test_report_isolation(capsys):
    code, out, _ = verify(capsys, "--report-isolation")
    assert code == 0 and out[0]["meets_minimum"] and out[0]["level"] in ("rlimits", "seccomp", "landlock", "namespaces")
