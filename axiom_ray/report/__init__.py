"""`axiom report RUN_DIR`: report.md, a self-contained report.html and plots/*.png for a run.

The report reproduces axiom-rl's published figures (solve rate, per-sample pass rate, failed
samples, unique solutions, duplicates filtered, per-problem breakdown) for every iteration, on
the training pool and on the held-out problems, and adds what axiom-rl lacked: held-out pass@k
with bootstrap confidence intervals, the paired differences the loop recorded, phase timings
and throughput.

The package follows the report's seams: collect.py reads the run directory (through
rundir.RunDir; only phases the manifest marks done) into RunData; content.py and details.py
build the blocks; render.py turns them into Markdown and HTML; plots.py draws the PNGs. Files
are written atomically through storage.Storage. No torch, vLLM or Ray.
"""

from __future__ import annotations

from axiom_ray.report.blocks import bar
from axiom_ray.report.collect import ReportError, open_run, read_run
from axiom_ray.report.content import build_blocks
from axiom_ray.report.plots import make_plots
from axiom_ray.report.render import render_html, render_markdown

__all__ = ["ReportError", "bar", "write_report"]


def write_report(run_dir: str) -> dict[str, str]:
    """Write RUN/report.md, RUN/report.html and RUN/plots/*.png (local path or pyarrow URI).

    Returns {"md": path, "html": path, <plot name>: path} in the run directory's own form.

    Raises ReportError (one line) when run_dir has no readable manifest.json.
    """
    run = open_run(run_dir)
    data = read_run(run)
    plots = make_plots(data)
    blocks = build_blocks(data, plots)
    files = {
        "md": ("report.md", render_markdown(blocks).encode("utf-8")),
        "html": ("report.html", render_html(blocks, plots).encode("utf-8")),
    } | {name: (f"plots/{name}.png", png) for name, png in plots.items()}
    for rel, content in files.values():
        run.storage.write_bytes_atomic(rel, content)
    return {key: run.uri(rel) for key, (rel, _) in files.items()}
