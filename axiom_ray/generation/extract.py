"""Pull the candidate program out of a model reply. Pure: stdlib only.

Preference: a ```python block that defines the entry point, any fenced block that does, the first
```python block, the first fenced block, else the reply's text (from its first line of code).
A fence left open (the model hit max_tokens) counts as a block running to the end of the reply.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

_PYTHON_TAGS = {"python", "python3", "py", "py3", "pycon", "ipython"}
_FENCE = re.compile(r"^[ \t]*(```|~~~)[ \t]*([\w+#.-]*)")
# A line that starts top-level Python (where code begins after leading prose).
_CODE_START = re.compile(r"^(def |async def |class |import |from \S+ import |@)")


@dataclass(frozen=True)
class _Block:
    lang: str
    code: str
    closed: bool

    @property
    def is_python(self) -> bool:
        return self.lang in _PYTHON_TAGS


def _blocks(reply: str) -> list[_Block]:
    """Every fenced block in order, an unterminated last one included."""
    blocks: list[_Block] = []
    lines = reply.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.group(1), opening.group(2).lower()
        body: list[str] = []
        i += 1
        closed = False
        while i < len(lines):
            line = lines[i]
            i += 1
            if line.strip().startswith(fence):
                closed = True
                break
            if line.rstrip().endswith(fence):  # "    return x```": code and fence on one line
                body.append(line.rstrip()[: -len(fence)])
                closed = True
                break
            body.append(line)
        blocks.append(_Block(lang, "\n".join(body), closed))
    return blocks


def _defines(code: str, entry_point: str) -> bool:
    return re.search(rf"^\s*(async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.M) is not None


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _trim_to_code(code: str) -> str:
    """Drop trailing lines (a cut-off statement, closing prose) until the code parses.

    Returns `code` unchanged when no prefix parses: the verifier reports the syntax error.
    """
    if _parses(code):
        return code
    lines = code.splitlines()
    for end in range(len(lines) - 1, 0, -1):
        head = "\n".join(lines[:end]).rstrip()
        if head and _parses(head) and _has_statement(head):
            return head
    return code


def _has_statement(code: str) -> bool:
    return bool(ast.parse(code).body)


def _from_text(reply: str) -> str:
    """Code in an unfenced reply: from the first line that starts Python, prose trimmed off."""
    if _parses(reply):
        return reply.strip("\n")
    lines = reply.splitlines()
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None:
        return reply.strip()
    return _trim_to_code("\n".join(lines[start:]).strip("\n"))


def _pick(blocks: list[_Block], entry_point: str | None) -> _Block | None:
    blocks = [b for b in blocks if b.code.strip()]  # "```python\n```" holds nothing to run
    python = [b for b in blocks if b.is_python]
    if entry_point:
        for group in (python, blocks):
            for block in group:
                if _defines(block.code, entry_point):
                    return block
    return (python or blocks or [None])[0]


def extract_code(reply: str, entry_point: str | None = None) -> str:
    """The program in `reply`; see the module docstring for the order of preference."""
    block = _pick(_blocks(reply), entry_point)
    if block is None:
        return _from_text(reply)
    code = block.code.strip("\n")
    return code if block.closed else _trim_to_code(code)
