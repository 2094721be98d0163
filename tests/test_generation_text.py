"""Prompts and code extraction: pure units, no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from axiom_ray.generation.engines import cut_at_code_end
from axiom_ray.generation.extract import extract_code
from axiom_ray.generation.prompts import SYSTEM_PROMPT, build_messages, render_prompt
from axiom_ray.problems import Problem

PROBLEM = Problem(
    id="two_sum",
    title="Two Sum",
    difficulty="easy",
    prompt="Given a list of integers nums and an integer target, return the indices of the two "
    "numbers that add up to target.",
    entry_point="two_sum",
)

STUB = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    """
'''


class FakeTokenizer:
    """Renders ChatML like SmolLM2's template, records the call."""

    chat_template = "chatml"

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        self.calls.append({"tokenize": tokenize, "add_generation_prompt": add_generation_prompt})
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


# --- prompts ---------------------------------------------------------------------------------


def test_messages_have_system_and_user_with_entry_point() -> None:
    messages = build_messages(PROBLEM)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    assert "```python" in messages[0]["content"]
    user = messages[1]["content"]
    assert user.startswith(PROBLEM.prompt)
    assert "`two_sum`" in user


def test_messages_accept_plain_dicts() -> None:
    as_dict = {"id": "two_sum", "prompt": PROBLEM.prompt, "entry_point": "two_sum"}
    assert build_messages(as_dict) == build_messages(PROBLEM)


def test_code_stub_is_fenced_and_signature_kept() -> None:
    user = build_messages(
        {"id": "HumanEval/0", "prompt": STUB, "entry_point": "has_close_elements"}
    )[1]
    text = user["content"]
    assert "```python\nfrom typing import List" in text
    assert "def has_close_elements(numbers: List[float], threshold: float) -> bool:" in text
    assert "exact signature" in text


def test_signature_shown_in_prose_prompt_is_echoed() -> None:
    prompt = "Implement `def add(a: int, b: int) -> int:` which returns a + b."
    user = build_messages({"id": "add", "prompt": prompt, "entry_point": "add"})[1]["content"]
    assert "def add(a: int, b: int) -> int:" in user.split(prompt, 1)[1]


@pytest.mark.parametrize("missing", ["prompt", "entry_point"])
def test_missing_field_names_problem_and_field(missing: str) -> None:
    problem = {"id": "p1", "prompt": "x", "entry_point": "f"}
    problem[missing] = ""
    with pytest.raises(ValueError, match=rf"'p1'.*{missing}"):
        build_messages(problem)


def test_render_prompt_opens_the_assistant_turn() -> None:
    tokenizer = FakeTokenizer()
    text = render_prompt(tokenizer, PROBLEM)
    assert tokenizer.calls == [{"tokenize": False, "add_generation_prompt": True}]
    assert text.endswith("<|im_start|>assistant\n")
    assert PROBLEM.prompt in text


def test_render_prompt_without_chat_template_falls_back_to_text() -> None:
    tokenizer = FakeTokenizer()
    tokenizer.chat_template = None
    text = render_prompt(tokenizer, PROBLEM)
    assert not tokenizer.calls
    assert PROBLEM.prompt in text and SYSTEM_PROMPT in text


def test_prompts_and_extract_import_without_torch() -> None:
    code = (
        "import sys, axiom_ray.generation.prompts, axiom_ray.generation.extract, "
        "axiom_ray.generation.engines, axiom_ray.generation.actor; "
        "bad = [m for m in ('torch', 'vllm', 'ray', 'transformers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- extraction ------------------------------------------------------------------------------

SOLUTION = "def two_sum(nums, target):\n    return [0, 1]"


@pytest.mark.parametrize(
    "reply",
    [
        f"```python\n{SOLUTION}\n```",
        f"Here is the solution:\n\n```python\n{SOLUTION}\n```\n\nIt runs in O(n).",
        f"```Python\n{SOLUTION}\n```",
        f"```py\n{SOLUTION}\n```",
        f"```python3\n{SOLUTION}\n```",
        f"  ```python\n{SOLUTION}\n  ```",  # indented fences
        f"```python\n{SOLUTION}```",  # closing fence glued to the last line
        f"```\n{SOLUTION}\n```",  # untagged fence
        f"~~~python\n{SOLUTION}\n~~~",
        f"```python\n{SOLUTION}\n",  # unterminated: hit max_tokens after the function
        f"```python\n{SOLUTION}\n\nprint(two_sum([1, 2",  # unterminated mid-statement
        SOLUTION,  # bare code
        f"Sure! Here's the function:\n\n{SOLUTION}\n\nThis returns the indices.",  # bare, prose
        f"{SOLUTION}\n",
    ],
)
def test_extracts_the_solution(reply: str) -> None:
    assert extract_code(reply, "two_sum") == SOLUTION


def test_prefers_the_block_that_defines_the_entry_point() -> None:
    reply = (
        "First a helper:\n```python\ndef helper(x):\n    return x\n```\n"
        f"Then:\n```python\n{SOLUTION}\n```\n"
    )
    assert extract_code(reply, "two_sum") == SOLUTION
    assert extract_code(reply) == "def helper(x):\n    return x"  # no entry point: the first


def test_prefers_python_over_other_languages() -> None:
    reply = f"```bash\npip install nothing\n```\n```python\n{SOLUTION}\n```"
    assert extract_code(reply, "two_sum") == SOLUTION
    assert extract_code(reply) == SOLUTION


def test_python_block_before_an_untagged_one() -> None:
    reply = f"```\nsome output\n```\n```python\n{SOLUTION}\n```"
    assert extract_code(reply) == SOLUTION


def test_any_fenced_block_defining_entry_point_beats_a_python_block_without() -> None:
    reply = f"```python\nprint('hi')\n```\n```\n{SOLUTION}\n```"
    assert extract_code(reply, "two_sum") == SOLUTION


def test_example_usage_block_after_solution_is_ignored() -> None:
    reply = f"```python\n{SOLUTION}\n```\n\nExample:\n```python\nprint(two_sum([2, 7], 9))\n```"
    assert extract_code(reply, "two_sum") == SOLUTION


def test_empty_block_is_skipped() -> None:
    reply = f"```python\n```\n```python\n{SOLUTION}\n```"
    assert extract_code(reply) == SOLUTION


def test_imports_and_helpers_in_the_block_are_kept() -> None:
    code = "from typing import List\n\n\ndef helper(x):\n    return x\n\n\n" + SOLUTION
    assert extract_code(f"```python\n{code}\n```", "two_sum") == code


def test_async_and_decorated_definitions() -> None:
    code = "import functools\n\n@functools.cache\ndef two_sum(nums, target):\n    return [0, 1]"
    assert extract_code(f"```python\n{code}\n```", "two_sum") == code
    assert extract_code(f"Answer:\n{code}", "two_sum") == code


def test_unterminated_block_that_never_parses_is_returned_whole() -> None:
    reply = "```python\ndef two_sum(nums, target:\n    return ["
    assert extract_code(reply, "two_sum") == "def two_sum(nums, target:\n    return ["


def test_prose_only_reply_is_returned_as_text() -> None:
    assert extract_code("  I cannot solve this problem.  ") == "I cannot solve this problem."


def test_empty_reply() -> None:
    assert extract_code("") == ""


def test_indentation_inside_the_block_is_preserved() -> None:
    code = "class Solution:\n    def two_sum(self, nums, target):\n        return [0, 1]"
    assert extract_code(f"```python\n{code}\n```", "two_sum") == code


def test_cut_at_code_end_keeps_the_first_whole_block() -> None:
    reply = "```python\ndef f():\n    return 1\n```\n\nExample usage:\n```python\nprint(f())\n```\n"
    assert cut_at_code_end(reply) == "```python\ndef f():\n    return 1\n```\n"
    assert cut_at_code_end("```python\ndef f():\n    return 1\n") is None  # still open
    assert cut_at_code_end("Here it is:\n```python\nx = 1\n```\nBye") == "Here it is:\n```python\nx = 1\n```\n"
