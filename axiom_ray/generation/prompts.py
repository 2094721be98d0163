"""Prompts: a problem becomes chat messages, then text through the model's own chat template.

Pure (no torch): the tokenizer is passed in, only its `apply_chat_template` is used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SYSTEM_PROMPT = (
    "You are an expert Python programmer. Solve the problem by writing one Python function. "
    "Reply with the complete function, including any imports it needs, in a single "
    "```python code block."
)


def _field(problem: Any, name: str) -> str:
    """Read a field from a Problem or a plain dict (the driver ships problems as dicts)."""
    value = problem.get(name) if isinstance(problem, Mapping) else getattr(problem, name, None)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"problem {_ident(problem)}: field {name!r} is missing or empty")
    return value


def _ident(problem: Any) -> str:
    value = problem.get("id") if isinstance(problem, Mapping) else getattr(problem, "id", None)
    return repr(value) if value else "<no id>"


def _signature(prompt: str, entry_point: str) -> str | None:
    """The `def entry_point(...):` the prompt shows, in prose or as a code stub, on one line."""
    match = re.search(rf"\bdef {re.escape(entry_point)}\(.*?\)[^:\n`]*:", prompt, re.S)
    return " ".join(match.group(0).split()) if match else None


def _is_code_stub(prompt: str, entry_point: str) -> bool:
    """HumanEval-style: the prompt is code that starts the function, not prose about it."""
    if "```" in prompt:
        return False
    return re.search(rf"^def {re.escape(entry_point)}\(", prompt, re.M) is not None


def build_messages(problem: Any) -> list[dict[str, str]]:
    """System + user messages for one problem (a Problem or a dict with prompt and entry_point)."""
    prompt = _field(problem, "prompt").strip("\n")
    entry_point = _field(problem, "entry_point")
    signature = _signature(prompt, entry_point)
    if signature and _is_code_stub(prompt, entry_point):
        # A code stub reads best as code: fence it so the model completes, not comments on, it.
        body = f"Complete this Python function:\n\n```python\n{prompt}\n```"
        hint = f"Keep the exact signature `{signature}`."
    else:
        body = prompt
        hint = f"The function must be named `{entry_point}`" + (
            f", with the signature `{signature}`." if signature else "."
        )
    user = f"{body}\n\n{hint} Reply with the whole function in one ```python code block."
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def render_prompt(tokenizer: Any, problem: Any) -> str:
    """The text the model continues: the chat template applied, assistant turn opened.

    A tokenizer without a chat template (a base model) gets the same messages as plain text.
    """
    if not getattr(tokenizer, "chat_template", None):
        system, user = (m["content"] for m in build_messages(problem))
        return f"{system}\n\n{user}\n\nAnswer:\n"
    text = tokenizer.apply_chat_template(
        build_messages(problem), tokenize=False, add_generation_prompt=True
    )
    if not isinstance(text, str):  # some tokenizers return a list when given one conversation
        raise TypeError(f"chat template returned {type(text).__name__}, expected str")
    return text
