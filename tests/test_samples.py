from axiom_ray.samples import code_hash, sample_id, select_training_rows


def test_sample_id_is_deterministic_and_distinct():
    a = sample_id("run", 1, "two_sum", "samples", 0, 3)
    assert a == sample_id("run", 1, "two_sum", "samples", 0, 3)
    others = {sample_id("run", 1, "two_sum", "samples", 0, i) for i in range(8)}
    assert len(others) == 8
    assert a != sample_id("run", 1, "two_sum", "eval", 0, 3)
    assert a != sample_id("run", 2, "two_sum", "samples", 0, 3)


def test_code_hash_ignores_formatting_comments_and_docstrings():
    a = "def f(x):\n    return x+1\n"
    b = 'def f( x ):\n    """Add one."""\n    # comment\n    return (x + 1)\n'
    assert code_hash(a) == code_hash(b)
    assert code_hash(a) != code_hash("def f(x):\n    return x + 2\n")
    # code that does not parse still hashes, by its normalised text
    assert code_hash("def f(:") == code_hash("def  f(:")


def _row(i, passed, h, it=0, attempt=0):
    return {"iteration": it, "attempt": attempt, "index": i, "sample_id": f"s{i}", "passed": passed,
            "code_hash": h}


def test_select_training_rows_dedupes_caps_and_orders():
    rows = [_row(3, True, "b"), _row(0, True, "a"), _row(1, True, "a"), _row(2, False, "c"), _row(4, True, "d")]
    chosen = select_training_rows(rows, max_per_problem=10, dedupe=True)
    assert [r["index"] for r in chosen] == [0, 3, 4]
    assert [r["index"] for r in select_training_rows(rows, 2, True)] == [0, 3]
    assert [r["index"] for r in select_training_rows(rows, 10, False)] == [0, 1, 3, 4]
    assert select_training_rows([_row(0, False, "x")], 10, True) == []
