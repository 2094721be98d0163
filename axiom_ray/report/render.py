"""Rendering the report's blocks: Markdown (report.md) and one self-contained HTML page
(report.html: CSS inline, every plot a base64 data URI)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence

from axiom_ray.report.blocks import Block, Heading, Para, Pre, Table, markdown_table


def render_markdown(blocks: Sequence[Block]) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Table):
            out.append(markdown_table(b.header, b.rows))
        elif isinstance(b, Pre):
            out.append(f"```text\n{b.text}\n```")
        else:
            out.append(f"![{b.alt}](plots/{b.name}.png)")
    return "\n\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #ccc;margin-top:1.8em}
table{border-collapse:collapse;margin:.8em 0}th,td{border:1px solid #ccc;padding:.3em .6em;
text-align:left;vertical-align:top}th{background:#f2f2f2}tr:nth-child(even) td{background:#fafafa}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:13px;line-height:1.25}
code{background:#f0f0f0;padding:0 .2em}figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}
figcaption{color:#555;font-size:.9em}
"""


def _inline_html(text: str) -> str:
    """The two Markdown inlines the report uses: **bold** and `code`."""
    s = html.escape(text)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", s)


def _para_html(text: str) -> str:
    lines = text.split("\n")
    if all(line.startswith("- ") for line in lines):
        return "<ul>" + "".join(f"<li>{_inline_html(line[2:])}</li>" for line in lines) + "</ul>"
    return f"<p>{_inline_html(text)}</p>"


def _table_html(t: Table) -> str:
    head = "".join(f"<th>{_inline_html(h)}</th>" for h in t.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_inline_html(str(c))}</td>" for c in row) + "</tr>"
        for row in t.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(blocks: Sequence[Block], plots: Mapping[str, bytes]) -> str:
    """One self-contained page: CSS inline, every plot a base64 data URI."""
    title = next((b.text for b in blocks if isinstance(b, Heading)), "axiom-ray report")
    parts = []
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"<h{b.level}>{_inline_html(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            parts.append(_para_html(b.text))
        elif isinstance(b, Table):
            parts.append(_table_html(b))
        elif isinstance(b, Pre):
            parts.append(f"<pre>{html.escape(b.text)}</pre>")
        else:
            data = base64.b64encode(plots[b.name]).decode("ascii")
            parts.append(
                f'<figure><img alt="{html.escape(b.alt)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(b.alt)}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )

